"""An amend the matcher refuses leaves the order as it was, and its answer
says so in an amend's words: never a placement's "it was not placed", nor a
complaint about amounts that were valid when sent.

Each race is driven as it happens: a command accepted before the amend
(``order_place``, not matched yet) is matched first when the amend's request
drains the market's queue, or staff change the market between the amend's
checks and the matcher's."""

from __future__ import annotations

from decimal import Decimal as D

import pytest

from tests.factories import balance, buy, sell
from trading.exceptions import BelowMinNotional, PrecisionTooHigh
from trading.matcher import drain
from trading.models import Market, Order, Trade
from trading.orders import command_refusal, order_amend, order_place, order_refusal

pytestmark = pytest.mark.django_db


def queued(user, market, side: str, quantity: str, price: str) -> Order:
    """A limit order accepted ahead of what follows, not matched yet."""
    return order_place(
        user=user,
        market=market,
        side=side,
        type="limit",
        quantity=D(quantity),
        price=D(price),
    )


def amend_refusal(client, order: Order, **fields: str) -> tuple[int, str, str]:
    """The amend's answer, an error: its status, code and message."""
    answer = client.patch(f"/api/v1/orders/{order.pk}/", fields, format="json")
    error = answer.json()["error"]
    return answer.status_code, error["code"], error["message"]


def shown(client, order: Order) -> dict:
    return client.get(f"/api/v1/orders/{order.pk}/").json()


def state(client, order: Order) -> tuple[str, ...]:
    """The order as the API shows it: status, quantity, price, filled, locked."""
    body = shown(client, order)
    fields = ("status", "quantity", "price", "filled_quantity", "locked")
    return tuple(body[field] for field in fields)


OPPOSITE = {"buy": "sell", "sell": "buy"}


@pytest.mark.parametrize(
    ("side", "fill", "amended", "message", "after"),
    [
        pytest.param(
            "sell",
            "0.7",
            {"quantity": "0.6"},  # valid when sent: nothing was filled
            "While the amend waited, the order's fills reached 0.7 BTC, past the "
            "new quantity of 0.6: the amend was refused and order #{pk} is "
            "unchanged.",
            ("open", "1", "100", "0.7", "0.3"),
            id="filled past the new quantity",
        ),
        pytest.param(
            "buy",
            "0.5",
            # As sent it needs 50 x 2 = 100, what the order holds: nothing
            # more is reserved. After the fill it holds 50 for the 1.5 left,
            # which at 50 need 75.
            {"price": "50", "quantity": "2"},
            "Order #{pk} changed while the amend waited: it is now 1 BTC at 100 "
            "USDT, 0.5 filled, and what it has reserved no longer covers the "
            "amended order. The amend was refused and changed nothing: look at "
            "the order as it is now before amending it again.",
            ("open", "1", "100", "0.5", "50"),
            id="reservation overtaken",
        ),
    ],
)
def test_an_amend_a_fill_overtook_is_a_conflict_and_changes_nothing(
    as_alice, market, alice, bob, funded, side, fill, amended, message, after
):
    order = (buy if side == "buy" else sell)(alice, market, "1", "100")
    queued(bob, market, OPPOSITE[side], fill, "100")  # matched before the amend
    token = market.quote if side == "buy" else market.base
    available = balance(alice, token)[0]

    refusal = amend_refusal(as_alice, order, **amended)

    assert refusal == (409, "order_changed", message.format(pk=order.pk))
    assert state(as_alice, order) == after
    # Nothing moved but the fill's part: the order holds what its rest needs.
    assert balance(alice, token) == (available, D(after[-1]))


def test_an_amend_self_trade_prevention_overtook_says_how_the_order_changed(
    as_alice, market, alice, funded
):
    order = sell(alice, market, "2", "100")
    # Matched before the amend: her own buy shrinks her sell to 1, no trade.
    order_place(
        user=alice,
        market=market,
        side="buy",
        type="limit",
        quantity=D("1"),
        price=D("100"),
        self_trade="decrement_and_cancel",
    )

    refusal = amend_refusal(as_alice, order, quantity="1.5")

    # No trade to blame, and no advice to send again: it would now be an
    # increase, which queues the order again.
    assert refusal == (
        409,
        "order_changed",
        f"Order #{order.pk} changed while the amend waited: it is now 1 BTC at "
        "100 USDT, 0 filled, and what it has reserved no longer covers the "
        "amended order. The amend was refused and changed nothing: look at the "
        "order as it is now before amending it again.",
    )
    assert state(as_alice, order) == ("open", "1", "100", "0", "1")
    assert not Trade.objects.exists()


def test_a_post_only_amend_to_a_price_that_would_trade_leaves_the_order_in_place(
    as_alice, market, alice, bob, usdt, funded
):
    order = buy(alice, market, "1", "99", post_only=True)
    sell(bob, market, "1", "100")
    before = shown(as_alice, order)

    refusal = amend_refusal(as_alice, order, price="100")

    assert refusal == (
        422,
        "post_only_would_take",
        "At 100 the post-only order would trade at once: the amend was refused "
        f"and order #{order.pk} is unchanged, at 99.",
    )
    assert shown(as_alice, order) == before
    assert balance(alice, usdt) == (D("9901"), D("99"))  # the extra 1 is back


@pytest.mark.parametrize(
    ("change", "amended", "refusal", "message"),
    [
        (
            {"min_notional": D("60")},
            {"quantity": D("0.5")},
            BelowMinNotional,
            "The amended order would be worth 50 USDT, less than the market's "
            "minimum of 60: the amend was refused and order #{pk} is unchanged.",
        ),
        (
            {"amount_step": D("0.1")},
            {"quantity": D("0.55")},
            PrecisionTooHigh,
            "The new price or quantity is off the market's steps (price 0.01, "
            "quantity 0.1): the amend was refused and order #{pk} is unchanged.",
        ),
    ],
)
def test_an_amend_refused_for_rules_staff_changed_meanwhile_says_it_changed_nothing(
    market, alice, funded, change, amended, refusal, message
):
    order = buy(alice, market, "1", "100")
    command = order_amend(user=alice, order=order, **amended)  # checked, queued
    Market.objects.filter(pk=market.pk).update(**change)

    drain(market_id=market.pk)

    error = command_refusal(command)
    assert type(error) is refusal
    assert error.message == message.format(pk=order.pk)
    order.refresh_from_db()
    assert (order.status, order.quantity, order.price) == ("open", D("1"), D("100"))


@pytest.mark.parametrize(
    "kind",
    [{"type": "limit"}, {"type": "stop_limit", "stop_price": D("101")}],
    ids=["limit", "stop-limit"],
)
def test_a_limit_order_refused_for_a_minimum_raised_meanwhile_names_its_value(
    market, alice, funded, kind
):
    # Not an amend: the placement's own words, for an order with a limit price.
    order = order_place(
        user=alice, market=market, side="buy", quantity=D("1"), price=D("100"), **kind
    )  # checked, queued
    Market.objects.filter(pk=market.pk).update(min_notional=D("500"))

    drain(market_id=market.pk)

    order.refresh_from_db()
    error = order_refusal(order)
    assert type(error) is BelowMinNotional
    assert error.message == (
        "The order is worth 100 USDT, less than the market's minimum value of "
        "500 USDT; it was not placed."
    )
