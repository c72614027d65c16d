"""JSON that parses but no request can mean is a 400, never a 500: nested
deeper than any request needs (a RecursionError), or holding strings that are
not text (an unpaired surrogate)."""

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


@pytest.mark.parametrize(
    "body",
    [
        r'{"text": "\ud800"}',
        r'{"\udfff": 1}',
        r'{"a": [{"b": "x\udc00y"}]}',
    ],
)
def test_a_string_with_an_unpaired_surrogate_is_a_json_400(echo, body):
    message = api_error(echo(body), 400, "parse_error")

    assert "unpaired surrogate" in message


def test_a_surrogate_pair_is_read_as_its_character(echo):
    response = echo(r'{"text": "\ud83d\ude80"}')

    assert response.status_code == 200
    assert response.json()["received"] == {"text": "🚀"}


@pytest.mark.parametrize("field", ["side", "type", "time_in_force", "self_trade"])
def test_an_order_with_a_surrogate_in_a_choice_is_a_json_400(
    alice, key_client, funded, market, field
):
    order = {"market": market.symbol, "side": "buy", "type": "limit"}
    order |= {"quantity": "1", "price": "100"}
    body = json.dumps(order | {field: "\ud800"})

    response = key_client(alice, "trade").post(
        "/api/v1/orders/", body, content_type="application/json"
    )

    api_error(response, 400, "parse_error")
    assert not Order.objects.exists()
