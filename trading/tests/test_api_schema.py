"""The API and its published schema agree: schemathesis runs every check
(trading/tests/schemathesis.toml says which exceptions, and why) against
/api/schema/ of the app as it is served, gunicorn with gunicorn.conf.py and
DEBUG off, with its order matcher (``manage.py run_matcher``), on a seeded
exchange, with an API key that trades and withdraws."""

from __future__ import annotations

import os
import signal
import socket
import sqlite3
import subprocess
import sys
import time
import urllib.request
from contextlib import ExitStack, contextmanager
from pathlib import Path

import pytest
from django.db import connection

from core.tests.processes import free_port, plain_static_root
from tests.factories import buy, fund, market_make, sell, token_make, user_make
from trading.api_keys import api_key_create

pytestmark = pytest.mark.django_db(transaction=True)

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
CONFIG = Path(__file__).with_name("schemathesis.toml")
# Bounds of the run: examples per operation, and seconds for the whole run
# (its fuzzing and stateful phases go on until the time is spent).
MAX_EXAMPLES = 50
MAX_SECONDS = 90
SEED = 2026


def _database_url(directory: Path) -> str:
    """The test's database as the app's processes reach it. PostgreSQL's test
    database is shared as it is; SQLite's lives in this process's memory, so
    the app gets a copy of it in a file."""
    settings = connection.settings_dict
    if connection.vendor == "postgresql":
        password = f":{settings['PASSWORD']}" if settings["PASSWORD"] else ""
        return (
            f"postgres://{settings['USER']}{password}@"
            f"{settings['HOST'] or '127.0.0.1'}:{settings['PORT'] or 5432}/"
            f"{settings['NAME']}"
        )
    path = directory / "db.sqlite3"
    connection.ensure_connection()
    with sqlite3.connect(path) as copy:
        connection.connection.backup(copy)
    copy.close()
    return f"sqlite:///{path}"


def _app_environment(directory: Path) -> dict[str, str]:
    # The HTML 404 page of a path outside the API renders with DEBUG off.
    static_root = plain_static_root(directory)
    return {
        "PATH": os.environ.get("PATH", ""),
        "HOME": str(directory),
        "PYTHONPATH": str(ROOT),
        "ENV_FILE": "/dev/null",
        "DEBUG": "false",
        "SECRET_KEY": "a-test-secret-key-of-the-schema-test-7d41c9",
        "PLAIN_HTTP": "true",
        "ALLOWED_HOSTS": "127.0.0.1",
        "STATIC_ROOT": str(static_root),
        "MEDIA_ROOT": str(directory / "media"),
        "PRIVATE_MEDIA_ROOT": str(directory / "private_media"),
        "DATABASE_URL": _database_url(directory),
        "WEB_CONCURRENCY": "2",
        # The notices of the run's withdrawals, as files rather than the log.
        # django-environ drops the first slash after the scheme's two.
        "EMAIL_URL": f"filemail:///{directory / 'mail'}",
        # Thousands of requests by one user and one address in a minute or two:
        # the rate limits would answer some 429 on a faster machine.
        "API_THROTTLE_USER": "100000/minute",
        "API_THROTTLE_ANON": "100000/minute",
    }


@contextmanager
def _process(command: list[str], *, env: dict[str, str], log: Path):
    with log.open("w") as output:
        process = subprocess.Popen(
            command, cwd=ROOT, env=env, stdout=output, stderr=subprocess.STDOUT
        )
    try:
        yield process
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=40)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _wait_listening(process: subprocess.Popen, port: int, log: Path) -> None:
    deadline = time.monotonic() + 60
    while True:
        if process.poll() is not None:
            raise AssertionError(f"gunicorn exited:\n{log.read_text()}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return
        except OSError:
            if time.monotonic() > deadline:
                message = f"gunicorn did not listen:\n{log.read_text()}"
                raise AssertionError(message) from None
            time.sleep(0.2)


def _app_errors(log: Path) -> str:
    """The app's log without its access lines and the warnings of every 4xx
    answer: what is left are tracebacks and errors."""
    lines = log.read_text(errors="replace").splitlines()
    kept = [
        line
        for line in lines
        if not line.startswith("remote=")
        and "level=warning logger=django.request" not in line
    ]
    return "\n".join(kept)[-8000:]


def _seed_exchange() -> str:
    """A market with a resting book and a verified, funded user; returns an
    API key of that user that reads, trades and withdraws (from loopback)."""
    btc, usdt = token_make("BTC", decimals=8), token_make("USDT", decimals=6)
    market = market_make(btc, usdt)
    maker, fuzzer = user_make("maker"), user_make("fuzzer")
    for user in (maker, fuzzer):
        fund(user, btc, "100")
        fund(user, usdt, "1000000")
    for step in range(5):
        buy(maker, market, "0.5", str(100 - step))
        sell(maker, market, "0.5", str(110 + step))
    # The run cannot revoke this key: revoking is the profile page's (a
    # signed-in browser's form, /api/keys/...), not an operation of the API.
    _, key = api_key_create(
        user=fuzzer,
        name="schemathesis",
        scopes=["trade", "withdraw"],
        allowed_ips="127.0.0.1",
    )
    return key


@pytest.mark.reliability("api-fuzzing")
def test_the_api_answers_as_its_published_schema_says(tmp_path):
    key = _seed_exchange()
    env = _app_environment(tmp_path)
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    web_log, matcher_log = tmp_path / "gunicorn.log", tmp_path / "matcher.log"

    with ExitStack() as running:
        web = running.enter_context(
            _process(
                [
                    str(BIN / "gunicorn"),
                    "--config",
                    "gunicorn.conf.py",
                    "--bind",
                    f"127.0.0.1:{port}",
                    "crypto_exchange.wsgi:application",
                ],
                env=env,
                log=web_log,
            )
        )
        running.enter_context(
            _process(
                [sys.executable, "manage.py", "run_matcher"],
                env=env,
                log=matcher_log,
            )
        )
        _wait_listening(web, port, web_log)
        run = subprocess.run(
            [
                str(BIN / "st"),
                "--config-file",
                str(CONFIG),
                "--no-color",
                "run",
                f"{base}/api/schema/",
                "--header",
                f"Authorization: Api-Key {key}",
                "--max-examples",
                str(MAX_EXAMPLES),
                "--max-time",
                str(MAX_SECONDS),
                "--seed",
                str(SEED),
                "--workers",
                "1",
            ],
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=MAX_SECONDS + 180,
        )
        assert run.returncode == 0, (
            f"schemathesis found problems (exit {run.returncode}):\n"
            f"{run.stdout}\n{run.stderr}\n"
            f"--- the app's log, access lines left out ---\n{_app_errors(web_log)}"
        )
        still_usable = urllib.request.Request(
            f"{base}/api/v1/balances/", headers={"Authorization": f"Api-Key {key}"}
        )
        with urllib.request.urlopen(still_usable, timeout=10) as response:
            assert response.status == 200

    # Whatever the run placed, cancelled or withdrew, the books still balance.
    ledger = subprocess.run(
        [sys.executable, "manage.py", "check_ledger"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert ledger.returncode == 0, ledger.stdout + ledger.stderr
