"""What a user is told when an order is cancelled as it is placed: why, and
self-trade prevention by name when the user's own order stopped it, never
"below the minimum" for a book that holds plenty from others."""

from decimal import Decimal as D

import pytest

from tests.factories import balance, buy, sell
from trading.models import Order, Trade

pytestmark = pytest.mark.django_db


def told(client, market, **fields: str) -> list[str]:
    """The messages the market page shows after placing an order by its form."""
    fields = {"time_in_force": "GTC", **fields}
    response = client.post(f"/markets/{market.symbol}/orders/", fields, follow=True)
    return [str(message) for message in response.context["messages"]]


@pytest.mark.parametrize(
    ("others", "message"),
    [
        (
            [],
            "Buy 1 BTC: cancelled because it would have traded with your own "
            "order (self-trade prevention); nothing filled. To trade past your own "
            "order, cancel it first.",
        ),
        (
            [("0.4", "99")],
            "Buy 1 BTC: 0.4 filled; the rest was cancelled because it would "
            "have traded with your own order (self-trade prevention). To trade past "
            "your own order, cancel it first.",
        ),
    ],
)
def test_the_order_form_says_an_order_was_cancelled_for_a_self_trade(
    alice_client, market, alice, bob, funded, others, message
):
    for quantity, price in others:
        sell(bob, market, quantity, price)
    sell(alice, market, "1", "100")

    assert told(
        alice_client, market, side="buy", type="limit", quantity="1", price="100"
    ) == [message]


def test_the_order_form_says_an_immediate_order_was_not_filled_at_once(
    alice_client, market, funded
):
    assert told(
        alice_client,
        market,
        side="buy",
        type="limit",
        quantity="1",
        price="100",
        time_in_force="IOC",
    ) == [
        "Buy 1 BTC: cancelled because the book could not fill it at once; nothing "
        "filled."
    ]


def test_a_market_order_only_its_owners_order_stops_is_cancelled_for_it_on_the_form(
    alice_client, market, alice, bob, funded
):
    sell(alice, market, "0.5", "100")
    sell(bob, market, "5", "101")

    assert told(
        alice_client,
        market,
        side="buy",
        type="market",
        quantity="0.5",
        protection_price="110",
    ) == [
        "Buy 0.5 BTC: cancelled because it would have traded with your own order "
        "(self-trade prevention); nothing filled. To trade past your own order, "
        "cancel it first."
    ]


@pytest.mark.parametrize(
    "self_trade", ["cancel_newest", "cancel_both", "decrement_and_cancel"]
)
def test_a_market_order_its_owners_order_stops_before_the_minimum_says_so(
    as_alice, market, alice, bob, carol, usdt, funded, self_trade
):
    # Carol's order keeps 0.005 BTC at 99 (0.495 USDT, under the minimum of
    # 1 USDT), then comes alice's own, then plenty from bob.
    sell(carol, market, "1", "99")
    buy(bob, market, "0.995", "99")
    own = sell(alice, market, "0.5", "100")
    sell(bob, market, "5", "101")
    trades = Trade.objects.count()

    answer = as_alice.post(
        "/api/v1/orders/",
        {
            "market": "BTC-USDT",
            "side": "buy",
            "type": "market",
            "quantity": "0.3",  # less than her own: decrement cancels it, not hers
            "protection_price": "110",
            "self_trade": self_trade,
        },
        format="json",
    )

    assert answer.status_code == 201, answer.json()
    body = answer.json()
    assert (body["status"], body["cancel_reason"], body["filled_quantity"]) == (
        "cancelled",
        "self_trade",
        "0",
    )
    # Nothing traded below the minimum, funds are back; her resting order
    # takes the mode's own part (cancel both cancels it too).
    assert Trade.objects.count() == trades
    own.refresh_from_db()
    assert (own.status, own.cancel_reason) == (
        (Order.Status.CANCELLED, "self_trade")
        if self_trade == "cancel_both"
        else (Order.Status.OPEN, "")
    )
    assert balance(alice, usdt) == (D(10000), D(0))
