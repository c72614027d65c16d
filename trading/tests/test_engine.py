"""The matching engine's rules, one by one, through what a command returns.

Every command goes through ``Exchange``, which reserves funds as the request
side does, applies the result's fund movements and checks after each command
that money is conserved and the book adds up. Users hold 10 BTC and 10,000
USDT each; BTC-USDT has a price step of 0.01, an amount step of 0.0001, a
minimum of 1 USDT, fees of 0.1 % (maker) and 0.2 % (taker).
"""

from dataclasses import replace
from decimal import Decimal as D

import pytest

from trading.engine import (
    FEES,
    Cancel,
    MarketEngine,
    Move,
    Place,
    Side,
    Status,
    available,
    locked,
)
from trading.money import unit
from trading.tests.engine_exchange import (
    BASE,
    BTC_USDT,
    QUOTE,
    Exchange,
    update_of,
)

ALICE, BOB, CAROL, DAVE = 1, 2, 3, 4
BUY, SELL = Side.BUY, Side.SELL


def exchange(**market) -> Exchange:
    exchange = Exchange(replace(BTC_USDT, **market))
    for user in (ALICE, BOB, CAROL, DAVE):
        exchange.deposit(user, BASE, "10")
        exchange.deposit(user, QUOTE, "10000")
    return exchange


def limit(ex: Exchange, user: int, side: Side, quantity: str, price: str, **options):
    return ex.place(user, side, quantity=D(quantity), price=D(price), **options)


def stop(ex: Exchange, user: int, side: Side, quantity: str, stop: str, price: str):
    return ex.place(
        user,
        side,
        "stop_limit",
        quantity=D(quantity),
        price=D(price),
        stop_price=D(stop),
    )


def placed(result):
    """The order a placement created (always the first it reports)."""
    return result.orders[0]


def outcome(update) -> tuple[str, str]:
    return update.status, update.reason


def fills(result):
    return [
        (t.maker_order_id, t.taker_order_id, t.price, t.quantity) for t in result.trades
    ]


def trade_at(ex: Exchange, price: str):
    """Make ``price`` the last trade price: carol sells 0.1 BTC, dave buys it."""
    limit(ex, CAROL, SELL, "0.1", price)
    result = limit(ex, DAVE, BUY, "0.1", price)
    assert result.trades[0].price == D(price)
    return result


def balance(ex: Exchange, user: int, token: int) -> tuple[D, D]:
    return ex.available[(user, token)], ex.locked[(user, token)]


# -- Matching ---------------------------------------------------------------


def test_the_best_price_trades_first_then_the_oldest_order_at_a_price():
    ex = exchange()
    first = placed(limit(ex, ALICE, SELL, "1", "100")).order_id
    second = placed(limit(ex, CAROL, SELL, "1", "100")).order_id
    better = placed(limit(ex, CAROL, SELL, "1", "99.5")).order_id
    result = limit(ex, BOB, BUY, "2.5", "100")
    taker = ex.last_order_id
    assert fills(result) == [
        (better, taker, D("99.5"), D(1)),
        (first, taker, D(100), D(1)),
        (second, taker, D(100), D("0.5")),
    ]
    assert update_of(result, second).status == Status.OPEN
    assert update_of(result, second).filled == D("0.5")
    assert placed(result).status == Status.FILLED
    assert ex.engine.depth(SELL) == [(D(100), D("0.5"))]


def test_a_partly_filled_order_keeps_its_place():
    ex = exchange()
    first = placed(limit(ex, ALICE, SELL, "2", "100")).order_id
    limit(ex, CAROL, SELL, "1", "100")
    limit(ex, BOB, BUY, "1", "100")
    result = limit(ex, BOB, BUY, "1", "100")
    assert [fill[0] for fill in fills(result)] == [first]
    assert update_of(result, first).status == Status.FILLED


def test_a_buy_trades_at_the_makers_price_and_gets_the_saving_back():
    ex = exchange()
    limit(ex, ALICE, SELL, "1", "100")
    result = limit(ex, BOB, BUY, "1", "105")
    order_id = ex.last_order_id
    assert result.trades[0].price == D(100)
    assert Move(QUOTE, D(5), locked(BOB), available(BOB), order_id, order_id) in (
        result.moves
    )
    # Bob pays 100 USDT and receives 1 BTC less the taker fee (0.2 %).
    assert balance(ex, BOB, QUOTE) == (D(9900), D(0))
    assert balance(ex, BOB, BASE) == (D("10.998"), D(0))
    # Alice receives 100 USDT less the maker fee (0.1 %).
    assert balance(ex, ALICE, QUOTE) == (D("10099.9"), D(0))
    assert balance(ex, ALICE, BASE) == (D(9), D(0))
    assert (ex.fees[BASE], ex.fees[QUOTE]) == (D("0.002"), D("0.1"))


def test_each_side_pays_in_the_token_it_receives_rounded_up_to_a_unit():
    ex = exchange(min_notional=D(0))
    limit(ex, ALICE, SELL, "0.0001", "100.01")
    (trade,) = limit(ex, BOB, BUY, "0.0001", "100.01").trades
    assert trade.quote_amount == D("0.010001")
    assert trade.maker_fee == D("0.000011")  # 0.000010001 USDT, rounded up
    assert trade.taker_fee == D("0.0000002")  # BTC, exact

    # A fee below one unit of the token is charged as one unit.
    coarse = exchange(min_notional=D(0), base_unit=unit(4))
    limit(coarse, ALICE, SELL, "0.0001", "100")
    (trade,) = limit(coarse, BOB, BUY, "0.0001", "100").trades
    assert trade.taker_fee == D("0.0001")
    assert balance(coarse, BOB, BASE) == (D(10), D(0))


def test_a_zero_fee_rate_charges_nothing():
    ex = exchange(maker_fee=D(0), taker_fee=D(0))
    limit(ex, ALICE, SELL, "1", "100")
    result = limit(ex, BOB, BUY, "1", "100")
    assert (result.trades[0].maker_fee, result.trades[0].taker_fee) == (0, 0)
    assert not [move for move in result.moves if move.target == FEES]


def test_an_ioc_remainder_is_cancelled_and_released():
    ex = exchange()
    limit(ex, ALICE, SELL, "1", "100")
    order = placed(limit(ex, BOB, BUY, "3", "100", time_in_force="IOC"))
    assert (order.status, order.reason, order.filled) == ("cancelled", "unfilled", 1)
    assert balance(ex, BOB, QUOTE) == (D(9900), D(0))
    assert ex.engine.depth(BUY) == ex.engine.depth(SELL) == []


def test_a_fill_or_kill_that_cannot_fill_is_refused_whole():
    ex = exchange()
    limit(ex, ALICE, SELL, "1", "100")
    result = limit(ex, BOB, BUY, "2", "100", time_in_force="FOK")
    assert result.rejected == "fill_or_kill_not_filled"
    assert placed(result).status == Status.REJECTED
    assert result.trades == [] and ex.engine.depth(SELL) == [(D(100), D(1))]
    assert balance(ex, BOB, QUOTE) == (D(10000), D(0))

    result = limit(ex, BOB, BUY, "1", "100", time_in_force="FOK")
    assert placed(result).status == Status.FILLED


def test_a_post_only_order_that_would_cross_is_refused():
    ex = exchange()
    limit(ex, ALICE, SELL, "1", "100")
    result = limit(ex, BOB, BUY, "1", "100", post_only=True)
    assert result.rejected == "post_only_would_take"
    assert balance(ex, BOB, QUOTE) == (D(10000), D(0))
    # The user's own order counts too.
    assert limit(ex, ALICE, BUY, "1", "100", post_only=True).rejected
    assert placed(limit(ex, BOB, BUY, "1", "99.99", post_only=True)).status == "open"


# -- Market orders ----------------------------------------------------------


def test_a_market_sell_walks_the_book_and_cancels_what_it_cannot_fill():
    ex = exchange()
    limit(ex, ALICE, BUY, "1", "100")
    limit(ex, CAROL, BUY, "1", "99")
    result = ex.place(BOB, SELL, "market", quantity=D(3))
    assert [fill[2:] for fill in fills(result)] == [(D(100), D(1)), (D(99), D(1))]
    order = placed(result)
    assert (order.status, order.reason, order.filled) == ("cancelled", "unfilled", 2)
    assert balance(ex, BOB, BASE) == (D(8), D(0))


def test_a_market_sell_never_trades_below_its_protection_price():
    ex = exchange()
    limit(ex, ALICE, BUY, "1", "100")
    limit(ex, CAROL, BUY, "1", "99")
    result = ex.place(BOB, SELL, "market", quantity=D(2), protection_price=D("99.5"))
    assert [fill[2] for fill in fills(result)] == [D(100)]


def test_min_notional_applies_to_what_a_market_order_would_trade():
    ex = exchange(min_notional=D(50))
    limit(ex, ALICE, BUY, "0.5", "100")
    result = ex.place(BOB, SELL, "market", quantity=D("0.4"))
    assert result.rejected == "below_min_notional"
    assert balance(ex, BOB, BASE) == (D(10), D(0))
    assert ex.engine.depth(BUY) == [(D(100), D("0.5"))]
    # A larger order trades what the book has (50 USDT): enough.
    assert placed(ex.place(BOB, SELL, "market", quantity=D(10))).filled == D("0.5")


def test_a_market_order_never_rests():
    ex = exchange(min_notional=D(0))
    order = placed(ex.place(BOB, SELL, "market", quantity=D(3), time_in_force="GTC"))
    assert (order.status, order.reason) == ("cancelled", "unfilled")
    assert balance(ex, BOB, BASE) == (D(10), D(0))


def test_a_market_buy_by_quote_amount_buys_whole_steps_and_returns_the_rest():
    ex = exchange()
    limit(ex, ALICE, SELL, "1", "100")
    limit(ex, ALICE, SELL, "1", "101")
    result = ex.place(BOB, BUY, "market", quote_amount=D(150))
    # 100 buys 1 BTC at 100; the other 50 buy 0.495 at 101 (49.995 USDT).
    assert [fill[2:] for fill in fills(result)] == [
        (D(100), D(1)),
        (D(101), D("0.495")),
    ]
    order = placed(result)
    assert (order.status, order.filled, order.executed_value) == (
        "filled",
        D("1.495"),
        D("149.995"),
    )
    assert balance(ex, BOB, QUOTE) == (D("9850.005"), D(0))
    assert balance(ex, BOB, BASE) == (D("11.49201"), D(0))  # fee 0.00299


def test_a_market_buy_by_quote_amount_on_a_thin_book_releases_the_rest():
    ex = exchange()
    limit(ex, ALICE, SELL, "0.5", "100")
    order = placed(ex.place(BOB, BUY, "market", quote_amount=D(100)))
    assert (order.status, order.reason, order.filled) == (
        "cancelled",
        "unfilled",
        D("0.5"),
    )
    assert balance(ex, BOB, QUOTE) == (D(9950), D(0))


def test_a_market_buy_by_quote_amount_too_small_for_a_step_buys_nothing():
    ex = exchange(min_notional=D(0))
    limit(ex, ALICE, SELL, "1", "100")
    order = placed(ex.place(BOB, BUY, "market", quote_amount=D("0.005")))
    assert (order.status, order.reason, order.filled) == ("cancelled", "unfilled", 0)
    assert balance(ex, BOB, QUOTE) == (D(10000), D(0))


def test_a_market_buy_by_quantity_never_pays_above_its_protection_price():
    ex = exchange()
    limit(ex, ALICE, SELL, "1", "100")
    limit(ex, CAROL, SELL, "1", "102")
    result = ex.place(BOB, BUY, "market", quantity=D(2), protection_price=D(101))
    assert [fill[2:] for fill in fills(result)] == [(D(100), D(1))]
    assert (placed(result).status, placed(result).reason) == ("cancelled", "unfilled")
    # 202 USDT were reserved; 100 were spent.
    assert balance(ex, BOB, QUOTE) == (D(9900), D(0))
    assert ex.engine.depth(SELL) == [(D(102), D(1))]


# -- Self-trade prevention --------------------------------------------------


def _three_sells_at_100(ex: Exchange) -> tuple[int, int, int]:
    """Bob's, then Alice's, then Carol's sell of 1 BTC at 100."""
    return tuple(
        placed(limit(ex, user, SELL, "1", "100")).order_id
        for user in (BOB, ALICE, CAROL)
    )


def test_cancel_newest_cancels_the_incoming_remainder_and_keeps_earlier_fills():
    ex = exchange()
    bobs, alices, _ = _three_sells_at_100(ex)
    result = limit(ex, ALICE, BUY, "3", "100")
    assert [fill[0] for fill in fills(result)] == [bobs]
    order = placed(result)
    assert (order.status, order.reason, order.filled) == ("cancelled", "self_trade", 1)
    assert alices not in [u.order_id for u in result.orders]
    assert ex.engine.depth(SELL) == [(D(100), D(2))]
    assert balance(ex, ALICE, QUOTE) == (D(9900), D(0))


def test_cancel_oldest_cancels_the_resting_order_and_goes_on():
    ex = exchange()
    bobs, alices, carols = _three_sells_at_100(ex)
    result = limit(ex, ALICE, BUY, "3", "100", stp="cancel_oldest")
    assert [fill[0] for fill in fills(result)] == [bobs, carols]
    assert outcome(update_of(result, alices)) == ("cancelled", "self_trade")
    assert (placed(result).status, placed(result).filled) == ("open", 2)
    assert balance(ex, ALICE, BASE) == (D("11.996"), D(0))  # her 1 BTC released


def test_cancel_both_cancels_the_resting_order_and_the_incoming_remainder():
    ex = exchange()
    bobs, alices, _ = _three_sells_at_100(ex)
    result = limit(ex, ALICE, BUY, "3", "100", stp="cancel_both")
    assert [fill[0] for fill in fills(result)] == [bobs]
    assert outcome(update_of(result, alices)) == ("cancelled", "self_trade")
    assert outcome(placed(result)) == ("cancelled", "self_trade")
    assert ex.engine.depth(SELL) == [(D(100), D(1))]


def test_decrement_cancels_a_smaller_resting_order_and_shrinks_the_incoming():
    ex = exchange()
    alices = placed(limit(ex, ALICE, SELL, "1", "100")).order_id
    bobs = placed(limit(ex, BOB, SELL, "1", "100")).order_id
    result = limit(ex, ALICE, BUY, "3", "100", stp="decrement_and_cancel")
    assert [fill[0] for fill in fills(result)] == [bobs]  # no trade with herself
    assert outcome(update_of(result, alices)) == ("cancelled", "self_trade")
    order = placed(result)
    assert (order.status, order.quantity, order.filled, order.locked) == (
        "open",
        2,
        1,
        100,
    )
    assert balance(ex, ALICE, QUOTE) == (D(9800), D(100))
    assert balance(ex, ALICE, BASE) == (D("10.998"), D(0))


def test_decrement_shrinks_a_larger_resting_order_which_keeps_its_place():
    ex = exchange()
    alices = placed(limit(ex, ALICE, SELL, "3", "100")).order_id
    limit(ex, CAROL, SELL, "1", "100")
    result = limit(ex, ALICE, BUY, "1", "100", stp="decrement_and_cancel")
    assert result.trades == [] and ex.fees[BASE] == ex.fees[QUOTE] == 0
    assert outcome(placed(result)) == ("cancelled", "self_trade")
    resting = update_of(result, alices)
    assert (resting.status, resting.quantity, resting.locked) == ("open", 2, 2)
    assert balance(ex, ALICE, BASE) == (D(8), D(2))
    assert balance(ex, ALICE, QUOTE) == (D(10000), D(0))
    assert [fill[0] for fill in fills(limit(ex, BOB, BUY, "1", "100"))] == [alices]


def test_decrement_of_equal_orders_cancels_both():
    ex = exchange()
    alices = placed(limit(ex, ALICE, SELL, "1", "100")).order_id
    result = limit(ex, ALICE, BUY, "1", "100", stp="decrement_and_cancel")
    assert (
        outcome(update_of(result, alices))
        == outcome(placed(result))
        == (
            "cancelled",
            "self_trade",
        )
    )


@pytest.mark.parametrize(
    ("stp", "status"),
    [
        ("cancel_newest", "rejected"),
        ("cancel_oldest", "filled"),  # her order is cancelled, bob's fills it
        ("decrement_and_cancel", "rejected"),  # shrunk to 1: not filled whole
    ],
)
def test_fill_or_kill_fails_if_self_trade_prevention_cuts_it(stp, status):
    ex = exchange()
    limit(ex, ALICE, SELL, "1", "100")
    limit(ex, BOB, SELL, "2", "100")
    result = limit(ex, ALICE, BUY, "2", "100", time_in_force="FOK", stp=stp)
    assert placed(result).status == status


@pytest.mark.parametrize(
    "stp, resting, alice_base",
    [
        ("cancel_newest", [(D(100), D(1))], (D(9), D(1))),
        ("cancel_both", [], (D(10), D(0))),  # her resting sell is cancelled
        ("decrement_and_cancel", [(D(100), D("0.505"))], (D("9.495"), D("0.505"))),
    ],
)
def test_a_market_order_stopped_by_self_trade_before_the_minimum_trades_nothing(
    stp, resting, alice_base
):
    ex = exchange()
    limit(ex, CAROL, SELL, "1", "99")
    limit(ex, DAVE, BUY, "0.995", "99")  # carol keeps 0.005 BTC: 0.495 USDT
    alices = placed(limit(ex, ALICE, SELL, "1", "100")).order_id
    limit(ex, BOB, SELL, "5", "101")
    result = ex.place(
        ALICE, BUY, "market", quantity=D("0.5"), protection_price=D(110), stp=stp
    )
    # Not "below the minimum": her own order stopped it, and it says so.
    assert result.rejected is None and result.trades == []
    order = placed(result)
    assert (order.status, order.reason, order.filled) == ("cancelled", "self_trade", 0)
    # The mode still applies to her resting sell, as it would past the minimum.
    book = [(D(99), D("0.005")), *resting, (D(101), D(5))]
    assert ex.engine.depth(SELL) == book
    if stp == "cancel_both":
        assert ex.orders[alices].status == "cancelled"
        assert ex.orders[alices].reason == "self_trade"
    assert balance(ex, ALICE, BASE) == alice_base
    assert balance(ex, ALICE, QUOTE) == (D(10000), D(0))


def test_a_market_order_stopped_by_self_trade_past_the_minimum_keeps_its_fills():
    ex = exchange()
    limit(ex, BOB, SELL, "0.5", "99")
    limit(ex, ALICE, SELL, "1", "100")
    result = ex.place(ALICE, BUY, "market", quantity=D(2), protection_price=D(110))
    assert [fill[2:] for fill in fills(result)] == [(D(99), D("0.5"))]
    order = placed(result)
    assert (order.status, order.reason, order.filled) == (
        "cancelled",
        "self_trade",
        D("0.5"),
    )
    assert balance(ex, ALICE, QUOTE) == (D("9950.5"), D(0))


# -- Stop-limit orders --------------------------------------------------------


def test_a_buy_stop_waits_until_the_last_price_reaches_it():
    ex = exchange()
    waiting = placed(stop(ex, ALICE, BUY, "1", stop="105", price="106"))
    assert (waiting.status, waiting.locked) == ("waiting", 106)
    assert ex.engine.depth(BUY) == []
    trade_at(ex, "104")
    assert ex.orders[waiting.order_id].status == "waiting"
    carols = placed(limit(ex, CAROL, SELL, "1", "106")).order_id
    result = trade_at(ex, "105")
    triggered = update_of(result, waiting.order_id)
    assert (triggered.status, triggered.priority) == ("filled", (result.sequence, 1))
    assert (carols, waiting.order_id, D(106), D(1)) in fills(result)
    assert balance(ex, ALICE, QUOTE) == (D(9894), D(0))


def test_a_sell_stop_enters_as_a_limit_order_when_the_price_falls_to_it():
    ex = exchange()
    waiting = placed(stop(ex, ALICE, SELL, "1", stop="95", price="94")).order_id
    trade_at(ex, "96")
    result = trade_at(ex, "95")
    assert update_of(result, waiting).status == "open"
    assert ex.engine.depth(SELL) == [(D(94), D(1))]


def test_stops_trigger_in_the_order_the_price_reached_them():
    ex = exchange()
    at_103 = placed(stop(ex, ALICE, BUY, "1", stop="103", price="110")).order_id
    at_102 = placed(stop(ex, CAROL, BUY, "1", stop="102", price="110")).order_id
    at_102_later = placed(stop(ex, BOB, BUY, "1", stop="102", price="110")).order_id
    result = trade_at(ex, "104")
    queued = [(o.id, o.priority) for o in ex.engine.book_orders(BUY)]
    seq = result.sequence
    assert queued == [(at_102, (seq, 1)), (at_102_later, (seq, 2)), (at_103, (seq, 3))]


def test_a_triggered_stop_can_trigger_another_in_the_same_command():
    ex = exchange()
    limit(ex, BOB, BUY, "1", "100")
    limit(ex, BOB, BUY, "1", "98")
    alices = placed(stop(ex, ALICE, SELL, "1", stop="100", price="97")).order_id
    carols = placed(stop(ex, CAROL, SELL, "1", stop="98", price="90")).order_id
    result = limit(ex, DAVE, SELL, "1", "100")
    assert [fill[1:3] for fill in fills(result)] == [
        (ex.last_order_id, D(100)),
        (alices, D(98)),
    ]
    assert update_of(result, alices).status == "filled"
    assert update_of(result, carols).priority == (result.sequence, 2)
    assert ex.engine.depth(SELL) == [(D(90), D(1))]


@pytest.mark.parametrize(
    ("last", "stop_side", "stop_price", "maker_side", "levels"),
    [
        ("105", SELL, "101", SELL, ("100", "102")),  # a buy walks up from 100
        ("95", BUY, "99", BUY, ("100", "98")),  # a sell walks down from 100
    ],
)
def test_a_stop_an_order_trades_through_is_triggered(
    last, stop_side, stop_price, maker_side, levels
):
    ex = exchange()
    trade_at(ex, last)
    limit_price = "90" if stop_side == SELL else "110"
    waiting = placed(stop(ex, ALICE, stop_side, "1", stop_price, limit_price))
    for price in levels:
        limit(ex, CAROL, maker_side, "1", price)
    taker_side = BUY if maker_side == SELL else SELL

    # One order trades at 100, past the stop, and ends back beyond it.
    result = limit(ex, BOB, taker_side, "2", levels[1])

    assert [fill[2] for fill in fills(result)] == [D(levels[0]), D(levels[1])]
    assert update_of(result, waiting.order_id).status == "open"
    assert ex.engine.depth(stop_side) == [(D(limit_price), D(1))]


def test_a_stop_the_price_has_already_reached_enters_at_once():
    ex = exchange()
    trade_at(ex, "100")
    order = placed(stop(ex, ALICE, BUY, "1", stop="99", price="101"))
    assert order.status == "open"
    assert ex.engine.depth(BUY) == [(D(101), D(1))]


def test_a_waiting_stop_can_be_cancelled_but_not_amended():
    ex = exchange()
    order_id = placed(stop(ex, ALICE, BUY, "1", stop="105", price="106")).order_id
    assert ex.amend(ALICE, order_id, price=D(107)).rejected == "order_not_open"
    assert outcome(update_of(ex.cancel(ALICE, order_id), order_id)) == (
        "cancelled",
        "user",
    )
    assert balance(ex, ALICE, QUOTE) == (D(10000), D(0))
    assert list(ex.engine.waiting_orders()) == []


# -- Amend ---------------------------------------------------------------------


def test_reducing_the_quantity_keeps_the_place_and_releases_the_difference():
    ex = exchange()
    alices = placed(limit(ex, ALICE, SELL, "2", "100")).order_id
    limit(ex, CAROL, SELL, "1", "100")
    result = ex.amend(ALICE, alices, quantity=D(1))
    assert update_of(result, alices).priority == (1, 0)
    assert balance(ex, ALICE, BASE) == (D(9), D(1))
    assert [fill[0] for fill in fills(limit(ex, BOB, BUY, "1", "100"))] == [alices]


@pytest.mark.parametrize("change", [{"price": D(100)}, {"quantity": D(2)}])
def test_a_new_price_or_a_larger_quantity_queues_the_order_again(change):
    ex = exchange()
    alices = placed(
        limit(ex, ALICE, SELL, "1", "100" if "quantity" in change else "100.5")
    ).order_id
    carols = placed(limit(ex, CAROL, SELL, "1", "100")).order_id
    result = ex.amend(ALICE, alices, **change)
    assert update_of(result, alices).priority == (result.sequence, 0)
    assert [fill[0] for fill in fills(limit(ex, BOB, BUY, "1", "100"))] == [carols]


def test_an_amend_that_crosses_trades_at_once_as_the_taker():
    ex = exchange()
    alices = placed(limit(ex, ALICE, BUY, "1", "99")).order_id
    carols = placed(limit(ex, CAROL, SELL, "1", "100")).order_id
    result = ex.amend(ALICE, alices, price=D(101))
    assert fills(result) == [(carols, alices, D(100), D(1))]
    assert result.trades[0].taker_fee == D("0.002")
    assert balance(ex, ALICE, QUOTE) == (D(9900), D(0))


@pytest.mark.reliability("overdraw")
def test_an_amend_needing_more_than_was_reserved_is_refused_alone():
    ex = exchange()
    alices = placed(limit(ex, ALICE, BUY, "1", "99")).order_id
    result = ex.amend(ALICE, alices, price=D(100), reserve=D("0.5"))
    assert (result.rejected, result.orders) == ("insufficient_reservation", [])
    assert balance(ex, ALICE, QUOTE) == (D(9901), D(99))  # the 0.5 released
    assert ex.engine.depth(BUY) == [(D(99), D(1))]
    # More than needed: the surplus comes back.
    result = ex.amend(ALICE, alices, price=D(100), reserve=D(5))
    assert update_of(result, alices).locked == D(100)
    assert balance(ex, ALICE, QUOTE) == (D(9900), D(100))


@pytest.mark.parametrize(
    ("change", "code"),
    [
        ({"price": D("0.99")}, "below_min_notional"),
        ({"quantity": D("0.5")}, "invalid_amount"),  # not above what is filled
        ({"price": D("99.999")}, "precision_too_high"),
        ({"price": D(101), "quantity": D(1)}, "post_only_would_take"),
        ({}, "invalid_order"),
    ],
)
def test_an_amend_that_cannot_apply_is_refused_with_a_reason(change, code):
    ex = exchange()
    alices = placed(limit(ex, ALICE, BUY, "1", "99", post_only=True)).order_id
    limit(ex, BOB, SELL, "0.5", "99")
    limit(ex, CAROL, SELL, "1", "101")
    result = ex.amend(ALICE, alices, **change)
    assert result.rejected == code
    assert ex.engine.depth(BUY) == [(D(99), D("0.5"))]


@pytest.mark.reliability("access-by-id")
def test_an_amend_of_another_users_or_a_closed_order_is_refused():
    ex = exchange()
    alices = placed(limit(ex, ALICE, SELL, "1", "100")).order_id
    assert ex.amend(BOB, alices, quantity=D("0.5")).rejected == "order_not_found"
    limit(ex, BOB, BUY, "1", "100")
    assert ex.amend(ALICE, alices, quantity=D("0.5")).rejected == "order_not_open"


# -- Cancel ----------------------------------------------------------------------


def test_a_cancel_releases_exactly_what_the_order_still_locks():
    ex = exchange()
    alices = placed(limit(ex, ALICE, BUY, "2", "100")).order_id
    limit(ex, CAROL, SELL, "1", "99")
    result = ex.cancel(ALICE, alices)
    assert Move(QUOTE, D(100), locked(ALICE), available(ALICE), alices, alices) in (
        result.moves
    )
    assert outcome(update_of(result, alices)) == ("cancelled", "user")
    assert balance(ex, ALICE, QUOTE) == (D(9900), D(0))


@pytest.mark.reliability("access-by-id")
def test_cancelling_a_closed_or_anothers_order_is_refused():
    ex = exchange()
    alices = placed(limit(ex, ALICE, SELL, "1", "100")).order_id
    assert ex.cancel(BOB, alices).rejected == "order_not_found"
    limit(ex, BOB, BUY, "1", "100")
    result = ex.cancel(ALICE, alices)  # filled before the cancel came
    assert (result.rejected, result.orders, result.moves) == ("order_not_open", [], [])


def test_cancel_all_cancels_only_the_users_orders_in_the_market():
    ex = exchange()
    mine = [
        placed(limit(ex, ALICE, SELL, "1", "101")).order_id,
        placed(limit(ex, ALICE, BUY, "1", "99")).order_id,
        placed(stop(ex, ALICE, BUY, "1", stop="105", price="106")).order_id,
    ]
    bobs = placed(limit(ex, BOB, SELL, "1", "102")).order_id
    result = ex.cancel_all(ALICE)
    assert [(u.order_id, u.status) for u in result.orders] == [
        (order_id, "cancelled") for order_id in mine
    ]
    assert [o.id for o in ex.engine.book_orders()] == [bobs]
    assert balance(ex, ALICE, QUOTE) == (D(10000), D(0))


# -- Refusals of a placement -------------------------------------------------------


ONE = {"quantity": D(1), "price": D(100)}  # 1 BTC at 100


@pytest.mark.parametrize(
    ("order", "fields", "code"),
    [
        (
            "buy limit",
            {**ONE, "time_in_force": "IOC", "post_only": True},
            "invalid_order",
        ),
        ("buy market", ONE, "invalid_order"),  # a market order has no price
        ("buy market", {"quantity": D(1)}, "invalid_order"),  # nor protection
        ("sell market", {"quote_amount": D(100)}, "invalid_order"),
        ("buy stop_limit", ONE, "invalid_order"),  # no stop price
        ("buy limit", {**ONE, "stp": "no"}, "invalid_order"),
        ("sell limit", {**ONE, "quantity": D(0)}, "invalid_amount"),
        ("sell limit", {**ONE, "quantity": 1.0}, "invalid_amount"),
        ("sell limit", {**ONE, "quantity": D("NaN")}, "invalid_amount"),
        ("sell limit", {**ONE, "quantity": D("0.00001")}, "precision_too_high"),
        ("sell limit", {**ONE, "price": D("100.001")}, "precision_too_high"),
        ("sell limit", {**ONE, "quantity": D("0.0001")}, "below_min_notional"),
    ],
)
def test_a_placement_is_refused_with_the_first_failed_check(order, fields, code):
    ex = exchange()
    side, type = order.split()
    result = ex.place(ALICE, side, type, **fields)
    assert result.rejected == code
    assert outcome(placed(result)) == ("rejected", code)
    assert ex.engine.depth(BUY) == ex.engine.depth(SELL) == []
    assert ex.locked[(ALICE, BASE)] == ex.locked[(ALICE, QUOTE)] == 0


@pytest.mark.parametrize("reserve", [D(99), D(101)])
def test_a_placement_must_reserve_exactly_what_it_needs(reserve):
    ex = exchange()
    result = limit(ex, ALICE, BUY, "1", "100", reserve=reserve)
    assert result.rejected == "reservation_mismatch"
    assert balance(ex, ALICE, QUOTE) == (D(10000), D(0))


def test_commands_must_come_in_sequence_order():
    engine = MarketEngine(BTC_USDT)
    engine.apply(Place(5, 1, ALICE, SELL, "limit", D(1), quantity=D(1), price=D(100)))
    with pytest.raises(ValueError, match="comes after"):
        engine.apply(Cancel(5, 1, ALICE))
    assert engine.depth(SELL) == [(D(100), D(1))]


# -- What results report -------------------------------------------------------------


def test_level_updates_give_each_changed_levels_new_total_in_sequence():
    ex = exchange()
    first = limit(ex, ALICE, SELL, "1", "100")
    second = limit(ex, CAROL, SELL, "2", "100")
    third = limit(ex, BOB, BUY, "3.5", "101")
    assert [tuple(u) for u in (*first.levels, *second.levels, *third.levels)] == [
        (1, SELL, D(100), D(1)),
        (2, SELL, D(100), D(3)),
        (3, BUY, D(101), D("0.5")),
        (4, SELL, D(100), D(0)),
    ]


def test_per_token_what_users_lose_in_moves_is_what_fees_gain():
    ex = exchange()
    limit(ex, ALICE, SELL, "1.5", "100")
    result = limit(ex, BOB, BUY, "2", "101")
    for token in (BASE, QUOTE):
        moves = [move for move in result.moves if move.token == token]
        users = sum(-m.amount for m in moves if m.source.user_id is not None) + sum(
            m.amount for m in moves if m.target.user_id is not None
        )
        fees = sum(m.amount for m in moves if m.target == FEES)
        assert users + fees == 0 and fees > 0


def test_a_rebuilt_engine_holds_the_same_book_and_acts_the_same():
    ex = exchange()
    limit(ex, ALICE, SELL, "2", "100")
    limit(ex, CAROL, SELL, "1", "100")
    limit(ex, BOB, BUY, "0.5", "100")  # alice's order partly filled
    limit(ex, BOB, BUY, "1", "99")
    stop(ex, CAROL, BUY, "1", stop="100.5", price="101")
    rebuilt = ex.rebuilt()
    for side in (BUY, SELL):
        assert rebuilt.depth(side) == ex.engine.depth(side)
    assert [o.id for o in rebuilt.book_orders()] == [
        o.id for o in ex.engine.book_orders()
    ]
    assert [o.id for o in rebuilt.waiting_orders()] == [5]
    ex.shadow = rebuilt  # from now on every result must be the same
    ex.amend(ALICE, 1, quantity=D(1))
    limit(ex, DAVE, BUY, "3", "100.5")
    assert limit(ex, BOB, SELL, "0.5", "100.5").trades  # triggers carol's stop
    assert ex.engine.depth(BUY)[0] == (D(101), D(1))
    ex.cancel_all(CAROL)


def test_rebuild_refuses_an_order_that_locks_the_wrong_amount():
    ex = exchange()
    limit(ex, ALICE, SELL, "2", "100")
    (order,) = ex.engine.book_orders()
    with pytest.raises(ValueError, match="locks wrong"):
        MarketEngine.rebuild(BTC_USDT, [replace(order, in_book=False, locked=D(1))])
