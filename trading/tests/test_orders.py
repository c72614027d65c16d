"""Placing, matching and cancelling orders through the real path: the request
side accepts, the market's matcher (drained in the test's process) matches.

The market of most tests is BTC-USDT (8 and 6 decimals): price step 0.01,
amount step 0.0001, minimum order 1 USDT, maker fee 0.1 %, taker fee 0.2 %.
"""

import importlib
from decimal import Decimal as D

import pytest

from tests.factories import (
    balance,
    buy,
    cancel,
    fees,
    fund,
    market_make,
    sell,
    token_make,
    user_make,
)
from trading.exceptions import (
    BelowMinNotional,
    DuplicateClientOrderId,
    FillOrKillNotFilled,
    InsufficientBalance,
    InvalidAmount,
    InvalidOrder,
    MarketClosed,
    OrderNotFound,
    OrderNotOpen,
    PostOnlyWouldTake,
    PrecisionTooHigh,
)
from trading.models import (
    Balance,
    LedgerEntry,
    LedgerTransaction,
    Market,
    Order,
    Trade,
)
from trading.orders import order_place

pytestmark = pytest.mark.django_db

Status, Reason = Order.Status, Order.CancelReason


def state() -> tuple:
    """Everything an order can change, to show that a refusal changed nothing
    (an order the matcher refuses stays as a rejected row, and its
    reservation and release as ledger entries that cancel out)."""
    return (
        sorted(
            Balance.objects.values_list("user_id", "token_id", "available", "locked")
        ),
        sorted(
            Order.objects.exclude(status=Status.REJECTED).values_list(
                "pk", "status", "filled_quantity", "locked"
            )
        ),
        Trade.objects.count(),
    )


def trades() -> list[tuple[D, D, int, int]]:
    return list(
        Trade.objects.order_by("pk").values_list(
            "price", "quantity", "maker_order_id", "taker_order_id"
        )
    )


def refresh(*orders: Order) -> None:
    for order in orders:
        order.refresh_from_db()


# -- Resting orders and locks -------------------------------------------------


def test_a_resting_limit_buy_locks_price_times_quantity_of_quote(
    market, alice, btc, usdt, funded
):
    order = buy(alice, market, "0.5", "100.01")

    assert (order.status, order.locked) == (Status.OPEN, D("50.005"))
    assert balance(alice, usdt) == (D("9949.995"), D("50.005"))
    assert balance(alice, btc) == (D("10"), D("0"))


def test_a_resting_limit_sell_locks_its_quantity_of_base(
    market, alice, btc, usdt, funded
):
    order = sell(alice, market, "0.5", "100")

    assert (order.status, order.locked) == (Status.OPEN, D("0.5"))
    assert balance(alice, btc) == (D("9.5"), D("0.5"))
    assert balance(alice, usdt) == (D("10000"), D("0"))


@pytest.mark.reliability("overdraw")
def test_an_order_beyond_the_available_balance_is_refused_whole(market, alice, usdt):
    fund(alice, usdt, "99.99")
    before = state()

    with pytest.raises(InsufficientBalance) as refused:
        buy(alice, market, "1", "100")

    assert refused.value.code == "insufficient_balance"
    assert "100" in refused.value.message and "99.99" in refused.value.message
    assert state() == before


# -- Price-time priority --------------------------------------------------------


def test_orders_at_the_same_price_fill_in_time_order(market, alice, bob, carol, funded):
    first = sell(alice, market, "0.5", "100")
    second = sell(carol, market, "0.5", "100")

    taker = buy(bob, market, "0.6", "100")

    refresh(first, second)
    assert (first.status, first.filled_quantity) == (Status.FILLED, D("0.5"))
    assert (second.status, second.filled_quantity) == (Status.OPEN, D("0.1"))
    assert trades() == [
        (D("100"), D("0.5"), first.pk, taker.pk),
        (D("100"), D("0.1"), second.pk, taker.pk),
    ]


def test_a_better_price_fills_first_even_when_placed_later(
    market, alice, bob, carol, funded
):
    older = sell(alice, market, "0.5", "100")
    better = sell(carol, market, "0.5", "99.99")

    taker = buy(bob, market, "0.5", "100")

    refresh(older, better)
    assert (better.status, older.status) == (Status.FILLED, Status.OPEN)
    assert trades() == [(D("99.99"), D("0.5"), better.pk, taker.pk)]


def test_a_taker_trades_at_the_resting_orders_price(market, alice, bob, usdt, funded):
    resting_bid = buy(alice, market, "1", "100")

    taker = sell(bob, market, "1", "90")

    assert trades() == [(D("100"), D("1"), resting_bid.pk, taker.pk)]
    assert taker.executed_value == D("100")


def test_a_buy_sweeps_levels_at_their_prices_and_rests_the_remainder(
    market, alice, bob, carol, btc, usdt, funded
):
    a = sell(alice, market, "0.5", "100")
    c1 = sell(carol, market, "0.3", "101")
    c2 = sell(carol, market, "1", "103")

    taker = buy(bob, market, "1", "102")

    assert trades() == [
        (D("100"), D("0.5"), a.pk, taker.pk),
        (D("101"), D("0.3"), c1.pk, taker.pk),
    ]
    refresh(a, c1, c2)
    assert (a.status, c1.status, c2.status) == (Status.FILLED,) * 2 + (Status.OPEN,)
    assert taker.status == Status.OPEN
    assert taker.filled_quantity == D("0.8")
    assert taker.executed_value == D("80.3")
    # The rest rests at 102 and locks only what it may still spend; the
    # 1.3 USDT saved by trading below 102 is available again.
    assert taker.locked == D("20.4")
    assert balance(bob, usdt) == (D("10000") - D("80.3") - D("20.4"), D("20.4"))
    # 0.2 % taker fee on each fill, in the BTC bob receives.
    assert balance(bob, btc) == (D("10") + D("0.8") - D("0.001") - D("0.0006"), 0)
    # 0.1 % maker fee, in the USDT the sellers receive.
    assert balance(alice, usdt) == (D("10000") + D("50") - D("0.05"), 0)
    assert balance(carol, usdt) == (D("10000") + D("30.3") - D("0.0303"), 0)


# -- Fees and rounding ------------------------------------------------------------


def test_each_side_pays_its_fee_in_what_it_receives(
    market, alice, bob, btc, usdt, funded
):
    maker = sell(alice, market, "1", "100")
    taker = buy(bob, market, "1", "100")

    trade = Trade.objects.get()
    assert (trade.maker_fee, trade.taker_fee) == (D("0.1"), D("0.002"))
    refresh(maker)
    assert (maker.fee, taker.fee) == (D("0.1"), D("0.002"))
    assert balance(alice, usdt) == (D("10099.9"), 0)
    assert balance(alice, btc) == (D("9"), 0)
    assert balance(bob, btc) == (D("10.998"), 0)
    assert balance(bob, usdt) == (D("9900"), 0)
    assert (fees(btc), fees(usdt)) == (D("0.002"), D("0.1"))


@pytest.fixture
def coarse_market():
    """LOW (4 decimals) against USD (2 decimals): fees fall below a unit."""
    low, usd = token_make("LOW", decimals=4), token_make("USD", decimals=2)
    market = market_make(
        low, usd, price_step=D("1"), amount_step=D("0.01"), min_notional=D(0)
    )
    return market, low, usd


def test_a_fee_below_one_unit_is_charged_as_one_unit(coarse_market, alice, bob):
    market, low, usd = coarse_market
    fund(alice, low, "1")
    fund(bob, usd, "1")
    sell(alice, market, "0.01", "3")

    buy(bob, market, "0.01", "3")

    trade = Trade.objects.get()
    # Taker buyer: 0.01 x 0.2 % = 0.00002 LOW, less than the 0.0001 unit.
    assert trade.taker_fee == D("0.0001")
    # Maker seller: 0.03 x 0.1 % = 0.00003 USD, less than the 0.01 unit.
    assert trade.maker_fee == D("0.01")
    assert balance(bob, low) == (D("0.0099"), 0)
    assert balance(alice, usd) == (D("0.02"), 0)


def test_fees_round_up_so_credits_round_down(coarse_market, alice, bob):
    market, low, usd = coarse_market
    fund(alice, low, "5")
    fund(bob, usd, "100")
    sell(alice, market, "1.23", "7")

    buy(bob, market, "1.23", "7")

    trade = Trade.objects.get()
    # 1.23 x 0.002 = 0.00246 -> 0.0025; 8.61 x 0.001 = 0.00861 -> 0.01.
    assert (trade.taker_fee, trade.maker_fee) == (D("0.0025"), D("0.01"))
    assert balance(bob, low) == (D("1.2275"), 0)
    assert balance(alice, usd) == (D("8.60"), 0)


def test_a_zero_fee_rate_charges_nothing(btc, usdt, alice, bob):
    market = market_make(btc, usdt, maker_fee=D(0), taker_fee=D(0))
    fund(alice, btc, "1")
    fund(bob, usdt, "100")
    sell(alice, market, "0.5", "100")

    buy(bob, market, "0.5", "100")

    assert (fees(btc), fees(usdt)) == (D(0), D(0))
    assert balance(bob, btc) == (D("0.5"), 0)
    assert balance(alice, usdt) == (D("50"), 0)


# -- Time in force and post-only ---------------------------------------------------


def test_a_fill_or_kill_that_cannot_fill_entirely_changes_nothing(
    market, alice, bob, funded
):
    sell(alice, market, "0.5", "100")
    sell(alice, market, "0.5", "100.01")
    before = state()

    with pytest.raises(FillOrKillNotFilled) as refused:
        buy(bob, market, "1", "100", time_in_force="FOK")

    assert state() == before
    assert "cannot fill all 1 BTC at once" in refused.value.message
    rejected = Order.objects.get(status=Status.REJECTED)
    assert (rejected.reject_reason, rejected.locked) == ("fill_or_kill_not_filled", 0)


def test_a_fill_or_kill_that_can_fill_fills_entirely(market, alice, bob, funded):
    sell(alice, market, "0.5", "100")
    sell(alice, market, "0.5", "100.01")

    order = buy(bob, market, "1", "100.01", time_in_force="FOK")

    assert (order.status, order.filled_quantity, order.locked) == (
        Status.FILLED,
        D("1"),
        D("0"),
    )


def test_an_immediate_or_cancel_remainder_is_cancelled_and_released(
    market, alice, bob, usdt, funded
):
    sell(alice, market, "0.5", "100")

    order = buy(bob, market, "2", "100", time_in_force="IOC")

    assert order.status == Status.CANCELLED
    assert order.cancel_reason == Reason.UNFILLED
    assert (order.filled_quantity, order.locked) == (D("0.5"), D("0"))
    assert balance(bob, usdt) == (D("9950"), D("0"))
    assert not Order.objects.filter(status=Status.OPEN).exists()


def test_a_post_only_order_that_would_take_is_refused_whole(market, alice, bob, funded):
    sell(alice, market, "0.5", "100")
    before = state()

    with pytest.raises(PostOnlyWouldTake) as refused:
        buy(bob, market, "1", "100", post_only=True)

    assert state() == before
    assert "At 100 the post-only order would trade" in refused.value.message


def test_a_post_only_order_that_does_not_cross_rests(market, alice, bob, funded):
    sell(alice, market, "0.5", "100")

    order = buy(bob, market, "1", "99.99", post_only=True)

    assert (order.status, order.filled_quantity) == (Status.OPEN, D("0"))
    assert not Trade.objects.exists()


# -- Self-trade prevention ---------------------------------------------------------


def test_an_order_never_trades_with_its_owners_resting_order(
    market, alice, bob, carol, usdt, funded
):
    others = sell(bob, market, "0.2", "100")
    own = sell(alice, market, "0.3", "100.5")
    beyond = sell(carol, market, "0.5", "101")

    order = buy(alice, market, "1", "101")

    # The fill before alice's own order stands; the rest is cancelled.
    assert trades() == [(D("100"), D("0.2"), others.pk, order.pk)]
    assert order.status == Status.CANCELLED
    assert order.cancel_reason == Reason.SELF_TRADE
    assert (order.filled_quantity, order.locked) == (D("0.2"), D("0"))
    refresh(own, beyond)
    assert (own.status, own.filled_quantity) == (Status.OPEN, D("0"))
    assert (beyond.status, beyond.filled_quantity) == (Status.OPEN, D("0"))
    assert balance(alice, usdt) == (D("10000") - D("20"), D("0"))


def test_self_trade_prevention_at_the_top_of_the_book_fills_nothing(
    market, alice, funded
):
    own = buy(alice, market, "1", "100")

    order = sell(alice, market, "1", "99")

    assert (order.status, order.cancel_reason) == (Status.CANCELLED, Reason.SELF_TRADE)
    assert order.filled_quantity == D("0")
    refresh(own)
    assert own.status == Status.OPEN
    assert not Trade.objects.exists()


def test_a_fill_or_kill_blocked_by_self_trade_prevention_is_refused(
    market, alice, bob, funded
):
    sell(bob, market, "0.5", "100")
    sell(alice, market, "0.5", "100")
    before = state()

    with pytest.raises(FillOrKillNotFilled):
        buy(alice, market, "1", "100", time_in_force="FOK")

    assert state() == before


# -- Market orders ---------------------------------------------------------------


def test_a_market_buy_by_quantity_reserves_its_protection_price_and_gets_back_the_rest(
    market, alice, bob, carol, btc, usdt
):
    fund(alice, btc, "1")
    fund(carol, btc, "1")
    fund(bob, usdt, "88")
    sell(alice, market, "0.5", "100")
    sell(carol, market, "0.5", "110")

    order = buy(bob, market, "0.8", protection_price="110")

    assert (order.type, order.status) == (Order.Type.MARKET, Status.FILLED)
    assert order.executed_value == D("83")  # 0.5 x 100 + 0.3 x 110
    reserved = LedgerEntry.objects.get(
        transaction__order=order,
        transaction__kind=LedgerTransaction.Kind.ORDER_PLACE,
        account="user_locked",
    )
    assert reserved.amount == D("88")  # 0.8 x 110
    assert balance(bob, usdt) == (D("5"), D("0"))
    assert balance(bob, btc) == (D("0.8") - D("0.0016"), D("0"))


def test_a_market_buy_never_trades_above_its_protection_price(
    market, alice, bob, btc, usdt, funded
):
    sell(alice, market, "0.5", "100")
    sell(alice, market, "0.5", "110")

    order = buy(bob, market, "0.8", protection_price="105")

    assert (order.status, order.cancel_reason) == (Status.CANCELLED, Reason.UNFILLED)
    assert (order.filled_quantity, order.executed_value) == (D("0.5"), D("50"))
    assert balance(bob, usdt) == (D("9950"), D("0"))


def test_a_market_buy_by_quote_amount_spends_at_most_that_in_whole_steps(
    market, alice, bob, btc, usdt, funded
):
    sell(alice, market, "0.5", "100")
    sell(alice, market, "0.5", "110")

    order = buy(bob, market, None, quote_amount="83.01")

    # 50 at 100, then 0.3 at 110 (33); 0.01 USDT buys no 0.0001 BTC step
    # (0.011 at 110), and is released.
    assert (order.quantity, order.quote_amount) == (None, D("83.01"))
    assert (order.status, order.filled_quantity) == (Status.FILLED, D("0.8"))
    assert order.executed_value == D("83")
    assert balance(bob, usdt) == (D("10000") - D("83"), D("0"))


@pytest.mark.reliability("overdraw")
def test_a_market_buy_the_balance_cannot_cover_is_refused_whole(
    market, alice, bob, btc, usdt
):
    fund(alice, btc, "1")
    fund(bob, usdt, "87.99")
    sell(alice, market, "0.5", "100")
    sell(alice, market, "0.5", "110")
    before = state()

    with pytest.raises(InsufficientBalance) as refused:
        buy(bob, market, "0.8", protection_price="110")

    assert "88" in refused.value.message and "87.99" in refused.value.message
    assert state() == before
    assert not Order.objects.filter(user=bob).exists()


def test_a_market_buy_by_quantity_needs_a_protection_price(market, bob, funded):
    with pytest.raises(InvalidOrder) as refused:
        buy(bob, market, "0.8")

    assert "protection price" in refused.value.message


def test_a_market_order_cancels_what_the_book_cannot_fill(
    market, alice, bob, btc, usdt, funded
):
    sell(alice, market, "0.5", "100")

    order = buy(bob, market, "2", protection_price="1000")

    assert (order.status, order.cancel_reason) == (Status.CANCELLED, Reason.UNFILLED)
    assert (order.filled_quantity, order.locked) == (D("0.5"), D("0"))
    assert balance(bob, usdt) == (D("9950"), D("0"))


def test_a_market_sell_trades_down_the_bids(market, alice, bob, carol, usdt, funded):
    buy(alice, market, "0.5", "100")
    buy(carol, market, "0.5", "99")

    order = sell(bob, market, "0.7")

    assert [(price, quantity) for price, quantity, *_ in trades()] == [
        (D("100"), D("0.5")),
        (D("99"), D("0.2")),
    ]
    assert (order.status, order.executed_value) == (Status.FILLED, D("69.8"))
    # 69.8 less the 0.2 % taker fee (0.1396).
    assert balance(bob, usdt) == (D("10069.6604"), D("0"))


def test_a_market_order_must_trade_the_minimum_notional(market, alice, bob, funded):
    sell(alice, market, "1", "100")
    before = state()

    with pytest.raises(BelowMinNotional) as refused:
        buy(bob, market, "0.0099", protection_price="100")  # would trade 0.99

    assert state() == before
    assert "minimum value of 1 USDT" in refused.value.message
    assert Order.objects.get(user=bob).reject_reason == "below_min_notional"
    assert buy(bob, market, "0.01", protection_price="100").status == Status.FILLED


def test_a_market_order_on_an_empty_book_without_minimum_is_cancelled(btc, usdt, bob):
    market = market_make(btc, usdt, min_notional=D(0))
    fund(bob, btc, "1")

    order = sell(bob, market, "1")

    assert (order.status, order.filled_quantity) == (Status.CANCELLED, D("0"))
    assert balance(bob, btc) == (D("1"), D("0"))


# -- Checks on the request -------------------------------------------------------


def test_a_limit_order_below_the_minimum_notional_is_refused(market, alice, funded):
    with pytest.raises(BelowMinNotional):
        buy(alice, market, "0.0099", "100")  # worth 0.99 USDT

    assert buy(alice, market, "0.01", "100").status == Status.OPEN  # 1 USDT


@pytest.mark.parametrize(
    ("quantity", "price", "error"),
    [
        (D("0.00005"), D("100"), PrecisionTooHigh),  # amount step 0.0001
        (D("1"), D("100.001"), PrecisionTooHigh),  # price step 0.01
        (D("1"), D("100.0000000000000000001"), PrecisionTooHigh),  # > 18 decimals
        (D("0"), D("100"), InvalidAmount),
        (D("-1"), D("100"), InvalidAmount),
        (D("1"), D("-100"), InvalidAmount),
        (D("1"), D("NaN"), InvalidAmount),
        (1, D("100"), InvalidAmount),
        (D("1"), 100.0, InvalidAmount),
        (D("1E+17"), D("100"), InvalidAmount),  # worth more than a field holds
    ],
)
@pytest.mark.reliability("number-abuse")
def test_amounts_finer_than_the_market_or_not_decimals_are_refused(
    market, alice, funded, quantity, price, error
):
    before = state()

    with pytest.raises(error):
        order_place(
            user=alice,
            market=market,
            side="buy",
            type="limit",
            quantity=quantity,
            price=price,
        )

    assert state() == before


def test_steps_with_trailing_zeros_are_accepted(market, alice, funded):
    order = buy(alice, market, "0.50000000", "100.0100")

    assert (order.quantity, order.price) == (D("0.5"), D("100.01"))


@pytest.mark.parametrize(
    "options",
    [
        {"type": "limit", "price": None},
        {"type": "market", "price": D("100")},
        {"type": "market", "price": None, "post_only": True},
        {"type": "limit", "price": D("100"), "post_only": True, "time_in_force": "IOC"},
        {"type": "limit", "price": D("100"), "time_in_force": "DAY"},
        {"type": "stop", "price": D("100")},
        {"type": "limit", "price": D("100"), "side": "long"},
        {"type": "limit", "price": D("100"), "client_order_id": "x" * 65},
    ],
)
@pytest.mark.reliability("malformed-requests")
def test_options_that_do_not_go_together_are_refused(market, alice, funded, options):
    request = {"side": "buy", "quantity": D("1"), **options}

    with pytest.raises(InvalidOrder) as refused:
        order_place(user=alice, market=market, **request)

    assert refused.value.code == "invalid_order"
    assert not Order.objects.exists()


def test_a_halted_market_refuses_orders_but_allows_cancels(market, alice, usdt, funded):
    order = buy(alice, market, "1", "100")
    Market.objects.filter(pk=market.pk).update(status=Market.Status.HALTED)

    with pytest.raises(MarketClosed):
        buy(alice, market, "1", "100")
    cancel(alice, order)

    assert balance(alice, usdt) == (D("10000"), D("0"))


def test_a_market_halted_then_opened_again_accepts_orders_at_once(
    market, alice, funded
):
    buy(alice, market, "1", "99")
    Market.objects.filter(pk=market.pk).update(status=Market.Status.HALTED)
    with pytest.raises(MarketClosed):
        buy(alice, market, "1", "99")

    Market.objects.filter(pk=market.pk).update(status=Market.Status.OPEN)

    assert buy(alice, market, "1", "99").status == Status.OPEN


def test_new_steps_and_minimum_apply_to_the_very_next_order(market, alice, funded):
    # Changed behind the process's back, as staff do from another instance.
    buy(alice, market, "1", "99")
    Market.objects.filter(pk=market.pk).update(
        price_step=D("0.5"), amount_step=D("0.01"), min_notional=D("50")
    )

    for quantity, price, error in (
        ("1", "99.01", PrecisionTooHigh),
        ("1.005", "99", PrecisionTooHigh),
        ("0.5", "99", BelowMinNotional),
    ):
        with pytest.raises(error):
            buy(alice, market, quantity, price)
    assert buy(alice, market, "0.51", "99.5").status == Status.OPEN


def test_an_order_off_the_old_steps_fits_the_new_ones(market, alice, funded):
    buy(alice, market, "1", "99")
    Market.objects.filter(pk=market.pk).update(price_step=D("0.001"))

    assert buy(alice, market, "1", "99.005").price == D("99.005")


def test_an_order_reserves_the_token_the_market_has_now(market, alice, funded):
    # A process that read the market before it changed reserves what it is.
    with pytest.raises(BelowMinNotional):
        sell(alice, market, "0.001", "101")
    eth = token_make("ETH", decimals=8)
    fund(alice, eth, "2")
    Market.objects.filter(pk=market.pk).update(base=eth)

    sell(alice, market, "1", "101")

    assert balance(alice, eth) == (D("1"), D("1"))


def test_a_market_with_a_disabled_token_refuses_orders(market, btc, alice, funded):
    btc.is_active = False
    btc.save()

    with pytest.raises(MarketClosed):
        buy(alice, market, "1", "100")


# -- Cancelling ---------------------------------------------------------------------


def test_cancelling_releases_exactly_what_the_remainder_locks(
    market, alice, bob, btc, usdt, funded
):
    order = buy(alice, market, "1", "100")
    sell(bob, market, "0.3", "100")
    refresh(order)
    assert order.locked == D("70")

    cancelled = cancel(alice, order)

    assert (cancelled.status, cancelled.cancel_reason) == (
        Status.CANCELLED,
        Reason.USER,
    )
    assert (cancelled.filled_quantity, cancelled.locked) == (D("0.3"), D("0"))
    assert balance(alice, usdt) == (D("9970"), D("0"))
    release = LedgerEntry.objects.get(
        transaction__kind=LedgerTransaction.Kind.ORDER_CANCEL, account="user_available"
    )
    assert release.amount == D("70")


def test_an_order_is_cancelled_only_once(market, alice, funded):
    order = sell(alice, market, "1", "100")
    cancel(alice, order)

    with pytest.raises(OrderNotOpen):
        cancel(alice, order)


def test_a_filled_order_cannot_be_cancelled(market, alice, bob, btc, funded):
    order = sell(alice, market, "1", "100")
    buy(bob, market, "1", "100")
    before = state()

    with pytest.raises(OrderNotOpen):
        cancel(alice, order)

    assert state() == before


@pytest.mark.reliability("access-by-id")
def test_nobody_cancels_another_users_order(market, alice, bob, funded):
    order = sell(alice, market, "1", "100")

    with pytest.raises(OrderNotFound):
        cancel(bob, order)

    refresh(order)
    assert order.status == Status.OPEN


# -- Client order ids ------------------------------------------------------------


@pytest.mark.reliability("outcome-repeat")
def test_repeating_a_create_with_its_client_order_id_returns_the_same_order(
    market, alice, usdt, funded
):
    first = buy(alice, market, "1", "100", client_order_id="bot-1")
    again = buy(alice, market, "1", "100", client_order_id="bot-1")

    assert again.pk == first.pk
    assert Order.objects.count() == 1
    assert balance(alice, usdt) == (D("9900"), D("100"))


@pytest.mark.reliability("outcome-repeat")
def test_a_different_order_under_an_open_client_order_id_is_refused(
    market, alice, usdt, funded
):
    buy(alice, market, "1", "100", client_order_id="bot-1")

    with pytest.raises(DuplicateClientOrderId):
        buy(alice, market, "2", "100", client_order_id="bot-1")

    assert balance(alice, usdt) == (D("9900"), D("100"))


def test_a_client_order_id_is_free_again_once_its_order_is_closed(
    market, alice, funded
):
    first = buy(alice, market, "1", "100", client_order_id="bot-1")
    cancel(alice, first)

    second = buy(alice, market, "2", "100", client_order_id="bot-1")

    assert second.pk != first.pk
    assert second.status == Status.OPEN


@pytest.mark.reliability("outcome-repeat")
def test_repeating_an_order_that_filled_at_once_does_not_trade_again(
    market, alice, bob, funded
):
    sell(alice, market, "2", "100")
    first = buy(bob, market, "1", "100", client_order_id="bot-1")

    again = buy(bob, market, "1", "100", client_order_id="bot-1")

    assert again.pk == first.pk
    assert again.status == Status.FILLED
    assert Trade.objects.count() == 1


def test_client_order_ids_are_per_user(market, alice, bob, funded):
    mine = buy(alice, market, "1", "100", client_order_id="bot-1")
    theirs = buy(bob, market, "1", "100", client_order_id="bot-1")

    assert mine.pk != theirs.pk


def test_a_user_without_a_balance_row_can_receive_in_a_trade(market, alice, btc, usdt):
    fund(alice, btc, "1")
    newcomer = user_make("newcomer")
    fund(newcomer, usdt, "100")
    sell(alice, market, "1", "100")

    buy(newcomer, market, "1", "100")

    assert balance(newcomer, btc) == (D("0.998"), D("0"))
    assert balance(alice, usdt) == (D("99.9"), D("0"))


def test_the_migration_gives_makers_of_older_orders_both_balance_rows(
    market, btc, usdt, alice, bob
):
    from django.apps import apps

    migration = importlib.import_module(
        "trading.migrations.0003_balance_rows_for_open_orders"
    )
    fund(alice, usdt, "100")
    fund(bob, btc, "1")
    buy(alice, market, "0.1", "100")
    # As before balances_ensure: the maker has only the row it locked.
    Balance.objects.filter(user=alice, token=btc).delete()

    migration.balance_rows_create(apps, None)

    assert Balance.objects.filter(user=alice, token=btc).exists()
    sell(bob, market, "0.1", "100")
    assert balance(alice, btc) == (D("0.0999"), D("0"))
