"""Users, a market and clients for the tests of what every request goes through."""

from __future__ import annotations

import pytest
from rest_framework.test import APIClient

from trading.api_keys import api_key_create
from trading.tests.factories import PASSWORD, fund, market_make, token_make, user_make


@pytest.fixture
def market(db):
    return market_make(token_make("BTC"), token_make("USDT", decimals=6))


@pytest.fixture
def alice(market):
    user = user_make("alice")
    fund(user, market.base, "10")
    fund(user, market.quote, "10000")
    return user


@pytest.fixture
def key_client():
    """An API client signed in with a new key of ``user`` with ``scopes``."""

    def make(user, *scopes: str) -> APIClient:
        # A key that can withdraw must name the addresses it is used from.
        allowed = "127.0.0.1" if "withdraw" in scopes else ""
        _, key = api_key_create(
            user=user, name="bot", scopes=scopes, allowed_ips=allowed
        )
        client = APIClient()
        client.credentials(HTTP_AUTHORIZATION=f"Api-Key {key}")
        return client

    return make


@pytest.fixture
def alice_browser(alice, reauthenticate) -> APIClient:
    """Alice's browser: signed in, her password just confirmed (as the wallet
    and API withdrawals ask); it posts forms and JSON alike."""
    client = APIClient()
    client.force_login(alice)
    reauthenticate(client, PASSWORD)
    return client
