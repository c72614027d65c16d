"""A signed request is accepted once, by whichever worker or instance, and
whatever Redis does: the signatures received are kept in the database."""

from __future__ import annotations

import json
import os
import time
from datetime import timedelta
from urllib.parse import urlsplit

import pytest
from django.db import connection
from django.utils import timezone
from rest_framework.test import APIClient

from tests.threads import inserts_held_together, run_together
from trading.api_keys import SIGNATURES_FORGET_EVERY, api_key_authenticate_signed
from trading.models import ReceivedSignature, Withdrawal
from trading.tests import test_api_key_security
from trading.tests.test_api_key_security import code_of, signed_headers, withdrawal

pytestmark = pytest.mark.django_db

WITHDRAWALS = "/api/v1/withdrawals/"
RETRY_AFTER = 0.3
REDIS_TIMEOUT = 0.3
# Another worker: a process of its own, on the same database and Redis.
POST_FROM_ANOTHER_PROCESS = """
import json, os, django
django.setup()
from django.test import Client
response = Client().generic(
    "POST",
    os.environ["POST_PATH"],
    os.environ["POST_BODY"].encode(),
    content_type="application/json",
    headers={**json.loads(os.environ["POST_HEADERS"]), "Host": "127.0.0.1"},
)
print(json.dumps([response.status_code, response.json()]))
"""

# The fixture of the signed-request tests: a withdraw key, from 127.0.0.1 only.
signing_key = test_api_key_security.signing_key


@pytest.fixture
def cache_on_redis(settings, redis_server):
    """The cache of production with REDIS_URL (core.cache), on the test's own
    Redis, with quick timeouts."""
    settings.CACHES = {
        "default": {
            "BACKEND": "core.cache.RedisCache",
            "LOCATION": redis_server.url,
            "OPTIONS": {
                "socket_connect_timeout": REDIS_TIMEOUT,
                "socket_timeout": REDIS_TIMEOUT,
                "retry_after": RETRY_AFTER,
            },
        }
    }
    return redis_server


def post(headers: dict[str, str], body: bytes):
    return APIClient().generic(
        "POST", WITHDRAWALS, body, content_type="application/json", headers=headers
    )


@pytest.mark.reliability("key-signature")
def test_a_copy_is_refused_while_redis_is_paused_and_once_it_answers_again(
    funded, signing_key, cache_on_redis
):
    body = json.dumps(withdrawal()).encode()
    headers = signed_headers(signing_key, "POST", WITHDRAWALS, body)

    cache_on_redis.pause()
    try:
        first = post(headers, body)
        copy_while_paused = post(headers, body)
    finally:
        cache_on_redis.resume()
    time.sleep(RETRY_AFTER + 0.1)
    copy_once_back = post(headers, body)

    assert first.status_code == 201, first.content
    assert code_of(copy_while_paused) == (401, "signature_replayed")
    assert code_of(copy_once_back) == (401, "signature_replayed")
    assert Withdrawal.objects.count() == 1


@pytest.mark.reliability("key-signature")
def test_a_request_refused_for_its_key_leaves_its_signature_usable(funded, signing_key):
    body = json.dumps(withdrawal()).encode()
    headers = signed_headers(signing_key, "POST", WITHDRAWALS, body)

    from_elsewhere = APIClient(REMOTE_ADDR="203.0.113.7").generic(
        "POST", WITHDRAWALS, body, content_type="application/json", headers=headers
    )
    from_allowed = post(headers, body)
    copy = post(headers, body)

    assert code_of(from_elsewhere) == (403, "ip_not_allowed")
    assert from_allowed.status_code == 201, from_allowed.content
    assert code_of(copy) == (401, "signature_replayed")
    assert Withdrawal.objects.count() == 1


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
@pytest.mark.reliability("key-signature")
def test_a_copy_sent_to_another_worker_while_redis_is_down_is_refused(
    funded, signing_key, cache_on_redis, run_python, settings
):
    body = json.dumps(withdrawal()).encode()
    headers = signed_headers(signing_key, "POST", WITHDRAWALS, body)
    database = urlsplit(os.environ["DATABASE_URL"])
    cache_on_redis.kill()

    first = post(headers, body)
    other = run_python(
        ["-c", POST_FROM_ANOTHER_PROCESS],
        {
            "DJANGO_SETTINGS_MODULE": "crypto_exchange.settings",
            "DATABASE_URL": database._replace(
                path=f"/{connection.settings_dict['NAME']}"
            ).geturl(),
            "REDIS_URL": cache_on_redis.url,
            "REDIS_TIMEOUT": str(REDIS_TIMEOUT),
            "SECRET_KEY": settings.SECRET_KEY,  # decrypts the key's secret
            "POST_PATH": WITHDRAWALS,
            "POST_BODY": body.decode(),
            "POST_HEADERS": json.dumps(headers),
        },
    )

    assert first.status_code == 201, first.content
    assert other.returncode == 0, other.stderr
    status, answer = json.loads(other.stdout.splitlines()[-1])
    assert status == 401, answer
    assert answer["error"]["code"] == "signature_replayed"
    assert Withdrawal.objects.count() == 1


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
@pytest.mark.reliability("key-signature")
def test_two_copies_sent_at_once_make_one_withdrawal(funded, signing_key):
    body = json.dumps(withdrawal()).encode()
    headers = signed_headers(signing_key, "POST", WITHDRAWALS, body)

    # Both pass every check before either records the signature.
    with inserts_held_together(ReceivedSignature):
        results = run_together(lambda: post(headers, body), lambda: post(headers, body))

    assert [status for status, _ in results] == ["ok", "ok"]
    answers = sorted(response.status_code for _, response in results)
    assert answers == [201, 401]
    refused = next(response for _, response in results if response.status_code == 401)
    assert code_of(refused) == (401, "signature_replayed")
    assert Withdrawal.objects.count() == 1
    assert ReceivedSignature.objects.count() == 1


def signed_get_at(key: str, moment, number: int):
    """Authenticate, as received at ``moment``, a GET signed then."""
    path = f"/api/v1/balances/?n={number}"
    headers = signed_headers(key, "GET", path, timestamp=int(moment.timestamp() * 1000))
    return api_key_authenticate_signed(
        prefix=key.partition(".")[0],
        timestamp=headers["X-Api-Timestamp"],
        signature=headers["X-Api-Signature"],
        method="GET",
        path=path.partition("?")[0],
        query=path.partition("?")[2],
        body=b"",
        client_ip="127.0.0.1",
        now=moment,
    )


@pytest.mark.reliability("key-signature")
def test_signatures_past_their_window_are_forgotten(alice, signing_key):
    an_hour_ago = timezone.now() - timedelta(hours=1)
    for number in range(SIGNATURES_FORGET_EVERY):
        signed_get_at(signing_key, an_hour_ago, number)
    # On a slow machine the recent ones' windows may end while they are
    # sent, and the batch may run among them (every SIGNATURES_FORGET_EVERY
    # rows, by id): only the old ones are sure to be forgotten.
    recent_since = timezone.now()

    for number in range(SIGNATURES_FORGET_EVERY):
        path = f"/api/v1/balances/?n={number}"
        headers = signed_headers(signing_key, "GET", path)
        response = APIClient().get(path, headers=headers)
        assert response.status_code == 200, response.content
    copy = APIClient().get(path, headers=headers)

    assert not ReceivedSignature.objects.filter(forget_after__lt=recent_since).exists()
    # The recent ones are kept until their window ends: a copy is refused.
    assert ReceivedSignature.objects.filter(forget_after__gte=recent_since).exists()
    assert code_of(copy) == (401, "signature_replayed")
