"""Thousands of random orders and cancels through the real path (accepting,
then the matcher in batches), checked against a naive engine that sees the
same requests in acceptance order."""

import random
from collections import Counter
from decimal import Decimal as D
from functools import partial

import pytest

from tests.factories import fees, fund, market_make, token_make, user_make
from trading.matcher import drain
from trading.models import Balance, Order, Trade
from trading.orders import command_refusal, order_cancel, order_place
from trading.selectors import order_book
from trading.tests.reference_engine import (
    ReferenceEngine,
    outcome,
    random_order,
    reference_state,
)

OPERATIONS = 3000
# Market buys by quantity name a protection price; this one is never reached,
# so they trade as the reference's market buys do.
NO_PROTECTION = D(200)
USERS = 20
SEED = 20260501

MARKET = {
    "price_step": D("0.5"),
    "amount_step": D("0.01"),
    "min_notional": D("1"),
    "maker_fee": D("0.001"),
    "taker_fee": D("0.0025"),
}


def real_fields(request: dict) -> dict:
    if request["type"] == "market" and request["side"] == "buy":
        return {**request, "protection_price": NO_PROTECTION}
    return request


def order_state(order: Order) -> tuple:
    return (
        order.status,
        order.cancel_reason,
        order.filled_quantity,
        order.executed_value,
        order.fee,
        order.locked,
    )


@pytest.mark.django_db
@pytest.mark.reliability("race-orders")
def test_random_orders_and_cancels_match_the_reference_engine():
    """Requests are accepted one by one and matched in batches of 1 to 12
    (drained before each request with a client order id, whose check reads
    the orders as matched): after each batch every order agrees with the
    reference, and at the end every trade, balance and book level does.

    The request side refuses what it can know with the reference's codes; a
    request it cannot reserve funds for (``insufficient_balance``) never
    reaches the matcher, so the reference does not see it either (it reserves
    no more than the real path, so it would have accepted)."""
    rng = random.Random(SEED)  # noqa: S311 - reproducible, not secret
    base, quote = token_make("BASE", decimals=3), token_make("QUOTE", decimals=4)
    market = market_make(base, quote, **MARKET)
    engine = ReferenceEngine(**MARKET, base_decimals=3, quote_decimals=4)
    users = [user_make(f"trader{i}") for i in range(USERS)]
    tokens = {"base": base, "quote": quote}
    for i, user in enumerate(users):
        # The first few are poor, so that refusals for balance happen.
        for asset, amount in (("base", D(40)), ("quote", D(4000))):
            amount = amount / 20 if i < 3 else amount
            fund(user, tokens[asset], amount)
            engine.deposit(user.pk, asset, amount)

    db_orders: dict[int, int] = {}  # the reference's order id -> the real pk
    pending: list[tuple] = []  # what the next batch must show
    seen = Counter()
    last_request: dict[int, dict] = {}
    mid = D(100)
    batch_left = 0

    def batch_check(step: int) -> None:
        drain(market_id=market.pk)
        real = Order.objects.in_bulk(list(db_orders.values()))
        for kind, expected, handle in pending:
            if kind == "cancel":
                refusal = command_refusal(handle)
                got = ("refused", refusal.code) if refusal else ("ok",)
                assert got[0] == expected[0], (step, "cancel", expected, got)
                if expected[0] == "refused":
                    assert got == expected, (step, "cancel")
            else:  # a placement the reference refused: rejected with its code
                order = Order.objects.get(pk=handle)
                assert (order.status, order.reject_reason) == (
                    "rejected",
                    expected[1],
                ), (step, "place", expected)
        pending.clear()
        for ref in engine.orders:
            assert order_state(real[db_orders[ref.id]]) == reference_state(ref), (
                step,
                ref,
            )

    for step in range(OPERATIONS):
        if batch_left <= 0:
            batch_check(step)
            batch_left = rng.randint(1, 12)
        batch_left -= 1
        user = rng.choice(users)
        mine = [o for o in engine.orders if o.user == user.pk]
        if mine and rng.random() < 0.25:
            open_ones = [o for o in mine if o.status == "open"]
            target = rng.choice(open_ones if open_ones and rng.random() < 0.9 else mine)
            expected = outcome(partial(engine.cancel, user=user.pk, order_id=target.id))
            target_order = Order(pk=db_orders[target.id])
            accepted = outcome(partial(order_cancel, user=user, order=target_order))
            if accepted[0] == "refused":  # the order was closed when asked
                assert accepted == expected, (step, "cancel", target)
            else:
                pending.append(("cancel", expected, accepted[1]))
            seen["cancel " + (expected[1] if expected[0] == "refused" else "ok")] += 1
            continue

        if rng.random() < 0.05:
            mid = min(max(mid + D("0.5") * rng.choice([-1, 1]), D(90)), D(110))
        if user.pk in last_request and rng.random() < 0.03:
            request = last_request[user.pk]  # a client retrying
        else:
            request = random_order(rng, mid, client_order_ids=True)
        last_request[user.pk] = request
        if request["client_order_id"] is not None:
            batch_check(step)
        actual = outcome(
            partial(order_place, user=user, market=market, **real_fields(request))
        )
        if actual == ("refused", "insufficient_balance"):
            seen["insufficient_balance"] += 1
            continue
        expected = outcome(partial(engine.place, user=user.pk, **request))
        if actual[0] == "refused":
            assert actual == expected, (step, request)
            seen[expected[1]] += 1
            continue
        order = actual[1]
        if expected[0] == "refused":  # by the matcher: post-only, FOK, minimum
            assert order.status == "accepted", (step, request)
            pending.append(("place", expected, order.pk))
            seen[expected[1]] += 1
            continue
        ref = expected[1]
        if ref.id in db_orders:  # an idempotent repeat
            assert order.pk == db_orders[ref.id], (step, request)
            seen["repeat"] += 1
        else:
            assert order.pk not in db_orders.values()
            db_orders[ref.id] = order.pk
            seen[f"placed {ref.status} {ref.cancel_reason}".strip()] += 1
    batch_check(OPERATIONS)

    # Every rule was exercised, not just the happy path.
    for case in [
        "placed open",
        "placed filled",
        "placed cancelled unfilled",
        "placed cancelled self_trade",
        "repeat",
        "cancel ok",
        "cancel order_not_open",
        "insufficient_balance",
        "fill_or_kill_not_filled",
        "post_only_would_take",
        "precision_too_high",
        "below_min_notional",
        "duplicate_client_order_id",
    ]:
        assert seen[case] > 0, (case, seen)
    assert len(engine.trades) > OPERATIONS // 4

    # The final state is the same, trade by trade, balance by balance.
    pks = db_orders
    assert list(
        Trade.objects.order_by("pk").values_list(
            "maker_order_id",
            "taker_order_id",
            "price",
            "quantity",
            "maker_fee",
            "taker_fee",
        )
    ) == [
        (pks[t.maker], pks[t.taker], t.price, t.quantity, t.maker_fee, t.taker_fee)
        for t in engine.trades
    ]
    for user in users:
        for asset, token in tokens.items():
            row = Balance.objects.get(user=user, token=token)
            assert (row.available, row.locked) == (
                engine.available.get((user.pk, asset), D(0)),
                engine.locked.get((user.pk, asset), D(0)),
            ), (user, asset)
    assert (fees(base), fees(quote)) == (engine.fees["base"], engine.fees["quote"])
    book = order_book(market=market, depth=1000)
    assert [(level.price, level.quantity) for level in book.bids] == engine.depth("buy")
    assert [(level.price, level.quantity) for level in book.asks] == engine.depth(
        "sell"
    )
