"""What an API key may do, from where and until when, and signed requests."""

from __future__ import annotations

import json
import time
from datetime import timedelta
from decimal import Decimal

import pytest
from asgiref.sync import async_to_sync
from django.core.exceptions import ValidationError
from django.test import AsyncClient
from django.utils import timezone
from rest_framework.test import APIClient

from tests.factories import PASSWORD, balance, key_client
from trading.api_keys import api_key_create, request_signature
from trading.models import ApiKey, Withdrawal

pytestmark = pytest.mark.django_db

V1 = "/api/v1"


def withdrawal(reference: str = "w-1") -> dict:
    return {
        "token": "BTC",
        "amount": "1",
        "address": "bc1qar0srrr7xfkvy5l643lydnw9re59gtzzwf5mdq",
        "reference": reference,
    }


def code_of(response) -> tuple[int, str]:
    return response.status_code, response.json()["error"]["code"]


# -- Scopes -------------------------------------------------------------------


@pytest.mark.reliability("key-scope")
def test_a_trade_key_cannot_withdraw(alice, funded, btc):
    client = key_client(alice, "trade")

    response = client.post(f"{V1}/withdrawals/", withdrawal(), format="json")

    assert code_of(response) == (403, "insufficient_scope")
    assert "withdraw scope" in response.json()["error"]["message"]
    assert not Withdrawal.objects.exists()
    assert balance(alice, btc) == (Decimal(10), Decimal(0))


@pytest.mark.reliability("key-scope")
def test_withdraw_is_never_implied_and_always_needs_an_allow_list(alice):
    api_key, _ = api_key_create(user=alice, name="bot", scopes=["trade"])
    assert api_key.scope_list == ["read", "trade"]

    with pytest.raises(ValidationError) as refused:
        api_key_create(user=alice, name="bot", scopes=["withdraw"])

    assert "tied to the addresses" in str(refused.value)


@pytest.mark.reliability("key-address")
def test_a_malformed_allow_list_is_refused_naming_the_entry(alice):
    with pytest.raises(ValidationError) as refused:
        api_key_create(
            user=alice, name="bot", scopes=["read"], allowed_ips="10.0.0.0/8, nope"
        )

    assert "“nope” is not an IP address" in str(refused.value)


# -- Allow-lists --------------------------------------------------------------


@pytest.mark.reliability("key-address")
def test_a_withdraw_key_works_from_inside_its_allow_list_only(alice, funded):
    inside = key_client(alice, "withdraw", allowed_ips="127.0.0.0/30")
    outside = key_client(alice, "withdraw", allowed_ips="127.0.0.2")

    refused = outside.post(f"{V1}/withdrawals/", withdrawal("w-1"), format="json")
    accepted = inside.post(f"{V1}/withdrawals/", withdrawal("w-2"), format="json")

    assert code_of(refused) == (403, "ip_not_allowed")
    assert accepted.status_code == 201
    assert list(Withdrawal.objects.values_list("reference", flat=True)) == ["w-2"]


@pytest.mark.reliability("key-address")
def test_a_forged_forwarded_for_counts_only_behind_a_trusted_proxy(alice, settings):
    client = key_client(alice, "read", allowed_ips="127.0.9.9")
    api_key = ApiKey.objects.get(user=alice)

    settings.ALLAUTH_TRUSTED_PROXY_COUNT = 0
    forged = client.get(f"{V1}/balances/", HTTP_X_FORWARDED_FOR="127.0.9.9")
    settings.ALLAUTH_TRUSTED_PROXY_COUNT = 1
    proxied = client.get(f"{V1}/balances/", HTTP_X_FORWARDED_FOR="127.0.9.9")

    assert code_of(forged) == (403, "ip_not_allowed")
    assert proxied.status_code == 200
    api_key.refresh_from_db()
    assert api_key.last_used_ip == "127.0.9.9"


@pytest.mark.reliability("key-address")
def test_an_ipv4_allow_list_knows_its_clients_through_a_dual_stack_socket(alice):
    client = key_client(alice, "read", allowed_ips="127.0.9.9")

    mapped = client.get(f"{V1}/balances/", REMOTE_ADDR="::ffff:127.0.9.9")
    other = client.get(f"{V1}/balances/", REMOTE_ADDR="::ffff:127.0.9.8")

    assert mapped.status_code == 200
    assert code_of(other) == (403, "ip_not_allowed")


def test_an_allow_list_entry_spelt_as_mapped_ipv6_knows_its_ipv4_clients(alice):
    client = key_client(alice, "read", allowed_ips="::ffff:127.0.9.0/120")
    api_key = ApiKey.objects.get(user=alice)

    plain = client.get(f"{V1}/balances/", REMOTE_ADDR="127.0.9.9")
    other = client.get(f"{V1}/balances/", REMOTE_ADDR="127.0.8.9")

    assert api_key.allowed_ips == "127.0.9.0/24"
    assert plain.status_code == 200
    assert code_of(other) == (403, "ip_not_allowed")


# -- Expiry and last use ------------------------------------------------------


@pytest.mark.reliability("key-invalid")
def test_an_expired_key_is_refused(alice):
    client = key_client(alice, "read", expires_in_days=30)
    api_key = ApiKey.objects.get(user=alice)
    ApiKey.objects.filter(pk=api_key.pk).update(
        expires_at=timezone.now() - timedelta(seconds=1)
    )

    assert code_of(client.get(f"{V1}/balances/")) == (401, "api_key_expired")


def test_the_profile_shows_expiry_allow_list_and_last_use(client, alice):
    api_client = key_client(alice, "read", allowed_ips="127.0.0.1", expires_in_days=90)
    api_client.get(f"{V1}/balances/")
    client.force_login(alice)

    page = client.get("/accounts/profile/").content.decode()

    expires = (timezone.now() + timedelta(days=90)).strftime("%-d %b %Y")
    assert "<code>127.0.0.1/32</code>" in page
    assert expires in page
    assert "from 127.0.0.1" in page


# -- Revocation ---------------------------------------------------------------


def test_revoking_asks_first_then_revokes(client, alice):
    key_client(alice, "read")
    api_key = ApiKey.objects.get(user=alice)
    client.force_login(alice)

    asked = client.get(f"/api/keys/{api_key.pk}/revoke/")
    api_key.refresh_from_db()
    assert b"Revoke the API key" in asked.content and api_key.revoked_at is None

    client.post(f"/api/keys/{api_key.pk}/revoke/")
    api_key.refresh_from_db()
    assert api_key.revoked_at is not None


@pytest.mark.reliability("key-stored")
def test_a_password_change_offers_to_revoke_every_key(client, alice):
    key_client(alice, "read")
    key_client(alice, "trade")
    client.force_login(alice)

    changed = client.post(
        "/accounts/password/change/",
        {
            "oldpassword": PASSWORD,
            "password1": "a-new-pass-2026",
            "password2": "a-new-pass-2026",
        },
        follow=True,
    )

    assert b'href="/api/keys/revoke-all/">revoke all 2 keys</a>' in changed.content
    client.post("/api/keys/revoke-all/")
    assert not ApiKey.objects.filter(revoked_at__isnull=True).exists()


# -- Signed requests ----------------------------------------------------------


def signed_headers(
    key: str,
    method: str,
    path: str,
    body: bytes = b"",
    *,
    timestamp: int | str | None = None,
    signature: str | None = None,
) -> dict[str, str]:
    """The headers of a request signed as a client does, unless ``signature``
    is given; ``timestamp`` defaults to now."""
    prefix, _, secret = key.partition(".")
    timestamp = str(int(time.time() * 1000) if timestamp is None else timestamp)
    if signature is None:
        signature = request_signature(
            secret=secret,
            timestamp=timestamp,
            method=method,
            path=path.partition("?")[0],
            query=path.partition("?")[2],
            body=body,
        )
    return {
        "Authorization": f"Api-Key-HMAC {prefix}",
        "X-Api-Timestamp": timestamp,
        "X-Api-Signature": signature,
    }


def signed(client, key: str, method: str, path: str, body: bytes = b"", **options):
    headers = signed_headers(
        key,
        method,
        path,
        options.pop("signed_body", body),
        timestamp=options.pop("timestamp", None),
        signature=options.pop("signature", None),
    )
    return client.generic(
        method, path, body, content_type="application/json", headers=headers
    )


@pytest.fixture
def signing_key(alice):
    _, key = api_key_create(
        user=alice,
        name="signer",
        scopes=["withdraw"],
        allowed_ips="127.0.0.1",
        require_signature=True,
    )
    return key


@pytest.mark.reliability("key-signature")
def test_a_signed_request_is_accepted_once(alice, funded, signing_key):
    client = APIClient()
    body = json.dumps(withdrawal()).encode()
    timestamp = int(time.time() * 1000)

    first = signed(
        client, signing_key, "POST", f"{V1}/withdrawals/", body, timestamp=timestamp
    )
    replay = signed(
        client, signing_key, "POST", f"{V1}/withdrawals/", body, timestamp=timestamp
    )

    assert first.status_code == 201
    assert code_of(replay) == (401, "signature_replayed")
    assert Withdrawal.objects.count() == 1


@pytest.mark.reliability("key-signature")
def test_a_signed_query_is_part_of_the_signature(alice, signing_key):
    client = APIClient()

    response = signed(client, signing_key, "GET", f"{V1}/withdrawals/?limit=5")

    assert response.status_code == 200


@pytest.mark.reliability("key-signature")
def test_a_stale_timestamp_is_refused(alice, funded, signing_key, settings):
    stale = int((time.time() - settings.API_SIGNATURE_WINDOW_SECONDS - 1) * 1000)
    body = json.dumps(withdrawal()).encode()

    response = signed(
        APIClient(), signing_key, "POST", f"{V1}/withdrawals/", body, timestamp=stale
    )

    assert code_of(response) == (401, "signature_expired")
    assert not Withdrawal.objects.exists()


@pytest.mark.reliability("key-signature")
def test_a_changed_body_is_refused(alice, funded, signing_key):
    signed_for = json.dumps(withdrawal()).encode()
    sent = json.dumps({**withdrawal(), "amount": "5"}).encode()

    response = signed(
        APIClient(),
        signing_key,
        "POST",
        f"{V1}/withdrawals/",
        sent,
        signed_body=signed_for,
    )

    assert code_of(response) == (401, "signature_invalid")
    assert not Withdrawal.objects.exists()


@pytest.mark.reliability("key-signature")
def test_a_key_that_must_sign_refuses_its_bare_secret(alice, signing_key):
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Api-Key {signing_key}")

    assert code_of(client.get(f"{V1}/balances/")) == (401, "signature_required")


def test_the_docs_name_the_refusal_of_a_signing_keys_bare_secret(client):
    schema = client.get("/api/schema/", {"format": "json"}).json()
    answers = schema["paths"]["/api/v1/balances/"]["get"]["responses"]

    assert "`signature_required`" in answers["401"]["description"]
    assert "`signature_required`" in schema["info"]["description"]


@pytest.mark.parametrize("scheme", ["Api-Key", "Api-Key-HMAC"])
@pytest.mark.parametrize("credential", ["ab\x00cd.ef", "ab\x01cd", "ab\x7fcd", "\x00"])
def test_a_key_with_a_control_character_is_refused_as_no_key(
    alice, signing_key, scheme, credential
):
    # PostgreSQL refuses a NUL in a query: it must not reach the database.
    response = APIClient().get(
        f"{V1}/balances/",
        HTTP_AUTHORIZATION=f"{scheme} {credential}",
        HTTP_X_API_TIMESTAMP=str(int(time.time() * 1000)),
        HTTP_X_API_SIGNATURE="0" * 64,
    )

    assert code_of(response) == (401, "invalid_api_key")


PRIVATE_ENDPOINTS = [
    ("GET", "balances/"),
    ("GET", "orders/"),
    ("POST", "orders/"),
    ("GET", "orders/1/"),
    ("PATCH", "orders/1/"),
    ("DELETE", "orders/1/"),
    ("POST", "orders/cancel-all/"),
    ("GET", "fills/"),
    ("GET", "withdrawals/"),
    ("POST", "withdrawals/"),
    ("GET", "withdrawals/1/"),
    ("DELETE", "withdrawals/1/"),
    ("GET", "addresses/"),
    ("POST", "addresses/"),
    ("DELETE", "addresses/1/"),
]
STREAM = f"{V1}/markets/BTC-USDT/stream/"
TIMESTAMP_REFUSED = "X-Api-Timestamp is the time in milliseconds since 1970, in digits."
SIGNATURE_REFUSED = (
    "X-Api-Signature is the request's HMAC-SHA256 as 64 hexadecimal characters."
)
ARABIC_INDIC_DIGITS = str.maketrans(
    "0123456789", "".join(map(chr, range(0x660, 0x66A)))
)


def now_ms() -> str:
    return str(int(time.time() * 1000))


# Each a timestamp (from now's) and a signature (None: the right one), and
# what the refusal says. int() reads every one of these timestamps.
MALFORMED = [
    pytest.param(lambda now: "9" * 400, None, TIMESTAMP_REFUSED, id="400 digits"),
    pytest.param(lambda now: f" {now}", None, TIMESTAMP_REFUSED, id="space"),
    pytest.param(lambda now: f"+{now}", None, TIMESTAMP_REFUSED, id="plus"),
    pytest.param(
        lambda now: f"{now[:4]}_{now[4:]}", None, TIMESTAMP_REFUSED, id="underscore"
    ),
    pytest.param(
        lambda now: now.translate(ARABIC_INDIC_DIGITS),
        None,
        TIMESTAMP_REFUSED,
        id="arabic-indic digits",
    ),
    pytest.param(lambda now: now, "\u00e9", SIGNATURE_REFUSED, id="non-ascii"),
    pytest.param(lambda now: now, "\u00e9" * 64, SIGNATURE_REFUSED, id="64 non-ascii"),
    pytest.param(lambda now: now, "00", SIGNATURE_REFUSED, id="short"),
    pytest.param(lambda now: now, "g" * 64, SIGNATURE_REFUSED, id="not hex"),
]


@pytest.mark.reliability("key-signature")
@pytest.mark.parametrize(("timestamp", "signature", "message"), MALFORMED)
def test_a_malformed_signature_header_is_a_401_on_every_private_endpoint(
    alice, signing_key, timestamp, signature, message
):
    client = APIClient()
    answers = {}
    for method, path in PRIVATE_ENDPOINTS:
        response = signed(
            client,
            signing_key,
            method,
            f"{V1}/{path}",
            timestamp=timestamp(now_ms()),
            signature=signature,
        )
        answers[method, path] = (
            *code_of(response),
            response.json()["error"]["message"],
        )

    assert answers == {
        endpoint: (401, "signature_invalid", message) for endpoint in PRIVATE_ENDPOINTS
    }


@pytest.mark.reliability("key-signature")
@pytest.mark.parametrize(("timestamp", "signature", "message"), MALFORMED)
def test_a_malformed_signature_header_is_a_401_on_the_stream(
    alice, signing_key, market, timestamp, signature, message
):
    headers = signed_headers(
        signing_key, "GET", STREAM, timestamp=timestamp(now_ms()), signature=signature
    )
    # As a client sends them: UTF-8 bytes, which ASGI servers pass on as such.
    wire = {name: value.encode().decode("latin-1") for name, value in headers.items()}

    response = async_to_sync(AsyncClient().get)(STREAM, headers=wire)

    assert code_of(response) == (401, "signature_invalid")
    assert response.json()["error"]["message"] == message


def test_a_correct_signature_in_either_case_of_hex_passes_on_api_and_stream(
    alice, signing_key, market, settings
):
    settings.REDIS_URL = ""  # the stream answers at once that it is unavailable
    client = APIClient()
    lower = signed_headers(signing_key, "GET", f"{V1}/balances/")
    upper = signed_headers(signing_key, "GET", f"{V1}/orders/")
    upper["X-Api-Signature"] = upper["X-Api-Signature"].upper()
    stream = signed_headers(signing_key, "GET", STREAM)

    balances = client.get(f"{V1}/balances/", headers=lower)
    orders = client.get(f"{V1}/orders/", headers=upper)
    streamed = async_to_sync(AsyncClient().get)(STREAM, headers=stream)

    assert balances.status_code == 200
    assert orders.status_code == 200
    # Past authentication: a refused key would be a 401.
    assert code_of(streamed) == (503, "stream_unavailable")


@pytest.mark.reliability("key-stored")
def test_only_the_digest_of_a_plain_key_is_stored(alice):
    api_key, key = api_key_create(user=alice, name="bot", scopes=["read"])
    secret = key.partition(".")[2]

    assert api_key.signing_secret == ""
    assert secret not in str(ApiKey.objects.filter(pk=api_key.pk).values().get())


@pytest.mark.django_db(transaction=True)
def test_the_python_example_of_the_api_docs_signs_requests_that_work(
    live_server, capsys
):
    from pathlib import Path

    from tests.factories import fund, token_make, user_make

    alice = user_make("alice")
    fund(alice, token_make("BTC"), "1")
    _, key = api_key_create(
        user=alice,
        name="signer",
        scopes=["withdraw"],
        allowed_ips="127.0.0.1",
        require_signature=True,
    )
    docs = (Path(__file__).parents[1] / "api" / "description.md").read_text()
    example = docs.split("```python\n")[1].split("```")[0]
    example = example.replace("0123456789abcdef.your-secret", key).replace(
        "https://exchange.example.com", live_server.url
    )

    exec(compile(example, "description.md", "exec"), {})  # noqa: S102

    printed = capsys.readouterr().out
    assert "'available': '1'" in printed or "'available': '1.00000000'" in printed
    assert Withdrawal.objects.get().amount == Decimal("0.01")
