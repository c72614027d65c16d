"""The 24 h ticker on the API, the stream and the pages: the change from the
price 24 hours ago, the volume in the quote token, and the markets list's
price and volume sorted within each quote token."""

import re
from datetime import datetime, timedelta

import pytest
from django.utils import timezone

from tests.factories import buy, fund, market_make, sell, token_make
from trading.api.selectors import ticker_for
from trading.models import Trade
from trading.selectors import market_summaries
from trading.tests.streaming import SseClient
from trading.tests.test_views import change_cells, ticker_change

pytestmark = pytest.mark.django_db


def trade_at(market, seller, buyer, price: str, at: datetime, quantity="1") -> None:
    sell(seller, market, quantity, price)
    buy(buyer, market, quantity, price)
    Trade.objects.filter(pk=Trade.objects.latest("pk").pk).update(created_at=at)


def trades_ago(market, seller, buyer, trades: list[tuple[str, int]]) -> None:
    """``(price, hours ago)`` each, oldest first."""
    now = timezone.now()
    for price, hours in trades:
        trade_at(market, seller, buyer, price, now - timedelta(hours=hours))


@pytest.mark.parametrize(
    ("trades", "open_price", "change", "shown"),
    [
        # A thin market: its only trade of the day doubled the price.
        ([("100", 48), ("100", 25), ("200", 1)], "100", "100", "+100.00 %"),
        ([("100", 25), ("110", 23), ("120", 0)], "100", "20", "+20.00 %"),
        ([("200", 30), ("150", 20), ("100", 0)], "200", "-100", "-50.00 %"),
        # Younger than 24 h: from its first trade.
        ([("100", 2), ("150", 1)], "100", "50", "+50.00 %"),
    ],
)
def test_the_24h_change_is_from_the_price_24_hours_ago_on_the_api_and_pages(
    client, market, alice, bob, funded, trades, open_price, change, shown
):
    trades_ago(market, alice, bob, trades)

    ticker = client.get(f"/api/v1/markets/{market.symbol}/ticker/").json()
    listed = {
        url: [text for _, text in change_cells(client.get(url).content.decode())]
        for url in ("/", "/markets/", f"/tokens/{market.base.symbol}/")
    }
    page = client.get(f"/markets/{market.symbol}/").content.decode()

    assert (ticker["open_price"], ticker["change"]) == (open_price, change)
    assert ticker["change_percent"] == shown.removesuffix(" %").removeprefix("+")
    assert listed == {url: [shown] for url in listed}
    assert ticker_change(page)[1] == shown


def test_without_a_trade_in_24_hours_there_is_no_open_price_nor_change(
    client, market, alice, bob, funded
):
    trades_ago(market, alice, bob, [("100", 30), ("150", 25)])

    ticker = client.get(f"/api/v1/markets/{market.symbol}/ticker/").json()
    [summary] = market_summaries()

    assert ticker["last_price"] == "150"
    assert (ticker["open_price"], ticker["change"], ticker["high_price"]) == (
        None,
        None,
        None,
    )
    assert (summary.change_24h, summary.quote_volume_24h) == (None, 0)


def test_the_change_holds_as_the_trade_24_hours_ago_leaves_the_window(
    market, alice, bob, funded
):
    start = timezone.now() - timedelta(hours=30)
    for price, hours in (("90", -1), ("100", 0), ("120", 1)):
        trade_at(market, alice, bob, price, start + timedelta(hours=hours))

    seen = []
    for now in (
        start + timedelta(hours=24),
        start + timedelta(hours=24, microseconds=1),
    ):
        ticker = ticker_for(market=market, now=now)
        [summary] = market_summaries(now=now)
        seen.append(
            (
                ticker.open_price,
                ticker.change_percent,
                summary.change_24h,
                ticker.quote_volume,
            )
        )

    # On the edge the 100 is the window's first trade; a microsecond later it
    # is the last trade before it: the price 24 hours ago either way.
    assert seen == [(100, 20, 20, 220), (100, 20, 20, 120)]


@pytest.mark.django_db(transaction=True)
def test_the_streams_ticker_is_the_apis(
    stream_server, client, market, alice, bob, funded
):
    trades_ago(market, alice, bob, [("100", 25), ("200", 1)])

    stream = SseClient(stream_server.port, f"/api/v1/markets/{market.symbol}/stream/")
    streamed = stream.until("snapshot").data["ticker"]
    stream.close()
    ticker = client.get(f"/api/v1/markets/{market.symbol}/ticker/").json()

    assert streamed == ticker
    assert (streamed["open_price"], streamed["change_percent"]) == ("100", "100.00")


@pytest.fixture
def two_quote_tokens(usdt, alice, bob):
    """ETH-USDT last at 2,000 (1 ETH, 2,000 USDT traded), ADA-USDT at 2 (10
    ADA, 20 USDT), NFT-WEI at 100 (2 NFT, 200 WEI), DOGE-USDT without trades:
    across quote tokens prices and base volumes interleave with the others."""
    wei = token_make("WEI")
    fund(bob, usdt, "10000")
    fund(bob, wei, "1000")
    market_make(token_make("DOGE"), usdt)
    for base, quote, quantity, price in (
        ("ETH", usdt, "1", "2000"),
        ("ADA", usdt, "10", "2"),
        ("NFT", wei, "2", "100"),
    ):
        traded = market_make(token_make(base), quote)
        fund(alice, traded.base, quantity)
        sell(alice, traded, quantity, price)
        buy(bob, traded, quantity, price)


@pytest.mark.parametrize(
    ("sort", "symbols"),
    [
        ("price", ["ADA-USDT", "ETH-USDT", "NFT-WEI", "DOGE-USDT"]),
        ("-price", ["ETH-USDT", "ADA-USDT", "NFT-WEI", "DOGE-USDT"]),
        ("volume", ["DOGE-USDT", "ADA-USDT", "ETH-USDT", "NFT-WEI"]),
        ("-volume", ["ETH-USDT", "ADA-USDT", "DOGE-USDT", "NFT-WEI"]),
    ],
)
def test_price_and_quote_volume_sort_within_each_quote_token(
    two_quote_tokens, sort, symbols, django_assert_num_queries
):
    with django_assert_num_queries(1):
        summaries = market_summaries(sort=sort)

    assert [summary.market.symbol for summary in summaries] == symbols


def test_the_markets_list_shows_the_volume_in_the_quote_token_sorted_per_quote(
    client, two_quote_tokens
):
    def listed(url: str) -> tuple[list[str], list[str], str]:
        html = client.get(url).content.decode()
        bases = re.findall(r"<strong>(\w+)</strong><span class=\"muted\"> /", html)
        volumes = re.findall(r'<td class="num col-volume">([^<]*)</td>', html)
        return bases, volumes, html

    bases, volumes, html = listed("/markets/?sort=-volume")
    home_bases, home_volumes, home = listed("/")

    assert bases == ["ETH", "ADA", "DOGE", "NFT"]
    assert volumes == ["2,000 USDT", "20 USDT", "0 USDT", "200 WEI"]
    note = "Prices and volumes are amounts of each market's quote token"
    assert note in html
    assert note not in home
    assert home_bases == ["ADA", "DOGE", "ETH", "NFT"]
    assert home_volumes == ["20 USDT", "0 USDT", "2,000 USDT", "200 WEI"]
    # The headers' titles speak of sorting only where the list sorts.
    sorted_titles = 'title="In the quote token; sorted within each quote token"'
    assert html.count(sorted_titles) == 2
    assert sorted_titles not in home
    assert home.count('title="In the quote token"') == 2
