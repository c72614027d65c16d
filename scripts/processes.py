"""Servers run as child processes: started, waited for, stopped, on free
loopback ports. Used by the loopback topology (``scripts/topology``), its
tests and the benchmarks; a child outlives no killed parent."""

from __future__ import annotations

import ctypes
import signal
import socket
import subprocess
import time
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parents[1]
LOOPBACK = "127.0.0.1"
READY_TIMEOUT = 90.0
STOP_TIMEOUT = 40.0  # gunicorn's graceful_timeout is 25 s

_prctl = ctypes.CDLL(None, use_errno=True).prctl


class ServerError(RuntimeError):
    """A server could not start, or stopped by itself."""


def die_with_parent(sig: int = signal.SIGTERM) -> None:
    """For ``preexec_fn`` (``functools.partial`` for another signal): if the
    parent is killed outright, the kernel sends the child ``sig``
    (PR_SET_PDEATHSIG). A change of user identity clears the setting; a
    ``preexec_fn`` runs after ``Popen(user=...)`` has made it."""
    _prctl(1, sig)


def spawn(command: list[str], *, env: dict[str, str], log_path: Path):
    """``command`` in the checkout, its output appended to ``log_path``."""
    with log_path.open("ab") as log:
        return subprocess.Popen(
            command,
            cwd=ROOT,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # Ctrl-C reaches the parent only
            preexec_fn=die_with_parent,  # nothing spawns while threads run
        )


def run(command: list[str], *, env: dict[str, str], timeout: float = 600) -> str:
    """``command`` in the checkout, to its end: its output, or ServerError
    with its error output."""
    result = subprocess.run(
        command,
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        preexec_fn=die_with_parent,
    )
    if result.returncode != 0:
        shown = " ".join([Path(command[0]).name, *command[1:]])
        raise ServerError(f"`{shown}`: {result.stderr}")
    return result.stdout


def terminate(process: subprocess.Popen | None, sig: int = signal.SIGTERM) -> None:
    """``sig``, then SIGKILL after STOP_TIMEOUT; nothing if already ended."""
    if process is None or process.poll() is not None:
        return
    process.send_signal(sig)
    try:
        process.wait(timeout=STOP_TIMEOUT)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=10)


def _status(port: int, path: str) -> int | None:
    try:
        return requests.get(f"http://{LOOPBACK}:{port}{path}", timeout=5).status_code
    except requests.RequestException:
        return None


def wait_ready(process: subprocess.Popen, port: int, path: str, log: Path) -> None:
    """Until ``path`` on ``port`` answers 200; ServerError with the log's end
    if the process ends first or READY_TIMEOUT passes."""
    deadline = time.monotonic() + READY_TIMEOUT
    while _status(port, path) != 200:
        if process.poll() is not None or time.monotonic() > deadline:
            tail = log.read_text(errors="replace")[-3000:] if log.exists() else ""
            raise ServerError(f"{process.args[:3]} not ready on {port}:\n{tail}")
        time.sleep(0.1)


def free_port() -> int:
    """A TCP port free on 127.0.0.1 now."""
    with socket.socket() as probe:
        probe.bind((LOOPBACK, 0))
        return probe.getsockname()[1]


def free_ports(count: int) -> list[int]:
    """``count`` distinct such ports, in order."""
    ports: set[int] = set()
    while len(ports) < count:
        ports.add(free_port())
    return sorted(ports)
