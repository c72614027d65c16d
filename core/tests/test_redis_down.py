"""Redis stopped under the app: pages, log-in and the API keep answering.

The app runs with the cache and session settings that settings.py builds for
``REDIS_URL`` (read from a real start of the settings), pointed at a Redis
server of the test's own, which the test kills or pauses during traffic and
starts again; the requests go through Django's test client, in one process,
as they would through one gunicorn worker.
"""

from __future__ import annotations

import copy
import json
import time
from http.cookies import SimpleCookie

import pytest
from django.test import Client

from tests.factories import PASSWORD, user_make
from trading.api_keys import api_key_create, request_signature

LOCKED = "Too many failed log-in attempts for this account or from your address."
RETRY_AFTER = 0.3
REDIS_TIMEOUT = "0.3"
SETTINGS_OF_REDIS = (
    "import json, django; django.setup(); from django.conf import settings; "
    "print(json.dumps({name: getattr(settings, name) for name in "
    "('CACHES', 'SESSION_ENGINE')}))"
)


@pytest.fixture
def app_on_redis(settings, redis_server, run_python):
    """The cache and session settings of production with REDIS_URL set."""
    started = run_python(
        ["-c", SETTINGS_OF_REDIS],
        {
            "DJANGO_SETTINGS_MODULE": "crypto_exchange.settings",
            "REDIS_URL": redis_server.url,
            "REDIS_TIMEOUT": REDIS_TIMEOUT,
        },
    )
    assert started.returncode == 0, started.stderr
    production = json.loads(started.stdout)
    caches = copy.deepcopy(production["CACHES"])
    for cache in caches.values():
        assert cache["BACKEND"] == "core.cache.RedisCache"
        cache["OPTIONS"]["retry_after"] = RETRY_AFTER  # a quicker test
    settings.CACHES = caches
    settings.SESSION_ENGINE = production["SESSION_ENGINE"]
    return redis_server


def log_in_attempt(username: str, password: str = PASSWORD) -> tuple[Client, int]:
    client = Client()
    response = client.post(
        "/accounts/login/", {"login": username, "password": password}
    )
    return client, response.status_code


def is_signed_in(client: Client, username: str) -> bool:
    response = client.get("/accounts/profile/")
    assert response.status_code in (200, 302), response.status_code
    return response.status_code == 200 and username in response.content.decode()


def signed_get(key: str, path: str, *, timestamp: str | None = None):
    prefix, _, secret = key.partition(".")
    timestamp = timestamp or str(int(time.time() * 1000))
    signature = request_signature(
        secret=secret, timestamp=timestamp, method="GET", path=path, query="", body=b""
    )
    return Client().get(
        path,
        HTTP_AUTHORIZATION=f"Api-Key-HMAC {prefix}",
        HTTP_X_API_TIMESTAMP=timestamp,
        HTTP_X_API_SIGNATURE=signature,
    )


def redis_keys(server, pattern: str = "*") -> list[bytes]:
    with server.client() as client:
        return client.keys(pattern)


def after_retry() -> None:
    time.sleep(RETRY_AFTER + 0.1)


@pytest.mark.django_db
@pytest.mark.reliability("redis-down")
def test_pages_log_in_and_the_api_answer_while_redis_is_down_and_use_it_once_back(
    app_on_redis,
):
    alice, bob = user_make("alice"), user_make("bob")
    user_make("carol")
    _, read_key = api_key_create(
        user=alice, name="reader", scopes=["read"], require_signature=True
    )
    before, status = log_in_attempt("alice")
    assert status == 302

    app_on_redis.kill()
    pages = {path: Client().get(path).status_code for path in ("/", "/tokens/")}
    still_signed_in = is_signed_in(before, "alice")
    during, status_during = log_in_attempt("bob")
    for _ in range(5):
        log_in_attempt("carol", "a-wrong-password")
    locked_out = Client().post(
        "/accounts/login/", {"login": "carol", "password": PASSWORD}
    )
    timestamp = str(int(time.time() * 1000))
    api = signed_get(read_key, "/api/v1/balances/", timestamp=timestamp)
    replayed = signed_get(read_key, "/api/v1/balances/", timestamp=timestamp)
    logged_out = before.post("/accounts/logout/")

    assert pages == {"/": 200, "/tokens/": 200}
    assert still_signed_in  # the session is read from the database
    assert status_during == 302 and is_signed_in(during, "bob")
    # The throttles count in the process while Redis is away: they hold.
    assert locked_out.status_code == 200
    assert LOCKED in locked_out.content.decode()
    assert api.status_code == 200, api.content
    assert replayed.status_code == 401
    assert logged_out.status_code == 302 and not is_signed_in(before, "alice")

    app_on_redis.start()  # empty, as the machine's Redis after a restart
    after_retry()
    after, status_after = log_in_attempt("alice")

    assert status_after == 302 and is_signed_in(after, "alice")
    assert is_signed_in(during, "bob")  # signed in while Redis was away
    assert not is_signed_in(before, "alice")
    assert signed_get(read_key, "/api/v1/balances/").status_code == 200
    # Redis holds the throttles again, without any restart.
    assert redis_keys(app_on_redis, "*allauth:rl*")
    assert bob.pk and alice.pk


@pytest.mark.django_db
@pytest.mark.reliability("redis-down")
def test_a_session_ended_while_redis_was_unreachable_stays_ended_once_it_answers(
    app_on_redis,
):
    # A paused Redis keeps its data, as one behind a network partition does,
    # and other instances may still reach it: it must hold no copy of the
    # session that could sign the browser in again.
    user_make("alice")
    browser, status = log_in_attempt("alice")
    assert status == 302 and is_signed_in(browser, "alice")
    old_cookie = browser.cookies["sessionid"].value
    assert not redis_keys(app_on_redis, "*django.contrib.sessions*")

    app_on_redis.pause()
    try:
        logged_out = browser.post("/accounts/logout/")
    finally:
        app_on_redis.resume()
    after_retry()
    stolen = Client()
    stolen.cookies = SimpleCookie({"sessionid": old_cookie})

    assert logged_out.status_code == 302
    assert not is_signed_in(stolen, "alice")
    assert not is_signed_in(browser, "alice")
