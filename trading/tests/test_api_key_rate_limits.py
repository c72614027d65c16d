"""The API's rate limits: per user (all of a user's API keys together) and,
without a user, per client address as the proxies in front report it; one
request too many is a JSON 429 with Retry-After, Redis up or down."""

from __future__ import annotations

import pytest
from rest_framework.test import APIClient
from rest_framework.throttling import SimpleRateThrottle

from core.tests import test_redis_down
from tests.factories import key_client, user_make

pytestmark = pytest.mark.django_db

V1 = "/api/v1"
MARKETS = f"{V1}/markets/"
BALANCES = f"{V1}/balances/"

# The cache and session settings of production with REDIS_URL, on the test's
# own Redis.
app_on_redis = test_redis_down.app_on_redis


@pytest.fixture
def rates(monkeypatch):
    """``rates(user, anon)``: the limits API_THROTTLE_USER and
    API_THROTTLE_ANON set (DRF reads them once, when it is imported)."""

    def set_rates(user: str, anon: str) -> None:
        monkeypatch.setattr(
            SimpleRateThrottle, "THROTTLE_RATES", {"user": user, "anon": anon}
        )

    return set_rates


def statuses(client, path: str, count: int, **headers) -> list[int]:
    return [client.get(path, **headers).status_code for _ in range(count)]


def test_one_request_too_many_is_a_json_429_with_retry_after(alice, rates):
    rates(user="3/minute", anon="100/minute")
    client = key_client(alice)

    assert statuses(client, BALANCES, 3) == [200, 200, 200]
    refused = client.get(BALANCES)

    assert refused.status_code == 429
    error = refused.json()["error"]
    assert error["code"] == "rate_limited"
    assert error["message"].startswith(
        "Too many requests in a short time; this one was not handled. "
        "Expected available in "
    )
    assert 1 <= int(refused["Retry-After"]) <= 60


def test_a_users_keys_share_one_limit_and_other_users_have_their_own(alice, bob, rates):
    rates(user="2/minute", anon="100/minute")
    first, second = key_client(alice), key_client(alice)

    assert statuses(first, BALANCES, 2) == [200, 200]
    assert second.get(BALANCES).status_code == 429
    assert key_client(bob).get(BALANCES).status_code == 200


def test_requests_without_a_user_are_limited_per_address(db, rates):
    rates(user="100/minute", anon="2/minute")
    client = APIClient()

    assert statuses(client, MARKETS, 3) == [200, 200, 429]
    assert client.get(MARKETS, REMOTE_ADDR="198.51.100.7").status_code == 200


def test_the_address_is_the_one_the_trusted_proxies_report(db, rates, settings):
    rates(user="100/minute", anon="1/minute")
    client = APIClient()

    # No proxy trusted: an X-Forwarded-For of the client's own escapes nothing.
    settings.ALLAUTH_TRUSTED_PROXY_COUNT = 0
    forged = [
        client.get(MARKETS, HTTP_X_FORWARDED_FOR=f"198.51.100.{n}").status_code
        for n in (1, 2)
    ]
    # Behind one proxy: the address it appends is the client's.
    settings.ALLAUTH_TRUSTED_PROXY_COUNT = 1
    proxied = [
        client.get(MARKETS, HTTP_X_FORWARDED_FOR=f"203.0.113.9, {address}").status_code
        for address in ("192.0.2.1", "192.0.2.2", "192.0.2.1")
    ]

    assert forged == [200, 429]
    assert proxied == [200, 200, 429]


@pytest.mark.django_db(transaction=True)
def test_the_limits_hold_and_nothing_fails_while_redis_is_down(app_on_redis, rates):
    rates(user="3/minute", anon="2/minute")
    client = key_client(user_make("alice"))
    assert client.get(BALANCES).status_code == 200
    assert test_redis_down.redis_keys(app_on_redis, "*throttle_user*")

    app_on_redis.kill()
    # Counted in the process's memory from now on.
    with_key = statuses(client, BALANCES, 4)
    anonymous = statuses(APIClient(), MARKETS, 3)

    assert with_key == [200, 200, 200, 429]
    assert anonymous == [200, 200, 429]


def test_the_schema_documents_the_429_of_every_operation(client):
    schema = client.get("/api/schema/", {"format": "json"}).json()

    operations = [
        (method, path, operation)
        for path, methods in schema["paths"].items()
        for method, operation in methods.items()
        if method in {"get", "post", "patch", "delete"}
    ]
    assert operations
    for method, path, operation in operations:
        assert "`rate_limited`" in operation["responses"]["429"]["description"], (
            method,
            path,
        )
