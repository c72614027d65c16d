"""`make run`, the README's first command, as a newcomer runs it: in a copy
of the checkout with nothing set up but the virtualenv, every process of the
Procfile comes up on the ports given to make, the matcher answers an order
placed on the web, the live stream and the demo's images are served, and
Ctrl-C, a closed terminal or a SIGTERM to make stops everything."""

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

from core.tests.processes import free_port
from tests.checkout import (
    answers,
    clean_environment,
    copy_checkout,
    kill_processes_in,
    processes_in,
)

START_TIMEOUT = 240.0  # migrate and seed_demo on a new SQLite database
STOP_TIMEOUT = 30.0
MAKE = shutil.which("make")


def _listening(port: int) -> bool:
    with socket.socket() as probe:
        return probe.connect_ex(("127.0.0.1", port)) == 0


@pytest.fixture(scope="module")
def checkout(tmp_path_factory) -> Path:
    """One copy for the module's runs: the first migrates and seeds it, the
    next ones start sooner."""
    return copy_checkout(tmp_path_factory.mktemp("make-run") / "checkout")


@pytest.fixture(scope="module")
def ports() -> dict[str, int]:
    """Free ports for `make run`'s web server, stream and Redis (8000, 8001
    and 6380 may be another project's)."""
    names = ("WEB_PORT", "STREAM_PORT", "DEV_REDIS_PORT")
    chosen: set[int] = set()
    while len(chosen) < len(names):
        chosen.add(free_port())
    return dict(zip(names, sorted(chosen), strict=True))


@pytest.fixture
def make_run(checkout, ports, tmp_path):
    log_path = tmp_path / "make-run.log"
    env = clean_environment(tmp_path)
    web, stream = _url(ports["WEB_PORT"]), _url(ports["STREAM_PORT"])
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [MAKE, "run", *(f"{name}={port}" for name, port in ports.items())],
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
        while not answers(f"{web}/healthz/") or not answers(f"{stream}/healthz/"):
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


def _url(port: int) -> str:
    return f"http://127.0.0.1:{port}"


def _left_running(checkout: Path, ports: dict[str, int]) -> tuple[dict, list]:
    """The processes still running in the checkout and the ports still
    listening, once the run had a few seconds to stop them."""
    deadline = time.monotonic() + STOP_TIMEOUT
    while True:
        processes = processes_in(checkout)
        listening = [port for port in ports.values() if _listening(port)]
        if not (processes or listening) or time.monotonic() > deadline:
            return processes, listening
        time.sleep(0.5)


def _tail(log_path: Path) -> str:
    return log_path.read_text(errors="replace")[-4000:]


def _csrf(page: str) -> str:
    return re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page)[1]


def test_make_run_serves_the_demo_with_its_matcher_and_stops_on_ctrl_c(
    make_run, checkout, ports
):
    web = _url(ports["WEB_PORT"])
    browser = requests.Session()
    browser.headers["Origin"] = web  # as a browser sends with a form
    login = browser.get(f"{web}/accounts/login/").text
    browser.post(
        f"{web}/accounts/login/",
        {
            "login": "demo",
            "password": "demo-pass-2026",
            "csrfmiddlewaretoken": _csrf(login),
        },
    )
    market = browser.get(f"{web}/markets/BTC-USDT/").text
    client_order_id = re.search(r'name="client_order_id" value="([^"]+)"', market)
    stream = browser.head(re.search(r'data-stream-url="([^"]+)"', market)[1])
    placed = browser.post(
        f"{web}/markets/BTC-USDT/orders/",
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
    tokens = browser.get(f"{web}/tokens/").text
    logo = re.search(r'<img[^>]* src="(/media/token_logo/[^"]+)"', tokens)[1]
    logo_answer = browser.get(f"{web}{logo}")

    # The matcher process took the order: the page tells its result, not
    # "waiting for the matcher".
    assert "Buy 0.01 BTC: placed (0 filled so far)." in placed.text
    assert (logo_answer.status_code, logo_answer.headers["Content-Type"]) == (
        200,
        "image/png",
    )
    # The page's stream is on the stream's port, and lets the page read it.
    assert stream.url.startswith(f"{_url(ports['STREAM_PORT'])}/")
    assert (stream.status_code, stream.headers["Access-Control-Allow-Origin"]) == (
        200,
        web,
    )

    os.killpg(make_run.pid, signal.SIGINT)  # Ctrl-C reaches the whole group
    make_run.wait(timeout=STOP_TIMEOUT)

    assert _left_running(checkout, ports) == ({}, [])
    assert "Traceback" not in make_run.log_path.read_text(errors="replace")


@pytest.mark.parametrize(
    "stop",
    [
        # A closed terminal (or a dropped ssh): SIGHUP to the whole group.
        pytest.param(lambda pid: os.killpg(pid, signal.SIGHUP), id="terminal-closed"),
        # An IDE's stop button, `timeout make run`: SIGTERM to make alone.
        pytest.param(lambda pid: os.kill(pid, signal.SIGTERM), id="make-terminated"),
    ],
)
def test_make_run_leaves_no_process_and_frees_its_ports_when_stopped(
    make_run, checkout, ports, stop
):
    stop(make_run.pid)
    make_run.wait(timeout=STOP_TIMEOUT)

    assert _left_running(checkout, ports) == ({}, []), _tail(make_run.log_path)


def test_make_run_fails_and_stops_the_rest_when_one_of_its_processes_dies(
    make_run, checkout, ports
):
    redis = next(
        pid
        for pid, command in processes_in(checkout).items()
        if command.startswith("redis-server")
    )

    os.kill(redis, signal.SIGKILL)
    make_run.wait(timeout=STOP_TIMEOUT)

    assert make_run.returncode == 2  # make's "recipe failed"
    assert _left_running(checkout, ports) == ({}, [])
