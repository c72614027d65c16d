"""Cached entries made stale all at once by a version: readers cache under the
version stored at a key, writers replace it (``cache_version_replace``), and
entries under an older version are never read again, simply expiring."""

from __future__ import annotations

import uuid

from django.core.cache import cache
from django.db import transaction


def cache_version(*, key: str) -> str:
    """The version stored at ``key``, a new one if there is none. Random, so
    that a version deleted and made again never matches an older one."""
    return cache.get_or_set(key, lambda: uuid.uuid4().hex, None)


def cache_version_replace(*, key: str) -> None:
    """Make what is cached under the version at ``key`` stale, now and again
    once the current transaction commits: a read on another connection in
    between still sees the rows as they were, and would cache them under the
    version made meanwhile."""
    cache.delete(key)
    transaction.on_commit(lambda: cache.delete(key))
