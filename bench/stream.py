"""The live stream: from a trade's batch to its event at 1,000 clients.

    python -m bench.stream [--clients 1000] [--trades 40]

Method: a Redis of its own, a SQLite database in a temporary folder (migrated,
one market, two funded users), and one stream process as `make run` and
docker-compose.yml run it (``uvicorn crypto_exchange.asgi:application --loop
uvloop --http httptools``, DEBUG off). This process is the load generator, on
the same cores (asyncio's own loop, as a plain client would be): it opens
``--clients`` anonymous streams of the market (asyncio sockets) and waits
for each one's snapshot; the stream process's resident memory (VmRSS) before
and after, divided by the clients, is the memory per connection. Then, one
at a time, 0.25 s apart, a resting sell and a buy that fills it are accepted
(``order_place``) and the buy is matched by ``trading.matcher.drain`` in this
process; the clock starts just before ``drain``, so each latency includes the
batch's matching and commit, then its publication, the stream process's one
Redis subscription, the fan-out and the socket, until the client has read the
``trades`` event naming the new trade. p50 and p99 are over every client and
every trade. The machine's load average (1 minute) is noted before and after:
other work on these cores shows in the tail. Writes the section ``## Live
stream`` of docs/PERFORMANCE.md.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench import report
from bench.report import percentile

ROOT = Path(__file__).resolve().parent.parent
SECTION_HEADING = "## Live stream"
PATH = "/api/v1/markets/BTC-USDT/stream/"
TRADE_EVENT = re.compile(rb'event: trades\ndata: \{"trades": ?\[\{"id": ?(\d+)')


def proc_status(pid: int, field: str) -> int:
    """A number of /proc/<pid>/status: ``VmRSS`` (KiB), ``Threads``."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1])
    raise RuntimeError(f"no {field}")


def ms(latencies: list[float], share: float) -> str:
    return f"{percentile(latencies, share):.1f} ms"


class Client:
    """One stream, read as raw bytes: when did each trade's event arrive."""

    def __init__(self) -> None:
        self.snapshot = asyncio.Event()
        self.arrived: dict[int, float] = {}
        self.buffer = b""

    async def run(self, port: int) -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(
            f"GET {PATH} HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            "Accept: text/event-stream\r\n\r\n".encode()
        )
        await writer.drain()
        try:
            while chunk := await reader.read(65536):
                now = time.perf_counter()
                self.buffer += chunk
                if not self.snapshot.is_set() and b"event: snapshot" in self.buffer:
                    self.snapshot.set()
                for match in TRADE_EVENT.finditer(self.buffer):
                    self.arrived.setdefault(int(match.group(1)), now)
                self.buffer = self.buffer[-200:]  # an event cut in two
        finally:
            writer.close()


def server_start(env: dict[str, str], port: int, log: Path) -> subprocess.Popen:
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "uvicorn",
            "crypto_exchange.asgi:application",
            *("--loop", "uvloop", "--http", "httptools"),
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--no-access-log",
            "--timeout-graceful-shutdown",
            "1",
            "--backlog",
            "4096",
        ],
        cwd=ROOT,
        env=env,
        stdout=log.open("wb"),
        stderr=subprocess.STDOUT,
    )
    import http.client

    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            connection = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
            connection.request("GET", "/healthz/")
            if connection.getresponse().status == 200:
                return process
        except OSError:
            time.sleep(0.1)
    process.kill()
    raise RuntimeError(f"uvicorn did not start: {log.read_text()[-2000:]}")


async def measure(port: int, pid: int, clients: int, trades: int, market, users):
    from decimal import Decimal

    from asgiref.sync import sync_to_async

    from trading.matcher import drain
    from trading.models import Trade
    from trading.orders import order_place

    # One stream first, so that the process's one-off costs (the Redis
    # subscription, imports, the database connection) are in the baseline.
    warm = Client()
    warm_task = asyncio.create_task(warm.run(port))
    await asyncio.wait_for(warm.snapshot.wait(), 30)
    before = proc_status(pid, "VmRSS")
    streams = [Client() for _ in range(clients)]
    tasks = []
    for start in range(0, clients, 100):
        batch = streams[start : start + 100]
        tasks += [asyncio.create_task(client.run(port)) for client in batch]
        await asyncio.wait_for(
            asyncio.gather(*(client.snapshot.wait() for client in batch)), 60
        )
    after = proc_status(pid, "VmRSS")
    threads = proc_status(pid, "Threads")

    seller, buyer = users
    started: dict[int, float] = {}

    def one_trade() -> tuple[int, float]:
        size, price = Decimal("0.01"), Decimal("100.00")
        for user, side in ((seller, "sell"), (buyer, "buy")):
            order_place(
                user=user,
                market=market,
                side=side,
                type="limit",
                quantity=size,
                price=price,
            )
            if side == "sell":
                drain(market_id=market.pk)
        begun = time.perf_counter()
        drain(market_id=market.pk)
        return Trade.objects.latest("pk").pk, begun

    for _ in range(trades):
        trade_id, begun = await sync_to_async(one_trade)()
        started[trade_id] = begun
        await asyncio.sleep(0.25)
    await asyncio.sleep(1.0)
    latencies = [
        (client.arrived[trade_id] - begun) * 1000
        for client in streams
        for trade_id, begun in started.items()
        if trade_id in client.arrived
    ]
    missing = clients * trades - len(latencies)
    for task in [*tasks, warm_task]:
        task.cancel()
    await asyncio.gather(*tasks, warm_task, return_exceptions=True)
    return {
        "latencies": latencies,
        "missing": missing,
        "kib_per_connection": (after - before) / clients,
        "rss_before_mib": before / 1024,
        "rss_after_mib": after / 1024,
        "threads": threads,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=1000)
    parser.add_argument("--trades", type=int, default=40)
    args = parser.parse_args()
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))

    from core.tests.redis_server import RedisServer
    from scripts.processes import free_port

    bench = report.Run("bench.stream", SECTION_HEADING)
    with tempfile.TemporaryDirectory(prefix="bench-stream-") as folder:
        directory = Path(folder)
        redis = RedisServer(directory)
        redis.start()
        env = {
            **{k: v for k, v in os.environ.items() if k in ("PATH", "HOME", "LANG")},
            "ENV_FILE": "/dev/null",
            "DEBUG": "false",
            "SECRET_KEY": "bench-stream-" + "x" * 50,
            "ALLOWED_HOSTS": "127.0.0.1",
            "PLAIN_HTTP": "true",
            "DATABASE_URL": f"sqlite:///{directory / 'db.sqlite3'}",
            "REDIS_URL": redis.url,
            "MEDIA_ROOT": str(directory / "media"),
            "LOG_LEVEL": "WARNING",
            "PYTHONPATH": str(ROOT),
            "DJANGO_SETTINGS_MODULE": "crypto_exchange.settings",
            # A fast client keeps up; a generous queue rules out resyncs
            # caused by the load generator sharing the cores.
            "STREAM_QUEUE_SIZE": "1024",
        }
        os.environ.update(env)
        import django

        django.setup()
        from django.core.management import call_command

        call_command("migrate", verbosity=0)
        from tests.factories import fund, market_make, token_make, user_make

        market = market_make(token_make("BTC"), token_make("USDT", decimals=6))
        seller, buyer = user_make("seller"), user_make("buyer")
        fund(seller, market.base, "1000")
        fund(buyer, market.quote, "1000000")

        port = free_port()
        server = server_start(env, port, directory / "uvicorn.log")
        try:
            results = asyncio.run(
                measure(
                    port, server.pid, args.clients, args.trades, market, (seller, buyer)
                )
            )
        finally:
            server.terminate()
            server.wait(15)
            redis.stop()

    latencies = results["latencies"]
    streams = args.clients + 1
    rows = [
        ("Anonymous streams of one market, one uvicorn process", f"{args.clients}"),
        ("Trades, one at a time", f"{args.trades}"),
        ("Batch start to `trades` event at the client, p50", ms(latencies, 0.5)),
        ("Batch start to `trades` event at the client, p99", ms(latencies, 0.99)),
        ("Events measured (missing)", f"{len(latencies)} ({results['missing']})"),
        ("Memory per connection (VmRSS)", f"{results['kib_per_connection']:.1f} KiB"),
        (f"Threads of the stream process at {streams} streams", results["threads"]),
        (
            f"Stream process VmRSS, 1 then {streams} streams",
            f"{results['rss_before_mib']:.1f} MiB, {results['rss_after_mib']:.1f} MiB",
        ),
    ]
    table = report.table([{"Measure": m, "Value": v} for m, v in rows], left=2)
    bench.write(table, ("Django", "uvicorn"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
