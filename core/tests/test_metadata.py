"""OPTIONS answers what an endpoint renders and parses (it was a 500 for
anyone allowed to POST: DRF looked for a serializer_class)."""

from __future__ import annotations

import pytest
from rest_framework.test import APIClient

from core.tests.answers import api_error

pytestmark = pytest.mark.django_db

DESCRIPTION = {"name", "description", "renders", "parses"}


@pytest.mark.parametrize(
    ("path", "scope"),
    [("/api/v1/orders/", "trade"), ("/api/v1/withdrawals/", "withdraw")],
)
@pytest.mark.reliability("options")
def test_options_with_a_key_that_may_post_describes_the_endpoint(
    alice, key_client, path, scope, funded
):
    response = key_client(alice, "read", scope).options(path)

    assert response.status_code == 200
    assert response.json().keys() == DESCRIPTION
    assert response.json()["parses"] == ["application/json"]


@pytest.mark.parametrize("path", ["/api/v1/orders/", "/api/v1/withdrawals/"])
@pytest.mark.reliability("options")
def test_options_with_a_session_describes_the_endpoint(as_alice, path, funded):
    response = as_alice.options(path)

    assert response.status_code == 200
    assert response.json().keys() == DESCRIPTION


@pytest.mark.reliability("options")
def test_options_without_credentials_on_a_private_endpoint_is_a_json_401(db):
    api_error(APIClient().options("/api/v1/orders/"), 401, "not_authenticated")


@pytest.mark.reliability("options")
def test_options_on_a_public_endpoint_describes_it(market):
    response = APIClient().options("/api/v1/markets/BTC-USDT/ticker/")

    assert response.status_code == 200
    assert response.json()["renders"] == ["application/json"]
