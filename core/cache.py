"""Django's Redis cache, still answering while Redis is away.

Django's own ``RedisCache`` raises redis' ``ConnectionError`` from every call
while Redis is down, and nearly every request calls the cache (the log-in
throttles, cached pages): each would be a server error. This backend turns
an unreachable Redis into a degraded cache instead: a cache in the process's
memory (Django's ``LocMemCache``) takes over.
Throttles keep counting, per process instead of once for all instances;
cached pages are cached per process, as without ``REDIS_URL``.

After a failure Redis is not asked again for ``OPTIONS["retry_after"]``
seconds, so a Redis that does not answer costs each process one timeout
(``socket_timeout``) every few seconds, not one per call. Once it answers,
what it missed is repaired before anything is read from it: keys this process
deleted during the outage are deleted there, as its copies may be out of
date, and the local fallback is emptied. That repair is the process's own:
sessions and the signed API's replay check are in the database alone. What
is security-relevant here holds per process during an outage: the
throttles' counts, and allauth's marks of authenticator-app codes already
used (docs/DEPLOYMENT.md, "When Redis is down").

Only the errors that mean Redis cannot serve are caught; a wrong command
still raises. The outage and the recovery are logged once each per process
(``event="cache unreachable"``, ``event="cache reachable again"``).
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any
from urllib.parse import urlsplit

import redis
from django.core.cache.backends.base import DEFAULT_TIMEOUT, BaseCache
from django.core.cache.backends.locmem import LocMemCache
from django.core.cache.backends.redis import RedisCache as DjangoRedisCache

logger = logging.getLogger(__name__)

UNREACHABLE = (
    redis.exceptions.ConnectionError,  # refused, reset, DNS, still loading
    redis.exceptions.TimeoutError,
    redis.exceptions.ReadOnlyError,  # a replica that was promoted away
    redis.exceptions.OutOfMemoryError,  # maxmemory without an eviction policy
)
DEFAULT_RETRY_AFTER = 5.0
# Keys to delete in Redis once it is back, per process and cache; past this
# many the oldest are forgotten (and the recovery log line says how many).
MAX_STALE_KEYS = 10_000
# Entries of the local fallback before it culls (Django's default is 300).
LOCAL_MAX_ENTRIES = 10_000


class Outage:
    """One process's view of one Redis, shared by its threads: after a
    failure Redis is left alone until ``retry_at`` (by this cache, and by
    ``trading.events``' publishing)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.down = False
        self.since = 0.0
        self.retry_at = 0.0

    def begin(self, *, retry_after: float) -> bool:
        """Redis failed: leave it alone for ``retry_after`` seconds. Whether
        this starts the outage (then it is logged, once)."""
        with self.lock:
            self.retry_at = time.monotonic() + retry_after
            if self.down:
                return False
            self.down = True
            self.since = time.monotonic()
            return True

    def end(self) -> float:
        """Redis answered again: how many seconds it was down. With ``lock``
        held."""
        self.down = False
        return time.monotonic() - self.since


class _Outage(Outage):
    """One Redis cache's outage, with what is to be repaired there."""

    def __init__(self) -> None:
        super().__init__()
        self.stale: dict[str, None] = {}  # insertion-ordered set of Redis keys
        self.forgotten = 0


_outages: dict[tuple[Any, ...], _Outage] = {}
_outages_lock = threading.Lock()


def _outage_for(identity: tuple[Any, ...]) -> _Outage:
    with _outages_lock:
        return _outages.setdefault(identity, _Outage())


def _redacted(server: str) -> str:
    # Logged: never the password of a redis://:secret@host URL.
    parts = urlsplit(server)
    if not parts.hostname:
        return parts.path or "redis"
    port = f":{parts.port}" if parts.port else ""
    return f"{parts.hostname}{port}{parts.path}"


class RedisCache(DjangoRedisCache):
    """``django.core.cache.backends.redis.RedisCache`` with a fallback.

    ``OPTIONS`` takes ``retry_after`` (seconds, default 5) besides the
    redis-py connection options (set ``socket_connect_timeout`` and
    ``socket_timeout``: redis-py waits 5 seconds by default).
    """

    def __init__(self, server: str, params: dict[str, Any]) -> None:
        options = dict(params.get("OPTIONS") or {})
        self._retry_after = float(options.pop("retry_after", DEFAULT_RETRY_AFTER))
        super().__init__(server, {**params, "OPTIONS": options})
        identity = (tuple(self._servers), self.key_prefix)
        self._outage = _outage_for(identity)
        self._where = ", ".join(_redacted(s) for s in self._servers)
        # Same timeout and key making as here, so entries mean the same.
        fallback_params = {**params, "OPTIONS": {"MAX_ENTRIES": LOCAL_MAX_ENTRIES}}
        # LocMemCache keeps its entries by this name, for every thread.
        self._fallback: BaseCache = LocMemCache(
            f"core.cache:{'|'.join(map(str, identity))}", fallback_params
        )

    # --- the cache API -----------------------------------------------------

    def add(self, key, value, timeout=DEFAULT_TIMEOUT, version=None):
        return self._call("add", (), version, key, value, timeout, version)

    def get(self, key, default=None, version=None):
        return self._call("get", (), version, key, default, version)

    def set(self, key, value, timeout=DEFAULT_TIMEOUT, version=None):
        return self._call("set", (), version, key, value, timeout, version)

    def touch(self, key, timeout=DEFAULT_TIMEOUT, version=None):
        return self._call("touch", (), version, key, timeout, version)

    def delete(self, key, version=None):
        return self._call("delete", (key,), version, key, version)

    def get_many(self, keys, version=None):
        return self._call("get_many", (), version, keys, version)

    def has_key(self, key, version=None):
        return self._call("has_key", (), version, key, version)

    def incr(self, key, delta=1, version=None):
        return self._call("incr", (), version, key, delta, version)

    def set_many(self, data, timeout=DEFAULT_TIMEOUT, version=None):
        return self._call("set_many", (), version, data, timeout, version)

    def delete_many(self, keys, version=None):
        keys = list(keys)
        return self._call("delete_many", tuple(keys), version, keys, version)

    def clear(self):
        self._fallback.clear()
        return self._call("clear", (), None)

    # --- outage handling ---------------------------------------------------

    def _call(self, method: str, deleted: tuple, version, *args):
        """Run ``method`` on Redis or, while it is unreachable, on the fallback.

        ``deleted``: the keys the call deletes, to delete in Redis once it is
        back.
        """
        outage = self._outage
        if outage.down and not self._recovered():
            return self._fall_back(method, deleted, version, args)
        try:
            return getattr(super(), method)(*args)
        except UNREACHABLE as error:
            self._outage_begin(error)
            return self._fall_back(method, deleted, version, args)

    def _fall_back(self, method: str, deleted: tuple, version, args: tuple):
        if deleted:
            keys = [self.make_and_validate_key(key, version=version) for key in deleted]
            with self._outage.lock:
                stale = self._outage.stale
                for key in keys:
                    stale.pop(key, None)
                    stale[key] = None
                while len(stale) > MAX_STALE_KEYS:
                    del stale[next(iter(stale))]
                    self._outage.forgotten += 1
        return getattr(self._fallback, method)(*args)

    def _outage_begin(self, error: Exception) -> None:
        if not self._outage.begin(retry_after=self._retry_after):
            return
        logger.warning(
            "cache unreachable",
            extra={
                "cache": self._where,
                "reason": f"{type(error).__name__}: {error}",
                "retry_after": self._retry_after,
            },
        )

    def _recovered(self) -> bool:
        """Whether Redis answers again; if so, repair what it missed first.

        Tried by one thread at a time, once ``retry_after`` has passed.
        """
        outage = self._outage
        if time.monotonic() < outage.retry_at or not outage.lock.acquire(False):
            return False
        try:
            if not outage.down:
                return True
            if time.monotonic() < outage.retry_at:
                return False
            stale = list(outage.stale)
            try:
                client = self._cache.get_client(write=True)
                for start in range(0, len(stale), 1000):
                    client.delete(*stale[start : start + 1000])
                if not stale:
                    client.ping()
            except UNREACHABLE:
                outage.retry_at = time.monotonic() + self._retry_after
                return False
            for key in stale:
                outage.stale.pop(key, None)
            forgotten, outage.forgotten = outage.forgotten, 0
            seconds = outage.end()
        finally:
            outage.lock.release()
        self._fallback.clear()
        logger.warning(
            "cache reachable again",
            extra={
                "cache": self._where,
                "seconds_down": round(seconds, 1),
                "stale_keys_deleted": len(stale),
                "stale_keys_forgotten": forgotten,
            },
        )
        return True
