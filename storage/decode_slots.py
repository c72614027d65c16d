"""At most ``IMAGE_DECODE_SLOTS`` images decoded at once on this host.

Decoding an accepted image still costs up to ~0.4 s of CPU and 64 MiB; the
per-user throttle bounds how often one account may do it, not how many
accounts do it at the same moment. Every decode first takes one of N slots:
a file in ``IMAGE_DECODE_SLOTS_DIR`` locked with ``flock``, shared by every
worker process of the host (and every thread: each attempt opens its own
descriptor). The kernel drops the lock when the descriptor is closed or the
process dies, so a killed worker never keeps a slot. An upload that finds no
free slot within ``WAIT_SECONDS`` is refused at once rather than queued, so
no worker waits behind a pile of decodes.
"""

from __future__ import annotations

import fcntl
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from django.conf import settings

from storage.exceptions import ImageDecodersBusy

# Long enough to ride out a few small images decoded before this one (~10-20
# ms each), short enough that a refused upload costs its worker little.
WAIT_SECONDS = 0.2
_POLL_SECONDS = 0.01


@contextmanager
def image_decode_slot() -> Iterator[None]:
    """Hold a decode slot for the block; raise ImageDecodersBusy if none frees
    up within ``WAIT_SECONDS``."""
    descriptor = _slot_take(deadline=time.monotonic() + WAIT_SECONDS)
    try:
        yield
    finally:
        os.close(descriptor)  # releases the lock


def _slot_take(*, deadline: float) -> int:
    directory = Path(settings.IMAGE_DECODE_SLOTS_DIR)
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    # Start at a slot that differs per process, so that workers do not all
    # contend for slot 0 first.
    count = settings.IMAGE_DECODE_SLOTS
    first = os.getpid() % count
    while True:
        for offset in range(count):
            path = directory / f"slot-{(first + offset) % count}"
            descriptor = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
            try:
                fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(descriptor)
                continue
            return descriptor
        if time.monotonic() >= deadline:
            raise ImageDecodersBusy()
        time.sleep(_POLL_SECONDS)
