"""Orders per second of the order path on PostgreSQL, against pgbench.

    python -m bench.trading

How many orders a second does one market accept *and* match, how long does
an accepted order wait for its committed match, how fast does a matcher drain
a backlog, and where does the time go (issue 13).

Method. A seeded database (4 markets ``BASE-USDT``, funded users, a book of
resting orders placed through ``trading.orders`` and matched with
``trading.matcher.drain``) is copied once and recreated from the copy before
each run. 8 client processes (``spawn``, each its own ``django.setup()`` and
connection) call ``trading.orders.order_place`` and ``order_cancel`` as a view
or the API does once it has parsed a request, and are answered at acceptance
(the API's ``ACK``): 50 % resting limits 0.50 to 5.00 away from a mid of 100,
30 % crossing orders (half IOC limits 5.00 through the mid, half market
orders, buys with that price as protection), 20 % cancels of the client's
own resting orders. Each market has its own ``manage.py run_matcher --market``
process. After each committed batch the matcher sends a NOTIFY with the
sequence of its last command; a listener notes when each arrives, and an
order counts as matched at the arrival of the first batch whose sequence
reaches the order's ``priority_sequence`` (the one the matcher gave it).

- Saturated: the clients back to back for 10 s, on one market and on four.
  Orders/s = orders accepted / (clients' start to the commit of the batch
  that matched the last of them): a matcher that falls behind counts.
- Paced: open loop, Poisson arrivals at 60 % of the one-market saturated
  rate; the latency runs from ``order_place``'s return to that commit.
- Backlog: the commands queued with no matcher running, then the matchers
  started; a market's rate is what its batches after the first applied over
  their span. Once more on one market under ``cProfile``, outside the
  measured numbers, for where a batch's time goes.

CPU per operation comes from ``/proc/<pid>/stat`` of the client and matcher
processes and of their PostgreSQL backends, the machine's from ``/proc/stat``.
``pgbench`` (TPC-B-like, 8 clients, prepared) runs just before and after the
one-market saturated run; ratios use the mean. After each run the queue must
be empty and ``ledger_problems()`` must find nothing. Writes the section
``## Trading on PostgreSQL`` of ``docs/PERFORMANCE.md``; missing a target is a
result, the exit code is non-zero when the benchmark could not run or an
invariant broke.
"""

from __future__ import annotations

import argparse
import bisect
import importlib.metadata
import itertools
import multiprocessing
import os
import platform
import pstats
import random
import re
import secrets
import signal
import subprocess
import sys
import tempfile
import threading
import time
import traceback
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

from bench import report

REPO_ROOT = Path(__file__).resolve().parent.parent
SECTION_HEADING = "## Trading on PostgreSQL"
PG = ["-h", "127.0.0.1", "-p", "5432", "-U", "postgres"]
BENCH_DB = f"bench_trading_{os.getpid()}"  # clients get it in DATABASE_URL
SNAPSHOT_DB, PGBENCH_DB = f"{BENCH_DB}_seed", f"{BENCH_DB}_pgbench"

CLIENTS, SECONDS, PACED_SHARE = 8, 10.0, 0.6
BACKLOG = {1: 10_000, 4: 12_000}  # commands queued, by number of markets
PROFILED_BACKLOG = 3_000
TARGET_RATIO, TARGET_P99, TARGET_DRAIN = 0.3, 0.100, 3_000
# The old design's last published figures (this section, 2026-11-24 10:55 UTC);
# its code (trading/sql.py, the market row locked per order) is gone.
OLD = {"orders": 309, "tps": 5_377, "p99": 0.0335, "cpu": 0.0038}

SEED = 20260601
CANCEL_SHARE, CROSS_SHARE = 0.20, 0.30
MID, STEP, REACH = Decimal("100.00"), Decimal("0.01"), Decimal("5.00")
REST_OFFSETS, REST_QUANTITY, CROSS_QUANTITY = (50, 500), (10, 100), (5, 50)
BASE_SYMBOLS = ("BTC", "ETH", "SOL", "XRP")


class BenchError(Exception):
    """The benchmark could not run, or the exchange broke an invariant."""


def run(command: list[str], **kwargs) -> str:
    done = subprocess.run(command, capture_output=True, text=True, **kwargs)
    if done.returncode != 0:
        raise BenchError(f"{' '.join(command)}: {done.stdout}{done.stderr}")
    return done.stdout


def psql(*commands: str, database: str = "postgres") -> list[str]:
    args = ["psql", *PG, "-X", "-q", "-At", "-v", "ON_ERROR_STOP=1", "-d", database]
    return run(args + [part for c in commands for part in ("-c", c)]).splitlines()


def database_create(name: str, *, template: str | None = None) -> None:
    psql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    psql(f'CREATE DATABASE "{name}"' + (f' TEMPLATE "{template}"' if template else ""))


_SECRET_KEY = secrets.token_urlsafe(50)


def django_environment() -> dict[str, str]:
    # Production settings; the developer's .env must not change anything.
    return {
        **os.environ,
        "DATABASE_URL": f"postgres://postgres@127.0.0.1:5432/{BENCH_DB}",
        "ENV_FILE": "/dev/null",
        "DJANGO_SETTINGS_MODULE": "crypto_exchange.settings",
        "DEBUG": "false",
        "SECRET_KEY": _SECRET_KEY,
        "REDIS_URL": "",  # the matcher publishes no events here
        "LOG_LEVEL": "WARNING",
    }


def process_cpu(pid: int) -> float:
    """User + system CPU seconds of a process of this machine."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def machine_cpu() -> tuple[int, int]:
    """(busy, total) jiffies of all CPUs since boot."""
    values = [int(x) for x in Path("/proc/stat").read_text().split()[1:11]]
    total = sum(values[:8])  # guest time is already in user
    return total - values[3] - values[4], total


def cores() -> int:
    return len(os.sched_getaffinity(0))


def load_average() -> str:
    return Path("/proc/loadavg").read_text().split()[0]


def seed_create() -> dict:
    """Tokens, markets, funded users and a matched book, through the services."""
    from django.contrib.auth import get_user_model

    from tokens.services import token_create
    from trading.matcher import drain
    from trading.models import Order
    from trading.orders import order_place
    from trading.services import deposit_credit, market_create

    quote = token_create(name="Tether", symbol="USDT", decimals=8)
    bases = [token_create(name=s, symbol=s, decimals=8) for s in BASE_SYMBOLS]
    markets = [
        market_create(
            base=base,
            quote=quote,
            price_step=STEP,
            amount_step=Decimal("0.0001"),
            min_notional=Decimal("1"),
            maker_fee=Decimal("0.001"),
            taker_fee=Decimal("0.002"),
        )
        for base in bases
    ]
    create_user = get_user_model().objects.create_user  # no password to hash
    users = {
        role: [create_user(f"bench-{role}-{i}") for i in range(count)]
        for role, count in (("maker", CLIENTS), ("taker", CLIENTS), ("seed", 4))
    }
    for number, user in enumerate(itertools.chain(*users.values())):
        for token in (quote, *bases):
            deposit_credit(
                user=user,
                token=token,
                amount=Decimal(1_000_000_000 if token == quote else 1_000_000),
                reference=f"bench-{number}-{token.symbol}",
            )
    rng = random.Random(SEED)
    for market in markets:
        for user, side in itertools.product(users["seed"], ("buy", "sell") * 15):
            offset = rng.randint(*REST_OFFSETS) * STEP
            order_place(
                user=user,
                market=market,
                side=side,
                type="limit",
                quantity=rng.randint(*REST_QUANTITY) * STEP,
                price=MID - offset if side == "buy" else MID + offset,
            )
        drain(market_id=market.pk)
    return {
        "markets": [(market.pk, market.symbol) for market in markets],
        "makers": [user.pk for user in users["maker"]],
        "takers": [user.pk for user in users["taker"]],
        "book": Order.objects.filter(status=Order.Status.OPEN).count(),
    }


# -- The clients ----------------------------------------------------------------


@dataclass(frozen=True)
class ClientSpec:
    index: int
    label: str
    maker_id: int  # rests orders and cancels them
    taker_id: int  # only crosses, so self-trade prevention never applies
    market_ids: tuple[int, ...]
    seconds: float | None = None  # run this long,
    operations: int | None = None  # or this many operations
    rate: float | None = None  # operations/s, Poisson arrivals; None: back to back


@dataclass
class ClientResult:
    # (order id, call started, accepted): time.monotonic(), one clock for all
    # the processes of this machine
    placed: list[tuple[int, float, float]] = field(default_factory=list)
    cancels: int = 0
    refused: Counter = field(default_factory=Counter)
    statements: int = 0
    started: float = 0.0
    ended: float = 0.0
    cpu: float = 0.0
    backend_cpu: float = 0.0


def client_main(spec: ClientSpec, barrier, results) -> None:
    try:
        import django

        django.setup()
        results.put((spec.index, client_run(spec, barrier), None))
    except BaseException:
        barrier.abort()
        results.put((spec.index, None, traceback.format_exc()))


def client_run(spec: ClientSpec, barrier) -> ClientResult:
    from django.contrib.auth import get_user_model
    from django.db import connection

    from trading.exceptions import TradingError
    from trading.models import Market
    from trading.orders import order_cancel, order_place

    users = get_user_model().objects.in_bulk([spec.maker_id, spec.taker_id])
    maker, taker = users[spec.maker_id], users[spec.taker_id]
    markets = list(Market.objects.filter(pk__in=spec.market_ids).order_by("pk"))
    rng = random.Random(f"{SEED}-{spec.label}-{spec.index}")
    result, resting = ClientResult(), []

    def counted(execute, sql, params, many, context):
        result.statements += 1
        return execute(sql, params, many, context)

    def placement(draw: float) -> tuple[str, dict]:
        buying = rng.random() < 0.5
        order = {"market": rng.choice(markets), "side": "buy" if buying else "sell"}
        if CANCEL_SHARE <= draw < CANCEL_SHARE + CROSS_SHARE:
            limit = MID + REACH if buying else MID - REACH
            order["quantity"] = rng.randint(*CROSS_QUANTITY) * STEP
            if rng.random() < 0.5:
                order |= {"type": "limit", "price": limit, "time_in_force": "IOC"}
            else:  # a market buy by quantity needs a protection price
                order |= {
                    "type": "market",
                    "protection_price": limit if buying else None,
                }
            return "cross", order | {"user": taker}
        offset = rng.randint(*REST_OFFSETS) * STEP
        return "rest", order | {
            "user": maker,
            "type": "limit",
            "price": MID - offset if buying else MID + offset,
            "quantity": rng.randint(*REST_QUANTITY) * STEP,
        }

    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_backend_pid()")
        backend = cursor.fetchone()[0]
    barrier.wait(timeout=300)
    result.cpu, result.backend_cpu = time.process_time(), process_cpu(backend)
    result.started = due = time.monotonic()
    with connection.execute_wrapper(counted):
        for _ in range(spec.operations or sys.maxsize):
            if spec.rate is not None:
                due += rng.expovariate(spec.rate)
                time.sleep(max(0.0, due - time.monotonic()))
            started = time.monotonic()
            if spec.seconds is not None and started >= result.started + spec.seconds:
                break
            draw, kind = rng.random(), "cancel"
            try:
                if draw < CANCEL_SHARE and resting:  # with none, it rests one
                    order = resting.pop(rng.randrange(len(resting)))
                    order_cancel(user=maker, order=order)
                    result.cancels += 1
                    continue
                kind, fields = placement(draw)
                order = order_place(**fields)
                result.placed.append((order.pk, started, time.monotonic()))
                if kind == "rest":
                    resting.append(order)
            except TradingError as error:
                result.refused[f"{kind}: {type(error).__name__}"] += 1
    result.ended = time.monotonic()
    result.cpu = time.process_time() - result.cpu
    result.backend_cpu = process_cpu(backend) - result.backend_cpu
    connection.close()
    return result


def clients_run(specs: list[ClientSpec], on_start) -> list[ClientResult]:
    """Run the clients, released together; ``on_start()`` runs at the release."""
    context = multiprocessing.get_context("spawn")
    barrier, results = context.Barrier(len(specs) + 1), context.Queue()
    processes = [
        context.Process(target=client_main, args=(s, barrier, results), daemon=True)
        for s in specs
    ]
    for process in processes:
        process.start()
    collected = {}
    try:
        barrier.wait(timeout=300)
        on_start()
        for _ in specs:
            index, result, error = results.get(timeout=600)
            if error is not None:
                raise BenchError(f"client {index} failed:\n{error}")
            collected[index] = result
    except threading.BrokenBarrierError:
        raise BenchError(f"a client failed: {results.get(timeout=5)[2]}") from None
    finally:
        for process in processes:
            process.join(timeout=30)
    return [collected[i] for i in range(len(specs))]


# -- The matchers and their notifications ---------------------------------------


class Matchers:
    """``run_matcher --market`` for each market (or one ``run_matcher`` for
    them all, as deployed by default), and their backends."""

    def __init__(
        self,
        markets: list[tuple[int, str]],
        *,
        together: bool = False,
        profile: Path | None = None,
    ):
        from django.db import connection

        from trading.matcher import PostgresLocks

        self.log = tempfile.TemporaryFile()  # noqa: SIM115 (closed with the object)
        profiling = ["-m", "cProfile", "-o", str(profile)] if profile else []
        command = [sys.executable, *profiling, "manage.py", "run_matcher"]
        self.started = time.monotonic()
        self.processes = [
            subprocess.Popen(
                command + ([] if together else ["--market", symbol]),
                cwd=REPO_ROOT,
                env=django_environment(),
                stdout=self.log,
                stderr=subprocess.STDOUT,
            )
            for _, symbol in markets[: 1 if together else None]
        ]
        self.backends: dict[int, int] = {}
        while len(self.backends) < len(markets):  # until each holds its lock
            if any(p.poll() is not None for p in self.processes) or (
                time.monotonic() - self.started > 60
            ):
                self.stop()
                raise BenchError(f"run_matcher did not start: {self.output()}")
            time.sleep(0.01)
            with connection.cursor() as cursor:
                cursor.execute(
                    "SELECT l.objid::int, l.pid FROM pg_locks AS l JOIN pg_database"
                    " AS d ON d.oid = l.database WHERE d.datname = current_database()"
                    " AND l.locktype = 'advisory' AND l.classid = %s AND l.granted",
                    [PostgresLocks.CLASS],
                )
                self.backends = dict(cursor.fetchall())
        self.ready, self.machine_start = time.monotonic(), machine_cpu()
        self.cpu_start = self.cpu()

    def cpu(self) -> tuple[float, float]:
        """CPU seconds of the matcher processes, and of their backends."""
        return (
            sum(process_cpu(p.pid) for p in self.processes),
            sum(process_cpu(pid) for pid in set(self.backends.values())),
        )

    def output(self) -> str:
        self.log.seek(0)
        return self.log.read().decode(errors="replace")[-3000:]

    def stop(self) -> None:
        for process in self.processes:
            process.send_signal(signal.SIGTERM)  # ends the batch, then the loop
        for process in self.processes:
            try:
                process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


class Listener(threading.Thread):
    """Notes when each market's batch notification arrives: (sequence, time)."""

    def __init__(self, market_ids: list[int]) -> None:
        import psycopg

        from trading.orders import notify_channel

        super().__init__(daemon=True)
        database = f"postgresql://postgres@127.0.0.1:5432/{BENCH_DB}"
        self.connection = psycopg.connect(database, autocommit=True)
        self.channels = {notify_channel(pk): pk for pk in market_ids}
        for channel in self.channels:
            self.connection.execute(f'LISTEN "{channel}"')
        self.seen: dict[int, list[tuple[int, float]]] = {pk: [] for pk in market_ids}
        self.stopping = threading.Event()
        self.start()

    def run(self) -> None:
        while not self.stopping.is_set():
            for note in self.connection.notifies(timeout=0.1):
                seen = self.seen[self.channels[note.channel]]
                seen.append((int(note.payload), time.monotonic()))

    def stop(self) -> None:
        self.stopping.set()
        self.join()
        self.connection.close()

    def committed_at(self, market_id: int, sequence: int) -> float:
        """When the batch that applied command ``sequence`` committed."""
        seen = self.seen[market_id]
        return seen[bisect.bisect_left(seen, (sequence, 0.0))][1]


# -- One run ----------------------------------------------------------------------


@dataclass
class Run:
    name: str
    markets: int
    seconds: float  # clients' start (backlog: matchers ready) to the last commit
    lag: float  # the last commit after the clients stopped
    orders: int
    cancels: int
    fills: int
    request_latency: list[float]
    match_latency: list[float]
    batches: list[int]  # commands per batch
    client_cpu: tuple[float, float]  # processes, backends
    matcher_cpu: tuple[float, float]
    busy: float  # share of all cores over ``seconds``
    others: float  # of which not by this run's processes
    refused: Counter
    statements: float  # per request
    # backlog, per market: (orders, commands, seconds) of the batches after the
    # first
    drains: list[tuple[int, int, float]] = field(default_factory=list)
    startup: float = 0.0

    @property
    def requests(self) -> int:
        return self.orders + self.cancels

    @property
    def commands(self) -> int:
        return sum(self.batches)

    @property
    def orders_per_second(self) -> float:
        """For a backlog, per market (the mean of its markets)."""
        if self.drains:
            return sum(o / s for o, _, s in self.drains) / len(self.drains)
        return self.orders / self.seconds

    @property
    def cancels_per_second(self) -> float:
        if self.drains:
            return sum((c - o) / s for o, c, s in self.drains) / len(self.drains)
        return self.cancels / self.seconds

    def cpu_per(self, side: str) -> tuple[float, float]:
        """CPU seconds per request (``client``) or per command (``matcher``)."""
        spent, count = {
            "client": (self.client_cpu, self.requests),
            "matcher": (self.matcher_cpu, self.commands),
        }[side]
        return spent[0] / max(1, count), spent[1] / max(1, count)


def run_once(
    seed: dict,
    name: str,
    *,
    markets: int,
    seconds: float | None = None,
    operations: int | None = None,
    rate: float | None = None,
    backlog: bool = False,
    together: bool = False,
    profile: Path | None = None,
) -> Run:
    from django.db import connections

    from trading.invariants import ledger_problems
    from trading.models import CommandRefusal, MatcherState, Order, OrderCommand, Trade

    connections.close_all()
    database_create(BENCH_DB, template=SNAPSHOT_DB)
    chosen = seed["markets"][:markets]
    ids = [pk for pk, _ in chosen]
    first = dict(MatcherState.objects.values_list("market_id", "sequence"))
    trades = Trade.objects.count()
    specs = [
        ClientSpec(
            index=i,
            label=name,
            maker_id=seed["makers"][i],
            taker_id=seed["takers"][i],
            market_ids=tuple(ids),
            seconds=seconds,
            operations=operations and -(-operations // CLIENTS),
            rate=rate and rate / CLIENTS,
        )
        for i in range(CLIENTS)
    ]
    listener, matchers, machine = Listener(ids), None, []
    try:
        if not backlog:
            matchers = Matchers(chosen, together=together)
        clients = clients_run(specs, on_start=lambda: machine.append(machine_cpu()))
        if backlog:
            matchers = Matchers(chosen, profile=profile)
            machine = [matchers.machine_start]
        deadline = time.monotonic() + 300
        while OrderCommand.objects.exists():
            if time.monotonic() > deadline:
                raise BenchError(f"the queue did not drain: {matchers.output()}")
            time.sleep(0.02)  # the end is the last batch's notification
        machine.append(machine_cpu())
        matcher_cpu = tuple(
            b - a for a, b in zip(matchers.cpu_start, matchers.cpu(), strict=True)
        )
        time.sleep(0.2)  # the last notifications
    finally:
        if matchers is not None:
            matchers.stop()
        listener.stop()
    problems = ledger_problems()
    if problems:
        raise BenchError(f"{name}: invariants broken: {' '.join(problems[:5])}")

    placed = [p for c in clients for p in c.placed]
    rows = Order.objects.filter(pk__in=[p[0] for p in placed])
    found = {
        pk: row for pk, *row in rows.values_list("pk", "market_id", "priority_sequence")
    }
    batches, drains = [], []
    for market in ids:
        seen = listener.seen[market]
        marks = [first[market]] + [sequence for sequence, _ in seen]
        batches += [b - a for a, b in itertools.pairwise(marks)]
        if backlog and len(seen) > 1:
            (low, since), (high, until) = seen[0], seen[-1]
            orders = sum(m == market and low < s <= high for m, s in found.values())
            drains.append((orders, high - low, until - since))
    end = max(seen[-1][1] for seen in listener.seen.values() if seen)
    start = matchers.ready if backlog else min(c.started for c in clients)
    busy = (machine[1][0] - machine[0][0]) / max(1, machine[1][1] - machine[0][1])
    ours = sum(matcher_cpu) + (not backlog) * sum(
        c.cpu + c.backend_cpu for c in clients
    )
    result = Run(
        name=name,
        markets=markets,
        seconds=end - start,
        lag=end - max(c.ended for c in clients),
        orders=len(placed),
        cancels=sum(c.cancels for c in clients),
        fills=Trade.objects.count() - trades,
        request_latency=[accepted - began for _, began, accepted in placed],
        match_latency=[]
        if backlog
        else [listener.committed_at(*found[pk]) - at for pk, _, at in placed],
        batches=batches,
        client_cpu=(sum(c.cpu for c in clients), sum(c.backend_cpu for c in clients)),
        matcher_cpu=matcher_cpu,
        busy=busy,
        others=max(0.0, busy - ours / ((end - start) * cores())),
        refused=sum((c.refused for c in clients), Counter())
        + Counter(
            {"cancel: acknowledged, found closed": CommandRefusal.objects.count()}
        ),
        statements=sum(c.statements for c in clients)
        / max(1, sum(len(c.placed) + c.cancels for c in clients)),
        drains=drains,
        startup=matchers.ready - matchers.started,
    )
    connections.close_all()
    return result


def pgbench(seconds: float) -> float:
    """pgbench's TPC-B-like tps with as many clients."""
    options = ["-c", str(CLIENTS), "-j", str(CLIENTS), "-T", str(round(seconds))]
    output = run(["pgbench", *PG, *options, "-M", "prepared", PGBENCH_DB])
    found = re.search(r"tps = ([\d.]+) \(without initial connection time\)", output)
    if found is None:
        raise BenchError(f"unexpected pgbench output: {output}")
    return float(found.group(1))


PROFILED = (  # (file, function, what it does)
    ("trading/matcher.py", "queue_rows", "read the queued commands"),
    ("trading/engine/matching.py", "apply", "match them (the engine)"),
    ("trading/batch.py", "add", "gather the results"),
    ("trading/batch.py", "batch_write", "write them, commit, notify"),
)


def profile_rows(path: Path) -> list[tuple[str, float, float]]:
    """[(what, seconds per batch, share of ``MarketMatcher.step``)]."""
    stats = pstats.Stats(str(path)).stats

    def cumulative(wanted: str, function: str) -> tuple[float, int]:
        return next(
            (seconds, calls)
            for (file, _, name), (_, calls, _, seconds, _) in stats.items()
            if file.endswith(wanted) and name == function
        )

    batches = cumulative("trading/batch.py", "batch_write")[1]
    loop = cumulative("trading/matcher.py", "step")[0]
    return [
        (what, spent / batches, spent / loop)
        for file, function, what in PROFILED
        for spent in [cumulative(file, function)[0]]
    ]


# -- The report ---------------------------------------------------------------------


def ms(seconds: float) -> str:
    return f"{seconds * 1e3:,.1f} ms"


def percentile(values: list[float], share: float) -> float:
    """Nearest-rank percentile; NaN for no values."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[max(1, int(-(-len(ordered) * share // 1))) - 1]


def p50_p99(values: list[float]) -> str:
    return f"{ms(percentile(values, 0.5))} / {ms(percentile(values, 0.99))}"


def results_table(runs: list[Run], tps: float) -> list[str]:
    lines = [
        "| Run | Orders/s | Cancels/s | Fills/s | ÷ pgbench tps | Request p50 / p99 "
        "| Accepted → matched p50 / p99 | Batch mean (max) | CPU per request: "
        "client + PostgreSQL | CPU per command: matcher + PostgreSQL "
        "| Machine busy (other work) |",
        "|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|",
    ]
    for r in runs:
        client, matcher = r.cpu_per("client"), r.cpu_per("matcher")
        fills = r.fills / r.seconds / (r.markets if r.drains else 1)
        lines.append(
            f"| {r.name} | {r.orders_per_second:,.0f} | {r.cancels_per_second:,.0f} "
            f"| {fills:,.0f} "
            f"| {'—' if r.drains else f'{r.orders_per_second / tps:.3f}'} "
            f"| {p50_p99(r.request_latency)} "
            f"| {p50_p99(r.match_latency) if r.match_latency else 'queued'} "
            f"| {r.commands / len(r.batches):,.1f} ({max(r.batches)}) "
            f"| {ms(client[0])} + {ms(client[1])} | {ms(matcher[0])} + "
            f"{ms(matcher[1])} | {r.busy:.0%} ({r.others:.0%}) |"
        )
    return lines


def section(runs: dict[str, Run], tps: list[float], steps: list, facts: dict) -> str:
    sat, four, together, paced, back, back4 = runs.values()
    mean_tps = sum(tps) / len(tps)
    ratio, p99 = sat.orders_per_second / mean_tps, percentile(paced.match_latency, 0.99)
    request, matcher = sum(sat.cpu_per("client")), sum(sat.cpu_per("matcher"))
    share = sat.orders / sat.requests  # placements among requests
    # A batch's CPU (matcher and backend) as fixed + per command, from the
    # saturated run's small batches and the backlog's large ones.
    (n1, c1), (n2, c2) = (
        (r.commands / len(r.batches), sum(r.matcher_cpu) / len(r.batches))
        for r in (sat, back)
    )
    per_command = (c2 - c1) / (n2 - n1)
    refused = sum((r.refused for r in runs.values()), Counter())
    targets = [
        (
            f"One market, {CLIENTS} clients: accepted-and-matched orders/s ≥ "
            f"{TARGET_RATIO} x pgbench tps",
            f"{ratio:.3f} x ({sat.orders_per_second:,.0f} orders/s, pgbench "
            f"{mean_tps:,.0f} tps)",
            ratio >= TARGET_RATIO,
        ),
        (
            f"Acceptance to committed match at {PACED_SHARE:.0%} of that rate: "
            f"p99 < {ms(TARGET_P99)}",
            f"{ms(p99)} at {paced.orders_per_second:,.0f} orders/s",
            p99 < TARGET_P99,
        ),
        (
            f"The matcher alone draining a backlog: ≥ {TARGET_DRAIN:,} orders/s "
            "per market",
            f"{back.orders_per_second:,.0f} orders/s + "
            f"{back.cancels_per_second:,.0f} cancels/s",
            back.orders_per_second >= TARGET_DRAIN,
        ),
    ]
    lines = [
        SECTION_HEADING,
        "",
        f"Generated by `python -m bench.trading` on {facts['started']} UTC in "
        f"{facts['elapsed']:.0f} s; do not edit by hand, run it again. Load "
        f"average (1 min) at the start and the end: {facts['load'][0]} and "
        f"{facts['load'][1]}. {facts['machine']}",
        "",
        "| Target (issue 13; ratios within this run) | Measured | Result |",
        "|---|---|---|",
        *(
            f"| {target} | {got} | {'**PASS**' if ok else '**FAIL**'} |"
            for target, got, ok in targets
        ),
        "",
        f"The old design (each order matched in its own transaction, the market "
        f"row locked) last published {OLD['orders']} orders/s on one market with "
        f"{CLIENTS} clients: {OLD['orders'] / OLD['tps']:.3f} x the pgbench of its "
        f"run ({OLD['tps']:,} tps), p99 {ms(OLD['p99'])} per call, matched on "
        f"return, {ms(OLD['cpu'])} of CPU per operation (2026-11-24, 3 % other "
        "work on the machine). Its code is gone; it no longer runs beside this.",
        "",
        *results_table(list(runs.values()), mean_tps),
        "",
        f"pgbench (`-i -s 10`, then `-c {CLIENTS} -j {CLIENTS} -T "
        f"{round(facts['seconds'])} -M prepared`) just before and after the "
        f"first run: {tps[0]:,.0f} and {tps[1]:,.0f} tps. Orders/s: accepted "
        "placements over the clients' start to the commit of the batch that "
        "matched the last; for a backlog, per market, over its batches after "
        "the first. Request: `order_place`'s call. Accepted → matched: from its "
        "return to its batch's NOTIFY. Batch: commands per batch. Other work: "
        "what this run's processes did not use of the machine (`/proc/stat`). "
        "Invariants (`ledger_problems()`, the queue empty) held after every "
        "run. Refused: " + ", ".join(f"{k} {v}" for k, v in sorted(refused.items())),
        "",
        f"A backlog's batch under `cProfile` ({PROFILED_BACKLOG:,} commands; "
        "profiling slows Python, so the engine's share is overstated):",
        "",
        "| Step | Per batch | Share of `MarketMatcher.step` |",
        "|---|--:|--:|",
        *(f"| {what} | {ms(spent)} | {part:.0%} |" for what, spent, part in steps),
        "",
        "What limits it:",
        "",
        f"- **The request side, on {cores()} cores.** A request costs "
        f"{ms(request)} of CPU (client and backend: {sat.statements:.1f} "
        "statements, prepared, each its own commit), a command "
        f"{ms(matcher)} in the matcher at "
        f"saturation: {cores()} cores / their sum is "
        f"{cores() / (request + matcher) * share:,.0f} orders/s with this mix; "
        f"{TARGET_RATIO} x pgbench would need "
        f"{ms(cores() * share / (TARGET_RATIO * mean_tps))} for both. (The old "
        f"design: {ms(OLD['cpu'])} per operation, matching included; the "
        "prototype's request, one autocommit statement from psycopg: 0.79 ms.)",
        f"- **Small batches.** The matcher "
        f"{'kept up' if sat.lag < 0.5 else 'fell behind'} (its last match "
        f"{ms(sat.lag)} after the clients stopped). A batch costs about "
        f"{ms(c1 - per_command * n1)} of CPU whatever its size, polls included, "
        f"plus {ms(per_command)} per command. With a matcher per market, four "
        f"markets make batches of {four.commands / len(four.batches):,.1f} "
        f"commands at {ms(sum(four.cpu_per('matcher')))} each; one `run_matcher` "
        "for all of them (the deployed default) takes the markets in turn, "
        f"so batches of {together.commands / len(together.batches):,.1f} at "
        f"{ms(sum(together.cpu_per('matcher')))}: "
        f"{together.orders_per_second:,.0f} orders/s against "
        f"{four.orders_per_second:,.0f}, matched p99 "
        f"{ms(percentile(together.match_latency, 0.99))} against "
        f"{ms(percentile(four.match_latency, 0.99))}.",
        f"- **Draining is serial.** A matcher and its backend kept "
        f"{sum(back.matcher_cpu) / back.seconds:.0%} of a core busy: the "
        "matcher waits for each statement and for the commit in turn, and "
        f"writing and committing is {steps[-1][2]:.0%} of a batch. Four at once "
        f"drained {back4.orders_per_second:,.0f} orders/s per market. A matcher "
        f"starts (Django, its lock, the book) in {ms(back.startup)}.",
    ]
    return "\n".join(lines) + "\n"


def machine_summary() -> str:
    version, buffers, commit = psql(
        "SHOW server_version", "SHOW shared_buffers", "SHOW synchronous_commit"
    )
    return (
        f"{cores()} cores, {platform.platform()}, Python "
        f"{platform.python_version()}, Django {importlib.metadata.version('Django')}"
        f", psycopg {importlib.metadata.version('psycopg')}, PostgreSQL {version} "
        f"on loopback (`shared_buffers` {buffers}, `synchronous_commit` {commit}); "
        "production settings, no `REDIS_URL` (no events published)."
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.trading")
    parser.add_argument("--seconds", type=float, default=SECONDS)
    seconds = parser.parse_args(argv).seconds
    started, clock, load = datetime.now(UTC), time.monotonic(), load_average()

    def log(message: str) -> None:
        print(f"[{time.monotonic() - clock:5.1f}s] {message}", flush=True)

    os.environ.update(django_environment())
    profile = Path(tempfile.gettempdir()) / f"{BENCH_DB}.prof"
    runs: dict[str, Run] = {}
    try:
        database_create(BENCH_DB)
        run(
            [sys.executable, "manage.py", "migrate", "--no-input", "-v", "0"],
            cwd=REPO_ROOT,
        )
        import django

        django.setup()
        from django.db import connections

        seed = seed_create()
        connections.close_all()
        psql("VACUUM ANALYZE", database=BENCH_DB)
        database_create(SNAPSHOT_DB, template=BENCH_DB)
        log(f"seeded: {seed['book']} resting orders")
        database_create(PGBENCH_DB)
        run(["pgbench", *PG, "-i", "-q", "-s", "10", PGBENCH_DB])
        tps = [pgbench(seconds)]
        log(f"pgbench: {tps[0]:,.0f} tps")

        def measured(key: str, name: str, **options) -> Run:
            runs[key] = result = run_once(seed, name, **options)
            log(
                f"{name}: {result.orders_per_second:,.0f} orders/s, matched "
                f"{p50_p99(result.match_latency)}, busy {result.busy:.0%} "
                f"({result.others:.0%} other work)"
            )
            return result

        sat = measured("sat", "1 market, saturated", markets=1, seconds=seconds)
        tps.append(pgbench(seconds))  # just before and after: the same load
        log(f"pgbench: {tps[1]:,.0f} tps")
        measured("four", "4 markets, saturated", markets=4, seconds=seconds)
        measured(
            "together",
            "4 markets, saturated, one `run_matcher` for all",
            markets=4,
            seconds=seconds,
            together=True,
        )
        offered = PACED_SHARE * sat.orders_per_second
        measured(
            "paced",
            f"1 market, {offered:,.0f} orders/s offered",
            markets=1,
            seconds=seconds,
            rate=offered * sat.requests / sat.orders,
        )
        for n in (1, 4):
            measured(
                f"backlog {n}",
                f"{BACKLOG[n]:,} queued on {n} market(s), per market",
                markets=n,
                operations=BACKLOG[n],
                backlog=True,
            )
        run_once(
            seed,
            "profiled",
            markets=1,
            operations=PROFILED_BACKLOG,
            backlog=True,
            profile=profile,
        )
        facts = {"machine": machine_summary(), "seconds": seconds}
    except BenchError as error:
        print(f"bench.trading failed: {error}", file=sys.stderr)
        return 1
    finally:
        from django.db import connections

        connections.close_all()
        for name in (BENCH_DB, SNAPSHOT_DB, PGBENCH_DB):
            psql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    facts |= {
        "started": f"{started:%Y-%m-%d %H:%M}",
        "elapsed": time.monotonic() - clock,
        "load": (load, load_average()),
    }
    text = section(runs, tps, profile_rows(profile), facts)
    profile.unlink()
    report.section_write(text, heading=SECTION_HEADING)
    print(text)
    log(f"wrote the section {SECTION_HEADING!r} of {report.REPORT_PATH}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
