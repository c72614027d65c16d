"""A PostgreSQL cluster of the test's own (``initdb`` in a temporary folder,
on a free 127.0.0.1 port, its sockets in that folder), that the test stops
and starts again; never the machine's shared server.

initdb and postgres refuse to run as root: when the tests do, the cluster
runs as the ``postgres`` system user (the Debian package's). The server is a
child of the test, in the foreground, so that it dies with the test even
if pytest is killed outright; a restart is what ``pg_ctl restart -m fast``
(SIGINT) or ``-m immediate`` (SIGQUIT, then crash recovery) does.
"""

from __future__ import annotations

import contextlib
import functools
import glob
import os
import pwd
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from core.tests.processes import free_port
from scripts.processes import die_with_parent

START_TIMEOUT = 60.0
STOP_SIGNALS = {
    "smart": signal.SIGTERM,
    "fast": signal.SIGINT,
    "immediate": signal.SIGQUIT,
}


def postgres_bindir() -> Path:
    """Where initdb and postgres are: Debian keeps them out of PATH."""
    found = shutil.which("initdb")
    if found:
        return Path(os.path.realpath(found)).parent
    versions = sorted(
        glob.glob("/usr/lib/postgresql/*/bin/initdb"),
        key=lambda path: int(Path(path).parts[-3]),
    )
    if not versions:
        pytest.fail("PostgreSQL's server binaries are missing: make test installs them")
    return Path(versions[-1]).parent


class PostgresServer:
    def __init__(self) -> None:
        self.bindir = postgres_bindir()
        self.port = free_port()
        # Not under pytest's tmp_path: as root that is private to root, and
        # the server's user must reach its folder.
        self.directory = Path(tempfile.mkdtemp(prefix="test-postgres-"))
        self.data = self.directory / "data"
        self.log = self.directory / "postgres.log"
        self.process: subprocess.Popen | None = None
        self._user: dict = {}
        if os.geteuid() == 0:
            account = pwd.getpwnam("postgres")
            os.chown(self.directory, account.pw_uid, account.pw_gid)
            self._user = {"user": account.pw_uid, "group": account.pw_gid}

    def url(self, database: str) -> str:
        return f"postgres://postgres@127.0.0.1:{self.port}/{database}"

    def initdb(self) -> None:
        subprocess.run(
            [
                str(self.bindir / "initdb"),
                *("-D", str(self.data)),
                *("-U", "postgres", "-A", "trust", "-E", "UTF8", "--locale=C"),
                "--no-sync",
            ],
            check=True,
            capture_output=True,
            **self._user,
        )

    def start(self) -> None:
        log = self.log.open("ab")
        self.process = subprocess.Popen(
            [
                str(self.bindir / "postgres"),
                *("-D", str(self.data)),
                *("-p", str(self.port)),
                *("-c", "listen_addresses=127.0.0.1"),
                *("-k", str(self.directory)),
                # A throwaway cluster: nothing must survive the machine.
                *("-c", "fsync=off", "-c", "full_page_writes=off"),
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            # Set after the child took the postgres user's identity: should
            # pytest be killed outright, the server shuts down immediately.
            preexec_fn=functools.partial(die_with_parent, signal.SIGQUIT),
            **self._user,
        )
        log.close()
        self._ready_wait()

    def _ready_wait(self) -> None:
        import psycopg

        deadline = time.monotonic() + START_TIMEOUT
        while True:
            if self.process.poll() is not None:
                pytest.fail(f"postgres exited:\n{self.log_tail()}")
            try:
                psycopg.connect(self.url("postgres"), connect_timeout=2).close()
                return
            except psycopg.OperationalError:
                if time.monotonic() > deadline:
                    pytest.fail(f"postgres did not start:\n{self.log_tail()}")
                time.sleep(0.05)

    def stop(self, mode: str = "fast") -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal(STOP_SIGNALS[mode])
        try:
            self.process.wait(30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(10)

    def restart(self, mode: str = "fast") -> None:
        """``pg_ctl restart -m <mode>``: every connection is cut."""
        self.stop(mode)
        self.start()

    def execute(self, database: str, sql: str, params=()) -> list[tuple]:
        import psycopg

        with psycopg.connect(self.url(database), autocommit=True) as connection:
            cursor = connection.execute(sql, params)
            return cursor.fetchall() if cursor.description else []

    def log_tail(self) -> str:
        if not self.log.exists():
            return ""
        return self.log.read_text(errors="replace")[-3000:]

    def remove(self) -> None:
        self.stop("immediate")
        shutil.rmtree(self.directory, ignore_errors=True)


@contextlib.contextmanager
def postgres_running() -> Iterator[PostgresServer]:
    """A new cluster, started; stopped and deleted at the end, whatever
    happens."""
    server = PostgresServer()
    try:
        server.initdb()
        server.start()
        yield server
    finally:
        server.remove()
