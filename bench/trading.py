"""Orders per second of the trading services on PostgreSQL, against pgbench.

    python -m bench.trading

A seeded load generator: 1, 2, 4 and 8 concurrent clients on one market and
on four markets. Each client is a process of its own (``spawn``, its own
``django.setup()`` and database connection; threads would share one GIL on a
small machine) that calls ``order_place`` and ``order_cancel`` directly, as a
view or the API does once it has parsed a request: no HTTP, no rendering. The
clients are released together by a barrier and run for a fixed time, each
with its own seeded random operations: resting limit orders away from the
touch, crossing orders (IOC limits through the whole book, or market
orders) and cancels of the client's own open orders. Before each
configuration the database is recreated from one seeded snapshot (users
funded through ``deposit_credit``, a book on each market), so every
configuration starts from the same state; after it ``ledger_problems()``
must find nothing.

Short diagnosis runs on one market follow, outside the measured numbers: SQL
statements timed through an ``execute_wrapper`` (with the market lock's wait
and hold), ``cProfile`` of one client, and 1 and 8 clients with
``DATABASE_PREPARED_STATEMENTS=false``, to show what preparing the order
path's statements buys. Then ``pgbench``
(TPC-B-like, the same client counts) measures what this PostgreSQL server
does on this machine, and the report gives the ratio.

Writes the section ``## Trading on PostgreSQL`` of ``docs/PERFORMANCE.md``
and leaves the rest of the file as it is. Missing the target is a result;
the exit code is non-zero when the benchmark could not run or an invariant
broke.
"""

from __future__ import annotations

import argparse
import cProfile
import glob
import importlib.metadata
import inspect
import multiprocessing
import os
import platform
import pstats
import queue
import random
import re
import secrets
import shutil
import subprocess
import sys
import threading
import time
import traceback
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

from bench import report

REPO_ROOT = Path(__file__).resolve().parent.parent
SECTION_HEADING = "## Trading on PostgreSQL"
PYTHON = Path(sys.executable)

# Loopback only, trust authentication, as in the Makefile's POSTGRES_URL.
PG_HOST, PG_PORT, PG_USER = "127.0.0.1", "5432", "postgres"
BENCH_DB = "crypto_exchange_bench"
SNAPSHOT_DB = "crypto_exchange_bench_seed"  # the seeded state, cloned per run
PGBENCH_DB = "crypto_exchange_pgbench"
DATABASE_URL = f"postgres://{PG_USER}@{PG_HOST}:{PG_PORT}/{BENCH_DB}"

CLIENT_COUNTS = (1, 2, 4, 8)
MARKET_COUNTS = (1, 4)
SECONDS = 8.0
PROFILE_SECONDS = 4.0
PGBENCH_SCALE = 10
SEED = 20260601

TARGET_ORDERS_PER_SECOND = 300
TARGET_P99 = 0.100  # seconds
TARGET_CLIENTS = 8

# The operation mix: a cancel needs an open order of the client's, else the
# client rests one instead.
CANCEL_SHARE, CROSS_SHARE = 0.20, 0.30  # resting orders: the other 50 %
MID = Decimal("100.00")
STEP = Decimal("0.01")
REST_OFFSETS = (50, 500)  # in price steps from MID: 0.50 to 5.00 away
CROSS_REACH = Decimal("5.00")  # an IOC limit this far through MID crosses all
REST_QUANTITY = (10, 100)  # in 0.01 base
CROSS_QUANTITY = (5, 50)
SEED_ORDERS_PER_SIDE = 15  # per seed user and market
SEED_USERS = 4
BASE_SYMBOLS = ("BTC", "ETH", "SOL", "XRP")
QUOTE_SYMBOL = "USDT"
MARKET_SETTINGS = {
    "price_step": STEP,
    "amount_step": Decimal("0.0001"),
    "min_notional": Decimal("1"),
    "maker_fee": Decimal("0.001"),
    "taker_fee": Decimal("0.002"),
}
FUNDS = {"base": Decimal("1000000"), "quote": Decimal("1000000000")}

PLACE_KINDS = ("rest", "cross")
# (clients, mode) on one market, in the order of ``Diagnosis``'s fields.
DIAGNOSIS_RUNS = (
    (1, "sql"),
    (TARGET_CLIENTS, "sql"),
    (1, "profile"),
    (1, "unprepared"),
    (TARGET_CLIENTS, "unprepared"),
)


class BenchError(Exception):
    """The benchmark could not run, or the exchange broke an invariant."""


# -- PostgreSQL tools ---------------------------------------------------------


def pg_tool(name: str) -> str:
    found = shutil.which(name) or next(
        iter(sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"), reverse=True)),
        None,
    )
    if found is None:
        raise BenchError(f"{name} not found (PostgreSQL's client tools).")
    return found


def pg_args() -> list[str]:
    return ["-h", PG_HOST, "-p", PG_PORT, "-U", PG_USER]


def run(command: list[str], *, env: dict[str, str] | None = None) -> str:
    result = subprocess.run(command, capture_output=True, text=True, env=env)
    if result.returncode != 0:
        raise BenchError(
            f"{' '.join(command)} failed ({result.returncode}):\n"
            f"{result.stdout}{result.stderr}"
        )
    return result.stdout


def psql(*commands: str, database: str = "postgres") -> str:
    # One -c per statement: CREATE/DROP DATABASE cannot share a transaction.
    args = [pg_tool("psql"), *pg_args(), "-X", "-q", "-At", "-v", "ON_ERROR_STOP=1"]
    for command in commands:
        args += ["-c", command]
    return run([*args, "-d", database])


def database_drop(name: str) -> None:
    psql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def database_create(name: str, *, template: str | None = None) -> None:
    database_drop(name)
    suffix = f' TEMPLATE "{template}"' if template else ""
    psql(f'CREATE DATABASE "{name}"{suffix}')


def server_settings() -> dict[str, str]:
    names = ("server_version", "shared_buffers", "synchronous_commit", "fsync")
    values = psql(*(f"SHOW {name}" for name in names)).splitlines()
    return dict(zip(names, values, strict=True))


# -- The clients ----------------------------------------------------------------


@dataclass(frozen=True)
class ClientSpec:
    index: int
    seed: str
    maker_id: int  # rests orders and cancels them
    taker_id: int  # only crosses, so it never meets its own resting orders
    market_ids: tuple[int, ...]
    seconds: float
    # "plain", "sql" (statements timed), "profile" (cProfile) or "unprepared"
    # (DATABASE_PREPARED_STATEMENTS=false)
    mode: str = "plain"


@dataclass
class ClientResult:
    seconds: float = 0.0
    cpu_seconds: float = 0.0
    backend_cpu_seconds: float = 0.0  # the client's PostgreSQL backend process
    latencies: dict[str, list[float]] = field(
        default_factory=lambda: {"rest": [], "cross": [], "cancel": []}
    )
    refused: Counter = field(default_factory=Counter)
    # "sql" mode, per operation kind: queries, seconds in execute(), seconds
    # waiting for the market lock, seconds holding it (lock to commit).
    sql: dict[str, list[tuple[int, float, float, float]]] = field(
        default_factory=lambda: defaultdict(list)
    )
    statements: dict[str, list[float]] = field(default_factory=dict)
    profile: list[tuple[str, int, float, float]] = field(default_factory=list)
    profile_total: float = 0.0


class SqlTimer:
    """An ``execute_wrapper``: times each statement of the current operation."""

    def __init__(self) -> None:
        self.statements: dict[str, list[float]] = defaultdict(lambda: [0, 0.0])
        self.reset()

    def reset(self) -> None:
        self.queries, self.seconds = 0, 0.0
        self.lock_wait, self.locked_at = 0.0, None

    def __call__(self, execute, sql, params, many, context):
        started = time.perf_counter()
        try:
            return execute(sql, params, many, context)
        finally:
            ended = time.perf_counter()
            self.queries += 1
            self.seconds += ended - started
            entry = self.statements[statement_label(sql)]
            entry[0] += 1
            entry[1] += ended - started

    def market_lock_watch(self) -> None:
        """Time the market's lock where its row is read, not where its
        statement is sent: ``order_place`` sends it in a pipeline with the
        book's first page, and waits for the lock when it reads the row."""
        from trading import locks, services

        original = locks.market_lock_later

        def timed(*, market_id: int):
            sent = time.perf_counter()
            row = original(market_id=market_id)

            def read():
                market = row()
                granted = time.perf_counter()
                if self.locked_at is None:
                    self.lock_wait, self.locked_at = granted - sent, granted
                return market

            return read

        locks.market_lock_later = services.market_lock_later = timed


def statement_label(sql: str) -> str:
    """``SELECT trading_order`` and the like: what a statement does, to what."""
    verb = sql.lstrip().split(None, 1)[0].upper()
    if verb == "WITH" and (update := re.search(r"\) UPDATE \"(\w+)\"", sql)):
        return f"UPDATE {update.group(1)} (rows_update)"
    pattern = {"INSERT": r"INTO \"(\w+)\"", "UPDATE": r"UPDATE \"(\w+)\""}.get(
        verb, r"FROM \"(\w+)\""
    )
    table = re.search(pattern, sql)
    label = f"{verb} {table.group(1) if table else '?'}"
    if lock := re.search(r"FOR (NO KEY )?UPDATE", sql):
        label += f" {lock.group(0)}"
    if verb == "INSERT" and "ON CONFLICT" in sql:
        label += " ON CONFLICT"
    return label


def client_main(spec: ClientSpec, barrier, results) -> None:
    """One client process: set Django up, wait for the others, then trade."""
    try:
        os.environ.setdefault("DJANGO_SETTINGS_MODULE", "crypto_exchange.settings")
        if spec.mode == "unprepared":
            os.environ["DATABASE_PREPARED_STATEMENTS"] = "false"
        import django

        django.setup()
        from django.db import connection

        try:
            results.put((spec.index, client_run(spec, barrier), None))
        finally:
            connection.close()
    except BaseException:
        barrier.abort()
        results.put((spec.index, None, traceback.format_exc()))


def client_run(spec: ClientSpec, barrier) -> ClientResult:
    from django.contrib.auth import get_user_model
    from django.db import connection

    from trading.exceptions import OrderNotOpen, TradingError
    from trading.models import Market, Order
    from trading.services import order_cancel, order_place

    users = get_user_model().objects.in_bulk([spec.maker_id, spec.taker_id])
    maker, taker = users[spec.maker_id], users[spec.taker_id]
    markets = list(Market.objects.filter(pk__in=spec.market_ids).order_by("pk"))
    rng = random.Random(spec.seed)
    result = ClientResult()
    open_orders: list[Order] = []

    def operation() -> tuple[str, object]:
        draw = rng.random()
        if draw < CANCEL_SHARE and open_orders:
            order = open_orders.pop(rng.randrange(len(open_orders)))
            return "cancel", lambda: order_cancel(user=maker, order=order)
        market = rng.choice(markets)
        buying = rng.random() < 0.5
        side = Order.Side.BUY if buying else Order.Side.SELL
        if CANCEL_SHARE <= draw < CANCEL_SHARE + CROSS_SHARE:
            quantity = rng.randint(*CROSS_QUANTITY) * STEP
            if rng.random() < 0.5:
                kind, price, tif = Order.Type.MARKET, None, "IOC"
            else:
                reach = CROSS_REACH if buying else -CROSS_REACH
                kind, price, tif = Order.Type.LIMIT, MID + reach, "IOC"
            return "cross", lambda: order_place(
                user=taker,
                market=market,
                side=side,
                type=kind,
                quantity=quantity,
                price=price,
                time_in_force=tif,
            )
        offset = rng.randint(*REST_OFFSETS) * STEP
        price = MID - offset if buying else MID + offset
        quantity = rng.randint(*REST_QUANTITY) * STEP
        return "rest", lambda: order_place(
            user=maker,
            market=market,
            side=side,
            type=Order.Type.LIMIT,
            quantity=quantity,
            price=price,
        )

    timer = SqlTimer() if spec.mode == "sql" else None
    profiler = cProfile.Profile() if spec.mode == "profile" else None
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_backend_pid()")
        backend_pid = cursor.fetchone()[0]
    barrier.wait(timeout=120)
    backend_cpu_started = process_cpu_seconds(backend_pid)
    if timer is not None:
        connection.execute_wrappers.append(timer)
        timer.market_lock_watch()
    if profiler is not None:
        profiler.enable()
    cpu_started = time.process_time()
    started = now = time.perf_counter()
    deadline = started + spec.seconds
    while now < deadline:
        kind, call = operation()
        if timer is not None:
            timer.reset()
        try:
            outcome = call()
        except OrderNotOpen:
            outcome = None  # filled by another client's order meanwhile
            result.refused["cancel: already filled"] += 1
        except TradingError as error:
            outcome = None
            result.refused[f"{kind}: {type(error).__name__}"] += 1
        ended = time.perf_counter()
        if outcome is not None:
            result.latencies[kind].append(ended - now)
            if kind == "rest" and outcome.is_open:
                open_orders.append(outcome)
            if timer is not None:
                held = ended - timer.locked_at if timer.locked_at else 0.0
                result.sql[kind].append(
                    (timer.queries, timer.seconds, timer.lock_wait, held)
                )
        now = ended
    result.seconds = now - started
    result.cpu_seconds = time.process_time() - cpu_started
    result.backend_cpu_seconds = process_cpu_seconds(backend_pid) - backend_cpu_started
    if profiler is not None:
        profiler.disable()
        result.profile, result.profile_total = profile_rows(profiler)
    if timer is not None:
        connection.execute_wrappers.remove(timer)
        result.statements = {k: list(v) for k, v in timer.statements.items()}
    result.sql = dict(result.sql)
    return result


def process_cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process on this machine; NaN if unreadable."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return float("nan")
    fields = stat.rsplit(")", 1)[1].split()  # fields 3 onwards of proc(5)
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def profile_rows(profiler: cProfile.Profile) -> tuple[list, float]:
    """(``file:line function``, calls, own seconds, cumulative seconds) rows."""
    stats = pstats.Stats(profiler)
    rows = []
    for (filename, line, name), (_, calls, own, cumulative, _) in stats.stats.items():
        rows.append((f"{short_path(filename)}:{line} {name}", calls, own, cumulative))
    return rows, stats.total_tt


def short_path(filename: str) -> str:
    """A path relative to the repository, site-packages or the standard library."""
    inside = re.split(r"/site-packages/|/lib/python3\.\d+/", filename, maxsplit=1)
    if len(inside) == 2:
        return inside[1]
    try:
        return str(Path(filename).resolve().relative_to(REPO_ROOT))
    except ValueError:
        return filename


# -- One configuration -----------------------------------------------------------


@dataclass
class RunResult:
    clients: int
    markets: int
    seconds: float
    placed: dict[str, int]
    cancels: int
    fills: int
    placement_latencies: list[float]
    cancel_latencies: list[float]
    refused: Counter
    cpu_busy: float  # share of all cores
    client_cpu_seconds: float
    backend_cpu_seconds: float
    problems: list[str]
    clients_results: list[ClientResult]

    @property
    def orders(self) -> int:
        return sum(self.placed.values())

    @property
    def orders_per_second(self) -> float:
        return self.orders / self.seconds

    @property
    def fills_per_second(self) -> float:
        return self.fills / self.seconds

    @property
    def cancels_per_second(self) -> float:
        return self.cancels / self.seconds

    @property
    def operations(self) -> int:
        return self.orders + self.cancels

    @property
    def client_cpu_per_operation(self) -> float:
        return self.client_cpu_seconds / max(1, self.operations)

    @property
    def backend_cpu_per_operation(self) -> float:
        return self.backend_cpu_seconds / max(1, self.operations)

    @property
    def others_busy(self) -> float:
        """The machine's busy share not spent by the clients or their backends."""
        ours = (self.client_cpu_seconds + self.backend_cpu_seconds) / (
            self.seconds * len(os.sched_getaffinity(0))
        )
        return max(0.0, self.cpu_busy - ours)


def percentile(values: list[float], share: float) -> float:
    """Nearest-rank percentile; NaN for no values."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    rank = max(1, -(-len(ordered) * share // 1))
    return ordered[int(rank) - 1]


def cpu_times() -> tuple[int, int]:
    """(busy, total) jiffies of all CPUs since boot."""
    fields = [int(x) for x in Path("/proc/stat").read_text().split("\n")[0].split()[1:]]
    idle = fields[3] + fields[4]  # idle + iowait
    total = sum(fields[:8])  # guest time is already in user
    return total - idle, total


def database_fresh() -> None:
    """Recreate the bench database from the seeded snapshot."""
    from django.db import connections

    connections.close_all()
    database_create(BENCH_DB, template=SNAPSHOT_DB)


def configuration_run(
    *, clients: int, markets: int, seconds: float, seed: dict, mode: str = "plain"
) -> RunResult:
    from django.db import connections

    from trading.invariants import ledger_problems
    from trading.models import Trade

    database_fresh()
    # Reads every table once: the seed is checked and the cache is warm.
    problems = ledger_problems()
    if problems:
        raise BenchError("The seeded snapshot breaks invariants: " + str(problems))
    trades_before = Trade.objects.count()
    connections.close_all()

    context = multiprocessing.get_context("spawn")
    barrier = context.Barrier(clients + 1)
    results = context.Queue()
    specs = [
        ClientSpec(
            index=index,
            seed=f"{SEED}-{mode}-{markets}-{clients}-{index}",
            maker_id=seed["makers"][index],
            taker_id=seed["takers"][index],
            market_ids=tuple(seed["markets"][:markets]),
            seconds=seconds,
            mode=mode,
        )
        for index in range(clients)
    ]
    processes = [
        context.Process(target=client_main, args=(spec, barrier, results), daemon=True)
        for spec in specs
    ]
    for process in processes:
        process.start()
    collected: dict[int, ClientResult] = {}
    try:
        barrier.wait(timeout=120)
        busy_started, total_started = cpu_times()
        for _ in specs:
            index, result, error = results.get(timeout=seconds + 120)
            if error is not None:
                raise BenchError(f"client {index} failed:\n{error}")
            collected[index] = result
        busy_ended, total_ended = cpu_times()
    except (threading.BrokenBarrierError, queue.Empty) as error:
        failures = []
        while True:
            try:
                failures.append(results.get(timeout=1)[2])
            except queue.Empty:
                break
        raise BenchError(
            f"the clients did not run ({error!r}):\n" + "\n".join(map(str, failures))
        ) from error
    finally:
        for process in processes:
            process.join(timeout=30)
            if process.is_alive():
                process.terminate()

    ordered = [collected[index] for index in range(clients)]
    trades_after = Trade.objects.count()
    problems = ledger_problems()
    connections.close_all()
    refused: Counter = Counter()
    for result in ordered:
        refused.update(result.refused)
    return RunResult(
        clients=clients,
        markets=markets,
        seconds=max(result.seconds for result in ordered),
        placed={
            kind: sum(len(r.latencies[kind]) for r in ordered) for kind in PLACE_KINDS
        },
        cancels=sum(len(r.latencies["cancel"]) for r in ordered),
        fills=trades_after - trades_before,
        placement_latencies=[
            value
            for r in ordered
            for kind in PLACE_KINDS
            for value in r.latencies[kind]
        ],
        cancel_latencies=[value for r in ordered for value in r.latencies["cancel"]],
        refused=refused,
        cpu_busy=(busy_ended - busy_started) / max(1, total_ended - total_started),
        client_cpu_seconds=sum(r.cpu_seconds for r in ordered),
        backend_cpu_seconds=sum(r.backend_cpu_seconds for r in ordered),
        problems=problems,
        clients_results=ordered,
    )


# -- Set-up --------------------------------------------------------------------


# Production's settings: with DEBUG on, Django would also log every statement.
_SECRET_KEY = secrets.token_urlsafe(50)


def django_environment() -> dict[str, str]:
    # The developer's .env must not change what is measured.
    return {
        **os.environ,
        "DATABASE_URL": DATABASE_URL,
        "ENV_FILE": "/dev/null",
        "DJANGO_SETTINGS_MODULE": "crypto_exchange.settings",
        "DEBUG": "false",
        "SECRET_KEY": _SECRET_KEY,
    }


def seed_create() -> dict:
    """Tokens, markets, funded users and a book on every market, via the services."""
    from django.contrib.auth import get_user_model

    from tokens.services import token_create
    from trading.models import Order
    from trading.services import deposit_credit, market_create, order_place

    create_user = get_user_model().objects.create_user
    quote = token_create(name="Tether", symbol=QUOTE_SYMBOL, decimals=8)
    bases = [
        token_create(name=f"{symbol} token", symbol=symbol, decimals=8)
        for symbol in BASE_SYMBOLS
    ]
    markets = [
        market_create(base=base, quote=quote, **MARKET_SETTINGS) for base in bases
    ]
    # No passwords: hashing one costs a quarter of a second per user.
    makers = [create_user(f"bench-maker-{i}") for i in range(max(CLIENT_COUNTS))]
    takers = [create_user(f"bench-taker-{i}") for i in range(max(CLIENT_COUNTS))]
    seeders = [create_user(f"bench-seed-{i}") for i in range(SEED_USERS)]
    references = iter(range(1, 10**6))
    for user in makers + takers + seeders:
        for token in [quote, *bases]:
            deposit_credit(
                user=user,
                token=token,
                amount=FUNDS["quote" if token == quote else "base"],
                reference=f"bench-{next(references)}",
            )
    rng = random.Random(SEED)
    for market in markets:
        for user in seeders:
            for side in (Order.Side.BUY, Order.Side.SELL):
                for _ in range(SEED_ORDERS_PER_SIDE):
                    offset = rng.randint(*REST_OFFSETS) * STEP
                    order_place(
                        user=user,
                        market=market,
                        side=side,
                        type=Order.Type.LIMIT,
                        quantity=rng.randint(*REST_QUANTITY) * STEP,
                        price=MID - offset if side == Order.Side.BUY else MID + offset,
                    )
    return {
        "markets": [market.pk for market in markets],
        "makers": [user.pk for user in makers],
        "takers": [user.pk for user in takers],
        "book": Order.objects.filter(status=Order.Status.OPEN).count(),
    }


# -- pgbench -------------------------------------------------------------------


@dataclass(frozen=True)
class PgbenchResult:
    clients: int
    tps: float
    latency_ms: float


def pgbench_run(seconds: float, log) -> list[PgbenchResult]:
    pgbench = pg_tool("pgbench")
    database_create(PGBENCH_DB)
    run([pgbench, *pg_args(), "-i", "-q", "-s", str(PGBENCH_SCALE), PGBENCH_DB])
    results = []
    for clients in CLIENT_COUNTS:
        output = run(
            [
                pgbench,
                *pg_args(),
                "-c",
                str(clients),
                "-j",
                str(clients),
                "-T",
                str(round(seconds)),
                "-M",
                "prepared",
                PGBENCH_DB,
            ]
        )
        tps = re.search(r"tps = ([\d.]+) \(without initial connection time\)", output)
        latency = re.search(r"latency average = ([\d.]+) ms", output)
        if tps is None or latency is None:
            raise BenchError(f"Unexpected pgbench output:\n{output}")
        results.append(
            PgbenchResult(clients, float(tps.group(1)), float(latency.group(1)))
        )
        log(f"pgbench -c {clients}: {float(tps.group(1)):,.0f} tps")
    return results


# -- Explaining the hot queries --------------------------------------------------


def book_query_plan(market_id: int) -> dict[str, str]:
    """EXPLAIN ANALYZE of the first page of the book a crossing buy reads
    (``_book_query``), sent as text with its values, as unprepared."""
    from django.db import connection

    from trading import services
    from trading import sql as statements
    from trading.models import Order

    where, order_by = services._book_query(
        market_id=market_id, side=Order.Side.BUY, price=MID + CROSS_REACH
    )
    sql, params = statements.statement_of(
        Order, where=where, order_by=order_by, limit=services._BOOK_PAGE
    )
    with connection.cursor() as cursor:
        cursor.execute(f"EXPLAIN (ANALYZE, COSTS OFF, TIMING OFF) {sql}", params)
        lines = [row[0] for row in cursor.fetchall()]
    scan = next((x for x in lines if " Scan " in x), "?")
    plan = {"scan": scan.strip().removeprefix("->").split("(actual")[0].strip()}
    for line in lines:
        for name in ("Planning Time", "Execution Time"):
            if line.startswith(name):
                plan[name] = line.split(":", 1)[1].strip()
    return plan


def where(function) -> str:
    """``path:line`` of a function's definition, for the findings."""
    function = inspect.unwrap(function)
    line = inspect.getsourcelines(function)[1]
    return f"{short_path(inspect.getsourcefile(function))}:{line}"


def line_of(function, text: str) -> str:
    """``path:line`` of the first line of ``function`` that contains ``text``."""
    function = inspect.unwrap(function)
    lines, first = inspect.getsourcelines(function)
    for offset, line in enumerate(lines):
        if text in line:
            return f"{short_path(inspect.getsourcefile(function))}:{first + offset}"
    return where(function)


# -- The report ------------------------------------------------------------------


def milliseconds(seconds: float) -> str:
    return f"{seconds * 1e3:.1f} ms"


def verdict(passed: bool) -> str:
    return "**PASS**" if passed else "**FAIL**"


def met(ok: bool) -> str:
    return "met" if ok else "missed"


def cores() -> int:
    return len(os.sched_getaffinity(0))


def machine_summary(settings: dict[str, str]) -> str:
    cpu = "unknown CPU"
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            cpu = line.split(":", 1)[1].strip()
            break
    memory = "unknown"
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemTotal:"):
            memory = f"{int(line.split()[1]) / 2**20:.1f} GiB"
    versions = ", ".join(
        f"{name} {importlib.metadata.version(name)}" for name in ("Django", "psycopg")
    )
    return (
        f"{cpu}, {cores()} cores usable ({os.cpu_count()} online), {memory} RAM; "
        f"{platform.platform()}; Python {platform.python_version()}, {versions}. "
        f"PostgreSQL {settings['server_version']} on the same machine over "
        f"loopback TCP, default configuration (`shared_buffers` "
        f"{settings['shared_buffers']}, `synchronous_commit` "
        f"{settings['synchronous_commit']}, `fsync` {settings['fsync']}): every "
        "commit waits for its WAL flush."
    )


def results_table(runs: list[RunResult], pgbench: dict[int, PgbenchResult]) -> list:
    lines = [
        "| Clients | Markets | Orders/s | Fills/s | Cancels/s | Order p50 "
        "| Order p99 | Cancel p99 | Refused | CPU/op: client + PostgreSQL "
        "| Machine busy (other work) | ÷ pgbench tps | Invariants |",
        "|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|---|",
    ]
    for r in runs:
        lines.append(
            f"| {r.clients} | {r.markets} | {r.orders_per_second:,.0f} "
            f"| {r.fills_per_second:,.0f} | {r.cancels_per_second:,.0f} "
            f"| {milliseconds(percentile(r.placement_latencies, 0.50))} "
            f"| {milliseconds(percentile(r.placement_latencies, 0.99))} "
            f"| {milliseconds(percentile(r.cancel_latencies, 0.99))} "
            f"| {sum(r.refused.values())} "
            f"| {milliseconds(r.client_cpu_per_operation)} + "
            f"{milliseconds(r.backend_cpu_per_operation)} "
            f"| {r.cpu_busy:.0%} ({r.others_busy:.0%}) "
            f"| {r.orders_per_second / pgbench[r.clients].tps:.3f} "
            f"| {'ok' if not r.problems else '**BROKEN**'} |"
        )
    return lines


def pgbench_table(pgbench: list[PgbenchResult]) -> list[str]:
    lines = ["| Clients | pgbench tps | latency average |", "|--:|--:|--:|"]
    lines += [
        f"| {r.clients} | {r.tps:,.0f} | {r.latency_ms:.2f} ms |" for r in pgbench
    ]
    return lines


@dataclass
class Diagnosis:
    """The runs after the measured ones: where the time of an order goes."""

    single: RunResult  # 1 client, 1 market, statements timed
    crowded: RunResult  # 8 clients, 1 market, statements timed
    profiled: RunResult  # 1 client, 1 market, cProfile
    unprepared_single: RunResult  # 1 client, 1 market, nothing prepared
    unprepared_crowded: RunResult  # 8 clients, 1 market, nothing prepared
    book_plan: dict[str, str]

    def runs(self) -> list[RunResult]:
        return [
            self.single,
            self.crowded,
            self.profiled,
            self.unprepared_single,
            self.unprepared_crowded,
        ]


def sql_summary(result: RunResult, kinds: tuple[str, ...]) -> dict[str, float]:
    rows = [row for r in result.clients_results for k in kinds for row in r.sql[k]]
    count = max(1, len(rows))
    return {
        "queries": sum(row[0] for row in rows) / count,
        "sql": sum(row[1] for row in rows) / count,
        "lock_wait": sum(row[2] for row in rows) / count,
        "held": sum(row[3] for row in rows) / count,
    }


def mean_latency(result: RunResult, kinds: tuple[str, ...]) -> float:
    values = [v for r in result.clients_results for k in kinds for v in r.latencies[k]]
    return sum(values) / max(1, len(values))


def statements_table(result: RunResult) -> list[str]:
    totals: dict[str, list[float]] = defaultdict(lambda: [0, 0.0])
    for client in result.clients_results:
        for label, (count, seconds) in client.statements.items():
            totals[label][0] += count
            totals[label][1] += seconds
    everything = sum(seconds for _, seconds in totals.values()) or 1.0
    lines = [
        "| Statement | Per operation | Mean time | Share of time in SQL |",
        "|---|--:|--:|--:|",
    ]
    for label, (count, seconds) in sorted(totals.items(), key=lambda x: -x[1][1]):
        lines.append(
            f"| `{label}` | {count / max(1, result.operations):.2f} "
            f"| {milliseconds(seconds / count)} | {seconds / everything:.0%} |"
        )
    return lines


def profile_share(result: RunResult, name: str) -> float:
    """Cumulative share of the profiled client's time spent in ``name``."""
    client = result.clients_results[0]
    total = client.profile_total or 1.0
    found = [row[3] for row in client.profile if row[0].endswith(f" {name}")]
    return max(found, default=0.0) / total


PROFILED_FUNCTIONS = (
    "order_place",
    "order_cancel",
    "_order_place_locked",
    "_plan",
    "balances_ensure",
    "balances_lock",
    "rows_insert_later",
    "rows_update",
    "rows",  # reading a result: where a pipeline waits for the server
    "write_into",
)


def profile_table(result: RunResult) -> list[str]:
    client = result.clients_results[0]
    total = client.profile_total or 1.0
    operations = max(1, result.operations)
    lines = [
        "| Function | Calls per operation | Time per operation | Share |",
        "|---|--:|--:|--:|",
    ]
    rows = [
        row
        for row in client.profile
        if row[0].split()[-1] in PROFILED_FUNCTIONS and row[0].startswith("trading/")
    ]
    for name, calls, _, cumulative in sorted(rows, key=lambda row: -row[3]):
        lines.append(
            f"| `{name}` | {calls / operations:.2f} "
            f"| {milliseconds(cumulative / operations)} | {cumulative / total:.0%} |"
        )
    return lines


def findings(
    runs: list[RunResult], pgbench: dict[int, PgbenchResult], diagnosis: Diagnosis
) -> list[str]:
    from trading import locks, services, sql

    def run_of(clients: int, markets: int) -> RunResult:
        return next(r for r in runs if (r.clients, r.markets) == (clients, markets))

    target, alone = run_of(TARGET_CLIENTS, 1), run_of(1, 1)
    four = run_of(TARGET_CLIENTS, 4)
    crowded = sql_summary(diagnosis.crowded, (*PLACE_KINDS, "cancel"))
    placing = sql_summary(diagnosis.single, PLACE_KINDS)
    ceiling = 1 / crowded["held"]
    order_share = target.orders / max(1, target.operations)
    needed = TARGET_ORDERS_PER_SECOND / order_share
    budget = 1 / needed
    profiled = diagnosis.profiled
    plain_one, plain_eight = diagnosis.unprepared_single, diagnosis.unprepared_crowded
    four_cpu = four.client_cpu_per_operation + four.backend_cpu_per_operation
    eight_cpu = target.client_cpu_per_operation + target.backend_cpu_per_operation
    plan = diagnosis.book_plan
    fast_enough = target.orders_per_second >= TARGET_ORDERS_PER_SECOND
    if crowded["held"] <= budget:
        lock_verdict = (
            f"at most {milliseconds(budget)} under the lock each, and it is "
            "held less than that."
        )
    elif fast_enough:
        lock_verdict = (
            f"at most {milliseconds(budget)} under the lock each: about what "
            "the timed run shows, and the run without the timing meets it."
        )
    else:
        lock_verdict = (
            f"at most {milliseconds(budget)} under the lock each, "
            f"{crowded['held'] / budget:.1f}x less than measured here."
        )
    items = [
        "- **One market is serial.** `order_place` and `order_cancel` lock the "
        "market row (`market_lock_later`, "
        f"{where(locks.market_lock_later)}, `FOR NO KEY UPDATE`) and keep it "
        f"until they commit. With {TARGET_CLIENTS} clients on one market an "
        f"operation waited {milliseconds(crowded['lock_wait'])} on average for "
        f"that lock, then held it {milliseconds(crowded['held'])} (with every "
        "statement timed, which adds to both): one market does at most "
        f"1 / {milliseconds(crowded['held'])} = {ceiling:,.0f} operations/s, "
        f"{ceiling * order_share:,.0f} orders/s with this mix, however many "
        "clients wait (the measured run, without the timing: "
        f"{target.orders_per_second:,.0f} orders/s + "
        f"{target.cancels_per_second:,.0f} cancels/s). "
        f"{TARGET_ORDERS_PER_SECOND} orders/s with these cancels is "
        f"{needed:,.0f} operations/s, so {lock_verdict}",
        "- **How the lock is kept short.** Three things (on 2026-11-24 the "
        "ORM version of this path made 111 orders/s here with 8 clients). "
        "(1) The order path's statements are compiled once "
        f"(`trading/sql.py`, {where(sql.rows_select_later)}): Django's ORM "
        "spends about 0.7 ms of CPU building each statement and its model "
        "instances, a ready statement about 0.15 ms. (2) On PostgreSQL they "
        "are prepared, so the server parses and plans each shape once per "
        "connection (below). (3) A whole `order_place` runs in one psycopg "
        f"pipeline ({line_of(services.order_place, 'sql.pipeline()')}): "
        "statements are sent without waiting, and the client waits for the "
        "server only where it needs an answer: the order's key (its row is "
        "inserted before the lock, as a closed placeholder nobody sees before "
        "the commit), then the lock together with the book's first page, the "
        "order's ledger transaction and the balance rows it will most likely "
        "need (the user's and those of the owners of the page's orders, in one "
        "statement in key order, the deadlock-free way to lock them), then the "
        "commit together with every write. So 2 round trips under the lock "
        "where the ORM version made 9 or 10. An order that trades beyond the "
        "first page is rolled back and placed again, its rows locked after "
        "matching: adding rows to those held would break the global lock "
        "order. Alone, an operation costs "
        f"{milliseconds(alone.client_cpu_per_operation)} of CPU in the client "
        f"and {milliseconds(alone.backend_cpu_per_operation)} in its "
        "PostgreSQL backend; a placement makes "
        f"{placing['queries']:.1f} statements.",
        "- **Prepared statements, measured in the same run.** With "
        "`DATABASE_PREPARED_STATEMENTS=false` (what a pooler older than "
        "PgBouncer 1.21 needs): 1 client "
        f"{plain_one.orders_per_second:,.0f} orders/s, PostgreSQL CPU "
        f"{milliseconds(plain_one.backend_cpu_per_operation)} per operation "
        f"(prepared: {alone.orders_per_second:,.0f} orders/s, "
        f"{milliseconds(alone.backend_cpu_per_operation)}); {TARGET_CLIENTS} "
        f"clients {plain_eight.orders_per_second:,.0f} orders/s (prepared: "
        f"{target.orders_per_second:,.0f}). Unprepared, the book's first "
        f"page, for instance, is planned in {plan.get('Planning Time', '?')} "
        f"on every order and runs in {plan.get('Execution Time', '?')} "
        f"(`EXPLAIN ANALYZE`, `{plan['scan']}`); prepared, its status and "
        "side are part of the statement, so one plan on the book's partial "
        "index serves every price.",
        "- **Where the rest goes.** In the profile of one client (cProfile "
        "inflates Python) `_order_place_locked` takes "
        f"{profile_share(profiled, '_order_place_locked'):.0%} of the time "
        "and reading results (`rows`, where the pipeline waits for the "
        f"server) {profile_share(profiled, 'rows'):.0%}; the lock's time is "
        "those waits, the commit's WAL flush, and the Python between them "
        "(the matching itself, the journal's entries, preparing each row's "
        f"values). At {TARGET_CLIENTS} clients an operation costs "
        f"{milliseconds(eight_cpu)} of CPU in all, client and server, so these "
        f"{cores()} cores could not do more than about "
        f"{cores() / eight_cpu:,.0f} operations/s even with no lock.",
    ]
    if not fast_enough:
        items.append(
            "- **What would reach the target.** Fewer round trips are not "
            "left: the lock must be granted before the book is read, and the "
            "commit ends it. What remains is to stop paying a transaction per "
            "order under the lock: one matcher per market that keeps the book "
            "in memory and commits the orders it has matched in batches (one "
            "transaction and one WAL flush per batch, as Peatio's matching "
            "daemon and exchange-core do); the request then queues the order "
            "and waits for its result. That changes how `order_place` works "
            "(a process per market to run and supervise), a design decision "
            "beyond this benchmark."
        )
    items += [
        f"- **Four markets.** The lock is no longer shared, the {cores()} cores "
        f"are: at {TARGET_CLIENTS} clients an operation costs "
        f"{milliseconds(four_cpu)} of CPU (client and backend), so the machine "
        f"cannot do more than about {cores() / four_cpu:,.0f} operations/s "
        f"whatever the locks; measured {four.orders_per_second:,.0f} orders/s + "
        f"{four.cancels_per_second:,.0f} cancels/s, with other work on the "
        f"machine taking {four.others_busy:.0%} of it.",
        "- **PostgreSQL is not the limit.** pgbench's TPC-B-like transaction "
        "(three updates, a select and an insert, prepared) runs at "
        f"{pgbench[TARGET_CLIENTS].tps:,.0f} tps with {TARGET_CLIENTS} clients. "
        f"An order is a bigger transaction ({placing['queries']:.0f} statements, "
        "a row lock held across them, foreign keys and check constraints on "
        "every row written), so the ratio is not expected to reach 1; it says "
        "how much of the server stays idle while the clients queue on one row.",
    ]
    return items


def section(
    runs: list[RunResult],
    pgbench: list[PgbenchResult],
    diagnosis: Diagnosis,
    *,
    settings: dict[str, str],
    seed: dict,
    load: tuple[str, str],
    started: datetime,
    elapsed: float,
    seconds: float,
) -> str:
    by_clients = {result.clients: result for result in pgbench}
    target = next(r for r in runs if (r.clients, r.markets) == (TARGET_CLIENTS, 1))
    p99 = percentile(target.placement_latencies, 0.99)
    fast_enough = target.orders_per_second >= TARGET_ORDERS_PER_SECOND
    passed = fast_enough and p99 < TARGET_P99
    broken = [r for r in runs if r.problems]
    invariants = (
        "all hold."
        if not broken
        else "**BROKEN**: "
        + "; ".join(
            f"{r.clients} clients x {r.markets} markets: " + " ".join(r.problems[:3])
            for r in broken
        )
    )
    refused: Counter = Counter()
    for r in runs:
        refused.update(r.refused)
    refusals = ", ".join(f"{k} {v}" for k, v in sorted(refused.items())) or "none"
    lines = [
        SECTION_HEADING,
        "",
        f"Generated by `python -m bench.trading` on {started:%Y-%m-%d %H:%M} UTC "
        f"in {elapsed:.0f} s; do not edit by hand, run it again.",
        "",
        f"Target: at least {TARGET_ORDERS_PER_SECOND} orders/s on one market with "
        f"{TARGET_CLIENTS} clients, p99 order latency under "
        f"{milliseconds(TARGET_P99)}. Measured: "
        f"{target.orders_per_second:,.0f} orders/s ({met(fast_enough)}), p99 "
        f"{milliseconds(p99)} ({met(p99 < TARGET_P99)}): "
        f"{verdict(passed)}. For reference, Peatio published about 125 orders/s "
        "on 4 cores, and a straightforward ORM design reaches about 150/s on "
        "this kind of machine.",
        "",
        "Invariants (`trading.invariants.ledger_problems()`) after every "
        f"configuration: {invariants}",
        "",
        f"Machine: {machine_summary(settings)} Load average (1 min) at the start "
        f"and the end of the run: {load[0]} and {load[1]}; the machine is shared, "
        "and the table shows how busy it was and how much of that was not this "
        "benchmark.",
        "",
    ]
    lines += results_table(runs, by_clients)
    lines += [
        "",
        "Orders/s counts placed orders (resting and crossing; refusals not "
        "included), Fills/s the trades they made (`Trade` rows after minus "
        "before), Cancels/s the successful cancels. Latencies are per service "
        "call. Refused counts refused calls: a cancel of an order another "
        "client's order had filled meanwhile, a market order that met an empty "
        "side. CPU/op is the CPU time of the client processes and of their "
        "PostgreSQL backends (`/proc/<pid>/stat`) per operation; Machine busy is "
        "the whole machine's (`/proc/stat`), other work what the clients and "
        "their backends did not use of it. Refused calls, all configurations "
        f"together: {refusals}.",
        "",
        f"PostgreSQL's own ceiling on the same server (`pgbench -i -s "
        f"{PGBENCH_SCALE}`, then `pgbench -c N -j N -T {round(seconds)} -M "
        "prepared`, TPC-B-like):",
        "",
    ]
    lines += pgbench_table(pgbench)
    lines += [
        "",
        "Method:",
        "",
        "- Clients are processes (`multiprocessing`, `spawn`, each with its own "
        "`django.setup()` and one database connection, default `CONN_MAX_AGE`); "
        "threads in one process would share one GIL. Each calls "
        "`trading.services.order_place` and `order_cancel` directly, which is "
        "what a view or the API does after parsing a request (no HTTP, "
        "authentication or rendering here). They are released together by a "
        f"barrier and run for {seconds:.0f} s; each has its own seeded random "
        "generator, so the sequence of operations is reproducible, the number "
        "done in the time is not.",
        f"- The mix: {1 - CANCEL_SHARE - CROSS_SHARE:.0%} resting GTC limit "
        "orders 0.50 to 5.00 away from the mid price of 100 (buys below, sells "
        f"above; 0.10 to 1.00 base), {CROSS_SHARE:.0%} crossing orders (0.05 to "
        "0.50 base; half IOC limits 5.00 through the mid, which reach the whole "
        f"book, half market orders), {CANCEL_SHARE:.0%} cancels of one of the "
        "client's own open orders at random (a resting order instead when it "
        "has none). Each client has two users: one rests and cancels, the other "
        "only crosses, so self-trade prevention never cancels a crossing order. "
        "On four markets each operation picks one at random; the markets share "
        "the quote token, so orders on different markets still lock the same "
        "balance rows when the same users trade.",
        f"- State: the database `{BENCH_DB}` is migrated and seeded through the "
        f"services once ({len(BASE_SYMBOLS)} markets `BASE-{QUOTE_SYMBOL}`, price "
        "step 0.01, amount step 0.0001, fees 0.1 % / 0.2 %; every user funded "
        f"with `deposit_credit`; a book of {seed['book']} resting orders from "
        f"{SEED_USERS} other users), copied to `{SNAPSHOT_DB}` and recreated "
        "from that copy (`CREATE DATABASE ... TEMPLATE`) before each "
        "configuration, so each starts from the same book. After each, "
        "`ledger_problems()` checks every invariant. All bench databases are "
        "dropped at the end.",
        "- pgbench runs after the trading runs, on its own database "
        f"`{PGBENCH_DB}`. Its transaction does much less than an order, so the "
        "ratio compares with what this server can do at all, not like with like.",
        "- Diagnosis, after the measured runs and not part of them, "
        f"{PROFILE_SECONDS:.0f} s each on one market: 1 and {TARGET_CLIENTS} "
        "clients with every statement timed by a `connection.execute_wrapper` "
        "(statements in a pipeline return as soon as they are queued, so their "
        "time shows where a result is read; an operation waits for the market "
        "lock until its row is read, and holds it from then to the end of the "
        "service call); one client under `cProfile`, which slows Python down "
        f"and so overstates its share; 1 and {TARGET_CLIENTS} clients with "
        "`DATABASE_PREPARED_STATEMENTS=false`.",
        "",
        "Statements of one client alone on one market, per operation "
        "(placements and cancels):",
        "",
    ]
    lines += statements_table(diagnosis.single)
    lines += ["", "cProfile of one client on one market (cumulative times):", ""]
    lines += profile_table(diagnosis.profiled)
    lines += ["", "Findings:", ""]
    lines += findings(runs, by_clients, diagnosis)
    return "\n".join(lines) + "\n"


def load_average() -> str:
    return Path("/proc/loadavg").read_text().split()[0]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.trading")
    parser.add_argument("--seconds", type=float, default=SECONDS)
    parser.add_argument(
        "--keep-databases", action="store_true", help="do not drop them at the end"
    )
    args = parser.parse_args(argv)
    started = datetime.now(UTC)
    clock = time.monotonic()
    load_start = load_average()

    def log(message: str) -> None:
        print(f"[{time.monotonic() - clock:5.1f}s] {message}", flush=True)

    os.environ.update(django_environment())
    runs: list[RunResult] = []
    try:
        settings = server_settings()
        database_create(BENCH_DB)
        run(
            [str(PYTHON), "manage.py", "migrate", "--noinput", "-v", "0"],
            env=django_environment(),
        )
        import django

        django.setup()
        from django.db import connections

        seed = seed_create()
        connections.close_all()
        psql("VACUUM ANALYZE", database=BENCH_DB)
        database_create(SNAPSHOT_DB, template=BENCH_DB)
        log(f"{BENCH_DB} migrated and seeded ({seed['book']} resting orders)")
        for markets in MARKET_COUNTS:
            for clients in CLIENT_COUNTS:
                result = configuration_run(
                    clients=clients, markets=markets, seconds=args.seconds, seed=seed
                )
                runs.append(result)
                log(
                    f"{clients} clients x {markets} markets: "
                    f"{result.orders_per_second:,.0f} orders/s, "
                    f"{result.fills_per_second:,.0f} fills/s, p50 "
                    f"{milliseconds(percentile(result.placement_latencies, 0.5))}, "
                    f"p99 {milliseconds(percentile(result.placement_latencies, 0.99))}"
                    f", CPU {result.cpu_busy:.0%}, "
                    f"invariants {'ok' if not result.problems else 'BROKEN'}"
                )
                for problem in result.problems:
                    log(f"  INVARIANT BROKEN: {problem}")
        diagnosis_runs = []
        for clients, mode in DIAGNOSIS_RUNS:
            result = configuration_run(
                clients=clients,
                markets=1,
                seconds=PROFILE_SECONDS,
                seed=seed,
                mode=mode,
            )
            if result.problems:
                raise BenchError(
                    f"invariants broken ({mode}, {clients} clients): "
                    + " ".join(result.problems)
                )
            diagnosis_runs.append(result)
            log(
                f"diagnosis {mode}, {clients} clients: "
                f"{result.orders_per_second:,.0f} orders/s"
            )
        book_plan = book_query_plan(seed["markets"][0])
        connections.close_all()
        pgbench = pgbench_run(args.seconds, log)
    except BenchError as error:
        print(f"bench.trading failed: {error}", file=sys.stderr)
        return 1
    finally:
        if not args.keep_databases:
            try:
                for name in (BENCH_DB, SNAPSHOT_DB, PGBENCH_DB):
                    database_drop(name)
            except BenchError as error:
                print(f"could not drop the databases: {error}", file=sys.stderr)

    text = section(
        runs,
        pgbench,
        Diagnosis(*diagnosis_runs, book_plan=book_plan),
        settings=settings,
        seed=seed,
        load=(load_start, load_average()),
        started=started,
        elapsed=time.monotonic() - clock,
        seconds=args.seconds,
    )
    report.section_write(text, heading=SECTION_HEADING)
    print(text)
    log(f"wrote the section {SECTION_HEADING!r} of {report.REPORT_PATH}")
    if any(result.problems for result in runs):
        print("bench.trading: invariants broke, see above", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
