"""Errors Django answers itself (an unknown URL, a body too large to read, an
uncaught exception) keep the API's JSON shape under /api/ and are the site's
pages elsewhere; so do the API's own 405 and 415."""

from __future__ import annotations

import json

import pytest
from django.test import Client
from rest_framework.test import APIClient

from core.tests.answers import api_error, error_page
from trading.models import Order

pytestmark = pytest.mark.django_db

FIELDS_LIMIT = 2_621_440  # settings.DATA_UPLOAD_MAX_MEMORY_SIZE


@pytest.fixture
def failing_urls(settings):
    settings.ROOT_URLCONF = "core.tests.urls"


def order(**fields) -> dict:
    return {
        "market": "BTC-USDT",
        "side": "buy",
        "type": "limit",
        "quantity": "0.5",
        "price": "100",
        **fields,
    }


@pytest.mark.parametrize(
    "path", ["/api/nothing/", "/api/v2/orders/", "/api/v1/nothing/", "/api/"]
)
@pytest.mark.reliability("malformed-requests")
def test_an_unknown_api_url_is_a_json_404(path):
    api_error(APIClient().get(path), 404, "not_found")


@pytest.mark.parametrize("path", ["/nothing/", "/api/keys/nothing/"])
def test_an_unknown_page_is_the_not_found_page(client, path):
    """The browser pages under /api/ (docs, API keys) answer as pages."""
    error_page(client.get(path), 404)


@pytest.mark.reliability("huge-bodies")
def test_api_fields_over_the_memory_limit_are_a_json_400(alice, key_client, funded):
    body = json.dumps(order(client_order_id="x" * FIELDS_LIMIT))

    response = key_client(alice, "trade").post(
        "/api/v1/orders/", body, content_type="application/json"
    )

    api_error(response, 400, "too_large")
    assert not Order.objects.exists()


@pytest.mark.reliability("huge-bodies")
def test_with_debug_on_what_django_cannot_read_is_still_a_json_400(
    settings, alice, key_client, funded
):
    """As under make run, where Django answers these with its debug page."""
    settings.DEBUG = True
    client = key_client(alice, "trade")
    body = json.dumps(order(client_order_id="x" * FIELDS_LIMIT))
    query = "&".join(f"f{number}=1" for number in range(1001))

    too_large = client.post("/api/v1/orders/", body, content_type="application/json")
    too_many = client.get(f"/api/v1/markets/BTC-USDT/trades/?{query}")

    api_error(too_large, 400, "too_large")
    api_error(too_many, 400, "too_many_fields")
    assert not Order.objects.exists()


@pytest.mark.reliability("huge-bodies")
def test_form_fields_over_the_memory_limit_are_the_bad_request_page(client, db):
    response = client.post(
        "/accounts/login/",
        f"login=alice&password={'x' * FIELDS_LIMIT}",
        content_type="application/x-www-form-urlencoded",
    )

    error_page(response, 400)


@pytest.mark.reliability("huge-bodies")
def test_too_many_query_fields_are_a_json_400(market):
    query = "&".join(f"f{number}=1" for number in range(1001))

    response = APIClient().get(f"/api/v1/markets/BTC-USDT/trades/?{query}")

    api_error(response, 400, "too_many_fields")


@pytest.mark.parametrize("method", ["put", "patch"])
@pytest.mark.reliability("malformed-requests")
def test_a_method_the_api_does_not_allow_is_a_json_405(
    alice, key_client, method, funded
):
    response = getattr(key_client(alice, "trade"), method)(
        "/api/v1/orders/", {}, format="json"
    )

    api_error(response, 405, "method_not_allowed")


@pytest.mark.reliability("malformed-requests")
def test_a_body_the_api_does_not_read_is_a_json_415(alice, key_client, funded):
    response = key_client(alice, "trade").post("/api/v1/orders/", order())

    api_error(response, 415, "unsupported_media_type")
    assert not Order.objects.exists()


@pytest.mark.reliability("malformed-requests")
def test_malformed_json_is_a_json_400(alice, key_client, funded):
    response = key_client(alice, "trade").post(
        "/api/v1/orders/", '{"market": ', content_type="application/json"
    )

    api_error(response, 400, "parse_error")


@pytest.mark.reliability("malformed-requests")
def test_an_uncaught_exception_under_the_api_is_a_json_500(failing_urls):
    client = Client(raise_request_exception=False)

    read = client.get("/api/v1/test/fail/")
    write = client.post("/api/v1/test/fail/")

    assert "try again" in api_error(read, 500, "server_error")
    # A write may have taken effect before it failed: never "nothing changed".
    message = api_error(write, 500, "server_error")
    assert "may have taken effect" in message
    assert "client_order_id" in message


@pytest.mark.reliability("malformed-requests")
def test_an_uncaught_exception_on_a_page_is_the_error_page(failing_urls):
    response = Client(raise_request_exception=False).get("/test/fail/")

    error_page(response, 500)


def test_permission_denied_under_the_api_is_a_json_403(failing_urls):
    api_error(Client().get("/api/v1/test/refuse/"), 403, "permission_denied")
