"""The stream's real parts for tests: uvicorn serving the project's ASGI
application on a free loopback port (in a thread of the test process, so it
reads the test's database), and a Server-Sent Events client on a socket."""

from __future__ import annotations

import asyncio
import http.client
import json
import socket
import threading
import time
from dataclasses import dataclass

from core.tests.processes import free_port


class StreamServer:
    """``uvicorn`` as ``make run`` and docker-compose.yml start it; on
    ``port`` when given (the one of a server stopped, as a deploy does)."""

    def __init__(self, *, port: int | None = None) -> None:
        import uvicorn

        from crypto_exchange.asgi import application

        self.port = port or free_port()
        self.server = uvicorn.Server(
            uvicorn.Config(
                application,
                host="127.0.0.1",
                port=self.port,
                loop="uvloop",
                http="httptools",
                lifespan="off",
                log_level="warning",
                timeout_graceful_shutdown=1,
            )
        )
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    @property
    def origin(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        self.thread.start()
        deadline = time.monotonic() + 10
        while not self.server.started:
            assert self.thread.is_alive(), "uvicorn stopped while starting"
            assert time.monotonic() < deadline, "uvicorn did not start"
            time.sleep(0.01)

    def stop(self) -> None:
        from asgiref.sync import sync_to_async
        from django.db import connections

        from trading.live import readers_stop

        self.server.should_exit = True
        self.thread.join(10)
        readers_stop()
        # The thread streams' requests share (crypto_exchange.asgi) keeps its
        # connection, which would keep the test database from being dropped.
        # From a thread of its own: the test's may run an event loop (a
        # browser test's Playwright).
        closer = threading.Thread(
            target=asyncio.run, args=(sync_to_async(connections.close_all)(),)
        )
        closer.start()
        closer.join(10)


@dataclass
class Event:
    id: str | None
    event: str
    data: dict


class SseClient:
    """One ``GET`` of a stream, its events read one by one."""

    def __init__(
        self,
        port: int,
        path: str,
        *,
        headers: dict[str, str] | None = None,
        timeout: float = 10,
        receive_buffer: int | None = None,
    ) -> None:
        self.connection = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
        if receive_buffer is not None:
            # A client that reads slowly: the kernel holds little for it.
            self.connection.connect()
            self.connection.sock.setsockopt(
                socket.SOL_SOCKET, socket.SO_RCVBUF, receive_buffer
            )
        self.connection.request("GET", path, headers=headers or {})
        self.response = self.connection.getresponse()
        self.last_id: str | None = None

    @property
    def status(self) -> int:
        return self.response.status

    def json(self) -> dict:
        return json.loads(self.response.read())

    def next(self, *, deadline: float | None = None) -> Event | None:
        """The next event (comments skipped); None when the stream ended.
        Raises ``TimeoutError`` past ``deadline`` (``time.monotonic()``),
        which comment lines alone never reach otherwise."""
        fields: dict[str, str] = {}
        while True:
            if deadline is not None and time.monotonic() > deadline:
                raise TimeoutError("the stream goes on past its deadline")
            line = self.response.readline()
            if not line:
                return None
            line = line.decode().rstrip("\n")
            if not line:
                if "data" in fields or "event" in fields:
                    if "id" in fields:
                        self.last_id = fields["id"]
                    return Event(
                        fields.get("id"),
                        fields.get("event", "message"),
                        json.loads(fields.get("data", "null")),
                    )
                fields = {}
                continue
            if line.startswith(":"):
                continue
            name, _, value = line.partition(":")
            fields[name] = value.removeprefix(" ")

    def until(self, kind: str, predicate=lambda data: True) -> Event:
        """Read on until an event ``kind`` whose data satisfies ``predicate``."""
        seen = []
        while True:
            event = self.next()
            assert event is not None, f"the stream ended before {kind}: {seen}"
            seen.append(event.event)
            if event.event == kind and predicate(event.data):
                return event

    def close(self) -> None:
        self.connection.close()
