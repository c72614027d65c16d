"""core.cache against a real Redis server that the tests kill, pause and
start again (core.tests.redis_server)."""

from __future__ import annotations

import logging
import time

import pytest
import redis

from core.cache import RedisCache

RETRY_AFTER = 0.3
TIMEOUT = 0.3


def cache_for(server, *, prefix: str = "test") -> RedisCache:
    return RedisCache(
        server.url,
        {
            "KEY_PREFIX": prefix,
            "OPTIONS": {
                "retry_after": RETRY_AFTER,
                "socket_connect_timeout": TIMEOUT,
                "socket_timeout": TIMEOUT,
            },
        },
    )


def redis_keys(server) -> set[str]:
    with server.client() as client:
        return {key.decode() for key in client.keys("*")}


def after_retry() -> None:
    time.sleep(RETRY_AFTER + 0.1)


@pytest.mark.reliability("redis-down")
def test_a_killed_redis_is_replaced_by_process_memory_then_used_again(
    redis_server, caplog
):
    cache = cache_for(redis_server, prefix="killed")
    cache.set("before", 1)
    caplog.set_level(logging.WARNING, logger="core.cache")

    redis_server.kill()
    missed = cache.get("before")
    cache.set("counter", 1)
    cache.incr("counter")
    first_lock, second_lock = cache.add("lock", 1), cache.add("lock", 1)

    assert missed is None
    assert cache.get("counter") == 2
    assert (first_lock, second_lock) == (True, False)

    redis_server.start()  # empty: it keeps nothing on disk
    after_retry()
    cache.set("after", 3)

    assert redis_keys(redis_server) == {"killed:1:after"}
    assert cache.get("counter") is None  # the process's copy was dropped
    events = [record.getMessage() for record in caplog.records]
    assert events == ["cache unreachable", "cache reachable again"]


@pytest.mark.reliability("redis-down")
def test_a_paused_redis_costs_one_timeout_per_retry_period_not_one_per_call(
    redis_server,
):
    cache = cache_for(redis_server, prefix="paused")
    cache.set("warm", 1)  # the connection is open before the pause

    redis_server.pause()
    try:
        started = time.monotonic()
        cache.get("warm")
        first = time.monotonic() - started
        started = time.monotonic()
        for number in range(200):
            cache.set(f"key-{number}", number)
            cache.get(f"key-{number}")
        following = time.monotonic() - started
    finally:
        redis_server.resume()

    assert TIMEOUT * 0.9 <= first < TIMEOUT + 1.0
    assert following < RETRY_AFTER


@pytest.mark.reliability("redis-down")
def test_a_key_deleted_while_redis_was_unreachable_is_deleted_there_once_back(
    redis_server,
):
    # A pause keeps Redis' data, as a network partition would: its copy of a
    # key deleted meanwhile must not be read again.
    cache = cache_for(redis_server, prefix="paused")
    cache.set_many({"ended": "old data", "kept": "other"})

    redis_server.pause()
    try:
        cache.delete("ended")
    finally:
        redis_server.resume()
    after_retry()

    assert cache.get("ended") is None
    assert cache.get("kept") == "other"
    assert redis_keys(redis_server) == {"paused:1:kept"}


def test_a_wrong_command_still_raises(redis_server):
    cache = cache_for(redis_server, prefix="wrong")
    cache.set("text", "not a number")

    with pytest.raises(redis.exceptions.ResponseError):
        cache.incr("text")
    with pytest.raises(ValueError, match="not found"):
        cache.incr("missing")
