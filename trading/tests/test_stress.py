"""Thousands of random orders and cancels, checked against a naive engine."""

import random
from collections import Counter
from decimal import Decimal as D
from functools import partial

import pytest

from trading.exceptions import TradingError
from trading.models import Balance, Order, Trade
from trading.selectors import order_book
from trading.services import order_cancel, order_place
from trading.tests.factories import fees, fund, market_make, token_make, user_make
from trading.tests.reference_engine import ReferenceEngine, Refused

OPERATIONS = 3000
USERS = 20
SEED = 20260501

MARKET = {
    "price_step": D("0.5"),
    "amount_step": D("0.01"),
    "min_notional": D("1"),
    "maker_fee": D("0.001"),
    "taker_fee": D("0.0025"),
}


def outcome(call):
    """("ok", result) or ("refused", code), for either engine."""
    try:
        return "ok", call()
    except Refused as refused:
        return "refused", refused.code
    except TradingError as error:
        return "refused", error.code


def random_order(rng: random.Random, mid: D) -> dict:
    side = rng.choice(["buy", "sell"])
    if rng.random() < 0.12:
        kind, price = "market", None
        time_in_force = rng.choice(["GTC", "IOC", "FOK"])
    else:
        kind = "limit"
        price = mid + D("0.5") * rng.randint(-8, 8)
        time_in_force = rng.choices(["GTC", "IOC", "FOK"], [70, 15, 15])[0]
        if rng.random() < 0.03:
            price += D("0.25")  # off the price step
    quantity = D(rng.randint(1, 300)) * D("0.01")
    if rng.random() < 0.03:
        quantity += D("0.005")  # off the amount step
    return {
        "side": side,
        "type": kind,
        "quantity": quantity,
        "price": price,
        "time_in_force": time_in_force,
        "post_only": kind == "limit" and time_in_force == "GTC" and rng.random() < 0.1,
        "client_order_id": f"c{rng.randrange(4)}" if rng.random() < 0.2 else None,
    }


@pytest.mark.django_db
def test_random_orders_and_cancels_match_the_reference_engine():
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

    db_orders: dict[int, Order] = {}  # the engine's order id -> the real order
    seen = Counter()
    last_request: dict[int, dict] = {}
    mid = D(100)
    for step in range(OPERATIONS):
        user = rng.choice(users)
        mine = [o for o in engine.orders if o.user == user.pk]
        if mine and rng.random() < 0.25:
            open_ones = [o for o in mine if o.status == "open"]
            target = rng.choice(open_ones if open_ones and rng.random() < 0.9 else mine)
            expected = outcome(partial(engine.cancel, user=user.pk, order_id=target.id))
            actual = outcome(
                partial(order_cancel, user=user, order=db_orders[target.id])
            )
            assert actual[0] == expected[0], (step, "cancel", expected, actual)
            if expected[0] == "refused":
                assert actual == expected, (step, "cancel", target)
            seen["cancel " + (expected[1] if expected[0] == "refused" else "ok")] += 1
            continue

        if rng.random() < 0.05:
            mid = min(max(mid + D("0.5") * rng.choice([-1, 1]), D(90)), D(110))
        if user.pk in last_request and rng.random() < 0.03:
            request = last_request[user.pk]  # a client retrying
        else:
            request = random_order(rng, mid)
        last_request[user.pk] = request
        expected = outcome(partial(engine.place, user=user.pk, **request))
        actual = outcome(partial(order_place, user=user, market=market, **request))
        assert actual[0] == expected[0], (step, request, expected, actual)
        if expected[0] == "refused":
            assert actual == expected, (step, request)
            seen[expected[1]] += 1
            continue
        ref, order = expected[1], actual[1]
        if ref.id in db_orders:  # an idempotent repeat
            assert order.pk == db_orders[ref.id].pk, (step, request)
            seen["repeat"] += 1
        else:
            assert order.pk not in {o.pk for o in db_orders.values()}
            db_orders[ref.id] = order
            seen[f"placed {ref.status} {ref.cancel_reason}".strip()] += 1
        assert (order.status, order.filled_quantity, order.locked) == (
            ref.status,
            ref.filled,
            ref.locked,
        ), (step, request)

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

    # The final state is the same, order by order and trade by trade.
    pks = {ref_id: order.pk for ref_id, order in db_orders.items()}
    real_orders = Order.objects.in_bulk(list(pks.values()))
    for ref in engine.orders:
        real = real_orders[pks[ref.id]]
        assert (
            real.status,
            real.cancel_reason,
            real.filled_quantity,
            real.executed_value,
            real.fee,
            real.locked,
        ) == (
            ref.status,
            ref.cancel_reason,
            ref.filled,
            ref.executed_value,
            ref.fee,
            ref.locked,
        ), ref
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
