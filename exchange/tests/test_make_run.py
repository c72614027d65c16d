"""`make run`, the README's first command, as a newcomer runs it: in a copy
of the checkout with nothing set up but the virtualenv, every process of the
Procfile comes up, the matcher answers an order placed on the web, the live
stream and the demo's images are served, and Ctrl-C stops everything."""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

import pytest
import requests

from tests.checkout import (
    answers,
    clean_environment,
    copy_checkout,
    kill_processes_in,
)

WEB, STREAM = "http://127.0.0.1:8000", "http://127.0.0.1:8001"
PORTS = (8000, 8001, 6380)  # the Procfile's web, stream and Redis
START_TIMEOUT = 240.0  # migrate and seed_demo on a new SQLite database
STOP_TIMEOUT = 30.0
MAKE = shutil.which("make")


def _listening(port: int) -> bool:
    with socket.socket() as probe:
        return probe.connect_ex(("127.0.0.1", port)) == 0


@pytest.fixture
def make_run(tmp_path):
    taken = [port for port in PORTS if _listening(port)]
    assert not taken, f"`make run` needs ports {PORTS}; {taken} are taken"
    checkout = copy_checkout(tmp_path / "checkout")
    log_path = tmp_path / "make-run.log"
    env = clean_environment(tmp_path)
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [MAKE, "run"],
            cwd=checkout,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group, as in a terminal
        )
    process.log_path = log_path
    try:
        deadline = time.monotonic() + START_TIMEOUT
        while not answers(f"{WEB}/healthz/") or not answers(f"{STREAM}/healthz/"):
            if process.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"`make run` did not come up:\n{_tail(log_path)}")
            time.sleep(0.5)
        yield process
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGTERM)  # honcho stops its processes
            try:
                process.wait(timeout=STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()
        kill_processes_in(checkout)


def _tail(log_path: Path) -> str:
    return log_path.read_text(errors="replace")[-4000:]


def _csrf(page: str) -> str:
    return re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page)[1]


def test_make_run_serves_the_demo_with_its_matcher_and_stops_on_ctrl_c(make_run):
    browser = requests.Session()
    browser.headers["Origin"] = WEB  # as a browser sends with a form
    login = browser.get(f"{WEB}/accounts/login/").text
    browser.post(
        f"{WEB}/accounts/login/",
        {
            "login": "demo",
            "password": "demo-pass-2026",
            "csrfmiddlewaretoken": _csrf(login),
        },
    )
    market = browser.get(f"{WEB}/markets/BTC-USDT/").text
    client_order_id = re.search(r'name="client_order_id" value="([^"]+)"', market)
    placed = browser.post(
        f"{WEB}/markets/BTC-USDT/orders/",
        {
            "side": "buy",
            "type": "limit",
            "price": "1000",
            "quantity": "0.01",
            "time_in_force": "GTC",
            "client_order_id": client_order_id[1],
            "csrfmiddlewaretoken": _csrf(market),
        },
    )
    tokens = browser.get(f"{WEB}/tokens/").text
    logo = re.search(r'<img[^>]* src="(/media/token_logo/[^"]+)"', tokens)[1]
    logo_answer = browser.get(f"{WEB}{logo}")

    # The matcher process took the order: the page tells its result, not
    # "waiting for the matcher".
    assert "Buy 0.01 BTC: placed (0 filled so far)." in placed.text
    assert (logo_answer.status_code, logo_answer.headers["Content-Type"]) == (
        200,
        "image/png",
    )

    os.killpg(make_run.pid, signal.SIGINT)  # Ctrl-C reaches the whole group
    make_run.wait(timeout=STOP_TIMEOUT)

    assert [port for port in PORTS if _listening(port)] == []
    assert "Traceback" not in make_run.log_path.read_text(errors="replace")
