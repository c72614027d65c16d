"""Orders per second of the order path on PostgreSQL, against pgbench (issue 13).

    python -m bench.trading [--seconds 10]

Each run starts from a copy of a seeded database (4 markets, funded users, a
matched book). 8 client processes call ``order_place`` and ``order_cancel`` as
the API does, answered at acceptance: 50 % resting limits 0.50 to 5.00 from a
mid of 100, 30 % crossing (IOC limits 5.00 through the mid, or market orders),
20 % cancels of their own resting orders. Each market has its ``manage.py
run_matcher --market``, which NOTIFYs its last command's sequence after each
committed batch; an order is matched at the first notification reaching its
``priority_sequence``. Saturated: the clients back to back for ``--seconds`` on
one market, then on four (also with one ``run_matcher`` for all, as deployed);
orders/s over the clients' start to the commit of the last order's batch, so a
matcher that falls behind counts. Paced: Poisson arrivals at 60 % of the
one-market rate; latency from acceptance to the commit of the order's batch.
Backlog: 10,000 commands queued, then a matcher started; its rate over its
batches after the first. CPU per request and per command from ``/proc``
(clients, matchers and their PostgreSQL backends). pgbench (TPC-B-like, 8
clients, prepared) runs just before and after the one-market saturated run;
ratios use the mean. Production settings, no Redis. After each run the queue
must be empty and ``ledger_problems()`` find nothing, else the exit code is 1.
"""

import argparse
import bisect
import itertools
import multiprocessing
import os
import random
import re
import secrets
import subprocess
import sys
import threading
import time
import traceback
from collections import Counter
from decimal import Decimal
from pathlib import Path
from types import SimpleNamespace

import psycopg
from django.db import connection, connections

from bench import report
from bench.report import django_setup, machine_cpu, ms, percentile, process_cpu

REPO_ROOT, HEADING = Path(__file__).resolve().parent.parent, "## Trading on PostgreSQL"
PG = ["-h", "127.0.0.1", "-p", "5432", "-U", "postgres"]
BENCH_DB = f"bench_trading_{os.getpid()}"  # clients get it in DATABASE_URL
BENCH_URL = f"postgresql://postgres@127.0.0.1:5432/{BENCH_DB}"
SNAPSHOT_DB, PGBENCH_DB = f"{BENCH_DB}_seed", f"{BENCH_DB}_pgbench"
CLIENTS, SECONDS, PACED_SHARE, BACKLOG = 8, 10.0, 0.6, 10_000
TARGET_RATIO, TARGET_P99, TARGET_DRAIN = 0.3, 0.100, 3_000
SEED, CANCEL_SHARE, CROSS_SHARE = 20260601, 0.20, 0.30
MID, STEP, REACH = Decimal("100.00"), Decimal("0.01"), Decimal("5.00")
REST_OFFSETS, REST_QUANTITY, CROSS_QUANTITY = (50, 500), (10, 100), (5, 50)
BASE_SYMBOLS, SECRET_KEY = ("BTC", "ETH", "SOL", "XRP"), secrets.token_urlsafe(50)
LOCKS = "SELECT l.objid::int, l.pid FROM pg_locks AS l JOIN pg_database AS d ON "
LOCKS += "d.oid = l.database WHERE d.datname = current_database() AND l.granted AND "
LOCKS += "l.locktype = 'advisory' AND l.classid = %s"  # (market id, matcher's backend)
TARGETS = (  # issue 13
    f"One market, {CLIENTS} clients: orders/s ≥ {TARGET_RATIO}x pgbench tps",
    f"Accepted → matched at {PACED_SHARE:.0%} of that: p99 < {TARGET_P99 * 1e3:.0f} ms",
    f"The matcher alone draining a backlog: ≥ {TARGET_DRAIN:,} orders/s",
)


def run(command: list[str], **kwargs) -> str:
    done = subprocess.run(command, capture_output=True, text=True, **kwargs)
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(command)}: {done.stdout}{done.stderr}")
    return done.stdout


def psql(*commands: str, database: str = "postgres") -> list[str]:
    args = ["psql", *PG, "-X", "-q", "-At", "-v", "ON_ERROR_STOP=1", "-d", database]
    return run(args + [part for c in commands for part in ("-c", c)]).splitlines()


def database_create(name: str, *, template: str | None = None) -> None:
    psql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    psql(f'CREATE DATABASE "{name}"' + (f' TEMPLATE "{template}"' if template else ""))


def django_environment() -> dict[str, str]:
    # Production settings, not the developer's .env; no events (no REDIS_URL).
    env = {"DATABASE_URL": BENCH_URL, "ENV_FILE": "/dev/null", "DEBUG": "false"}
    env |= {"DJANGO_SETTINGS_MODULE": "crypto_exchange.settings", "REDIS_URL": ""}
    return os.environ | env | {"SECRET_KEY": SECRET_KEY, "LOG_LEVEL": "WARNING"}


def seed_create() -> dict:
    """Tokens, markets, funded users and a matched book, through the services."""
    from django.contrib.auth import get_user_model

    from tokens.services import token_create
    from trading.matcher import drain
    from trading.orders import order_place
    from trading.services import deposit_credit, market_create

    quote = token_create(name="Tether", symbol="USDT", decimals=8)
    bases = [token_create(name=s, symbol=s, decimals=8) for s in BASE_SYMBOLS]
    terms = {"price_step": STEP, "amount_step": Decimal("0.0001")}
    terms |= {"min_notional": Decimal("1"), "maker_fee": Decimal("0.001")}
    terms |= {"taker_fee": Decimal("0.002")}
    markets = [market_create(base=base, quote=quote, **terms) for base in bases]
    create_user = get_user_model().objects.create_user  # no password to hash
    users = {
        role: [create_user(f"bench-{role}-{i}") for i in range(count)]
        for role, count in (("maker", CLIENTS), ("taker", CLIENTS), ("seed", 4))
    }
    for number, user in enumerate(itertools.chain(*users.values())):
        for token in (quote, *bases):
            amount = Decimal(1_000_000_000 if token == quote else 1_000_000)
            reference = f"bench-{number}-{token.symbol}"
            deposit_credit(user=user, token=token, amount=amount, reference=reference)
    rng = random.Random(SEED)
    for market in markets:
        for user, side in itertools.product(users["seed"], ("buy", "sell") * 15):
            offset = rng.randint(*REST_OFFSETS) * STEP
            quantity = rng.randint(*REST_QUANTITY) * STEP
            price = MID - offset if side == "buy" else MID + offset
            order = {"user": user, "market": market, "side": side, "type": "limit"}
            order_place(**order, quantity=quantity, price=price)
        drain(market_id=market.pk)
    ids = {role: [user.pk for user in users[role]] for role in ("maker", "taker")}
    return {"markets": [(m.pk, m.symbol) for m in markets], **ids}


def client_main(spec: SimpleNamespace, barrier, results) -> None:
    try:
        django_setup()
        results.put((spec.index, client_run(spec, barrier), None))
    except BaseException:
        barrier.abort()
        results.put((spec.index, None, traceback.format_exc()))


def client_run(spec: SimpleNamespace, barrier) -> SimpleNamespace:
    """Its maker rests orders and cancels them, its taker only crosses (no self-trade
    prevention); ``placed``: (order id, call started, accepted), monotonic clock."""
    from django.contrib.auth import get_user_model

    from trading.exceptions import TradingError
    from trading.models import Market
    from trading.orders import order_cancel, order_place

    users = get_user_model().objects.in_bulk([spec.maker_id, spec.taker_id])
    maker, taker = users[spec.maker_id], users[spec.taker_id]
    markets = list(Market.objects.filter(pk__in=spec.market_ids).order_by("pk"))
    rng = random.Random(f"{SEED}-{spec.label}-{spec.index}")
    result = SimpleNamespace(placed=[], cancels=0, refused=Counter(), statements=0)
    resting = []

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
                protection = limit if buying else None
                order |= {"type": "market", "protection_price": protection}
            return "cross", order | {"user": taker}
        offset = rng.randint(*REST_OFFSETS) * STEP
        price = MID - offset if buying else MID + offset
        order |= {"user": maker, "type": "limit", "price": price}
        return "rest", order | {"quantity": rng.randint(*REST_QUANTITY) * STEP}

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
    result.ended, result.cpu = time.monotonic(), time.process_time() - result.cpu
    result.backend_cpu = process_cpu(backend) - result.backend_cpu
    connection.close()
    return result


def clients_run(specs: list[SimpleNamespace], on_start) -> list[SimpleNamespace]:
    """Run the clients, released together; ``on_start()`` runs at the release."""
    context = multiprocessing.get_context("spawn")
    barrier, results = context.Barrier(len(specs) + 1), context.Queue()
    processes = [
        context.Process(target=client_main, args=(s, barrier, results), daemon=True)
        for s in specs
    ]
    for process in processes:
        process.start()
    collected = []
    try:
        barrier.wait(timeout=300)
        on_start()
        for _ in specs:
            index, result, error = results.get(timeout=600)
            if error is not None:
                raise SystemExit(f"client {index} failed:\n{error}")
            collected.append(result)
    except threading.BrokenBarrierError:
        raise SystemExit(f"a client failed: {results.get(timeout=5)[2]}") from None
    finally:
        for process in processes:
            process.join(timeout=30)
    return collected


class Matchers:
    """``run_matcher --market`` for each market (``together``: one ``run_matcher``
    for all, as deployed by default), and their backends."""

    def __init__(self, markets: list[tuple[int, str]], together: bool = False):
        from trading.matcher import PostgresLocks

        run_matcher = [sys.executable, "manage.py", "run_matcher"]
        started, env = time.monotonic(), django_environment()
        each = [[]] if together else [["--market", s] for _, s in markets]
        self.processes = [
            subprocess.Popen([*run_matcher, *o], env=env, cwd=REPO_ROOT) for o in each
        ]
        self.backends: dict[int, int] = {}
        while len(self.backends) < len(markets):  # until each holds its lock
            late = time.monotonic() - started > 60
            if late or any(p.poll() is not None for p in self.processes):
                self.stop()
                raise SystemExit("run_matcher did not start (its output is above)")
            time.sleep(0.01)
            with connection.cursor() as cursor:
                cursor.execute(LOCKS, [PostgresLocks.CLASS])
                self.backends = dict(cursor.fetchall())
        self.ready, self.machine_start = time.monotonic(), machine_cpu()
        self.cpu_start = self.cpu()

    def cpu(self) -> tuple[float, float]:  # seconds: the matchers, their backends
        matchers = sum(process_cpu(p.pid) for p in self.processes)
        return matchers, sum(process_cpu(pid) for pid in set(self.backends.values()))

    def stop(self) -> None:
        for process in self.processes:
            process.terminate()  # SIGTERM: ends the batch, then the loop
        for process in self.processes:
            try:
                process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


class Listener(threading.Thread):
    """Notes when each market's batch notification arrives: (sequence, time)."""

    def __init__(self, market_ids: list[int]) -> None:
        from trading.orders import notify_channel

        super().__init__(daemon=True)
        self.connection = psycopg.connect(BENCH_URL, autocommit=True)
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
        self.connection.close()

    def committed_at(self, market: int, sequence: int) -> float:  # its batch's commit
        seen = self.seen[market]
        return seen[bisect.bisect_left(seen, (sequence, 0.0))][1]


def run_once(seed: dict, name: str, *, markets: int, **options) -> SimpleNamespace:
    """One run from the snapshot; ``options``: see ``main``."""
    from trading.invariants import ledger_problems
    from trading.models import CommandRefusal, MatcherState, Order, OrderCommand

    connections.close_all()
    database_create(BENCH_DB, template=SNAPSHOT_DB)
    chosen, backlog = seed["markets"][:markets], options.get("backlog", False)
    ids = [pk for pk, _ in chosen]
    first = dict(MatcherState.objects.values_list("market_id", "sequence"))
    rate, spec = options.get("rate"), {"label": name, "market_ids": tuple(ids)}
    spec |= {"seconds": options.get("seconds"), "rate": rate and rate / CLIENTS}
    spec["operations"] = backlog and -(-backlog // CLIENTS)  # per client
    pairs = enumerate(zip(seed["maker"], seed["taker"], strict=True))
    specs = [
        SimpleNamespace(index=i, maker_id=m, taker_id=t, **spec) for i, (m, t) in pairs
    ]
    listener, matchers, machine = Listener(ids), None, []
    try:
        matchers = None if backlog else Matchers(chosen, options.get("together"))
        clients = clients_run(specs, on_start=lambda: machine.append(machine_cpu()))
        if backlog:
            matchers = Matchers(chosen)
            machine = [matchers.machine_start]
        deadline = time.monotonic() + 300
        while OrderCommand.objects.exists():
            if time.monotonic() > deadline:
                raise SystemExit("the queue did not drain")
            time.sleep(0.02)  # the end is the last batch's notification
        machine.append(machine_cpu())
        spent = zip(matchers.cpu_start, matchers.cpu(), strict=True)
        matcher_cpu = [b - a for a, b in spent]
        time.sleep(0.2)  # the last notifications
    finally:
        if matchers is not None:
            matchers.stop()
        listener.stopping.set()
        listener.join()
    if problems := ledger_problems():
        raise SystemExit(f"{name}: invariants broken: {' '.join(problems[:5])}")

    placed = [p for c in clients for p in c.placed]
    rows = Order.objects.filter(pk__in=[p[0] for p in placed])
    rows = rows.values_list("pk", "market_id", "priority_sequence")
    found = {pk: market_sequence for pk, *market_sequence in rows}
    batches, drains = [], []  # drains: (orders, commands, seconds) after the first
    for market in ids:
        seen = listener.seen[market]
        marks = [first[market]] + [sequence for sequence, _ in seen]
        batches += [b - a for a, b in itertools.pairwise(marks)]
        if backlog and len(seen) > 1:
            (low, since), (high, until) = seen[0], seen[-1]
            orders = sum(m == market and low < s <= high for m, s in found.values())
            drains.append((orders, high - low, until - since))
    end = max(seen[-1][1] for seen in listener.seen.values() if seen)
    seconds = end - (matchers.ready if backlog else min(c.started for c in clients))
    busy = (machine[1][0] - machine[0][0]) / ((machine[1][1] - machine[0][1]) or 1)
    client_cpu = [sum(c.cpu for c in clients), sum(c.backend_cpu for c in clients)]
    ours = sum(matcher_cpu) + (not backlog) * sum(client_cpu)
    cancels = sum(c.cancels for c in clients)
    requests, commands = len(placed) + cancels, sum(batches)
    rates = [(o / s, (c - o) / s) for o, c, s in drains]  # a backlog's, per market
    rates = rates or [(len(placed) / seconds, cancels / seconds)]
    orders, cancels = (sum(r) / len(rates) for r in zip(*rates, strict=True))
    refused = sum(sum(c.refused.values()) for c in clients)  # by the call or the
    refused += CommandRefusal.objects.count()  # matcher (a cancel found closed)
    matched = [listener.committed_at(*found[pk]) - at for pk, _, at in placed]
    connections.close_all()
    cpu = [ms(spent / max(1, requests)) for spent in client_cpu]
    cpu += [ms(spent / max(1, commands)) for spent in matcher_cpu]
    row = {"Run": name, "Orders/s": f"{orders:,.0f}", "÷ pgbench tps": "—"}
    row["Cancels/s"] = f"{cancels:,.0f}"
    row["Request p50 / p99"] = p50_p99([a - b for _, b, a in placed])
    row["Accepted → matched p50 / p99"] = "queued" if backlog else p50_p99(matched)
    row["Batch mean (max)"] = f"{commands / len(batches):,.1f} ({max(batches)})"
    row["CPU per request: client + PostgreSQL"] = " + ".join(cpu[:2])
    row["CPU per command: matcher + PostgreSQL"] = " + ".join(cpu[2:])
    others = max(0.0, busy - ours / (seconds * report.cores()))
    row["Machine busy (other work)"] = f"{busy:.0%} ({others:.0%})"
    statements = sum(c.statements for c in clients) / max(1, requests)
    row |= {"Statements per request": f"{statements:.2f}", "Refused": f"{refused:,}"}
    per_order = requests / max(1, len(placed))
    return SimpleNamespace(orders=orders, matched=matched, per_order=per_order, row=row)


def pgbench(seconds: float) -> float:
    options = ["-c", str(CLIENTS), "-j", str(CLIENTS), "-T", str(round(seconds))]
    output = run(["pgbench", *PG, *options, "-M", "prepared", PGBENCH_DB])
    return float(re.search(r"tps = ([\d.]+) \(without initial connection", output)[1])


def p50_p99(values: list[float]) -> str:
    return f"{ms(percentile(values, 0.5))} / {ms(percentile(values, 0.99))}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.trading")
    parser.add_argument("--seconds", type=float, default=SECONDS)
    seconds = parser.parse_args(argv).seconds
    bench, runs = report.Run("bench.trading", HEADING), {}
    os.environ.update(django_environment())

    def measured(key: str, name: str, **options) -> SimpleNamespace:
        runs[key] = result = run_once(seed, name, **{"seconds": seconds} | options)
        bench.log(" | ".join(result.row.values()))
        return result

    try:
        database_create(BENCH_DB)
        run([sys.executable, "manage.py", "migrate", "--no-input"], cwd=REPO_ROOT)
        django_setup()
        seed = seed_create()
        connections.close_all()
        psql("VACUUM ANALYZE", database=BENCH_DB)
        database_create(SNAPSHOT_DB, template=BENCH_DB)
        database_create(PGBENCH_DB)
        run(["pgbench", *PG, "-i", "-q", "-s", "10", PGBENCH_DB])
        tps = [pgbench(seconds)]
        sat = measured("sat", "1 market, saturated", markets=1)
        tps.append(pgbench(seconds))  # just before and after: the same load
        measured("four", "4 markets, saturated", markets=4)
        name = "4 markets, saturated, one `run_matcher` for all"
        measured("together", name, markets=4, together=True)
        offered = PACED_SHARE * sat.orders
        name = f"1 market, {offered:,.0f} orders/s offered"
        paced = measured("paced", name, markets=1, rate=offered * sat.per_order)
        name, backlog = f"{BACKLOG:,} queued on 1 market(s), per market", BACKLOG
        drain = measured("drain", name, markets=1, seconds=None, backlog=backlog)
        settings = ("server_version", "shared_buffers", "synchronous_commit")
        postgres = psql(*(f"SHOW {setting}" for setting in settings))
    finally:  # SystemExit(message) ends the process with exit code 1
        connections.close_all()
        for name in (BENCH_DB, SNAPSHOT_DB, PGBENCH_DB):
            psql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    mean = sum(tps) / len(tps)
    ratio, p99 = sat.orders / mean, percentile(paced.matched, 0.99)
    got = [f"{ratio:.3f}x ({sat.orders:,.0f} orders/s, pgbench {mean:,.0f} tps)"]
    got += [f"{ms(p99)} at {paced.orders:,.0f}/s", f"{drain.orders:,.0f} orders/s"]
    met = [ratio >= TARGET_RATIO, p99 < TARGET_P99, drain.orders >= TARGET_DRAIN]
    for key in ("sat", "four", "together", "paced"):
        runs[key].row["÷ pgbench tps"] = f"{runs[key].orders / mean:.3f}"
    options = f"`-c {CLIENTS} -j {CLIENTS} -T {round(seconds)} -M prepared`"
    when = ("just before the first run", "just after it")
    pgbench_rows = [
        {f"pgbench, scale 10, {options}": w, "tps": f"{t:,.0f}"}
        for w, t in zip(when, tps, strict=True)
    ]
    targets = report.targets(zip(TARGETS, got, met, strict=True))
    lines = [*targets, "", *report.table([r.row for r in runs.values()]), ""]
    lines += report.table(pgbench_rows)
    software = "PostgreSQL {} on loopback, `shared_buffers` {}, `synchronous_commit` {}"
    bench.write(lines, ("Django", "psycopg"), [software.format(*postgres)])
    return 0


if __name__ == "__main__":
    sys.exit(main())
