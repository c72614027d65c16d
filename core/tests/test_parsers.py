"""JSON nested deeper than any request needs is a 400, never a
RecursionError (a 500)."""

from __future__ import annotations

import json

import pytest
from rest_framework.test import APIClient

from core.parsers import MAX_DEPTH
from core.tests.answers import api_error
from trading.models import Order

pytestmark = pytest.mark.django_db


@pytest.fixture
def echo(settings):
    """POSTs to a DRF view on the settings' defaults."""
    settings.ROOT_URLCONF = "core.tests.urls"

    def post(body: str):
        return APIClient().post(
            "/api/v1/test/echo/", body, content_type="application/json"
        )

    return post


def nested(depth: int) -> str:
    """Objects inside objects, a list at the bottom: ``depth`` levels."""
    return '{"a": ' * (depth - 1) + "[1]" + "}" * (depth - 1)


def test_the_nesting_helper_nests_as_asked():
    data, depth = json.loads(nested(5)), 0
    while isinstance(data, dict | list):
        data, depth = (data["a"] if isinstance(data, dict) else data[0]), depth + 1
    assert depth == 5


@pytest.mark.parametrize("depth", [MAX_DEPTH + 1, 900, 100_000])
@pytest.mark.reliability("deep-json")
def test_json_nested_too_deep_is_a_json_400(echo, depth):
    message = api_error(echo(nested(depth)), 400, "parse_error")

    assert f"more than {MAX_DEPTH} levels" in message


@pytest.mark.reliability("deep-json")
def test_100000_open_brackets_are_a_json_400(echo):
    api_error(echo("[" * 100_000), 400, "parse_error")


@pytest.mark.reliability("deep-json")
def test_json_nested_as_deep_as_allowed_is_read(echo):
    response = echo(nested(MAX_DEPTH))

    assert response.status_code == 200
    assert response.json()["received"] == json.loads(nested(MAX_DEPTH))


@pytest.mark.reliability("deep-json")
def test_an_order_nested_100000_deep_is_a_json_400(alice, key_client, funded):
    body = '{"market": ' + "[" * 100_000 + "]" * 100_000 + "}"

    response = key_client(alice, "trade").post(
        "/api/v1/orders/", body, content_type="application/json"
    )

    api_error(response, 400, "parse_error")
    assert not Order.objects.exists()
