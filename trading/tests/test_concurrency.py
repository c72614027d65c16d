"""Several app servers at once: real threads on PostgreSQL, released together.

Each thread has its own database connection, as each app server would; they
start at the same instant from a barrier. Orders are matched by matchers
running in threads of their own (``MatcherThread``), one per market, as
``run_matcher`` processes would; requests wait for results through the
matchers' notifications. Afterwards the ledger invariants are checked (also
by the autouse fixture).
"""

from __future__ import annotations

import copy
import functools
import html
import random
import re
import threading
import time
from collections.abc import Callable
from decimal import Decimal as D

import psycopg
import pytest
from django.core.exceptions import ValidationError
from django.db import connection, transaction
from django.utils import timezone
from rest_framework.test import APIClient

from tests.factories import (
    PASSWORD,
    balance,
    buy,
    fees,
    fund,
    market_make,
    sell,
    token_make,
    user_make,
)
from tests.threads import run_together
from trading.api_keys import MAX_ACTIVE_KEYS, api_key_create
from trading.exceptions import (
    AddressNotAllowed,
    InsufficientBalance,
    OrderNotOpen,
    TradingError,
)
from trading.invariants import ledger_problems
from trading.matcher import MarketMatcher, Matcher, PostgresLocks, drain
from trading.models import (
    ApiKey,
    Deposit,
    Order,
    OrderCommand,
    SavedAddress,
    Trade,
    Withdrawal,
)
from trading.orders import (
    command_refusal,
    command_wait,
    order_cancel,
    order_place,
    order_refusal,
    order_wait,
)
from trading.services import (
    MAX_SAVED_ADDRESSES,
    deposit_credit,
    saved_address_add,
    withdrawal_request,
)
from trading.tests.db_faults import order_insert, statement_fails_once

pytestmark = [pytest.mark.postgres, pytest.mark.django_db(transaction=True)]


class MatcherThread:
    """``run_matcher --market SYMBOL`` in a thread, with its own connection."""

    def __init__(self, *symbols: str) -> None:
        self.stopped = threading.Event()
        self.errors: list[BaseException] = []
        self.matcher = Matcher(symbols=list(symbols), stopping=self.stopped.is_set)
        self.thread = threading.Thread(target=self._run)

    def _run(self) -> None:
        try:
            self.matcher.run()
        except BaseException as error:  # reported to the test
            self.errors.append(error)
        finally:
            connection.close()

    def __enter__(self) -> MatcherThread:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stopped.set()
        self.thread.join(timeout=60)
        assert not self.thread.is_alive(), "the matcher hung"
        assert self.errors == []


@pytest.fixture
def waiting_requests(settings):
    """Requests wait for the matcher threads, as in production."""
    settings.ORDER_MATCH_INLINE = False
    settings.ORDER_RESULT_WAIT_SECONDS = 30


def placed(**fields) -> Order:
    """A request as the views make it: accept, wait for the result, raise a
    refusal."""
    order = order_wait(order=order_place(**fields))
    assert order.status != Order.Status.ACCEPTED, "the matcher did not answer"
    if (refusal := order_refusal(order)) is not None:
        raise refusal
    return order


def cancelled(*, user, order) -> Order:
    command = order_cancel(user=user, order=order)
    assert command_wait(command=command), "the matcher did not answer"
    if (refusal := command_refusal(command)) is not None:
        raise refusal
    return Order.objects.get(pk=order.pk)


@pytest.mark.reliability("race-orders")
def test_many_traders_on_two_markets_never_deadlock_and_keep_the_books_exact(
    waiting_requests,
):
    usdt = token_make("USDT", decimals=6)
    markets = [
        market_make(token_make("BTC", decimals=8), usdt),
        market_make(token_make("ETH", decimals=8), usdt),
    ]
    traders = [user_make(f"trader{i}") for i in range(12)]
    base_holders = {market.pk: traders[i % 2 :: 2] for i, market in enumerate(markets)}
    for trader in traders:
        fund(trader, usdt, "100000")
    for market in markets:
        # The others get their balance rows of this base when they first buy,
        # while other threads trade: rows are created under concurrency too.
        for trader in base_holders[market.pk]:
            fund(trader, market.base, "100")

    def session(trader, seed: int) -> list[str]:
        rng = random.Random(seed)  # noqa: S311 - reproducible, not secret
        mine: list[Order] = []
        refusals = []
        for _ in range(40):
            market = rng.choice(markets)
            try:
                if mine and rng.random() < 0.2:
                    cancelled(user=trader, order=mine.pop(rng.randrange(len(mine))))
                    continue
                market_order = rng.random() < 0.15
                side = rng.choice(["buy", "sell"])
                order = placed(
                    user=trader,
                    market=market,
                    side=side,
                    type="market" if market_order else "limit",
                    quantity=D(rng.randint(1, 200)) / 100,
                    price=None if market_order else D(rng.randint(95, 105)),
                    protection_price=D(110) if market_order and side == "buy" else None,
                    time_in_force=rng.choice(["GTC", "GTC", "IOC"]),
                )
                if order.is_open:
                    mine.append(order)
            except TradingError as refused:
                # Losing a race is fine (the order filled before its cancel);
                # anything else, a deadlock above all, fails the test.
                refusals.append(refused.code)
        return refusals

    # Two matchers whose markets share USDT: their batches lock the same
    # balance rows.
    with MatcherThread("BTC-USDT"), MatcherThread("ETH-USDT"):
        results = run_together(
            *[
                (lambda trader=trader, seed=seed: session(trader, seed))
                for seed, trader in enumerate(traders)
            ]
        )
    assert not OrderCommand.objects.exists()

    errors = [value for status, value in results if status == "error"]
    assert errors == []
    refusals = {code for _, codes in results for code in codes}
    assert refusals <= {"order_not_open", "insufficient_balance", "below_min_notional"}
    assert Trade.objects.count() > 50
    assert ledger_problems() == []
    for market in markets:
        bids = Order.objects.filter(market=market, status="open", side="buy")
        asks = Order.objects.filter(market=market, status="open", side="sell")
        best_bid = max(bids.values_list("price", flat=True), default=D(0))
        best_ask = min(asks.values_list("price", flat=True), default=D(10**9))
        assert best_bid < best_ask
    # Nothing was created or lost: every coin is with a trader or in fees.
    total_usdt = sum(sum(balance(trader, usdt)) for trader in traders) + fees(usdt)
    assert total_usdt == D("100000") * len(traders)
    for market in markets:
        held = sum(sum(balance(trader, market.base)) for trader in traders)
        assert held + fees(market.base) == D("100") * len(base_holders[market.pk])


@pytest.mark.reliability("race-withdrawals")
def test_concurrent_withdrawals_of_the_full_balance_let_exactly_one_through():
    btc = token_make("BTC", decimals=8)
    alice = user_make("alice")
    fund(alice, btc, "1.5")

    results = run_together(
        *[
            (
                lambda n=n: withdrawal_request(
                    user=alice,
                    token=btc,
                    amount=D("1.5"),
                    address="bc1q-address",
                    reference=f"w-{n}",
                )
            )
            for n in range(10)
        ]
    )

    succeeded = [value for status, value in results if status == "ok"]
    refused = [value for status, value in results if status == "error"]
    assert len(succeeded) == 1
    assert len(refused) == 9
    assert all(isinstance(error, InsufficientBalance) for error in refused)
    assert Withdrawal.objects.count() == 1
    assert balance(alice, btc) == (D("0"), D("1.5"))


@pytest.mark.reliability("race-withdrawals")
def test_a_wallet_form_sent_twice_at_once_is_made_once_and_both_answered_made(
    reauthenticate,
):
    from django.test import Client

    btc = token_make("BTC", decimals=8)
    alice = user_make("alice")
    fund(alice, btc, "1")
    first = Client()
    first.force_login(alice)
    reauthenticate(first, PASSWORD)
    second = Client()  # the same browser: a double click
    second.cookies = copy.deepcopy(first.cookies)
    form = {"token": "BTC", "amount": "0.8", "address": "bc1q", "reference": "r-1"}

    results = run_together(
        *[
            lambda client=client: client.post("/wallet/", form)
            for client in (first, second)
        ]
    )

    assert [status for status, _ in results] == ["ok", "ok"], results
    assert [response.status_code for _, response in results] == [302, 302]
    assert Withdrawal.objects.filter(user=alice).count() == 1
    assert balance(alice, btc) == (D("0.2"), D("0.8"))


@pytest.mark.reliability("race-deposits")
def test_concurrent_credits_of_one_deposit_reference_count_once():
    btc = token_make("BTC", decimals=8)
    alice = user_make("alice")

    results = run_together(
        *[
            (
                lambda: deposit_credit(
                    user=alice, token=btc, amount=D("2"), reference="tx-abc"
                )
            )
            for _ in range(8)
        ]
    )

    assert [status for status, _ in results] == ["ok"] * 8
    assert len({deposit.pk for _, deposit in results}) == 1
    assert Deposit.objects.count() == 1
    assert balance(alice, btc) == (D("2"), D("0"))


@pytest.mark.reliability("race-orders")
def test_concurrent_repeats_of_a_client_order_id_place_one_order():
    btc, usdt = token_make("BTC", decimals=8), token_make("USDT", decimals=6)
    markets = [market_make(btc, usdt), market_make(token_make("ETH"), usdt)]
    alice = user_make("alice")
    fund(alice, usdt, "1000")

    results = run_together(
        *[
            (
                lambda market=market: order_place(
                    user=alice,
                    market=market,
                    side="buy",
                    type="limit",
                    quantity=D(1),
                    price=D(100),
                    client_order_id="bot-7",
                )
            )
            for market in markets * 4
        ]
    )
    for market in markets:
        drain(market_id=market.pk)

    accepted = [value for status, value in results if status == "ok"]
    assert Order.objects.count() == 1
    # The repeats on the same market return it; those on the other market
    # clash with it while it is live.
    assert {order.pk for order in accepted} == {Order.objects.get().pk}
    for status, value in results:
        assert status == "ok" or value.code == "duplicate_client_order_id"
    assert balance(alice, usdt) == (D("900"), D("100"))


def _pause(match, *, after: bool, seen: threading.Event, until: Callable) -> Callable:
    """An execute wrapper: at the first statement ``match`` finds, just
    before it is sent or once it has run (``after``), set ``seen`` and call
    ``until``, as a slow request or batch pauses between two statements."""

    def wrapper(execute, sql, params, many, context):
        first = not seen.is_set() and match(sql)
        if first and not after:
            seen.set()
            until()
        result = execute(sql, params, many, context)
        if first and after:
            seen.set()
            until()
        return result

    return wrapper


def _client_order_id_lookup(sql: str) -> bool:
    """A read of orders filtered by client order id."""
    select, _, where = sql.partition(" WHERE ")
    return (
        select.lstrip().upper().startswith("SELECT")
        and "trading_order" in select
        and re.search(r'client_order_id"?\s*=', where) is not None
    )


def _balances_locked_by_a_batch(sql: str) -> bool:
    """The batch's row lock on balances, whichever lock strength it takes."""
    return (
        sql.lstrip().upper().startswith("SELECT")
        and "trading_balance" in sql
        and re.search(r"\bFOR\s+(NO\s+KEY\s+)?UPDATE\b", sql, re.IGNORECASE) is not None
    )


def _repeat_race(*, batch_waits_for_the_repeat: bool):
    """An IOC buy of alice's under client order id "bot-7" that fills at
    once, and its identical repeat, held once it has looked for an earlier
    order under the id. The repeat goes on once the matcher has filled the
    first order or, with ``batch_waits_for_the_repeat``, once the batch
    filling it is half written (its orders updated, its balances not locked
    yet); that batch goes on once the repeat has sent its write. Each hold
    lasts 3 s at most: while placements under one id take turns, the first
    waits for the held repeat, which goes on alone. The two results
    (``run_together``: repeat, first) and the market."""
    market = market_make(token_make("BTC", decimals=8), token_make("USDT", decimals=6))
    maker, alice = user_make("maker"), user_make("alice")
    fund(maker, market.base, "1")
    fund(alice, market.quote, "1000")
    sell(maker, market, "1", "100")
    fields = {
        "user": alice,
        "market": market,
        "side": "buy",
        "type": "limit",
        "quantity": D("0.5"),
        "price": D(100),
        "time_in_force": "IOC",
        "client_order_id": "bot-7",
    }
    looked, first_filled = threading.Event(), threading.Event()
    batch_half_written, repeat_writes = threading.Event(), threading.Event()

    def repeat() -> Order:
        go_on = batch_half_written if batch_waits_for_the_repeat else first_filled
        held = _pause(
            _client_order_id_lookup,
            after=True,
            seen=looked,
            until=lambda: go_on.wait(timeout=3),
        )
        told = _pause(order_insert, after=False, seen=repeat_writes, until=lambda: None)
        with connection.execute_wrapper(held), connection.execute_wrapper(told):
            return order_place(**fields)

    def batch_go_on() -> None:
        if repeat_writes.wait(timeout=3):
            time.sleep(0.5)  # until its write waits, if it does

    def first() -> Order:
        assert looked.wait(timeout=10)
        order = order_place(**fields)
        batch_held = _pause(
            _balances_locked_by_a_batch,
            after=False,
            seen=batch_half_written,
            until=batch_go_on if batch_waits_for_the_repeat else lambda: None,
        )
        with connection.execute_wrapper(batch_held):
            drain(market_id=market.pk, wait=True)
        first_filled.set()
        return order

    results = run_together(repeat, first)
    drain(market_id=market.pk)
    staged = {"the repeat looked for the id": looked.is_set()}
    if batch_waits_for_the_repeat:
        staged["the batch paused before locking balances"] = batch_half_written.is_set()
        staged["the repeat sent its write"] = repeat_writes.is_set()
    assert all(staged.values()), f"the race was not staged: {staged}"
    return results, market


def _both_answered_with_one_filled_order(results, market) -> None:
    assert [status for status, _ in results] == ["ok", "ok"], results
    [order] = Order.objects.filter(client_order_id="bot-7")
    assert [value.pk for _, value in results] == [order.pk, order.pk]
    assert (order.status, order.filled_quantity) == (Order.Status.FILLED, D("0.5"))
    assert balance(order.user, market.base) == (D("0.499"), D(0))  # less the fee
    assert balance(order.user, market.quote) == (D(950), D(0))


@pytest.mark.reliability("race-orders")
def test_a_repeat_held_until_the_first_order_filled_makes_no_second_order():
    results, market = _repeat_race(batch_waits_for_the_repeat=False)

    _both_answered_with_one_filled_order(results, market)


@pytest.mark.reliability("race-orders")
def test_a_repeat_racing_the_batch_that_fills_the_first_never_deadlocks():
    # The matcher's batch updates the first order, then locks the balances;
    # a repeat that reserved alice's quote and then inserted under the same
    # id while that batch was open waited for it: each waited for the other.
    results, market = _repeat_race(batch_waits_for_the_repeat=True)

    _both_answered_with_one_filled_order(results, market)


@pytest.mark.reliability("race-orders")
def test_concurrent_orders_beyond_the_balance_let_exactly_one_through(
    waiting_requests,
):
    btc, usdt = token_make("BTC", decimals=8), token_make("USDT", decimals=6)
    market = market_make(btc, usdt)
    alice = user_make("alice")
    fund(alice, usdt, "100")

    with MatcherThread("BTC-USDT"):
        results = run_together(
            *[
                (
                    lambda price=price: placed(
                        user=alice,
                        market=market,
                        side="buy",
                        type="limit",
                        quantity=D(1),
                        price=D(price),
                    )
                )
                for price in (100, 99, 98, 97, 96, 95, 94, 93)
            ]
        )

    accepted = [value for status, value in results if status == "ok"]
    refused = [value for status, value in results if status == "error"]
    assert len(accepted) == 1
    assert all(isinstance(error, InsufficientBalance) for error in refused)
    assert Order.objects.count() == 1
    spent = accepted[0].price
    assert balance(alice, usdt) == (D(100) - spent, spent)


@pytest.mark.reliability("race-cancel")
def test_a_cancel_racing_a_fill_ends_cancelled_or_filled_never_both(
    waiting_requests,
):
    btc, usdt = token_make("BTC", decimals=8), token_make("USDT", decimals=6)
    market = market_make(btc, usdt)
    maker, taker = user_make("maker"), user_make("taker")
    rounds = 12
    fund(maker, btc, str(rounds))
    fund(taker, usdt, str(100 * rounds))

    with MatcherThread("BTC-USDT"):
        for _ in range(rounds):
            _cancel_race_round(market, maker, taker)


def _cancel_race_round(market, maker, taker) -> str:
    btc, usdt = market.base, market.quote
    resting = placed(
        user=maker,
        market=market,
        side="sell",
        type="limit",
        quantity=D(1),
        price=D(100),
    )
    maker_before = balance(maker, btc), balance(maker, usdt)
    taker_before = balance(taker, btc), balance(taker, usdt)

    cancel_result, taken = run_together(
        lambda resting=resting: cancelled(user=maker, order=resting),
        lambda: placed(
            user=taker,
            market=market,
            side="buy",
            type="limit",
            quantity=D(1),
            price=D(100),
            time_in_force="IOC",
        ),
    )

    resting.refresh_from_db()
    taker_order = taken[1]
    assert taken[0] == "ok"
    fills = Trade.objects.filter(maker_order=resting).count()
    if resting.status == Order.Status.FILLED:
        assert fills == 1
        assert cancel_result[0] == "error"
        assert isinstance(cancel_result[1], OrderNotOpen)
        assert taker_order.status == Order.Status.FILLED
        # The maker sold 1 BTC for 100 USDT less 0.1 %; the taker bought
        # it for 100 USDT and received 1 BTC less 0.2 %.
        assert balance(maker, btc) == (maker_before[0][0], D("0"))
        assert balance(maker, usdt)[0] == maker_before[1][0] + D("99.9")
        assert balance(taker, btc)[0] == taker_before[0][0] + D("0.998")
        assert balance(taker, usdt)[0] == taker_before[1][0] - D("100")
    else:
        assert resting.status == Order.Status.CANCELLED
        assert fills == 0
        assert cancel_result[0] == "ok"
        assert (taker_order.status, taker_order.filled_quantity) == (
            Order.Status.CANCELLED,
            D("0"),
        )
        assert balance(maker, btc) == (maker_before[0][0] + D("1"), D("0"))
        assert balance(taker, usdt) == taker_before[1]
    assert ledger_problems() == []
    return resting.status


# -- Matching ahead: run_matcher matches a batch while the one before is written --


def ahead_drain(market, *, batch_size: int) -> None:
    """The market's matcher as ``run_matcher`` runs it on PostgreSQL (the next
    batch matched in a thread of its own), until the queue is empty."""
    locks = PostgresLocks()
    assert locks.try_acquire(market.pk)
    matcher = MarketMatcher(market.pk, locks=locks, batch_size=batch_size, ahead=True)
    try:
        matcher.rebuild()
        while matcher.step():
            pass
    finally:
        matcher.close()
        locks.release(market.pk)


def crossing_pairs(market, count: int) -> list[Order]:
    """``count`` sells and buys that cross one to one, accepted alternately."""
    maker, taker = user_make("maker"), user_make("taker")
    fund(maker, market.base, str(count))
    fund(taker, market.quote, str(101 * count))
    fields = {"market": market, "type": "limit", "quantity": D(1), "price": D(100)}
    return [
        order_place(user=user, side=side, **fields)
        for _ in range(count)
        for user, side in ((maker, "sell"), (taker, "buy"))
    ]


def test_matching_ahead_gives_the_results_of_matching_one_batch_at_a_time():
    btc, usdt = token_make("BTC"), token_make("USDT", decimals=6)
    market = market_make(btc, usdt)
    orders = crossing_pairs(market, 5)

    ahead_drain(market, batch_size=3)  # pairs split across batches

    assert {order.status for order in Order.objects.all()} == {Order.Status.FILLED}
    trades = Trade.objects.order_by("pk")
    assert [(t.maker_order_id, t.taker_order_id) for t in trades] == [
        (orders[n].pk, orders[n + 1].pk) for n in range(0, 10, 2)
    ]
    assert not OrderCommand.objects.exists()


@pytest.mark.reliability("matcher-write-failed")
def test_a_batch_that_fails_to_write_is_retried_alone_and_the_next_matched_again():
    btc, usdt = token_make("BTC"), token_make("USDT", decimals=6)
    market = market_make(btc, usdt)
    orders = crossing_pairs(market, 4)

    # The first batch's trade insert fails in the server while the second
    # batch is already matched in memory: it must be thrown away and taken
    # again, never written on top of a batch that was not.
    with statement_fails_once("trading_trade"):
        ahead_drain(market, batch_size=2)

    assert Trade.objects.count() == 4
    assert {order.status for order in Order.objects.all()} == {Order.Status.FILLED}
    assert not OrderCommand.objects.exists()
    # Each command took its own place in time, in acceptance order.
    assert [order.pk for order in Order.objects.order_by("priority_sequence")] == [
        order.pk for order in orders
    ]
    assert len({order.priority_sequence for order in Order.objects.all()}) == 8
    maker, taker = orders[0].user, orders[1].user
    assert balance(maker, btc) == (D(0), D(0))
    assert balance(taker, btc) == (D("3.992"), D(0))  # 4 less the taker fee


@pytest.mark.reliability("matcher-batch-rolled-back")
def test_a_batch_lost_to_a_deadlock_is_matched_again_and_other_markets_go_on(caplog):
    """A second connection holds a balance row market AAA's batch updates
    last, then asks for an order row the batch updated first: PostgreSQL
    aborts the matcher's transaction (deadlock_detected). Only that batch
    fails: BBB is matched in the same pass, AAA's commands after it, and the
    matcher keeps its connection and its books."""
    usdt = token_make("USDT", decimals=6)
    markets = [market_make(token_make(symbol), usdt) for symbol in ("AAA", "BBB")]
    pairs = {}
    for market in markets:
        maker, taker = (
            user_make(f"maker-{market.symbol}"),
            user_make(f"taker-{market.symbol}"),
        )
        fund(maker, market.base, "1")
        fund(taker, usdt, "101")
        fields = {"market": market, "type": "limit", "quantity": D(1), "price": D(100)}
        pairs[market.symbol] = (
            order_place(user=maker, side="sell", **fields),
            order_place(user=taker, side="buy", **fields),
        )
    aaa_sell = pairs["AAA-USDT"][0]
    settings = connection.settings_dict
    blocker = psycopg.connect(
        dbname=settings["NAME"],
        user=settings["USER"],
        password=settings["PASSWORD"] or None,
        host=settings["HOST"] or None,
        port=settings["PORT"] or None,
    )
    # The matcher (deadlock_timeout 1 s) finds the deadlock, not this one.
    blocker.execute("SET deadlock_timeout = '60s'")
    blocker.execute(
        "SELECT 1 FROM trading_balance WHERE user_id = %s AND token_id = %s FOR UPDATE",
        [aaa_sell.user_id, markets[0].base_id],
    )
    [[blocker_pid]] = blocker.execute("SELECT pg_backend_pid()").fetchall()

    try:
        with MatcherThread() as matcher:
            deadline = time.monotonic() + 30
            while not blocked_by(blocker_pid):
                assert time.monotonic() < deadline, "the batch never waited"
                time.sleep(0.02)
            blocker.execute(
                "SELECT 1 FROM trading_order WHERE id = %s FOR UPDATE", [aaa_sell.pk]
            )
            blocker.rollback()
            while OrderCommand.objects.exists():
                assert time.monotonic() < deadline, "the commands were not matched"
                time.sleep(0.02)
            assert matcher.matcher.owned.keys() == {market.pk for market in markets}
    finally:
        blocker.close()

    trades = {
        trade.market.symbol: trade.pk
        for trade in Trade.objects.select_related("market")
    }
    assert trades["BBB-USDT"] < trades["AAA-USDT"]
    assert {order.status for order in Order.objects.all()} == {Order.Status.FILLED}
    assert "deadlock detected" in caplog.text
    assert "lost the database" not in caplog.text
    assert ledger_problems() == []


def blocked_by(pid: int) -> bool:
    """Whether some backend waits for a lock ``pid`` holds."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(*) FROM pg_stat_activity"
            " WHERE %s = ANY(pg_blocking_pids(pid))",
            [pid],
        )
        return cursor.fetchone()[0] > 0


@pytest.mark.reliability("matcher-write-failed")
def test_a_command_matched_ahead_that_cannot_be_applied_is_refused_alone(
    engine_bug,
):
    btc, usdt = token_make("BTC"), token_make("USDT", decimals=6)
    market = market_make(btc, usdt)
    orders = crossing_pairs(market, 3)
    bad = orders[3]  # in the second batch, matched while the first is written

    engine_bug(bad)
    ahead_drain(market, batch_size=2)

    statuses = dict(Order.objects.values_list("pk", "status"))
    assert statuses[bad.pk] == Order.Status.REJECTED
    assert [statuses[order.pk] for order in orders] == [
        Order.Status.FILLED,
        Order.Status.FILLED,
        Order.Status.FILLED,  # the sell that found no buyer till the next pair
        Order.Status.REJECTED,
        Order.Status.OPEN,
        Order.Status.FILLED,
    ]
    assert not OrderCommand.objects.exists()


# -- Withdrawals through real requests: the API, the admin ---------------------


def _browser(user, reauthenticate=None):
    """A signed-in API client of ``user``, as a browser's session."""
    client = APIClient()
    client.force_login(user)
    if reauthenticate is not None:
        reauthenticate(client, PASSWORD)
    return client


@pytest.mark.reliability("race-cancel")
def test_a_cancel_racing_staff_starting_to_send_ends_in_exactly_one_of_them(
    mfa_enable,
):
    from django.contrib.auth import get_user_model

    from trading.models import LedgerTransaction

    btc = token_make("BTC", decimals=8)
    alice = user_make("alice")
    staff = get_user_model().objects.create_superuser("root", password="x-secret-1")
    mfa_enable(staff)
    rounds = 15
    fund(alice, btc, str(rounds))
    owner, admin = _browser(alice), _browser(staff)

    for n in range(rounds):
        withdrawal = withdrawal_request(
            user=alice, token=btc, amount=D(1), address="bc1q", reference=f"w-{n}"
        )
        available_before = balance(alice, btc)[0]

        # The admin's request does more before it reaches the service than
        # the API's: the cancel starts up to 60 ms later, so that across the
        # rounds each side gets there first, and they meet in between.
        delay = (n % 7) * 0.01

        def cancel(pk=withdrawal.pk, delay=delay):
            time.sleep(delay)
            return owner.delete(f"/api/v1/withdrawals/{pk}/")

        cancelled, started = run_together(
            cancel,
            lambda pk=withdrawal.pk: admin.post(
                "/admin/trading/withdrawal/",
                {"action": "start_sending", "_selected_action": [pk], "post": "yes"},
            ),
        )

        assert cancelled[0] == started[0] == "ok", (cancelled, started)
        assert started[1].status_code == 302
        withdrawal.refresh_from_db()
        kinds = set(
            LedgerTransaction.objects.filter(withdrawal=withdrawal).values_list(
                "kind", flat=True
            )
        )
        if withdrawal.status == Withdrawal.Status.CANCELLED:
            assert cancelled[1].status_code == 200
            assert withdrawal.decided_by == alice
            assert kinds == {"withdrawal_request", "withdrawal_cancel"}
            assert balance(alice, btc) == (available_before + 1, D(0))
        else:
            # Staff may be sending the coins now: the amount stays locked
            # until they approve.
            assert withdrawal.status == Withdrawal.Status.PROCESSING
            assert cancelled[1].status_code == 409
            assert cancelled[1].json()["error"]["code"] == "withdrawal_not_pending"
            assert withdrawal.processing_by == staff
            assert kinds == {"withdrawal_request"}
            assert balance(alice, btc) == (available_before, D(1))
            assert ledger_problems() == []
            admin.post(
                "/admin/trading/withdrawal/",
                {
                    "action": "approve",
                    "_selected_action": [withdrawal.pk],
                    "post": "yes",
                },
            )
            withdrawal.refresh_from_db()
            assert withdrawal.status == Withdrawal.Status.APPROVED
            assert balance(alice, btc) == (available_before, D(0))
        assert ledger_problems() == []


def _first_withdrawal_load_waits_for_the_other(barrier: threading.Barrier):
    """Each thread, once it has read a withdrawal for the first time, waits
    for the other to have read it too: both requests see it pending."""
    loaded = threading.local()

    def hold(sender, instance, **kwargs) -> None:
        if not getattr(loaded, "once", False):
            loaded.once = True
            barrier.wait()

    return hold


@pytest.mark.parametrize("surface", ["wallet", "api"])
@pytest.mark.reliability("race-cancel")
def test_two_cancels_of_one_withdrawal_at_once_mail_the_owner_once(surface, mailoutbox):
    from django.db.models.signals import post_init
    from django.test import Client

    btc = token_make("BTC", decimals=8)
    alice = user_make("alice")
    fund(alice, btc, "5")
    withdrawal = withdrawal_request(
        user=alice, token=btc, amount=D(1), address="bc1q", reference="w-1"
    )
    mailoutbox.clear()
    if surface == "wallet":
        browser = Client()
        browser.force_login(alice)
        url = f"/wallet/withdrawals/{withdrawal.pk}/cancel/"

        def cancel():
            return browser.post(url)
    else:
        browser = _browser(alice)
        url = f"/api/v1/withdrawals/{withdrawal.pk}/"

        def cancel():
            return browser.delete(url)

    # A double click: both requests read the withdrawal pending before
    # either cancels it.
    hold = _first_withdrawal_load_waits_for_the_other(threading.Barrier(2, timeout=10))
    post_init.connect(hold, sender=Withdrawal, dispatch_uid="cancel-race")
    try:
        results = run_together(cancel, cancel)
    finally:
        post_init.disconnect(sender=Withdrawal, dispatch_uid="cancel-race")

    assert [status for status, _ in results] == ["ok", "ok"], results
    responses = [response for _, response in results]
    if surface == "wallet":
        assert [r.status_code for r in responses] == [302, 302]
    else:
        assert [r.status_code for r in responses] == [200, 200]
        assert [r.json()["status"] for r in responses] == ["cancelled"] * 2
    withdrawal.refresh_from_db()
    assert withdrawal.status == Withdrawal.Status.CANCELLED
    assert balance(alice, btc) == (D(5), D(0))
    assert [m.subject for m in mailoutbox] == [
        "[Crypto Exchange] Withdrawal of 1 BTC cancelled"
    ]


@pytest.mark.reliability("race-cancel")
def test_two_staff_starting_to_send_one_withdrawal_at_once_leave_it_to_one(
    staff_clients,
):
    btc = token_make("BTC", decimals=8)
    alice = user_make("alice")
    rounds = 10
    fund(alice, btc, str(rounds))
    desks = staff_clients(2)

    for n in range(rounds):
        withdrawal = withdrawal_request(
            user=alice, token=btc, amount=D(1), address="bc1q", reference=f"w-{n}"
        )

        def start(client, pk=withdrawal.pk):
            response = client.post(
                "/admin/trading/withdrawal/",
                {"action": "start_sending", "_selected_action": [pk], "post": "yes"},
                follow=True,
            )
            # From the page: a response's context may hold another thread's.
            return [
                html.unescape(said)
                for said in re.findall(
                    r'<li class="(?:success|error)">(.*?)</li>', response.text
                )
            ]

        answers = run_together(*(functools.partial(start, desk) for desk in desks))

        assert [outcome for outcome, _ in answers] == ["ok", "ok"], answers
        said = sorted(messages for _, messages in answers)
        withdrawal.refresh_from_db()
        sender = withdrawal.processing_by.username
        assert withdrawal.status == Withdrawal.Status.PROCESSING
        assert said[0] == ["1 now being sent."]
        assert len(said[1]) == 1
        assert said[1][0].startswith(
            f"Withdrawal w-{n}: 1 BTC: Withdrawal 'w-{n}' is already being sent "
            f"by {sender} (since "
        )
        assert balance(alice, btc) == (D(rounds - n - 1), D(n + 1))
        assert ledger_problems() == []


@pytest.mark.reliability("race-withdrawals")
def test_twenty_concurrent_requests_over_the_daily_limit_let_only_those_that_fit(
    reauthenticate,
):
    btc = token_make("BTC", decimals=8)
    btc.withdrawal_daily_limit = D("7.5")
    btc.save()
    alice = user_make("alice")
    fund(alice, btc, "100")
    first = _browser(alice, reauthenticate)
    clients = []
    for _ in range(20):  # one signed-in browser, twenty tabs
        tab = APIClient()
        tab.cookies = copy.deepcopy(first.cookies)
        clients.append(tab)

    results = run_together(
        *[
            (
                lambda client=client, n=n: client.post(
                    "/api/v1/withdrawals/",
                    {
                        "token": "BTC",
                        "amount": "1",
                        "address": "bc1q",
                        "reference": f"w-{n}",
                    },
                    format="json",
                )
            )
            for n, client in enumerate(clients)
        ]
    )

    assert all(status == "ok" for status, _ in results), results
    responses = [response for _, response in results]
    accepted = [r for r in responses if r.status_code == 201]
    refused = [r for r in responses if r.status_code != 201]
    assert len(accepted) == 7
    assert {r.status_code for r in refused} == {422}
    assert {r.json()["error"]["code"] for r in refused} == {"withdrawal_limit_exceeded"}
    assert all("0.5 BTC is left today" in r.json()["error"]["message"] for r in refused)
    assert Withdrawal.objects.filter(user=alice).count() == 7
    assert balance(alice, btc) == (D("93"), D("7"))
    assert ledger_problems() == []


@pytest.mark.reliability("race-user-limits")
def test_keys_created_at_once_never_pass_the_limit_of_active_keys():
    alice = user_make("alice")
    for n in range(MAX_ACTIVE_KEYS - 2):
        api_key_create(user=alice, name=f"k{n}", scopes=["read"])

    results = run_together(
        *[
            (
                lambda n=n: api_key_create(
                    user=alice, name=f"at once {n}", scopes=["read"]
                )
            )
            for n in range(8)
        ]
    )

    created = [value for status, value in results if status == "ok"]
    refused = [value for status, value in results if status == "error"]
    assert len(created) == 2
    assert all(
        isinstance(error, ValidationError) and "revoke one" in error.messages[0]
        for error in refused
    ), refused
    assert ApiKey.objects.filter(user=alice).count() == MAX_ACTIVE_KEYS


@pytest.mark.reliability("race-user-limits")
def test_addresses_saved_at_once_never_pass_the_size_of_the_address_book():
    alice, btc = user_make("alice"), token_make("BTC")  # (no formats: any address)
    now = timezone.now()
    SavedAddress.objects.bulk_create(
        SavedAddress(
            user=alice, token=btc, address=f"old-{n}", label=f"{n}", usable_from=now
        )
        for n in range(MAX_SAVED_ADDRESSES - 2)
    )

    results = run_together(
        *[
            (
                lambda n=n: saved_address_add(
                    user=alice, token=btc, address=f"new-{n}", label=f"new {n}"
                )
            )
            for n in range(8)
        ]
    )

    saved = [value for status, value in results if status == "ok"]
    refused = [value for status, value in results if status == "error"]
    assert len(saved) == 2
    assert all(
        isinstance(error, AddressNotAllowed) and "remove one first" in str(error)
        for error in refused
    ), refused
    assert SavedAddress.objects.filter(user=alice).count() == MAX_SAVED_ADDRESSES


@pytest.mark.reliability("race-user-limits")
def test_orders_are_placed_and_matched_while_the_user_creates_an_api_key():
    alice, btc, usdt = user_make("alice"), token_make("BTC"), token_make("USDT")
    market = market_make(btc, usdt)
    fund(alice, usdt, "1000")
    creating, done = threading.Event(), threading.Event()

    def create_key_slowly() -> None:
        try:
            with transaction.atomic():  # its locks last until this ends
                api_key_create(user=alice, name="slow", scopes=["read"])
                creating.set()
                done.wait(timeout=30)
        finally:
            connection.close()

    thread = threading.Thread(target=create_key_slowly)
    thread.start()
    try:
        assert creating.wait(timeout=10)
        with connection.cursor() as cursor:  # waiting on a lock is an error
            cursor.execute("SET lock_timeout = '5s'")
        order = buy(alice, market, "1", "10")  # accepted, then matched
    finally:
        done.set()
        thread.join(timeout=30)
        with connection.cursor() as cursor:
            cursor.execute("SET lock_timeout = 0")

    assert order.status == Order.Status.OPEN
    assert ApiKey.objects.filter(user=alice, name="slow").exists()
