"""Random sequences of every command the engine has, including what the
reference engine lacks (amends, stop-limit orders, every self-trade mode,
market buys by quote amount or with a protection price, cancel-all).

After every command ``Exchange.check`` holds (money conserved, each order
locks what it needs, the book ordered and uncrossed). Every few hundred
commands the engine is rebuilt from its open orders, as a restarted matcher
would do, and the rebuilt twin must return exactly the same results from then
on. ``ENGINE_SEEDS=7,8`` runs other seeds.
"""

import os
import random
from collections import Counter
from decimal import Decimal as D

import pytest

from trading.engine import Side, Status, Stp
from trading.tests.engine_exchange import BASE, QUOTE, Exchange, NotEnough

SEEDS = [int(seed) for seed in os.environ.get("ENGINE_SEEDS", "1,2,3").split(",")]
OPERATIONS = 3000
REBUILD_EVERY = 400
USERS = 5


def price_near(rng: random.Random, mid: D) -> D:
    return mid + D("0.25") * rng.randint(-12, 12)


def quantity(rng: random.Random) -> D:
    return D(rng.randint(1, 3000)) * D("0.0001") * rng.choice([1, 1, 10])


def place_random(ex: Exchange, rng: random.Random, user: int, mid: D):
    side = rng.choice([Side.BUY, Side.SELL])
    stp = rng.choice(list(Stp))
    roll = rng.random()
    if roll < 0.55:
        time_in_force = rng.choices(["GTC", "IOC", "FOK"], [80, 10, 10])[0]
        return ex.place(
            user,
            side,
            quantity=quantity(rng),
            price=price_near(rng, mid),
            time_in_force=time_in_force,
            post_only=time_in_force == "GTC" and rng.random() < 0.1,
            stp=stp,
        )
    if roll < 0.8:
        fields = {"time_in_force": rng.choice(["IOC", "FOK"]), "stp": stp}
        if side == Side.BUY and rng.random() < 0.5:
            fields["quote_amount"] = D(rng.randint(100, 30000)) / 100
        else:
            fields["quantity"] = quantity(rng)
            if side == Side.BUY or rng.random() < 0.3:
                offset = D("0.25") * rng.randint(0, 8)
                fields["protection_price"] = mid + (
                    offset if side == Side.BUY else -offset
                )
        return ex.place(user, side, "market", **fields)
    stop_offset = D("0.25") * rng.randint(1, 8)
    stop = mid + stop_offset if side == Side.BUY else mid - stop_offset
    return ex.place(
        user,
        side,
        "stop_limit",
        quantity=quantity(rng),
        stop_price=stop,
        price=stop + (D(1) if side == Side.BUY else D(-1)),
        time_in_force=rng.choices(["GTC", "IOC", "FOK"], [80, 10, 10])[0],
        stp=stp,
    )


def amend_random(ex: Exchange, rng: random.Random, user: int, order_id: int, mid: D):
    known = ex.orders[order_id]
    change = rng.choice(["price", "quantity", "both"])
    price = price_near(rng, mid) if change != "quantity" else None
    size = None
    if change != "price" and known.quantity is not None:
        size = max(
            known.filled + D("0.0001"),
            known.quantity + quantity(rng) * rng.choice([-1, 1]),
        )
    # Now and then too little, as when the request side read a stale order.
    reserve = D(0) if rng.random() < 0.1 else None
    return ex.amend(user, order_id, price=price, quantity=size, reserve=reserve)


@pytest.mark.parametrize("seed", SEEDS)
def test_random_commands_keep_money_and_the_book_consistent(seed):
    rng = random.Random(seed)  # noqa: S311 - reproducible, not secret
    ex = Exchange()
    users = list(range(1, USERS + 1))
    for user in users:
        ex.deposit(user, BASE, D(1000))
        ex.deposit(user, QUOTE, D(100_000))
    seen = Counter()
    mid = D(100)
    for step in range(OPERATIONS):
        if step and step % REBUILD_EVERY == 0:
            ex.shadow = ex.rebuilt()
            seen["rebuilt"] += 1
        if rng.random() < 0.05:
            mid = min(max(mid + D("0.25") * rng.choice([-1, 1]), D(95)), D(105))
        user = rng.choice(users)
        mine = [o for o in ex.orders.values() if o.user_id == user]
        if rng.random() < 0.9:  # mostly orders still open, sometimes any
            mine = [o for o in mine if o.status in (Status.OPEN, Status.WAITING)]
        limits = [o.order_id for o in mine if o.price is not None and o.quantity]
        roll = rng.random()
        try:
            if mine and roll < 0.15:
                result = ex.cancel(user, rng.choice(mine).order_id)
            elif limits and roll < 0.27:
                result = amend_random(ex, rng, user, rng.choice(limits), mid)
            elif roll < 0.28:
                result = ex.cancel_all(user)
            else:
                result = place_random(ex, rng, user, mid)
        except NotEnough:
            seen["not enough"] += 1
            continue

        for trade in result.trades:
            assert trade.maker_user_id != trade.taker_user_id, (seed, step)
            taker = ex.orders[trade.taker_order_id]
            if taker.price is not None:  # a limit price is never passed
                worse = (
                    trade.price > taker.price
                    if trade.taker_side == Side.BUY
                    else trade.price < taker.price
                )
                assert not worse, (seed, step, trade)
        seen[result.rejected or "applied"] += 1
        for update in result.orders:
            seen[f"{update.status} {update.reason}".strip()] += 1
            if update.status == Status.OPEN and update.priority[1] > 0:
                seen["stop triggered and rested"] += 1

    for case in [
        "open",
        "filled",
        "waiting",
        "stop triggered and rested",
        "cancelled user",
        "cancelled unfilled",
        "cancelled self_trade",
        "rebuilt",
        "order_not_open",
        "insufficient_reservation",
        "post_only_would_take",
        "fill_or_kill_not_filled",
    ]:
        assert seen[case] > 0, (case, seen)
