"""PostgreSQL restarted under traffic: the app (gunicorn with
gunicorn.conf.py) and the matcher (``manage.py run_matcher``) run as real
processes on a cluster of the test's own (core.tests.postgres_server),
clients place orders, request withdrawals and load pages, and the server is
restarted twice (``fast``, then ``immediate`` with crash recovery), staying
down until every kind of request has met the outage.

What must hold: during the outage every answer is a clean 503 (the API's
JSON error, a page elsewhere), never a 500 or a dropped connection; the app
and the matcher recover by themselves; clients that retry with the same
``client_order_id``/``reference``, as the API's docs say, end with exactly
one order or withdrawal each, every one they were told about exists, the
matcher takes every order, and ``check_ledger`` finds nothing wrong.
"""

from __future__ import annotations

import http.client
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path

import pytest

from core.tests.postgres_server import postgres_running
from core.tests.processes import free_port, plain_static_root

pytestmark = pytest.mark.postgres

ROOT = Path(__file__).resolve().parents[2]
GUNICORN = Path(sys.executable).parent / "gunicorn"
DATABASE = "crypto_exchange"
WAIT_TIMEOUT = 90.0  # a bound on waits for progress, never an assertion on time
KINDS = ("order", "withdrawal", "page")

_SEED = """
import json
from trading.api_keys import api_key_create
from tests.factories import fund, market_make, token_make, user_make

btc, usdt = token_make("BTC"), token_make("USDT", decimals=6)
market_make(btc, usdt)
keys = {}
for name in ("maker", "taker"):
    user = user_make(name)
    fund(user, btc, "1000")
    fund(user, usdt, "10000000")
    _, keys[name] = api_key_create(
        user=user, name="bot", scopes=["read", "trade", "withdraw"],
        allowed_ips="127.0.0.1",
    )
print(json.dumps(keys))
"""


def _wait(condition, what: str, *logs: Path) -> None:
    deadline = time.monotonic() + WAIT_TIMEOUT
    while not condition():
        if time.monotonic() > deadline:
            tails = "\n".join(log.read_text(errors="replace")[-3000:] for log in logs)
            raise AssertionError(f"{what} did not happen; logs:\n{tails}")
        time.sleep(0.05)


class App:
    """gunicorn and the matcher on the cluster's database, each logging to a
    file of its own; stopped (SIGTERM, then SIGKILL) at the end."""

    def __init__(self, directory: Path, database_url: str) -> None:
        self.port = free_port()
        static_root = plain_static_root(directory)
        self.env = {
            "PATH": os.environ.get("PATH", ""),
            "HOME": str(directory),
            "LANG": "C.UTF-8",
            "PYTHONPATH": str(ROOT),
            "PYTHONUNBUFFERED": "1",
            "ENV_FILE": "/dev/null",
            "DEBUG": "false",
            "SECRET_KEY": "a-test-secret-key-of-the-restart-test-7d1f0a",
            "PLAIN_HTTP": "true",
            "ALLOWED_HOSTS": "127.0.0.1",
            "STATIC_ROOT": str(static_root),
            "MEDIA_ROOT": str(directory / "media"),
            "PRIVATE_MEDIA_ROOT": str(directory / "private_media"),
            "IMAGE_DECODE_SLOTS_DIR": str(directory / "decode-slots"),
            "DATABASE_URL": database_url,
            "WEB_CONCURRENCY": "2",
            "LOG_LEVEL": "INFO",
        }
        self.web_log = directory / "gunicorn.log"
        self.matcher_log = directory / "matcher.log"
        self.web: subprocess.Popen | None = None
        self.matcher: subprocess.Popen | None = None

    def manage(self, *args: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            [sys.executable, "manage.py", *args],
            cwd=ROOT,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=300,
        )

    def _spawn(self, command: list[str], log: Path) -> subprocess.Popen:
        with log.open("ab") as output:
            return subprocess.Popen(
                command, cwd=ROOT, env=self.env, stdout=output, stderr=subprocess.STDOUT
            )

    def start(self) -> None:
        self.web = self._spawn(
            [
                str(GUNICORN),
                *("--config", "gunicorn.conf.py"),
                *("--bind", f"127.0.0.1:{self.port}"),
                "crypto_exchange.wsgi:application",
            ],
            self.web_log,
        )
        self.matcher = self._spawn(
            [sys.executable, "manage.py", "run_matcher"], self.matcher_log
        )
        _wait(
            lambda: (
                self.web.poll() is None
                and request(self.port, "GET", "/healthz/")[0] == 200
            ),
            "gunicorn answering",
            self.web_log,
        )

    def stop(self) -> None:
        for process in (self.web, self.matcher):
            if process is not None and process.poll() is None:
                process.send_signal(signal.SIGTERM)
        for process in (self.web, self.matcher):
            if process is None:
                continue
            try:
                process.wait(40)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(10)


def request(port: int, method: str, path: str, body=None, headers=None):
    """(status, content type, body bytes); status None if the connection
    failed (the server itself must never drop one)."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    try:
        payload = json.dumps(body).encode() if body is not None else None
        sent = {"Host": "127.0.0.1", **(headers or {})}
        if payload is not None:
            sent["Content-Type"] = "application/json"
        connection.request(method, path, body=payload, headers=sent)
        response = connection.getresponse()
        return response.status, response.getheader("Content-Type", ""), response.read()
    except OSError as failure:
        return None, "", repr(failure).encode()
    finally:
        connection.close()


class Traffic:
    """Clients in threads until stopped. Orders and withdrawals are retried
    with the same client_order_id / reference until a definite answer, as
    the API's docs tell clients to."""

    def __init__(self, port: int, keys: dict[str, str]) -> None:
        self.port, self.keys = port, keys
        self.stopped = threading.Event()
        self.lock = threading.Lock()
        self.successes: Counter = Counter()
        self.outages: Counter = Counter()  # 503s seen, per kind
        self.unavailable_codes: Counter = Counter()
        self.bad: list[str] = []  # answers that must never happen
        self.orders: dict[str, int] = {}  # client_order_id -> the id told
        self.withdrawals: dict[str, int] = {}  # reference -> the id told
        self.threads = [
            threading.Thread(target=self._orders, args=("maker", "sell")),
            threading.Thread(target=self._orders, args=("taker", "buy")),
            threading.Thread(target=self._withdrawals, args=("maker",)),
            threading.Thread(target=self._pages),
        ]

    def __enter__(self) -> Traffic:
        for thread in self.threads:
            thread.start()
        return self

    def __exit__(self, *exc_info) -> None:
        self.stopped.set()
        for thread in self.threads:
            thread.join(120)

    def more(self, *, successes: int = 0, outages: int = 0):
        """A condition: every kind of request has had that many more
        successes and 503s than now."""
        with self.lock:
            start = self.successes.copy(), self.outages.copy()

        def reached() -> bool:
            with self.lock:
                return all(
                    self.successes[kind] >= start[0][kind] + successes
                    and self.outages[kind] >= start[1][kind] + outages
                    for kind in KINDS
                )

        return reached

    def _outage(self, kind: str, path: str, status, content_type, body) -> None:
        """A 503 in the right format, or a bad answer."""
        with self.lock:
            if status == 503 and path.startswith("/api/"):
                try:
                    error = json.loads(body)["error"]
                    code, message = error["code"], error["message"]
                except (ValueError, KeyError, TypeError):
                    self.bad.append(f"{path}: 503 not in the API's shape: {body!r}")
                    return
                if code not in ("unavailable", "outcome_unknown") or not message:
                    self.bad.append(f"{path}: 503 {code!r}: {message!r}")
                self.unavailable_codes[code] += 1
                self.outages[kind] += 1
            elif status == 503 and content_type.startswith("text/html"):
                if b"Temporarily unavailable" not in body:
                    self.bad.append(f"{path}: 503 page without its text: {body!r}")
                self.outages[kind] += 1
            else:
                self.bad.append(f"{path}: {status} {content_type}: {body[:500]!r}")

    def _until_answered(self, kind: str, path: str, body: dict, user: str) -> dict:
        headers = {"Authorization": f"Api-Key {self.keys[user]}"}
        while True:
            status, content_type, answer = request(
                self.port, "POST", path, body, headers
            )
            if status in (200, 201, 202):
                with self.lock:
                    self.successes[kind] += 1
                return json.loads(answer)
            self._outage(kind, path, status, content_type, answer)
            if status != 503:
                return {}
            time.sleep(0.05)

    def _orders(self, user: str, side: str) -> None:
        number = 0
        while not self.stopped.is_set():
            number += 1
            client_order_id = f"{user}-{number}"
            body = {
                "market": "BTC-USDT",
                "side": side,
                "type": "limit",
                "price": "100",
                "quantity": "0.01",
                "client_order_id": client_order_id,
            }
            told = self._until_answered("order", "/api/v1/orders/", body, user)
            if told:
                self.orders[client_order_id] = told["id"]

    def _withdrawals(self, user: str) -> None:
        number = 0
        while not self.stopped.is_set():
            number += 1
            reference = f"{user}-payout-{number}"
            body = {
                "token": "BTC",
                "amount": "0.001",
                "address": "bc1qexample",
                "reference": reference,
            }
            path = "/api/v1/withdrawals/"
            told = self._until_answered("withdrawal", path, body, user)
            if told:
                self.withdrawals[reference] = told["id"]

    def _pages(self) -> None:
        paths = ("/markets/BTC-USDT/", "/markets/", "/api/v1/markets/BTC-USDT/ticker/")
        number = 0
        while not self.stopped.is_set():
            path = paths[number % len(paths)]
            number += 1
            status, content_type, body = request(self.port, "GET", path)
            if status == 200:
                with self.lock:
                    self.successes["page"] += 1
            else:
                self._outage("page", path, status, content_type, body)
                time.sleep(0.05)


@pytest.mark.reliability("db-restart")
def test_a_postgresql_restart_under_traffic_gives_clean_503s_and_loses_nothing(
    tmp_path,
):
    with postgres_running() as server:
        server.execute("postgres", f"CREATE DATABASE {DATABASE}")
        app = App(tmp_path, server.url(DATABASE))
        migrated = app.manage("migrate", "--noinput", "--verbosity", "0")
        assert migrated.returncode == 0, migrated.stderr
        seeded = app.manage("shell", "--command", _SEED)
        assert seeded.returncode == 0, seeded.stderr
        keys = json.loads(seeded.stdout.strip().splitlines()[-1])
        try:
            app.start()
            web, matcher = app.web.pid, app.matcher.pid
            with Traffic(app.port, keys) as traffic:
                _wait(traffic.more(successes=5), "traffic flowing", app.web_log)
                for mode in ("fast", "immediate"):
                    # Down until every kind of request has met the outage.
                    server.stop(mode)
                    _wait(
                        traffic.more(outages=1),
                        f"a 503 for every kind of request ({mode})",
                        app.web_log,
                    )
                    server.start()
                    _wait(
                        traffic.more(successes=3),
                        f"recovery after the {mode} restart",
                        app.web_log,
                        app.matcher_log,
                    )
            assert traffic.bad == []
            # Recovered without a restart: the same processes.
            assert (app.web.poll(), app.matcher.poll()) == (None, None)
            assert (app.web.pid, app.matcher.pid) == (web, matcher)
            _wait(
                lambda: (
                    server.execute(
                        DATABASE, "SELECT count(*) FROM trading_ordercommand"
                    )
                    == [(0,)]
                ),
                "the matcher taking every queued order",
                app.matcher_log,
            )
            assert request(app.port, "GET", "/readyz/")[0] == 200
        finally:
            app.stop()

        assert traffic.unavailable_codes["unavailable"] > 0
        orders = server.execute(
            DATABASE, "SELECT client_order_id, id, status FROM trading_order"
        )
        by_client_id = Counter(client_order_id for client_order_id, _, _ in orders)
        assert [c for c, n in by_client_id.items() if n > 1] == []
        placed = {client_order_id: pk for client_order_id, pk, _ in orders}
        assert {c: placed.get(c) for c in traffic.orders} == traffic.orders
        assert not [o for o in orders if o[2] == "accepted"]
        withdrawals = dict(
            server.execute(DATABASE, "SELECT reference, id FROM trading_withdrawal")
        )
        assert {r: withdrawals.get(r) for r in traffic.withdrawals} == (
            traffic.withdrawals
        )
        assert server.execute(DATABASE, "SELECT count(*) FROM trading_trade")[0][0] > 0
        checked = app.manage("check_ledger")
        assert checked.returncode == 0, checked.stderr
        assert "The ledger is consistent." in checked.stdout
