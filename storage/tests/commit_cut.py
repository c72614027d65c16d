"""The answer to a COMMIT lost on the way back, for real: the test's database
connection goes through a TCP proxy that forwards the COMMIT of a chosen
transaction, waits until PostgreSQL has answered it (the transaction is
committed), drops that answer and cuts the connection. The app gets an error
from its COMMIT although the row is saved: what a network cut, or a crash of
the link, right after the commit record is written looks like.

trading.tests.db_faults cannot cause it: it kills the backend before a
statement, or at COMMIT before the commit is done (nothing committed).
"""

from __future__ import annotations

import contextlib
import socket
import struct
import threading
from collections.abc import Iterator

from django.db import connection

# The requests a client may send before its startup message, answered "no"
# by the proxy itself so that the stream stays readable: SSL, GSS encryption.
_ENCRYPTION_REQUESTS = (80877103, 80877104)
_TIMEOUT = 30.0


def _read(sock: socket.socket, size: int) -> bytes:
    data = b""
    while len(data) < size:
        chunk = sock.recv(size - len(data))
        if not chunk:
            raise EOFError
        data += chunk
    return data


class CommitAnswerLost:
    """Relays connections to ``upstream``; the COMMIT of the first
    transaction that sent a statement containing ``marker`` is applied and
    its answer lost."""

    def __init__(self, upstream: tuple[str, int], marker: str) -> None:
        self.upstream = upstream
        self.marker = marker.encode()
        self.cut = threading.Event()
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        self._sockets: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def close(self) -> None:
        # shutdown, not close: only it wakes a thread blocked on the socket
        # (and so ends the relayed connection, which PostgreSQL then drops).
        for sock in [self._listener, *self._sockets]:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
        self._listener.close()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            threading.Thread(target=self._relay, args=(client,), daemon=True).start()

    def _relay(self, client: socket.socket) -> None:
        server = socket.create_connection(self.upstream, timeout=_TIMEOUT)
        server.settimeout(None)
        self._sockets += [client, server]
        answered = threading.Event()
        drop = threading.Event()
        threading.Thread(
            target=self._answers, args=(server, client, drop, answered), daemon=True
        ).start()
        try:
            self._startup(client, server)
            marked = False
            while True:
                kind = _read(client, 1)
                head = _read(client, 4)
                body = _read(client, struct.unpack("!i", head)[0] - 4)
                if kind in (b"Q", b"P") and self.marker in body:
                    marked = True
                command = body.rstrip(b"\x00").strip().upper() if kind == b"Q" else b""
                if command == b"COMMIT" and marked and not self.cut.is_set():
                    drop.set()
                    server.sendall(kind + head + body)
                    answered.wait(_TIMEOUT)
                    self.cut.set()
                    break
                if command in (b"COMMIT", b"ROLLBACK"):
                    marked = False
                server.sendall(kind + head + body)
        except (EOFError, OSError):
            pass
        for sock in (client, server):
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()

    @staticmethod
    def _startup(client: socket.socket, server: socket.socket) -> None:
        while True:
            head = _read(client, 8)
            length, code = struct.unpack("!ii", head)
            body = _read(client, length - 8)
            if code in _ENCRYPTION_REQUESTS:
                client.sendall(b"N")
                continue
            server.sendall(head + body)
            return

    @staticmethod
    def _answers(
        server: socket.socket,
        client: socket.socket,
        drop: threading.Event,
        answered: threading.Event,
    ) -> None:
        try:
            while data := server.recv(65536):
                if drop.is_set():
                    answered.set()  # PostgreSQL answered the COMMIT: committed
                    continue
                client.sendall(data)
        except OSError:
            pass
        answered.set()


@contextlib.contextmanager
def commit_answer_lost(marker: str) -> Iterator[CommitAnswerLost]:
    """The test's connection goes through a CommitAnswerLost proxy inside;
    afterwards it is closed, so the test goes on with a new, direct one."""
    settings = connection.settings_dict
    host, port = settings["HOST"], settings["PORT"]
    assert host and not host.startswith("/"), "the database must be reached by TCP"
    proxy = CommitAnswerLost((host, int(port or 5432)), marker)
    connection.close()
    settings["HOST"], settings["PORT"] = "127.0.0.1", str(proxy.port)
    try:
        yield proxy
    finally:
        connection.close()
        settings["HOST"], settings["PORT"] = host, port
        proxy.close()
    assert proxy.cut.is_set(), f"no COMMIT after {marker!r}: nothing was cut"
