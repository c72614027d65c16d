"""API clients for the tests of what every request goes through (users and
the market are the root conftest's)."""

from __future__ import annotations

import pytest
from rest_framework.test import APIClient

from trading.api_keys import api_key_create


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
