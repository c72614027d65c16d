"""No private endpoint that takes an id in its URL acts on someone else's
object: alice, signed in, asks for bob's order, withdrawal, saved address,
API key and session by id and gets 404, and bob's things stay as they were."""

from __future__ import annotations

from decimal import Decimal

import pytest
from allauth.usersessions.models import UserSession
from django.test import Client
from django.urls import URLPattern, URLResolver, get_resolver

from tests.factories import (
    PASSWORD,
    buy,
    fund,
    market_make,
    token_make,
    user_make,
)
from trading.api_keys import api_key_create
from trading.models import ApiKey, Order, SavedAddress, Withdrawal
from trading.services import saved_address_add, withdrawal_request

# url name: [(method, path with the object's id, body)]; {symbol} is the market.
ATTEMPTS = {
    "accounts:session_end": [("post", "/accounts/profile/sessions/{session}/end/")],
    "trading:order_cancel": [("post", "/markets/{symbol}/orders/{order}/cancel/")],
    "trading:address_delete": [("post", "/wallet/addresses/{address}/delete/")],
    "trading:withdrawal_cancel": [
        ("get", "/wallet/withdrawals/{withdrawal}/cancel/"),
        ("post", "/wallet/withdrawals/{withdrawal}/cancel/"),
    ],
    "api:key_revoke": [
        ("get", "/api/keys/{key}/revoke/"),
        ("post", "/api/keys/{key}/revoke/"),
    ],
    "api:order": [
        ("get", "/api/v1/orders/{order}/"),
        ("patch", "/api/v1/orders/{order}/"),
        ("delete", "/api/v1/orders/{order}/"),
    ],
    "api:withdrawal": [
        ("get", "/api/v1/withdrawals/{withdrawal}/"),
        ("delete", "/api/v1/withdrawals/{withdrawal}/"),
    ],
    "api:address": [("delete", "/api/v1/addresses/{address}/")],
}


def routes_with_an_id(resolver: URLResolver, prefix: str = "", namespace: str = ""):
    """The names of the site's URLs that take an object's id, but the admin's
    (staff only, behind Django's permissions)."""
    for entry in resolver.url_patterns:
        route = prefix + str(entry.pattern)
        if isinstance(entry, URLResolver):
            if entry.namespace == "admin":
                continue
            inner = f"{namespace}{entry.namespace}:" if entry.namespace else namespace
            yield from routes_with_an_id(entry, route, inner)
        elif isinstance(entry, URLPattern) and "<int:" in route:
            yield f"{namespace}{entry.name}"


@pytest.fixture
def bobs(db, reauthenticate):
    """bob's open order, pending withdrawal, saved address, API key and
    session, by name."""
    market = market_make(token_make("BTC"), token_make("USDT", decimals=6))
    bob = user_make("bob")
    fund(bob, market.quote, "1000")
    Client().post("/accounts/login/", {"login": "bob", "password": PASSWORD})
    key, _ = api_key_create(user=bob, name="bob's", scopes=["read"])
    return {
        "symbol": market.symbol,
        "order": buy(bob, market, "1", "50.00").pk,
        "withdrawal": withdrawal_request(
            user=bob,
            token=market.quote,
            amount=Decimal(10),
            address="T-bob",
            reference="w-1",
        ).pk,
        "address": saved_address_add(
            user=bob, token=market.quote, address="T-bob", label="bob's"
        ).pk,
        "key": key.pk,
        "session": UserSession.objects.get(user=bob).pk,
    }


def test_every_private_url_with_an_id_is_tried():
    assert sorted(routes_with_an_id(get_resolver())) == sorted(ATTEMPTS)


@pytest.mark.parametrize("name", sorted(ATTEMPTS))
@pytest.mark.reliability("access-by-id")
def test_nobody_reaches_another_users_object_by_its_id(alice_client, bobs, name):
    for method, path in ATTEMPTS[name]:
        url = path.format(**bobs)
        if method == "patch":
            response = alice_client.patch(
                url, {"price": "40"}, content_type="application/json"
            )
        else:
            response = getattr(alice_client, method)(url)

        assert response.status_code == 404, f"{method.upper()} {path}"

    assert Order.objects.get(pk=bobs["order"]).price == Decimal("50")
    assert Order.objects.get(pk=bobs["order"]).is_open
    assert Withdrawal.objects.get().status == Withdrawal.Status.PENDING
    assert SavedAddress.objects.filter(pk=bobs["address"]).exists()
    assert ApiKey.objects.get().revoked_at is None
    assert UserSession.objects.filter(pk=bobs["session"]).exists()
