"""The JSON API under /api/v1/: shapes, errors, authentication, the schema."""

from __future__ import annotations

import re
import secrets
import time
from base64 import b64encode
from datetime import timedelta
from decimal import Decimal as D
from urllib.parse import quote

import pytest
from django.contrib.staticfiles import finders
from django.core.management import call_command
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone
from drf_spectacular.validation import validate_schema
from rest_framework.test import APIClient

from tests.factories import (
    balance,
    buy,
    fund,
    key_client,
    market_make,
    sell,
    token_make,
    user_make,
)
from tests.threads import run_together
from trading.api_keys import api_key_create, api_key_revoke
from trading.matcher import drain
from trading.models import ApiKey, Market, Order, Trade, Withdrawal

pytestmark = pytest.mark.django_db

V1 = "/api/v1"


@pytest.fixture
def anonymous():
    return APIClient()


def limit_order(**fields) -> dict:
    return {
        "market": "BTC-USDT",
        "side": "buy",
        "type": "limit",
        "quantity": "0.5",
        "price": "100",
        **fields,
    }


def error_of(response) -> tuple[int, str]:
    body = response.json()
    assert set(body) == {"error"}, body
    assert body["error"]["message"], body
    return response.status_code, body["error"]["code"]


def documented(client: APIClient, method: str, path: str) -> set[int]:
    """The answers the published schema lists for an operation."""
    schema = client.get("/api/schema/", HTTP_ACCEPT="application/json").json()
    return {int(status) for status in schema["paths"][path][method]["responses"]}


def query_count(callable_) -> int:
    with CaptureQueriesContext(connection) as queries:
        response = callable_()
    assert response.status_code == 200, response.content
    return len(queries)


# -- Public: markets, ticker, depth, trades, candles -------------------------


def test_markets_lists_every_market_with_amounts_as_strings(anonymous, market):
    response = anonymous.get(f"{V1}/markets/")

    assert response.status_code == 200
    assert response["Content-Type"] == "application/json"
    assert response.json() == [
        {
            "symbol": "BTC-USDT",
            "base": "BTC",
            "quote": "USDT",
            "price_step": "0.01",
            "amount_step": "0.0001",
            "min_notional": "1",
            "maker_fee": "0.001",
            "taker_fee": "0.002",
            "status": "open",
        }
    ]


@pytest.mark.parametrize("delisted", ["base", "quote"])
def test_a_market_whose_token_is_delisted_is_halted_as_orders_find_it(
    anonymous, as_alice, market, funded, delisted
):
    token = getattr(market, delisted)
    token.is_active = False
    token.save()

    listed = anonymous.get(f"{V1}/markets/").json()
    order = as_alice.post(f"{V1}/orders/", limit_order(), format="json")

    assert [(m["symbol"], m["status"]) for m in listed] == [("BTC-USDT", "halted")]
    assert error_of(order) == (409, "market_closed")


def test_markets_costs_the_same_queries_for_2_or_20_markets(anonymous, usdt):
    bases = [token_make(f"B{n:02d}") for n in range(20)]
    for base in bases[:2]:
        market_make(base, usdt)
    few = query_count(lambda: anonymous.get(f"{V1}/markets/"))
    for base in bases[2:]:
        market_make(base, usdt)
    many = query_count(lambda: anonymous.get(f"{V1}/markets/"))

    assert few == many == 1
    assert len(anonymous.get(f"{V1}/markets/").json()) == 20


def test_ticker_changes_from_the_price_24h_ago_with_the_windows_volumes_and_book(
    anonymous, market, alice, bob, funded
):
    sell(alice, market, "1", "80")
    buy(bob, market, "1", "80")
    sell(alice, market, "1", "90")
    buy(bob, market, "1", "90")  # the price a day ago, outside the window
    Trade.objects.update(created_at=timezone.now() - timedelta(hours=25))
    sell(alice, market, "1", "100")
    buy(bob, market, "1", "100")
    sell(alice, market, "0.5", "110")
    buy(bob, market, "0.5", "110")
    buy(alice, market, "0.1", "95")
    buy(alice, market, "0.1", "96")
    sell(bob, market, "0.1", "120")

    response = anonymous.get(f"{V1}/markets/btc-usdt/ticker/")

    assert response.status_code == 200
    assert response.json() == {
        "market": "BTC-USDT",
        "last_price": "110",
        "open_price": "90",
        "high_price": "110",
        "low_price": "100",
        "change": "20",
        "change_percent": "22.22",
        "base_volume": "1.5",
        "quote_volume": "155",
        "best_bid": "96",
        "best_ask": "120",
    }


def test_ticker_of_a_quiet_market_has_no_prices_and_zero_volume(anonymous, market):
    body = anonymous.get(f"{V1}/markets/BTC-USDT/ticker/").json()

    assert body["last_price"] is None
    assert body["change_percent"] is None
    assert body["best_bid"] is None
    assert (body["base_volume"], body["quote_volume"]) == ("0", "0")


def test_ticker_change_is_negative_when_the_price_fell(
    anonymous, market, alice, bob, funded
):
    sell(alice, market, "1", "300")
    buy(bob, market, "1", "300")
    sell(alice, market, "1", "299")
    buy(bob, market, "1", "299")

    body = anonymous.get(f"{V1}/markets/BTC-USDT/ticker/").json()

    assert (body["change"], body["change_percent"]) == ("-1", "-0.33")


@pytest.mark.parametrize("endpoint", ["ticker", "depth", "trades", "candles"])
def test_an_unknown_market_is_404_not_found(anonymous, market, endpoint):
    response = anonymous.get(f"{V1}/markets/DOGE-USDT/{endpoint}/")

    assert error_of(response) == (404, "not_found")
    assert "DOGE-USDT" in response.json()["error"]["message"]


def test_depth_sums_open_quantity_per_price_best_first(
    anonymous, market, alice, bob, funded
):
    buy(alice, market, "1", "99")
    buy(bob, market, "0.25", "99")
    buy(alice, market, "0.5", "98.5")
    sell(alice, market, "1", "101")
    sell(bob, market, "0.4", "100.5")

    response = anonymous.get(f"{V1}/markets/BTC-USDT/depth/")

    assert response.status_code == 200
    assert response.json() == {
        "market": "BTC-USDT",
        "bids": [
            {"price": "99", "quantity": "1.25"},
            {"price": "98.5", "quantity": "0.5"},
        ],
        "asks": [
            {"price": "100.5", "quantity": "0.4"},
            {"price": "101", "quantity": "1"},
        ],
    }
    limited = anonymous.get(f"{V1}/markets/BTC-USDT/depth/?limit=1").json()
    assert [len(limited["bids"]), len(limited["asks"])] == [1, 1]


@pytest.mark.parametrize("limit", ["0", "501", "many"])
@pytest.mark.reliability("malformed-requests")
def test_depth_refuses_a_bad_limit(anonymous, market, limit):
    response = anonymous.get(f"{V1}/markets/BTC-USDT/depth/?limit={limit}")

    assert error_of(response) == (400, "invalid")
    assert list(response.json()["error"]["fields"]) == ["limit"]


def test_trades_lists_the_latest_first_with_amounts_as_strings(
    anonymous, market, alice, bob, funded
):
    sell(alice, market, "1", "100")
    buy(bob, market, "0.3", "100")
    buy(alice, market, "1", "99")
    sell(bob, market, "0.2", "99")

    response = anonymous.get(f"{V1}/markets/BTC-USDT/trades/")

    assert response.status_code == 200
    trades = response.json()
    assert [
        (t["price"], t["quantity"], t["quote_amount"], t["taker_side"]) for t in trades
    ] == [("99", "0.2", "19.8", "sell"), ("100", "0.3", "30", "buy")]
    assert trades[0]["id"] > trades[1]["id"]
    assert re.match(r"^\d{4}-\d\d-\d\dT", trades[0]["created_at"])
    assert len(anonymous.get(f"{V1}/markets/BTC-USDT/trades/?limit=1").json()) == 1


def test_candles_are_ohlcv_strings_with_an_iso_open_time(
    anonymous, market, alice, bob, funded
):
    for price, quantity in [("100", "1"), ("104", "0.5"), ("98", "0.25"), ("101", "1")]:
        sell(alice, market, quantity, price)
        buy(bob, market, quantity, price)

    response = anonymous.get(f"{V1}/markets/BTC-USDT/candles/?interval=1d")

    assert response.status_code == 200
    [candle] = response.json()
    open_time = candle.pop("open_time")
    assert open_time.endswith(("T00:00:00Z", "T00:00:00+00:00"))
    assert candle == {
        "open": "100",
        "high": "104",
        "low": "98",
        "close": "101",
        "volume": "2.75",
    }
    minutes = anonymous.get(f"{V1}/markets/BTC-USDT/candles/?interval=1m&limit=5")
    assert minutes.status_code == 200


@pytest.mark.parametrize("query", ["interval=2m", "interval=1w", "limit=0"])
@pytest.mark.reliability("malformed-requests")
def test_candles_refuse_a_bad_interval_or_limit(anonymous, market, query):
    response = anonymous.get(f"{V1}/markets/BTC-USDT/candles/?{query}")

    assert error_of(response) == (400, "invalid")
    assert set(response.json()["error"]["fields"]) <= {"interval", "limit"}


def test_public_market_data_costs_the_same_queries_for_2_or_20_items(
    anonymous, market, alice, bob, funded
):
    def counts() -> list[int]:
        return [
            query_count(lambda url=url: anonymous.get(url))
            for url in (
                f"{V1}/markets/BTC-USDT/ticker/",
                f"{V1}/markets/BTC-USDT/depth/",
                f"{V1}/markets/BTC-USDT/trades/",
                f"{V1}/markets/BTC-USDT/candles/",
            )
        ]

    def trade_and_rest(count: int) -> None:
        for n in range(count):
            price = str(100 + n)
            sell(alice, market, "0.1", price)
            buy(bob, market, "0.1", price)
            buy(bob, market, "0.1", str(50 + n))
            sell(alice, market, "0.1", str(200 + n))

    trade_and_rest(2)
    few = counts()
    trade_and_rest(18)
    assert counts() == few
    assert len(anonymous.get(f"{V1}/markets/BTC-USDT/trades/").json()) == 20


@pytest.mark.reliability("csrf-api")
def test_public_endpoints_ignore_a_session_and_need_no_csrf(market, alice):
    client = APIClient(enforce_csrf_checks=True)
    client.force_login(alice)

    assert client.get(f"{V1}/markets/").status_code == 200


# -- Private: authentication and scopes --------------------------------------

PRIVATE_READS = ["balances/", "orders/", "orders/1/", "fills/", "withdrawals/"]


@pytest.mark.parametrize("path", PRIVATE_READS)
@pytest.mark.reliability("access-anonymous")
def test_private_endpoints_refuse_anonymous_callers_with_401(anonymous, path):
    response = anonymous.get(f"{V1}/{path}")

    assert error_of(response) == (401, "not_authenticated")
    assert response["WWW-Authenticate"] == "Api-Key"


@pytest.mark.reliability("access-anonymous")
def test_anonymous_cannot_place_an_order(anonymous, market):
    response = anonymous.post(f"{V1}/orders/", limit_order(), format="json")

    assert error_of(response) == (401, "not_authenticated")
    assert not Order.objects.exists()


@pytest.mark.reliability("csrf-api")
def test_a_session_post_without_the_csrf_token_is_refused(market, alice, funded):
    client = APIClient(enforce_csrf_checks=True)
    client.force_login(alice)

    response = client.post(f"{V1}/orders/", limit_order(), format="json")

    assert error_of(response) == (403, "csrf_failed")
    assert not Order.objects.exists()


@pytest.mark.reliability("csrf-api")
def test_every_unsafe_method_the_schema_has_needs_the_csrf_header_it_documents(
    anonymous, market, alice, funded
):
    schema = anonymous.get("/api/schema/", HTTP_ACCEPT="application/json").json()
    unsafe = {
        method.upper()
        for operations in schema["paths"].values()
        for method in operations
        if method in ("post", "put", "patch", "delete")
    }
    cookie_auth = schema["components"]["securitySchemes"]["cookieAuth"]
    order = buy(alice, market, "0.5", "100")
    client = APIClient(enforce_csrf_checks=True)
    client.force_login(alice)

    amended = client.patch(f"{V1}/orders/{order.pk}/", {"price": "101"}, format="json")
    cancelled = client.delete(f"{V1}/orders/{order.pk}/")

    assert {"POST", "PATCH", "DELETE"} <= unsafe
    assert all(method in cookie_auth["description"] for method in unsafe)
    assert error_of(amended) == error_of(cancelled) == (403, "csrf_failed")
    order.refresh_from_db()
    assert (order.price, order.is_open) == (D("100"), True)


@pytest.mark.reliability("csrf-api")
def test_a_session_post_with_the_csrf_token_is_accepted(market, alice, funded):
    client = APIClient(enforce_csrf_checks=True)
    client.force_login(alice)
    token = secrets.token_hex(16)
    client.cookies["csrftoken"] = token

    response = client.post(
        f"{V1}/orders/", limit_order(), format="json", HTTP_X_CSRFTOKEN=token
    )

    assert response.status_code == 201, response.content
    assert client.get(f"{V1}/balances/").status_code == 200


@pytest.mark.reliability("key-scope")
def test_a_read_key_reads_but_cannot_trade_or_withdraw(market, alice, funded):
    order = buy(alice, market, "0.5", "100")
    client = key_client(alice, "read")

    assert client.get(f"{V1}/balances/").status_code == 200
    assert client.get(f"{V1}/orders/{order.pk}/").status_code == 200
    refusals = [
        client.post(f"{V1}/orders/", limit_order(), format="json"),
        client.delete(f"{V1}/orders/{order.pk}/"),
        client.post(
            f"{V1}/withdrawals/",
            {"token": "BTC", "amount": "1", "address": "bc1q", "reference": "w1"},
            format="json",
        ),
    ]

    assert [error_of(response) for response in refusals] == [
        (403, "insufficient_scope")
    ] * 3
    assert Order.objects.count() == 1
    assert Order.objects.get().is_open
    assert not Withdrawal.objects.exists()


@pytest.mark.reliability("csrf-api")
def test_a_trade_key_places_and_cancels_orders_without_csrf(market, alice, funded):
    client = key_client(alice, "trade", enforce_csrf_checks=True)

    placed = client.post(f"{V1}/orders/", limit_order(), format="json")
    assert placed.status_code == 201, placed.content
    cancelled = client.delete(f"{V1}/orders/{placed.json()['id']}/")

    assert cancelled.status_code == 200
    assert cancelled.json()["status"] == "cancelled"
    assert client.get(f"{V1}/balances/").status_code == 200


@pytest.mark.reliability("key-invalid")
def test_a_revoked_key_is_refused(market, alice):
    _, key = api_key_create(user=alice, name="bot", scopes=["trade"])
    api_key_revoke(user=alice, api_key=ApiKey.objects.get())
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Api-Key {key}")

    assert error_of(client.get(f"{V1}/balances/")) == (401, "api_key_revoked")


@pytest.mark.parametrize(
    "header",
    [
        "Api-Key {prefix}.wrong-secret",
        "Api-Key {prefix}.{secret}x",
        "Api-Key 0000000000000000.{secret}",
        "Api-Key {prefix}",
        "Api-Key",
        "Api-Key {prefix}.{secret} extra",
        "api-key {prefix}.",
    ],
)
@pytest.mark.reliability("key-invalid")
def test_a_wrong_or_malformed_key_is_refused(market, alice, header):
    _, key = api_key_create(user=alice, name="bot", scopes=["trade"])
    prefix, secret = key.split(".")
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=header.format(prefix=prefix, secret=secret))

    response = client.get(f"{V1}/balances/")

    assert error_of(response) == (401, "invalid_api_key")


@pytest.mark.reliability("key-invalid")
def test_the_key_of_a_disabled_account_is_refused(market, alice):
    client = key_client(alice, "read")
    alice.is_active = False
    alice.save()

    assert error_of(client.get(f"{V1}/balances/")) == (401, "user_inactive")


@pytest.mark.reliability("access-by-id")
def test_a_key_acts_only_for_its_own_user(market, alice, bob, funded):
    bobs = buy(bob, market, "0.5", "100")
    client = key_client(alice, "trade")

    assert error_of(client.get(f"{V1}/orders/{bobs.pk}/")) == (404, "not_found")
    assert error_of(client.delete(f"{V1}/orders/{bobs.pk}/")) == (404, "not_found")
    assert client.get(f"{V1}/orders/").json()["results"] == []
    assert Order.objects.get(pk=bobs.pk).is_open


# -- Private: balances --------------------------------------------------------


def test_balances_show_available_and_locked_per_token(as_alice, market, alice, funded):
    buy(alice, market, "0.5", "100")

    response = as_alice.get(f"{V1}/balances/")

    assert response.status_code == 200
    assert response.json() == [
        {"token": "BTC", "available": "10", "locked": "0"},
        {"token": "USDT", "available": "9950", "locked": "50"},
    ]


# -- Private: orders ----------------------------------------------------------


def test_placing_a_limit_order_returns_it_with_amounts_as_strings(
    as_alice, market, alice, funded
):
    response = as_alice.post(
        f"{V1}/orders/", limit_order(client_order_id="my-1"), format="json"
    )

    assert response.status_code == 201
    body = response.json()
    order = Order.objects.get()
    assert body["id"] == order.pk
    assert {k: v for k, v in body.items() if not k.endswith("_at")} == {
        "id": order.pk,
        "url": f"{V1}/orders/{order.pk}/",
        "market": "BTC-USDT",
        "side": "buy",
        "type": "limit",
        "time_in_force": "GTC",
        "post_only": False,
        "self_trade": "cancel_newest",
        "client_order_id": "my-1",
        "price": "100",
        "stop_price": None,
        "quantity": "0.5",
        "quote_amount": None,
        "protection_price": None,
        "filled_quantity": "0",
        "remaining": "0.5",
        "executed_value": "0",
        "fee": "0",
        "fee_token": "BTC",
        "locked": "50",
        "status": "open",
        "cancel_reason": None,
        "reject_reason": None,
    }
    assert balance(alice, market.quote) == (D("9950"), D("50"))


def test_a_market_order_fills_against_the_book(as_bob, market, alice, bob, funded):
    sell(alice, market, "1", "100")

    response = as_bob.post(
        f"{V1}/orders/",
        {
            "market": "BTC-USDT",
            "side": "buy",
            "type": "market",
            "quantity": "0.4",
            "protection_price": "105",
        },
        format="json",
    )

    assert response.status_code == 201
    body = response.json()
    assert (body["status"], body["price"], body["executed_value"]) == (
        "filled",
        None,
        "40",
    )
    assert (body["fee"], body["fee_token"]) == ("0.0008", "BTC")
    assert (body["protection_price"], body["locked"]) == ("105", "0")


def test_a_market_buy_by_quote_amount_spends_it(as_bob, market, alice, bob, funded):
    sell(alice, market, "1", "100")

    response = as_bob.post(
        f"{V1}/orders/",
        {"market": "BTC-USDT", "side": "buy", "type": "market", "quote_amount": "25"},
        format="json",
    )

    assert response.status_code == 201
    body = response.json()
    assert (body["quantity"], body["quote_amount"], body["remaining"]) == (
        None,
        "25",
        None,
    )
    assert (body["status"], body["filled_quantity"]) == ("filled", "0.25")
    assert balance(bob, market.quote) == (D("9975"), D("0"))


def test_a_market_buy_by_quantity_without_protection_price_is_refused(
    as_bob, market, funded
):
    response = as_bob.post(
        f"{V1}/orders/",
        {"market": "BTC-USDT", "side": "buy", "type": "market", "quantity": "0.4"},
        format="json",
    )

    assert error_of(response) == (400, "invalid_order")


@pytest.mark.reliability("outcome-repeat")
def test_repeating_an_order_with_its_client_order_id_returns_it_with_200(
    as_alice, market, funded
):
    order = limit_order(client_order_id="abc")
    first = as_alice.post(f"{V1}/orders/", order, format="json")
    again = as_alice.post(f"{V1}/orders/", order, format="json")
    other = as_alice.post(f"{V1}/orders/", {**order, "quantity": "0.6"}, format="json")

    assert (first.status_code, again.status_code) == (201, 200)
    assert again.json()["id"] == first.json()["id"]
    assert error_of(other) == (409, "duplicate_client_order_id")
    assert Order.objects.count() == 1


@pytest.mark.reliability("outcome-repeat")
def test_a_repeat_of_an_order_self_trade_prevention_shrank_trades_no_more(
    as_alice, alice, bob, market, funded
):
    sell(alice, market, "1", "100")
    sell(bob, market, "5", "100")
    order = {
        "market": "BTC-USDT",
        "side": "buy",
        "type": "market",
        "quote_amount": "300",
        "self_trade": "decrement_and_cancel",
        "client_order_id": "bot-42",
    }
    first = as_alice.post(f"{V1}/orders/", order, format="json")
    spent = balance(alice, market.quote)

    again = as_alice.post(f"{V1}/orders/", order, format="json")

    # Meeting her own sell took 100 off what the order may spend.
    assert (first.status_code, first.json()["quote_amount"]) == (201, "200")
    assert again.status_code == 200
    assert again.json()["id"] == first.json()["id"]
    assert balance(alice, market.quote) == spent
    assert Order.objects.filter(user=alice, client_order_id="bot-42").count() == 1


@pytest.mark.reliability("outcome-repeat")
def test_a_repeat_of_an_amended_order_returns_it(as_alice, alice, market, funded):
    order = limit_order(client_order_id="amended", quantity="2")
    first = as_alice.post(f"{V1}/orders/", order, format="json")
    url = f"{V1}/orders/{first.json()['id']}/"
    assert as_alice.patch(url, {"quantity": "1"}, format="json").status_code == 200

    again = as_alice.post(f"{V1}/orders/", order, format="json")

    assert again.status_code == 200
    assert (again.json()["id"], again.json()["quantity"]) == (first.json()["id"], "1")
    assert Order.objects.filter(user=alice).count() == 1


@pytest.mark.parametrize("status", ["accepted", "waiting"])
def test_a_stop_limit_not_yet_in_the_book_is_refused_an_amend_reserving_nothing(
    settings, as_alice, alice, market, funded, status
):
    # Acknowledged at once, the order stays accepted until the matcher runs.
    response = "ack" if status == "accepted" else "result"
    stop = limit_order(type="stop_limit", price="110", stop_price="105", quantity="1")
    placed = as_alice.post(
        f"{V1}/orders/", {**stop, "response": response}, format="json"
    )
    url = f"{V1}/orders/{placed.json()['id']}/"
    assert as_alice.get(url).json()["status"] == status

    refused = as_alice.patch(url, {"price": "120"}, format="json")

    assert error_of(refused) == (409, "order_not_open")
    assert "only a limit order in the book" in refused.json()["error"]["message"]
    order = as_alice.get(url).json()
    assert (order["status"], order["price"], order["locked"]) == (status, "110", "110")
    assert balance(alice, market.quote) == (D("9890"), D("110"))


def test_cancel_all_over_many_markets_waits_for_the_matcher_once_in_all(
    settings, as_alice, alice, market, usdt, funded
):
    markets = [market] + [
        market_make(token_make(s), usdt) for s in ("ETH", "SOL", "XRP", "ADA")
    ]
    orders = [buy(alice, m, "0.5", "100") for m in markets]
    settings.ORDER_MATCH_INLINE = False  # no matcher answers
    settings.ORDER_RESULT_WAIT_SECONDS = 0.5

    started = time.monotonic()
    response = as_alice.post(f"{V1}/orders/cancel-all/", {}, format="json")
    took = time.monotonic() - started

    assert (response.status_code, response.json()) == (
        202,
        {"done": False, "cancelled": []},
    )
    assert took < 1.5  # one wait of 0.5 s; one per market was 2.5 s
    for m in markets:
        drain(market_id=m.pk)  # the matcher, started again, takes the cancels
    assert {o.status for o in Order.objects.filter(pk__in=[o.pk for o in orders])} == {
        Order.Status.CANCELLED
    }


@pytest.mark.parametrize(
    ("fields", "status", "code"),
    [
        ({"quantity": "1000"}, 422, "insufficient_balance"),
        ({"price": "100.001"}, 400, "precision_too_high"),
        ({"quantity": "0.00001"}, 400, "precision_too_high"),
        ({"quantity": "0.0000000000000000001"}, 400, "precision_too_high"),
        ({"quantity": "0.0001", "price": "1"}, 422, "below_min_notional"),
        ({"quantity": "-1"}, 400, "invalid_amount"),
        ({"quantity": "0"}, 400, "invalid_amount"),
        ({"quantity": " 0.5"}, 400, "invalid"),
        ({"quantity": "0.5\n"}, 400, "invalid"),
        ({"quantity": "\u0663"}, 400, "invalid"),  # ARABIC-INDIC DIGIT THREE
        ({"type": "market"}, 400, "invalid_order"),
        ({"time_in_force": "IOC", "post_only": True}, 400, "invalid_order"),
    ],
)
def test_refused_orders_answer_the_services_code(
    as_alice, market, funded, fields, status, code
):
    response = as_alice.post(f"{V1}/orders/", limit_order(**fields), format="json")

    assert error_of(response) == (status, code)
    assert not Order.objects.exists()


def test_a_post_only_order_that_would_take_is_refused(as_alice, market, bob, funded):
    sell(bob, market, "1", "100")

    response = as_alice.post(
        f"{V1}/orders/", limit_order(price="100", post_only=True), format="json"
    )

    assert error_of(response) == (422, "post_only_would_take")
    # The matcher refused it: it stays as a rejected order, nothing reserved.
    rejected = Order.objects.get(user__username="alice")
    assert (rejected.status, rejected.reject_reason, rejected.locked) == (
        "rejected",
        "post_only_would_take",
        0,
    )


def test_an_order_whose_trade_would_take_a_balance_to_10_18_is_a_422_saying_so(
    as_alice, market, alice, bob, usdt, funded
):
    # Bob's USDT would pass what a balance holds. On PostgreSQL the write
    # overflowed: a 500 matcher_error telling alice to try again, in vain.
    fund(bob, usdt, "600000000000000000")
    fund(alice, usdt, "800000000000000000")
    resting = sell(bob, market, "1", "800000000000000000")

    response = as_alice.post(
        f"{V1}/orders/",
        limit_order(quantity="1", price="800000000000000000"),
        format="json",
    )

    assert error_of(response) == (422, "balance_limit")
    assert "10^18" in response.json()["error"]["message"]
    rejected = Order.objects.get(user=alice)
    assert (rejected.status, rejected.reject_reason, rejected.locked) == (
        "rejected",
        "balance_limit",
        0,
    )
    resting.refresh_from_db()
    assert (resting.status, resting.filled_quantity) == ("open", 0)
    assert not Trade.objects.exists()
    assert balance(alice, usdt) == (D("800000000000010000"), 0)
    assert balance(bob, usdt) == (D("600000000000010000"), 0)


def test_an_order_on_a_halted_market_is_a_conflict(as_alice, market, funded):
    Market.objects.filter(pk=market.pk).update(status=Market.Status.HALTED)

    response = as_alice.post(f"{V1}/orders/", limit_order(), format="json")

    assert error_of(response) == (409, "market_closed")


@pytest.mark.parametrize(
    ("fields", "bad"),
    [
        ({"quantity": 0.5}, "quantity"),
        ({"quantity": "1e-3"}, "quantity"),
        ({"quantity": "half"}, "quantity"),
        ({"price": True}, "price"),
        ({"side": "long"}, "side"),
        ({"type": "stop"}, "type"),
        ({"time_in_force": "DAY"}, "time_in_force"),
        ({"market": "DOGE-USDT"}, "market"),
        ({"client_order_id": "x" * 65}, "client_order_id"),
    ],
)
@pytest.mark.reliability("number-abuse")
def test_malformed_order_fields_are_400_invalid_naming_the_field(
    as_alice, market, funded, fields, bad
):
    response = as_alice.post(f"{V1}/orders/", limit_order(**fields), format="json")

    assert error_of(response) == (400, "invalid")
    assert list(response.json()["error"]["fields"]) == [bad]
    assert response.json()["error"]["message"].startswith(f"{bad}: ")


@pytest.mark.reliability("malformed-requests")
def test_missing_order_fields_are_all_named(as_alice, market):
    response = as_alice.post(f"{V1}/orders/", {}, format="json")

    assert error_of(response) == (400, "invalid")
    assert set(response.json()["error"]["fields"]) == {"market", "side", "type"}
    without_quantity = {"market": "BTC-USDT", "side": "buy", "type": "limit"}
    response = as_alice.post(f"{V1}/orders/", without_quantity, format="json")
    assert set(response.json()["error"]["fields"]) == {"quantity"}


@pytest.mark.reliability("malformed-requests")
def test_a_body_that_is_not_json_is_a_parse_error(as_alice, market):
    response = as_alice.post(
        f"{V1}/orders/", "{not json", content_type="application/json"
    )

    assert error_of(response) == (400, "parse_error")


def test_orders_list_filters_by_status_and_market_newest_first(
    as_alice, market, alice, bob, funded, usdt
):
    eth = token_make("ETH", decimals=8)
    fund(alice, eth, "10")
    eth_market = market_make(eth, usdt)
    resting = buy(alice, market, "0.5", "100")
    cancelled = buy(alice, market, "0.5", "99")
    as_alice.delete(f"{V1}/orders/{cancelled.pk}/")
    on_eth = sell(alice, eth_market, "1", "2000")
    buy(bob, market, "0.5", "98")

    def ids(query: str) -> list[int]:
        response = as_alice.get(f"{V1}/orders/{query}")
        assert response.status_code == 200, response.content
        return [order["id"] for order in response.json()["results"]]

    assert ids("") == [on_eth.pk, cancelled.pk, resting.pk]
    assert ids("?status=open") == [on_eth.pk, resting.pk]
    assert ids("?status=closed") == [cancelled.pk]
    assert ids("?market=eth-usdt") == [on_eth.pk]
    assert ids("?status=open&market=BTC-USDT") == [resting.pk]
    assert error_of(as_alice.get(f"{V1}/orders/?status=done")) == (400, "invalid")
    assert error_of(as_alice.get(f"{V1}/orders/?market=X-Y")) == (400, "invalid")


def test_orders_list_pages_with_a_cursor(as_alice, market, alice, funded):
    placed = [buy(alice, market, "0.01", str(100 + n)).pk for n in range(5)]

    first = as_alice.get(f"{V1}/orders/?limit=2").json()
    second = as_alice.get(first["next"]).json()
    third = as_alice.get(second["next"]).json()

    pages = [first, second, third]
    assert [[o["id"] for o in page["results"]] for page in pages] == [
        placed[:2:-1][:2],
        placed[2:0:-1],
        placed[:1],
    ]
    assert third["next"] is None
    bad = as_alice.get(f"{V1}/orders/?cursor=garbage")
    assert error_of(bad) == (400, "invalid")


def cursor_of(text: str) -> str:
    """A cursor as DRF writes one, around any text."""
    return quote(b64encode(text.encode()).decode())


def rows_made(path: str, *, as_alice, alice, bob, market) -> list[int]:
    """Three rows of alice's on the list at ``path``, their ids oldest first."""
    if path == "orders":
        return [buy(alice, market, "0.01", str(100 + n)).pk for n in range(3)]
    if path == "fills":
        for n in range(3):
            sell(alice, market, "0.01", str(100 + n))
            buy(bob, market, "0.01", str(100 + n))
        return list(Trade.objects.order_by("pk").values_list("pk", flat=True))
    return [
        as_alice.post(
            f"{V1}/withdrawals/",
            withdrawal(amount="0.1", reference=f"w-{n}"),
            format="json",
        ).json()["id"]
        for n in range(3)
    ]


@pytest.mark.parametrize("path", ["orders", "fills", "withdrawals"])
def test_each_list_pages_with_its_next_and_previous_links(
    as_alice, alice, bob, market, funded, path
):
    oldest, middle, newest = rows_made(
        path, as_alice=as_alice, alice=alice, bob=bob, market=market
    )

    first = as_alice.get(f"{V1}/{path}/?limit=2").json()
    second = as_alice.get(first["next"]).json()
    back = as_alice.get(second["previous"]).json()

    def ids(page) -> list[int]:
        return [row["id"] for row in page["results"]]

    assert ids(first) == [newest, middle]
    assert ids(second) == [oldest]
    assert second["next"] is None
    assert ids(back) == [newest, middle]


@pytest.mark.reliability("malformed-requests")
@pytest.mark.parametrize("path", ["orders", "fills", "withdrawals"])
@pytest.mark.parametrize(
    "text",
    [
        "p=abc",
        "p=1.5",
        "p=",
        "p=-1",
        "p=%2B1",
        "p=%201",
        "p=1_0",
        "p=\u0661",
        "p=" + "9" * 5000,
        "r=1&p=abc",
    ],
)
def test_a_cursor_whose_position_is_no_id_is_a_400_not_a_500(
    as_alice, market, path, text
):
    response = as_alice.get(f"{V1}/{path}/?cursor={cursor_of(text)}")

    assert error_of(response) == (400, "invalid")
    assert response.json()["error"]["fields"] == {
        "cursor": ["This cursor is not valid."]
    }


@pytest.mark.reliability("malformed-requests")
@pytest.mark.parametrize("path", ["orders", "fills", "withdrawals"])
@pytest.mark.parametrize("cursor", ["", "%3D%3D", "!!", cursor_of("o=0")])
def test_a_cursor_naming_no_page_is_refused_not_taken_for_the_first(
    as_alice, alice, market, funded, path, cursor
):
    buy(alice, market, "0.01", "100")

    response = as_alice.get(f"{V1}/{path}/?cursor={cursor}")

    assert error_of(response) == (400, "invalid")
    assert list(response.json()["error"]["fields"]) == ["cursor"]


def test_a_link_back_to_the_first_page_has_no_cursor(as_alice, market):
    # Backwards past the newest row, the next page is the first one.
    past_the_newest = as_alice.get(f"{V1}/orders/?cursor={cursor_of('o=5&r=1')}")

    link = past_the_newest.json()["next"]
    assert link == f"http://testserver{V1}/orders/"
    assert as_alice.get(link).status_code == 200


@pytest.mark.parametrize(
    ("field", "value"),
    [("client_order_id", 7), ("market", 1), ("post_only", "true"), ("post_only", 1)],
)
@pytest.mark.reliability("malformed-requests")
def test_an_order_field_of_another_json_type_is_refused(
    as_alice, market, funded, field, value
):
    response = as_alice.post(
        f"{V1}/orders/", limit_order(**{field: value}), format="json"
    )

    assert error_of(response) == (400, "invalid")
    assert list(response.json()["error"]["fields"]) == [field]
    assert not Order.objects.exists()


@pytest.mark.parametrize("path", ["orders", "fills", "withdrawals"])
@pytest.mark.parametrize("limit", ["0", "101", "ten", ""])
@pytest.mark.reliability("malformed-requests")
def test_lists_refuse_a_page_size_they_cannot_give(as_alice, path, limit):
    response = as_alice.get(f"{V1}/{path}/?limit={limit}")

    assert error_of(response) == (400, "invalid")
    assert list(response.json()["error"]["fields"]) == ["limit"]


@pytest.mark.parametrize(
    "query",
    [
        "orders/?market=",
        "orders/?status=",
        "fills/?market=",
        "markets/BTC-USDT/depth/?limit=",
        "markets/BTC-USDT/trades/?limit=",
        "markets/BTC-USDT/candles/?interval=",
    ],
)
@pytest.mark.reliability("malformed-requests")
def test_an_empty_query_value_is_refused_not_taken_for_none(as_alice, market, query):
    response = as_alice.get(f"{V1}/{query}")

    assert error_of(response) == (400, "invalid")
    name = query.split("?")[1].removesuffix("=")
    assert list(response.json()["error"]["fields"]) == [name]


def test_orders_list_costs_the_same_queries_for_2_or_20_orders(market, alice, funded):
    client = key_client(alice, "read")
    client.get(f"{V1}/balances/")  # records the key's first use
    for n in range(2):
        buy(alice, market, "0.01", str(100 + n))
    few = query_count(lambda: client.get(f"{V1}/orders/"))
    for n in range(18):
        sell(alice, market, "0.01", str(300 + n))
    many = query_count(lambda: client.get(f"{V1}/orders/"))

    assert few == many
    assert len(client.get(f"{V1}/orders/").json()["results"]) == 20


def test_an_order_is_shown_and_cancelled_by_its_id(as_alice, market, alice, funded):
    order = buy(alice, market, "0.5", "100")

    shown = as_alice.get(f"{V1}/orders/{order.pk}/")
    cancelled = as_alice.delete(f"{V1}/orders/{order.pk}/")
    again = as_alice.delete(f"{V1}/orders/{order.pk}/")

    assert shown.status_code == 200
    assert shown.json()["status"] == "open"
    assert cancelled.status_code == 200
    assert (cancelled.json()["status"], cancelled.json()["cancel_reason"]) == (
        "cancelled",
        "user",
    )
    assert cancelled.json()["locked"] == "0"
    assert balance(alice, market.quote) == (D("10000"), D("0"))
    assert error_of(again) == (409, "order_not_open")
    assert error_of(as_alice.get(f"{V1}/orders/999999/")) == (404, "not_found")


PATHS = ["balances", "withdrawals"]


def test_balances_and_withdrawals_cost_the_same_queries_for_2_or_20_rows(
    as_alice, alice
):
    tokens = [token_make(f"T{n:02d}") for n in range(20)]

    def fill(selected) -> None:
        for token in selected:
            fund(alice, token, "5")
            as_alice.post(
                f"{V1}/withdrawals/",
                withdrawal(token=token.symbol, reference=f"w-{token.symbol}"),
                format="json",
            )

    fill(tokens[:2])
    few = [query_count(lambda p=p: as_alice.get(f"{V1}/{p}/")) for p in PATHS]
    fill(tokens[2:])
    many = [query_count(lambda p=p: as_alice.get(f"{V1}/{p}/")) for p in PATHS]

    assert few == many
    assert len(as_alice.get(f"{V1}/balances/").json()) == 20
    assert len(as_alice.get(f"{V1}/withdrawals/").json()["results"]) == 20


# -- Private: fills -----------------------------------------------------------


def test_fills_show_each_side_with_its_fee_and_liquidity(
    as_alice, as_bob, market, alice, bob, funded
):
    maker = sell(alice, market, "1", "100")
    taker = buy(bob, market, "0.5", "100")

    [alices] = as_alice.get(f"{V1}/fills/").json()["results"]
    [bobs] = as_bob.get(f"{V1}/fills/").json()["results"]

    trade = Trade.objects.get()
    common = {
        "id": trade.pk,
        "market": "BTC-USDT",
        "price": "100",
        "quantity": "0.5",
        "quote_amount": "50",
    }
    assert {k: v for k, v in alices.items() if k != "created_at"} == {
        **common,
        "order_id": maker.pk,
        "side": "sell",
        "liquidity": "maker",
        "fee": "0.05",
        "fee_token": "USDT",
    }
    assert {k: v for k, v in bobs.items() if k != "created_at"} == {
        **common,
        "order_id": taker.pk,
        "side": "buy",
        "liquidity": "taker",
        "fee": "0.001",
        "fee_token": "BTC",
    }
    assert as_alice.get(f"{V1}/fills/?market=BTC-USDT").json()["results"]


def test_fills_cost_the_same_queries_for_2_or_20_trades(
    as_alice, market, alice, bob, funded
):
    def trade(count: int) -> None:
        for n in range(count):
            sell(alice, market, "0.01", str(100 + n))
            buy(bob, market, "0.01", str(100 + n))

    as_alice.get(f"{V1}/fills/")  # a session's first request also records it
    trade(2)
    few = query_count(lambda: as_alice.get(f"{V1}/fills/"))
    trade(18)
    many = query_count(lambda: as_alice.get(f"{V1}/fills/"))

    assert few == many
    assert len(as_alice.get(f"{V1}/fills/").json()["results"]) == 20


# -- Private: withdrawals ------------------------------------------------------


def withdrawal(**fields) -> dict:
    return {
        "token": "BTC",
        "amount": "1.5",
        "address": "bc1qexample",
        "reference": "w-1",
        **fields,
    }


def test_a_withdrawal_request_locks_the_amount(as_alice, alice, btc, funded):
    response = as_alice.post(f"{V1}/withdrawals/", withdrawal(), format="json")

    assert response.status_code == 201
    body = response.json()
    assert {k: v for k, v in body.items() if k not in ("id", "created_at")} == {
        "token": "BTC",
        "amount": "1.5",
        "address": "bc1qexample",
        "network": "",
        "memo": "",
        "reference": "w-1",
        "status": "pending",
        "decided_at": None,
        "reason": "",
    }
    assert balance(alice, btc) == (D("8.5"), D("1.5"))
    listed = as_alice.get(f"{V1}/withdrawals/").json()["results"]
    assert [w["id"] for w in listed] == [body["id"]]


@pytest.mark.reliability("auth-reauth")
def test_a_browser_session_withdraws_only_after_confirming_the_password(
    alice, btc, funded
):
    client = APIClient()
    client.force_login(alice)

    response = client.post(f"{V1}/withdrawals/", withdrawal(), format="json")

    assert response.status_code == 403
    assert response.json()["error"]["code"] == "reauthentication_required"
    assert balance(alice, btc) == (D("10"), D("0"))


@pytest.mark.reliability("outcome-repeat")
def test_repeating_a_withdrawal_reference_returns_the_first_with_200(
    as_alice, alice, btc, funded
):
    first = as_alice.post(f"{V1}/withdrawals/", withdrawal(), format="json")
    again = as_alice.post(f"{V1}/withdrawals/", withdrawal(), format="json")
    other = as_alice.post(f"{V1}/withdrawals/", withdrawal(amount="2"), format="json")

    assert (first.status_code, again.status_code) == (201, 200)
    assert again.json()["id"] == first.json()["id"]
    assert error_of(other) == (409, "duplicate_reference")
    assert balance(alice, btc) == (D("8.5"), D("1.5"))


@pytest.mark.parametrize(
    ("fields", "status", "code"),
    [
        ({"amount": "11"}, 422, "insufficient_balance"),
        ({"amount": "0.000000001"}, 400, "precision_too_high"),
        ({"reference": ""}, 400, "invalid"),
        ({"reference": None}, 400, "invalid"),
        ({"token": "DOGE"}, 400, "invalid"),
        ({"amount": 1.5}, 400, "invalid"),
        ({"reference": 7}, 400, "invalid"),
        ({"address": 12345}, 400, "invalid"),
    ],
)
def test_refused_withdrawals_answer_a_code(
    as_alice, alice, btc, funded, fields, status, code
):
    response = as_alice.post(f"{V1}/withdrawals/", withdrawal(**fields), format="json")

    assert error_of(response) == (status, code)
    assert not Withdrawal.objects.exists()
    assert balance(alice, btc) == (D("10"), D("0"))


@pytest.mark.reliability("access-by-id")
def test_withdrawals_list_only_the_users_own(as_alice, bob, btc, funded):
    bob_client = key_client(bob, "withdraw", allowed_ips="127.0.0.1")
    assert (
        bob_client.post(f"{V1}/withdrawals/", withdrawal(), format="json").status_code
        == 201
    )

    assert as_alice.get(f"{V1}/withdrawals/").json()["results"] == []


def test_the_owner_cancels_a_pending_withdrawal_once(
    as_alice, alice, btc, funded, mailoutbox, django_capture_on_commit_callbacks
):
    created = as_alice.post(f"{V1}/withdrawals/", withdrawal(), format="json").json()
    url = f"{V1}/withdrawals/{created['id']}/"

    with django_capture_on_commit_callbacks(execute=True):
        cancelled = as_alice.delete(url)
        again = as_alice.delete(url)

    assert (cancelled.status_code, again.status_code) == (200, 200)
    assert cancelled.json()["status"] == again.json()["status"] == "cancelled"
    assert cancelled.json()["decided_at"] == again.json()["decided_at"] is not None
    assert as_alice.get(url).json()["status"] == "cancelled"
    assert balance(alice, btc) == (D("10"), D("0"))
    cancel_mails = [m for m in mailoutbox if "cancelled" in m.subject]
    assert [m.subject for m in cancel_mails] == [
        "[Crypto Exchange] Withdrawal of 1.5 BTC cancelled"
    ]


def test_a_decided_withdrawal_cannot_be_cancelled_409(as_alice, alice, btc, funded):
    from trading.services import withdrawal_approve, withdrawal_process_start

    created = as_alice.post(f"{V1}/withdrawals/", withdrawal(), format="json").json()
    staff = user_make("staffer")
    withdrawal_process_start(withdrawal=Withdrawal.objects.get(), staff=staff)
    withdrawal_approve(withdrawal=Withdrawal.objects.get(), staff=staff)

    response = as_alice.delete(f"{V1}/withdrawals/{created['id']}/")

    assert error_of(response) == (409, "withdrawal_not_pending")
    assert "already approved" in response.json()["error"]["message"]
    assert balance(alice, btc) == (D("8.5"), D("0"))


def test_a_withdrawal_being_sent_shows_processing_and_cannot_be_cancelled_409(
    as_alice, alice, btc, funded, mailoutbox
):
    from trading.services import withdrawal_process_start

    created = as_alice.post(f"{V1}/withdrawals/", withdrawal(), format="json").json()
    url = f"{V1}/withdrawals/{created['id']}/"
    withdrawal_process_start(
        withdrawal=Withdrawal.objects.get(), staff=user_make("staffer")
    )
    mailoutbox.clear()

    response = as_alice.delete(url)

    assert error_of(response) == (409, "withdrawal_not_pending")
    assert response.json()["error"]["message"] == (
        f"Withdrawal {created['reference']!r} can no longer be cancelled: staff "
        "are sending the coins now."
    )
    shown = as_alice.get(url).json()
    assert (shown["status"], shown["decided_at"]) == ("processing", None)
    assert as_alice.get(f"{V1}/withdrawals/").json()["results"][0]["status"] == (
        "processing"
    )
    assert balance(alice, btc) == (D("8.5"), D("1.5"))
    assert mailoutbox == []


@pytest.mark.reliability("access-by-id")
def test_another_users_withdrawal_is_not_found(as_alice, as_bob, alice, btc, funded):
    created = as_alice.post(f"{V1}/withdrawals/", withdrawal(), format="json").json()
    url = f"{V1}/withdrawals/{created['id']}/"

    assert error_of(as_bob.get(url)) == (404, "not_found")
    assert error_of(as_bob.delete(url)) == (404, "not_found")
    assert error_of(APIClient().delete(url))[0] in (401, 403)
    assert Withdrawal.objects.get().status == Withdrawal.Status.PENDING
    assert balance(alice, btc) == (D("8.5"), D("1.5"))


def test_a_request_over_the_daily_limit_answers_422_with_what_is_left(
    as_alice, btc, funded
):
    btc.withdrawal_daily_limit = D("2")
    btc.save()
    as_alice.post(f"{V1}/withdrawals/", withdrawal(), format="json")

    response = as_alice.post(
        f"{V1}/withdrawals/", withdrawal(reference="w-2", amount="1"), format="json"
    )

    assert error_of(response) == (422, "withdrawal_limit_exceeded")
    assert "0.5 BTC is left today" in response.json()["error"]["message"]


def test_a_token_that_is_not_listed_cannot_be_withdrawn_409(
    as_alice, anonymous, alice, btc, funded
):
    type(btc).objects.filter(pk=btc.pk).update(is_active=False)

    response = as_alice.post(f"{V1}/withdrawals/", withdrawal(), format="json")

    assert error_of(response) == (409, "token_not_listed")
    assert response.json()["error"]["message"] == (
        "BTC is not listed now: it cannot be withdrawn."
    )
    assert not Withdrawal.objects.exists()
    assert balance(alice, btc) == (D("10"), D("0"))
    assert 409 in documented(anonymous, "post", "/api/v1/withdrawals/")


# -- Errors, schema and docs ---------------------------------------------------


def test_an_unknown_api_path_is_a_json_404(anonymous):
    response = anonymous.get(f"{V1}/nothing-here/")

    assert error_of(response) == (404, "not_found")


@pytest.mark.reliability("malformed-requests")
@pytest.mark.parametrize("method", ["get", "post", "put", "patch", "delete", "options"])
def test_an_unknown_api_path_is_a_json_404_whatever_the_method(anonymous, method):
    response = getattr(anonymous, method)(f"{V1}/nothing-here/")

    assert error_of(response) == (404, "not_found")


def test_a_method_not_allowed_has_a_code(as_alice):
    response = as_alice.put(f"{V1}/balances/", {}, format="json")

    assert error_of(response) == (405, "method_not_allowed")


def test_the_schema_is_valid_openapi_3_with_every_endpoint(anonymous):
    response = anonymous.get("/api/schema/", HTTP_ACCEPT="application/json")

    assert response.status_code == 200
    schema = response.json()
    validate_schema(schema)
    assert schema["openapi"].startswith("3.")
    assert set(schema["paths"]) == {
        "/api/v1/markets/",
        "/api/v1/markets/{symbol}/ticker/",
        "/api/v1/markets/{symbol}/depth/",
        "/api/v1/markets/{symbol}/trades/",
        "/api/v1/markets/{symbol}/candles/",
        "/api/v1/balances/",
        "/api/v1/orders/",
        "/api/v1/orders/cancel-all/",
        "/api/v1/orders/{id}/",
        "/api/v1/fills/",
        "/api/v1/withdrawals/",
        "/api/v1/withdrawals/{id}/",
        "/api/v1/addresses/",
        "/api/v1/addresses/{id}/",
    }
    assert set(schema["paths"]["/api/v1/orders/{id}/"]) >= {"get", "delete", "patch"}
    assert set(schema["paths"]["/api/v1/withdrawals/{id}/"]) >= {"get", "delete"}
    assert set(schema["components"]["securitySchemes"]) == {
        "apiKeyAuth",
        "cookieAuth",
    }
    price = schema["components"]["schemas"]["Order"]["properties"]["price"]
    assert (price["type"], price["format"]) == ("string", "decimal")


def test_a_cancel_or_amend_the_matcher_cannot_apply_is_a_documented_500(
    as_alice, anonymous, alice, market, funded, engine_bug
):
    order = buy(alice, market, "0.5", "100")
    engine_bug(order)
    url = f"{V1}/orders/{order.pk}/"

    cancelled = as_alice.delete(url)
    amended = as_alice.patch(url, {"price": "101"}, format="json")

    assert error_of(cancelled) == (500, "matcher_error")
    assert error_of(amended) == (500, "matcher_error")
    assert 500 in documented(anonymous, "delete", "/api/v1/orders/{id}/")
    assert 500 in documented(anonymous, "patch", "/api/v1/orders/{id}/")


def test_the_schema_documents_what_is_refused_before_any_view(anonymous):
    schema = anonymous.get("/api/schema/", HTTP_ACCEPT="application/json").json()

    for path, operations in schema["paths"].items():
        for method, operation in operations.items():
            responses = operation["responses"]
            assert "text/html" in responses["414"]["content"], (method, path)
            if "requestBody" in operation:
                assert {"413", "415"} <= set(responses), (method, path)


def test_the_schema_generates_without_warnings(tmp_path):
    call_command(
        "spectacular",
        "--validate",
        "--fail-on-warn",
        "--file",
        str(tmp_path / "schema.yaml"),
    )

    assert "openapi: 3." in (tmp_path / "schema.yaml").read_text()


def test_the_docs_page_loads_everything_from_this_site(anonymous):
    response = anonymous.get("/api/docs/")

    assert response.status_code == 200
    html = response.content.decode()
    assert "swagger-ui" in html
    # The start-up script comes from a URL of its own (no inline script).
    script = anonymous.get("/api/docs/?script").content.decode()
    assert "/api/schema/" in script
    # No absolute or protocol-relative URL anywhere: no CDN, no third party.
    assert not re.search(r"https?:|[\"'(=]//", html), html
    assets = re.findall(r"(?:src|href)=\"/static/([^\"]+)\"", html)
    assert len(assets) >= 3
    assert all(finders.find(asset) for asset in assets), assets


# -- Concurrency (PostgreSQL) ---------------------------------------------------


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("kind", ["limit", "market"])
@pytest.mark.reliability("race-orders")
def test_concurrent_repeats_of_one_client_order_id_place_one_order(kind):
    usdt, btc = token_make("USDT", decimals=6), token_make("BTC", decimals=8)
    market = market_make(btc, usdt)
    alice, bob = user_make("alice"), user_make("bob")
    fund(alice, usdt, "10000")
    fund(bob, btc, "10")
    sell(bob, market, "5", "100")
    order = limit_order(client_order_id="once", quantity="1")
    if kind == "market":
        order = {**order, "type": "market", "price": None, "protection_price": "100"}
    clients = [key_client(alice, "trade") for _ in range(6)]

    results = run_together(
        *[lambda c=c: c.post(f"{V1}/orders/", order, format="json") for c in clients]
    )

    assert all(status == "ok" for status, _ in results), results
    responses = [response for _, response in results]
    assert {r.status_code for r in responses} <= {200, 201}
    assert 201 in {r.status_code for r in responses}
    assert len({r.json()["id"] for r in responses}) == 1
    assert Order.objects.filter(user=alice).count() == 1
    assert balance(alice, btc)[0] == D("0.998")  # one BTC bought, taker fee paid


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
@pytest.mark.reliability("race-withdrawals", "race-notices")
def test_concurrent_repeats_of_one_withdrawal_reference_lock_the_amount_once(
    mailoutbox,
):
    btc = token_make("BTC", decimals=8)
    alice = user_make("alice")
    fund(alice, btc, "10")
    clients = [key_client(alice, "withdraw", allowed_ips="127.0.0.1") for _ in range(6)]
    # More than half the balance: a repeat is not checked against the balance
    # the first one locked.
    request = {"token": "BTC", "amount": "6", "address": "bc1q", "reference": "r"}

    results = run_together(
        *[
            lambda c=c: c.post(f"{V1}/withdrawals/", request, format="json")
            for c in clients
        ]
    )

    assert all(status == "ok" for status, _ in results), results
    responses = [response for _, response in results]
    # The first made it (201); each repeat says it is one (200).
    assert sorted(r.status_code for r in responses) == [200] * 5 + [201]
    assert len({r.json()["id"] for r in responses}) == 1
    assert Withdrawal.objects.count() == 1
    assert balance(alice, btc) == (D("4"), D("6"))
    assert len(mailoutbox) == 1
