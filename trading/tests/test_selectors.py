"""Reads: the book by price level, trades, open orders, balances, candles, the
wallet's history and the sorted markets list."""

from datetime import UTC, datetime
from decimal import Decimal as D

import pytest
from django.core.paginator import Paginator

from tests.factories import (
    buy,
    cancel,
    fund,
    market_make,
    sell,
    token_make,
)
from tokens.models import Token
from trading.exceptions import MarketClosed
from trading.models import Deposit, Market, Order, Trade, Withdrawal
from trading.selectors import (
    balances_for_user,
    candles,
    market_get,
    market_sort_parse,
    market_summaries,
    order_book,
    orders_open,
    trades_recent,
    wallet_history,
)
from trading.services import withdrawal_cancel, withdrawal_request

pytestmark = pytest.mark.django_db


def test_a_market_is_found_by_its_symbol(market):
    assert market.symbol == "BTC-USDT"
    assert market_get(symbol="btc-usdt") == market
    with pytest.raises(Market.DoesNotExist):
        market_get(symbol="USDT-BTC")


def test_the_book_sums_remaining_quantities_per_price_best_first(
    market, alice, bob, carol, funded, django_assert_num_queries
):
    buy(alice, market, "1", "99")
    buy(bob, market, "2", "99")
    buy(alice, market, "0.5", "98.5")
    cancelled = buy(carol, market, "7", "99")
    cancel(carol, cancelled)
    sell(alice, market, "1", "101")
    sell(bob, market, "0.4", "100.5")
    sell(carol, market, "3", "99")  # takes 1 + 2 at 99; nothing of it rests

    with django_assert_num_queries(2):
        book = order_book(market=market)

    assert [(level.price, level.quantity) for level in book.bids] == [
        (D("98.5"), D("0.5"))
    ]
    assert [(level.price, level.quantity) for level in book.asks] == [
        (D("100.5"), D("0.4")),
        (D("101"), D("1")),
    ]


def test_the_book_shows_partly_filled_orders_by_their_remainder(
    market, alice, bob, funded
):
    buy(alice, market, "1", "99")
    buy(alice, market, "1", "98")
    sell(bob, market, "0.3", "99")

    book = order_book(market=market, depth=1)

    assert [(level.price, level.quantity) for level in book.bids] == [
        (D("99"), D("0.7"))
    ]
    assert book.asks == []


def test_recent_trades_come_newest_first(
    market, alice, bob, funded, django_assert_num_queries
):
    for price in ["100", "101", "102"]:
        sell(alice, market, "0.1", price)
        buy(bob, market, "0.1", price)

    with django_assert_num_queries(1):
        latest = trades_recent(market=market, limit=2)

    assert [trade.price for trade in latest] == [D("102"), D("101")]


@pytest.mark.reliability("access-by-id")
def test_open_orders_are_the_users_own_resting_ones(
    market, btc, alice, bob, funded, django_assert_num_queries
):
    mine = buy(alice, market, "1", "99")
    done = buy(alice, market, "1", "98")
    cancel(alice, done)
    buy(bob, market, "1", "97")

    with django_assert_num_queries(1):
        orders = [(o.pk, o.market.base.symbol) for o in orders_open(user=alice)]

    assert orders == [(mine.pk, "BTC")]
    assert list(orders_open(user=alice, market=market)) == [mine]


def test_balances_come_with_their_tokens_in_one_query(
    alice, btc, usdt, funded, django_assert_num_queries
):
    with django_assert_num_queries(1):
        rows = [(b.token.symbol, b.available) for b in balances_for_user(user=alice)]

    assert rows == [("BTC", D("10")), ("USDT", D("10000"))]


@pytest.fixture
def four_trades(market, alice, bob, funded):
    """Trades at 10:00:10, 10:00:50, 10:01:30 and 10:07:00 UTC."""
    times = ["10:00:10", "10:00:50", "10:01:30", "10:07:00"]
    for (price, quantity), time in zip(
        [("100", "0.1"), ("102", "0.2"), ("99", "0.3"), ("101", "0.4")],
        times,
        strict=True,
    ):
        sell(alice, market, quantity, price)
        taker = buy(bob, market, quantity, price)
        hour, minute, second = map(int, time.split(":"))
        Trade.objects.filter(taker_order=taker).update(
            created_at=datetime(2026, 1, 5, hour, minute, second, tzinfo=UTC)
        )
    assert not Order.objects.filter(status="open").exists()


NOW = datetime(2026, 1, 5, 10, 8, tzinfo=UTC)


def ohlcv(candle) -> tuple:
    return (
        candle.start.strftime("%H:%M"),
        candle.open,
        candle.high,
        candle.low,
        candle.close,
        candle.volume,
    )


@pytest.mark.parametrize(
    ("interval", "expected"),
    [
        (
            "1m",
            [
                ("10:00", D(100), D(102), D(100), D(102), D("0.3")),
                ("10:01", D(99), D(99), D(99), D(99), D("0.3")),
                ("10:07", D(101), D(101), D(101), D(101), D("0.4")),
            ],
        ),
        (
            "5m",
            [
                ("10:00", D(100), D(102), D(99), D(99), D("0.6")),
                ("10:05", D(101), D(101), D(101), D(101), D("0.4")),
            ],
        ),
        ("1h", [("10:00", D(100), D(102), D(99), D(101), D("1.0"))]),
        ("1d", [("00:00", D(100), D(102), D(99), D(101), D("1.0"))]),
    ],
)
def test_candles_are_built_from_trades(
    market, four_trades, interval, expected, django_assert_num_queries
):
    with django_assert_num_queries(1):
        built = candles(market=market, interval=interval, now=NOW)

    assert [ohlcv(candle) for candle in built] == expected


def test_candles_cover_only_the_last_intervals_asked_for(market, four_trades):
    built = candles(market=market, interval="1m", limit=3, now=NOW)

    # 10:06 to 10:08: only the trade at 10:07.
    assert [ohlcv(candle)[0] for candle in built] == ["10:07"]


# -- The wallet's history and the markets list ----------------------------------


def _at(model, row, moment: str):
    model.objects.filter(pk=row.pk).update(
        created_at=datetime.fromisoformat(f"2026-01-05T{moment}+00:00")
    )


def test_the_wallet_history_merges_deposits_and_withdrawals_newest_first(
    alice, bob, btc, usdt, django_assert_num_queries
):

    first = fund(alice, usdt, "5000")
    second = fund(alice, btc, "2")
    fund(bob, btc, "9")  # someone else's
    taken = withdrawal_request(
        user=alice, token=btc, amount=D("0.5"), address="addr-1", reference="w-1"
    )
    kept = withdrawal_request(
        user=alice, token=usdt, amount=D("1200"), address="addr-2", reference="w-2"
    )
    withdrawal_cancel(user=alice, withdrawal=kept)
    _at(Deposit, first, "09:00:00")
    _at(Withdrawal, taken, "10:00:00")
    _at(Deposit, second, "10:00:00")  # same moment: the withdrawal first
    _at(Withdrawal, kept, "11:00:00")

    with django_assert_num_queries(1):
        rows = list(wallet_history(user=alice))

    assert [
        (row["kind"], row["symbol"], row["amount"], row["state"], row["to_address"])
        for row in rows
    ] == [
        ("withdrawal", "USDT", D("1200"), "cancelled", "addr-2"),
        ("withdrawal", "BTC", D("0.5"), "pending", "addr-1"),
        ("deposit", "BTC", D("2"), "credited", ""),
        ("deposit", "USDT", D("5000"), "credited", ""),
    ]
    assert rows[1]["id"] == taken.pk


def test_the_wallet_history_reads_one_page_in_two_queries(
    alice, btc, django_assert_num_queries
):

    for _ in range(60):
        fund(alice, btc, "1")

    with django_assert_num_queries(2):  # the count and the page
        page = Paginator(wallet_history(user=alice), 25).get_page(3)
        rows = list(page)

    assert len(rows) == 10
    assert page.paginator.num_pages == 3


@pytest.fixture
def three_markets(market, btc, usdt, alice, bob, funded):
    """BTC-USDT last at 120 (+20 %, 3 BTC), ETH-USDT last at 30 (-25 %, 10
    ETH), DOGE-USDT without trades."""

    eth, doge = token_make("ETH"), token_make("DOGE")
    eth_usdt = market_make(eth, usdt)
    market_make(doge, usdt)
    fund(alice, eth, "20")
    for traded, trades in (
        (market, [("1", "100"), ("2", "120")]),
        (eth_usdt, [("5", "40"), ("5", "30")]),
    ):
        for quantity, price in trades:
            sell(alice, traded, quantity, price)
            buy(bob, traded, quantity, price)


@pytest.mark.parametrize(
    ("sort", "symbols"),
    [
        ("symbol", ["BTC-USDT", "DOGE-USDT", "ETH-USDT"]),
        ("-symbol", ["ETH-USDT", "DOGE-USDT", "BTC-USDT"]),
        ("price", ["ETH-USDT", "BTC-USDT", "DOGE-USDT"]),
        ("-price", ["BTC-USDT", "ETH-USDT", "DOGE-USDT"]),
        ("change", ["ETH-USDT", "BTC-USDT", "DOGE-USDT"]),
        ("-change", ["BTC-USDT", "ETH-USDT", "DOGE-USDT"]),
        ("volume", ["DOGE-USDT", "BTC-USDT", "ETH-USDT"]),
        ("-volume", ["ETH-USDT", "BTC-USDT", "DOGE-USDT"]),
        ("bogus", ["BTC-USDT", "DOGE-USDT", "ETH-USDT"]),
    ],
)
def test_markets_sort_by_each_column_with_untraded_markets_last(
    three_markets, sort, symbols, django_assert_num_queries
):
    with django_assert_num_queries(1):
        summaries = market_summaries(sort=sort)

    assert [summary.market.symbol for summary in summaries] == symbols


@pytest.mark.parametrize(
    ("asked", "used"),
    [
        ("price", "price"),
        ("-volume", "-volume"),
        (None, "symbol"),
        ("", "symbol"),
        ("--price", "symbol"),
        ("market__symbol", "symbol"),
        ("PRICE", "symbol"),
        ("price\x00", "symbol"),
    ],
)
def test_an_unknown_sort_falls_back_to_the_symbol(asked, used):
    assert market_sort_parse(asked) == used


def test_a_tokens_markets_are_those_it_is_base_or_quote_of(three_markets, btc, usdt):

    market_make(token_make("SOL"), btc)

    assert [s.market.symbol for s in market_summaries(token_id=btc.pk)] == [
        "BTC-USDT",
        "SOL-BTC",
    ]
    assert len(market_summaries(token_id=usdt.pk)) == 3


@pytest.mark.parametrize(
    ("status", "delisted"),
    [
        (Market.Status.OPEN, None),
        (Market.Status.HALTED, None),
        (Market.Status.OPEN, "base"),
        (Market.Status.OPEN, "quote"),
        (Market.Status.HALTED, "base"),
    ],
)
def test_a_market_is_listed_open_exactly_while_it_takes_orders(
    market, alice, funded, status, delisted
):
    # Changed behind the process's back, as staff do from another instance.
    Market.objects.filter(pk=market.pk).update(status=status)
    if delisted:
        Token.objects.filter(pk=getattr(market, f"{delisted}_id")).update(
            is_active=False
        )
    try:
        buy(alice, market, "1", "100")
    except MarketClosed:
        takes_orders = False
    else:
        takes_orders = True
    effective = market_get(symbol=market.symbol).effective_status

    assert takes_orders is (status == Market.Status.OPEN and delisted is None)
    assert effective == (Market.Status.OPEN if takes_orders else Market.Status.HALTED)
    assert [s.market for s in market_summaries()] == ([market] if takes_orders else [])
