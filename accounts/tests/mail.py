"""The mail server gone or silent, for real: mail goes to a loopback port
where nothing listens, or where connections are taken and never answered;
and what the app logs about the mails it lost."""

from __future__ import annotations

import logging
import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager

from django.core.cache import cache

from accounts.adapter import MAIL_SERVER_DOWN_KEY


def mail_server_back() -> None:
    """The mail server is back and its rest is over: the next mail is tried
    (``MAIL_SERVER_REST_SECONDS``, accounts.adapter)."""
    cache.delete(MAIL_SERVER_DOWN_KEY)


@contextmanager
def mail_server_down(settings) -> Iterator[None]:
    """Inside the block, every mail goes to a loopback port that was bound and
    closed: the connection is refused, as with the mail server down. The
    other mail settings stay as they are (the ``smtp_server`` fixture's);
    after it, the server is back (``mail_server_back``)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        closed_port = probe.getsockname()[1]
    working_port = settings.EMAIL_PORT
    settings.EMAIL_PORT = closed_port
    try:
        yield
    finally:
        settings.EMAIL_PORT = working_port
        mail_server_back()


@contextmanager
def mail_server_silent(settings) -> Iterator[list]:
    """Inside the block, every mail goes to a loopback port that takes the
    connection and never answers (a hung mail server), and the app waits
    ``EMAIL_TIMEOUT`` (1 s) for it. Yields the connections taken, so far;
    after it, the server is back (``mail_server_back``)."""
    taken: list[socket.socket] = []
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(0.2)
    stopping = threading.Event()

    def take() -> None:
        while not stopping.is_set():
            try:
                taken.append(listener.accept()[0])
            except TimeoutError:
                continue

    taking = threading.Thread(target=take)
    taking.start()
    working = settings.EMAIL_PORT, settings.EMAIL_TIMEOUT
    settings.EMAIL_PORT, settings.EMAIL_TIMEOUT = listener.getsockname()[1], 1
    try:
        yield taken
    finally:
        settings.EMAIL_PORT, settings.EMAIL_TIMEOUT = working
        mail_server_back()
        stopping.set()
        taking.join()
        for connection in [*taken, listener]:
            connection.close()


def lost_notices(caplog) -> list[tuple[int | None, str]]:
    """(user id, template) of every ``notice lost`` logged at ERROR."""
    return [
        (record.user, record.notice)
        for record in caplog.records
        if record.levelno == logging.ERROR and record.getMessage() == "notice lost"
    ]
