"""The mail server gone, for real: mail goes to a loopback port where nothing
listens, and what the app logs about the mails it lost."""

from __future__ import annotations

import logging
import socket
from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def mail_server_down(settings) -> Iterator[None]:
    """Inside the block, every mail goes to a loopback port that was bound and
    closed: the connection is refused, as with the mail server down. The
    other mail settings stay as they are (the ``smtp_server`` fixture's)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        closed_port = probe.getsockname()[1]
    working_port = settings.EMAIL_PORT
    settings.EMAIL_PORT = closed_port
    try:
        yield
    finally:
        settings.EMAIL_PORT = working_port


def lost_notices(caplog) -> list[tuple[int | None, str]]:
    """(user id, template) of every ``notice lost`` logged at ERROR."""
    return [
        (record.user, record.notice)
        for record in caplog.records
        if record.levelno == logging.ERROR and record.getMessage() == "notice lost"
    ]
