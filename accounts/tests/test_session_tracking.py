"""Session tracking (address, browser, last seen;
accounts.middleware.SessionActivityMiddleware) on the Redis cache the
instances share, through the app's handler and the stream's process
(uvicorn)."""

import http.client
import json
import secrets
import warnings

import pytest
from allauth.usersessions.models import UserSession
from django.core.cache import CacheKeyWarning
from django.test import Client

from tests.factories import PASSWORD, user_make
from trading.tests.streaming import StreamServer

pytestmark = pytest.mark.django_db(transaction=True)

FIREFOX = "Mozilla/5.0 (X11; Linux x86_64; rv:140.0) Gecko/20100101 Firefox/140.0"
# An unknown market: answered at once, after every middleware ran.
STREAM = "/api/v1/markets/NOPE-USDT/stream/"


@pytest.fixture
def redis(settings, redis_server):
    """The cache on ``redis_server``, and a client to look into it."""
    settings.CACHES = {
        "default": {
            "BACKEND": "core.cache.RedisCache",
            "LOCATION": redis_server.url,
            "KEY_PREFIX": "crypto-exchange",
        }
    }
    settings.REDIS_URL = redis_server.url
    return redis_server.client()


@pytest.fixture
def stream_process(redis):
    server = StreamServer()
    server.start()
    yield server
    server.stop()


def seen_keys(redis) -> list[str]:
    return [key.decode() for key in redis.scan_iter(match="*usersessions:seen:*")]


def made_up_session() -> str:
    # 8 KB: what nginx lets through in a header line.
    return secrets.token_hex(4000)


def stream_get(server: StreamServer, headers: dict[str, str]) -> int:
    link = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
    link.request("GET", STREAM, headers=headers)
    response = link.getresponse()
    assert json.loads(response.read())["error"]["code"] == "not_found"
    link.close()
    return response.status


def signed_in_session(user_agent: str = FIREFOX) -> str:
    user_make("alice")
    client = Client(HTTP_USER_AGENT=user_agent)
    client.post("/accounts/login/", {"login": "alice", "password": PASSWORD})
    return client.cookies["sessionid"].value


def test_made_up_session_cookies_leave_nothing_in_the_cache_nor_the_log(redis):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for _ in range(20):
            client = Client()
            client.cookies["sessionid"] = made_up_session()
            assert client.get("/api/v1/markets/").status_code == 200

    assert seen_keys(redis) == []
    assert not [w for w in caught if issubclass(w.category, CacheKeyWarning)]


def test_made_up_session_cookies_to_the_stream_leave_nothing_in_the_cache(
    redis, stream_process
):
    for _ in range(20):
        cookie = f"sessionid={made_up_session()}"
        assert stream_get(stream_process, {"Cookie": cookie}) == 404

    assert seen_keys(redis) == []


def test_a_signed_in_session_is_tracked_under_a_digest_of_its_key(redis):
    key = signed_in_session()
    client = Client(HTTP_USER_AGENT="curl/8.0")
    client.cookies["sessionid"] = key

    assert client.get("/api/v1/markets/").status_code == 200

    assert UserSession.objects.get(session_key=key).user_agent == "curl/8.0"
    [seen] = seen_keys(redis)
    assert key not in seen
    assert len(seen) == len("crypto-exchange:1:usersessions:seen:") + 64


def test_a_signed_in_session_is_tracked_through_the_stream(redis, stream_process):
    key = signed_in_session()

    status = stream_get(
        stream_process, {"Cookie": f"sessionid={key}", "User-Agent": "curl/8.0"}
    )

    assert status == 404
    assert UserSession.objects.get(session_key=key).user_agent == "curl/8.0"
    [seen] = seen_keys(redis)
    assert key not in seen
