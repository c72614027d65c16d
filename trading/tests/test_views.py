"""The trading pages, through the Django test client."""

import re
from decimal import Decimal
from pathlib import Path

import pytest
from django.db import connection
from django.test.html import Element, parse_html
from django.test.utils import CaptureQueriesContext

from tests.factories import (
    PASSWORD,
    balance,
    buy,
    demo_address_formats,
    fund,
    market_make,
    sell,
    token_make,
    user_make,
)
from trading.charts import candle_chart
from trading.matcher import drain
from trading.models import Order, Withdrawal
from trading.selectors import Candle, market_summaries

pytestmark = pytest.mark.django_db


class Page:
    """A page as a tree of elements, read as a person reads it: the form's
    values, the text by each field, a table's rows."""

    def __init__(self, response) -> None:
        self.text = response.content.decode()
        self.root = parse_html(self.text)

    @staticmethod
    def _elements(node):
        for child in node.children:
            if isinstance(child, Element):
                yield child
                yield from Page._elements(child)

    @staticmethod
    def _words(node) -> str:
        parts = [
            child if isinstance(child, str) else Page._words(child)
            for child in node.children
        ]
        return " ".join(part for part in parts if part)

    @staticmethod
    def _has_class(element, name: str) -> bool:
        return name in (dict(element.attributes).get("class") or "").split()

    def _inputs(self, name: str) -> list[Element]:
        return [
            element
            for element in self._elements(self.root)
            if element.name in ("input", "select", "textarea")
            and dict(element.attributes).get("name") == name
        ]

    def value(self, name: str) -> str:
        [element] = self._inputs(name)
        return dict(element.attributes).get("value") or ""

    def checked(self, name: str) -> str | None:
        values = self.checked_all(name)
        assert len(values) <= 1
        return values[0] if values else None

    def checked_all(self, name: str) -> list[str]:
        """The values of the ticked boxes ``name``, in the page's order."""
        return [
            dict(element.attributes).get("value", "on")
            for element in self._inputs(name)
            if "checked" in dict(element.attributes)
        ]

    def selected(self, name: str) -> str | None:
        [select] = [e for e in self._inputs(name) if e.name == "select"]
        values = [
            dict(option.attributes).get("value")
            for option in self._elements(select)
            if option.name == "option" and "selected" in dict(option.attributes)
        ]
        assert len(values) <= 1
        return values[0] if values else None

    def field_text(self, name: str) -> str:
        """The text of the field box holding the input, text area or list
        ``name``: its label and its errors."""

        def boxes(node):
            for element in self._elements(node):
                if self._has_class(element, "field") and any(
                    child.name in ("input", "textarea", "select")
                    and dict(child.attributes).get("name") == name
                    for child in self._elements(element)
                ):
                    yield element

        *_, innermost = boxes(self.root)
        return self._words(innermost)

    def description(self, name: str) -> str:
        """What a screen reader reads after the input ``name``'s label: the
        elements its aria-describedby names."""
        [element] = self._inputs(name)
        ids = (dict(element.attributes).get("aria-describedby") or "").split()
        by_id = {
            dict(node.attributes).get("id"): node for node in self._elements(self.root)
        }
        return " ".join(self._words(by_id[i]) for i in ids if i in by_id)

    def dangling_descriptions(self) -> list[str]:
        """Each ``name: id`` of an aria-describedby naming no element."""
        elements = list(self._elements(self.root))
        ids = {dict(element.attributes).get("id") for element in elements}
        return [
            f"{dict(element.attributes).get('name', element.name)}: {id_}"
            for element in elements
            for id_ in (dict(element.attributes).get("aria-describedby") or "").split()
            if id_ not in ids
        ]

    def texts(self, tag: str, **attributes: str | None) -> list[str]:
        """The text of each ``tag`` element with these attributes (None:
        with any value)."""
        found = []
        for element in self._elements(self.root):
            present = dict(element.attributes)
            if element.name == tag and all(
                name in present and value in (None, present[name])
                for name, value in attributes.items()
            ):
                found.append(self._words(element))
        return found

    def _body(self, selector: str) -> Element:
        tag, name = selector.split(".")
        [body] = [
            element
            for element in self._elements(self.root)
            if element.name == tag and self._has_class(element, name)
        ]
        return body

    def rows(self, selector: str) -> list[list[str]]:
        return [
            [self._words(cell) for cell in row.children if isinstance(cell, Element)]
            for row in self._body(selector).children
            if isinstance(row, Element)
        ]

    def links(self, selector: str) -> list[str]:
        return [
            dict(element.attributes)["href"]
            for element in self._elements(self._body(selector))
            if element.name == "a"
        ]


@pytest.fixture
def trader(client, market, reauthenticate):
    user = user_make("trader")
    fund(user, market.quote, "100000")
    fund(user, market.base, "10")
    client.force_login(user)
    reauthenticate(client, PASSWORD)
    return user


def test_the_markets_page_shows_last_price_change_and_volume(client, market):
    maker, taker = user_make("maker"), user_make("taker")
    fund(maker, market.base, "5")
    fund(taker, market.quote, "100000")
    sell(maker, market, "1", "100.00")
    buy(taker, market, "1", "100.00")
    sell(maker, market, "1", "110.00")
    buy(taker, market, "1", "110.00")

    page = client.get("/markets/").content.decode()
    [summary] = market_summaries()

    assert summary.last_price == Decimal("110")
    assert summary.change_24h == Decimal("10")
    assert summary.quote_volume_24h == Decimal("210")
    assert "BTC" in page and "+10.00 %" in page and "210 USDT" in page


def test_the_markets_of_a_delisted_token_leave_the_lists_and_take_cancels_only(
    client, trader, market
):
    order = buy(trader, market, "1", "100.00")
    other = market_make(token_make("ETH"), market.quote)
    lists = ("/", "/markets/", f"/tokens/{market.quote.symbol}/")

    def listed(url: str) -> set[str]:
        links = Page(client.get(url)).links("table.market-table")
        return {link for link in links if link.startswith("/markets/")}

    # Read once before, as a page kept in a cache would have been.
    assert all(f"/markets/{market.symbol}/" in listed(url) for url in lists)
    market.base.is_active = False  # staff untick "Active"
    market.base.save()
    page = Page(client.get(f"/markets/{market.symbol}/"))
    cancelled = client.post(
        f"/markets/{market.symbol}/orders/{order.pk}/cancel/", follow=True
    )

    for url in lists:
        assert listed(url) == {f"/markets/{other.symbol}/"}, url
    assert "Halted (cancels only)" in page.text
    assert "Order cancelled" in cancelled.content.decode()


def change_cells(html: str) -> list[tuple[list[str], str]]:
    """The classes and text of each 24 h change cell of a markets table."""
    return [
        (classes.split(), text)
        for classes, text in re.findall(r'<td class="([^"]*)">([^<]*%)</td>', html)
    ]


def ticker_change(html: str) -> tuple[list[str], str]:
    """The classes and text of the market page's 24 h change."""
    classes, text = re.search(
        r'<span data-ticker="change_percent" class="([^"]*)">([^<]*)<', html
    ).groups()
    return classes.split(), text


def test_a_fall_too_small_to_show_is_no_change_in_no_colour_on_pages_and_api(
    client, market, alice, bob, funded
):
    sell(alice, market, "0.001", "10000.00")
    buy(bob, market, "0.001", "10000.00")
    sell(alice, market, "0.001", "9999.99")  # -0.0001 %
    buy(bob, market, "0.001", "9999.99")

    for url in ("/", "/markets/", f"/tokens/{market.base.symbol}/"):
        html = client.get(url).content.decode()
        assert change_cells(html) == [(["num"], "+0.00 %")], url
    market_page = client.get(f"/markets/{market.symbol}/").content.decode()
    assert ticker_change(market_page) == ([], "+0.00 %")
    ticker = client.get(f"/api/v1/markets/{market.symbol}/ticker/").json()
    assert (ticker["change"], ticker["change_percent"]) == ("-0.01", "0.00")


@pytest.mark.postgres
def test_the_markets_list_rounds_the_24h_change_as_the_market_page_does(client):
    base, quote = token_make("AAA", decimals=18), token_make("BBB", decimals=18)
    market = market_make(
        base,
        quote,
        price_step=Decimal("1E-18"),
        amount_step=Decimal("1"),
        min_notional=Decimal(0),
        maker_fee=Decimal(0),
        taker_fee=Decimal(0),
    )
    # +0.1250000000000000001... %: rounded to 28 digits first, it would be
    # +0.125 exactly and round to +0.12.
    first, last = "799999999999999999.999999999999999999", "801000000000000000"
    for price in (first, last):
        maker, taker = user_make(f"maker-{price}"), user_make(f"taker-{price}")
        fund(maker, base, "1")
        fund(taker, quote, "999999999999999999")
        sell(maker, market, "1", price)
        buy(taker, market, "1", price)

    listed = change_cells(client.get("/markets/").content.decode())
    shown = ticker_change(client.get(f"/markets/{market.symbol}/").content.decode())
    ticker = client.get(f"/api/v1/markets/{market.symbol}/ticker/").json()

    assert listed == [(["num", "up"], "+0.13 %")]
    assert shown == (["up"], "+0.13 %")
    assert ticker["change_percent"] == "0.13"


def test_placing_a_limit_order_from_the_page_locks_funds_and_lists_it(
    client, trader, market
):
    response = client.post(
        f"/markets/{market.symbol}/orders/",
        {
            "side": "buy",
            "type": "limit",
            "price": "100.00",
            "quantity": "2",
            "time_in_force": "GTC",
        },
    )

    assert response.status_code == 302
    order = Order.objects.get(user=trader)
    assert order.status == Order.Status.OPEN
    assert balance(trader, market.quote) == (Decimal("99800"), Decimal("200"))
    page = client.get(f"/markets/{market.symbol}/").content.decode()
    assert "placed (0 filled so far)" in page
    assert f"/orders/{order.pk}/cancel/" in page


# What a refused order is about, the error shown next to that field.
REFUSALS = [
    ({"price": "100.001", "quantity": "1"}, "price", "The price 100.001 has too much"),
    ({"price": "100", "quantity": "0.00001"}, "quantity", "The quantity 0.00001 has"),
    ({"price": "100", "quantity": "5000"}, "quantity", "This needs 500,000 USDT"),
]


@pytest.mark.parametrize(("typed", "field", "message"), REFUSALS)
def test_a_refused_order_comes_back_as_typed_with_the_reason_by_its_field(
    client, trader, market, typed, field, message
):
    sent = {"side": "buy", "type": "limit", "time_in_force": "GTC"} | typed
    sent["client_order_id"] = "first-try"

    response = client.post(f"/markets/{market.symbol}/orders/", sent)

    assert response.status_code == 400
    page = Page(response)
    assert message in page.field_text(field)
    for name, value in typed.items():
        assert page.value(name) == value
    assert page.checked("side") == "buy" and page.checked("type") == "limit"
    # Nothing was placed: the corrected order is a new one, with a new id.
    assert page.value("client_order_id") not in ("", "first-try")
    assert not Order.objects.filter(status=Order.Status.OPEN).exists()
    assert balance(trader, market.quote) == (Decimal("100000"), Decimal("0"))


def test_an_order_whose_trade_would_take_a_balance_to_10_18_is_refused_in_words(
    client, trader, market
):
    seller = user_make("seller")
    fund(seller, market.base, "1")
    fund(seller, market.quote, "600000000000000000")
    sell(seller, market, "1", "800000000000000000")
    fund(trader, market.quote, "800000000000000000")
    sent = {"side": "buy", "type": "limit", "time_in_force": "GTC"}

    response = client.post(
        f"/markets/{market.symbol}/orders/",
        sent | {"quantity": "1", "price": "800000000000000000"},
    )

    assert response.status_code == 400
    assert (
        "This trade would take a balance to 10^18 or more, above the largest "
        "amount the exchange holds" in Page(response).text
    )
    assert balance(trader, market.quote) == (
        Decimal("800000000000100000"),
        Decimal("0"),
    )
    assert balance(seller, market.quote) == (
        Decimal("600000000000000000"),
        Decimal("0"),
    )


@pytest.mark.parametrize(
    ("typed", "field", "message"),
    [
        *REFUSALS,
        (
            {
                "price": "100",
                "quantity": "1",
                "time_in_force": "IOC",
                "post_only": "on",
            },
            "post_only",
            "A post-only order waits in the book",
        ),
    ],
)
def test_a_refused_orders_error_is_read_out_with_its_field(
    client, trader, market, typed, field, message
):
    sent = {"side": "buy", "type": "limit", "time_in_force": "GTC"} | typed

    page = Page(client.post(f"/markets/{market.symbol}/orders/", sent))

    assert message in page.description(field)
    assert page.dangling_descriptions() == []


def test_a_refused_withdrawals_errors_are_read_out_with_their_fields(
    client, trader, market
):
    response = client.post(
        "/wallet/",
        {"token": "BTC", "amount": "abc", "address": "", "reference": "r-1"},
    )

    assert response.status_code == 400
    page = Page(response)
    assert "Write the amount in digits" in page.description("amount")
    assert "This field is required." in page.description("address")
    assert page.dangling_descriptions() == []


def test_an_incomplete_order_keeps_what_was_typed_and_says_what_is_missing(
    client, trader, market
):
    response = client.post(
        f"/markets/{market.symbol}/orders/",
        {"side": "sell", "type": "limit", "quantity": "2.5", "post_only": "on"},
    )

    assert response.status_code == 400
    page = Page(response)
    assert "A limit order needs a price." in page.field_text("price")
    assert page.value("quantity") == "2.5"
    assert page.checked("side") == "sell"
    assert page.checked("post_only") == "on"
    assert not Order.objects.exists()


def _order_errors(response) -> dict[str, list[str]]:
    """The order form's errors, field by field."""
    found = re.findall(
        r'<ul class="errors" id="id_(\w+)_error">(.*?)</ul>',
        response.content.decode(),
        re.S,
    )
    return {name: re.findall(r"<li>(.*?)</li>", items) for name, items in found}


PLAIN_ONLY = (
    "Write the amount in digits with one decimal point, like 0.25 "
    "(no commas, spaces, signs or exponents)."
)
POSITIVE = "Enter an amount greater than 0."


@pytest.mark.parametrize(
    ("typed", "errors"),
    [
        ({"price": "100", "quantity": "1,5"}, {"quantity": [PLAIN_ONLY]}),
        ({"price": "60,000", "quantity": "1"}, {"price": [PLAIN_ONLY]}),
        ({"price": "100", "quantity": "1e2"}, {"quantity": [PLAIN_ONLY]}),
        ({"price": "100", "quantity": "-1"}, {"quantity": [POSITIVE]}),
        ({"price": "100", "quantity": "0"}, {"quantity": [POSITIVE]}),
        ({"price": "-0", "quantity": "1"}, {"price": [POSITIVE]}),
        (
            {"type": "stop_limit", "stop_price": "+1", "price": "1", "quantity": "1"},
            {"stop_price": [PLAIN_ONLY]},
        ),
        ({"type": "market", "quote_amount": "1,5"}, {"quote_amount": [PLAIN_ONLY]}),
        (
            {"type": "market", "quantity": "1", "protection_price": "6e4"},
            {"protection_price": [PLAIN_ONLY]},
        ),
    ],
)
def test_a_mistyped_amount_gets_one_error_and_no_false_missing_value_error(
    client, trader, market, typed, errors
):
    sent = {"side": "buy", "type": "limit", "time_in_force": "GTC"} | typed

    response = client.post(f"/markets/{market.symbol}/orders/", sent)

    assert response.status_code == 400
    assert _order_errors(response) == errors
    assert not Order.objects.exists()


def test_a_capped_market_buy_says_its_price_limit_stopped_it(client, trader, market):
    seller = user_make("seller")
    fund(seller, market.base, "2")
    sell(seller, market, "0.5", "100")
    sell(seller, market, "1", "200")

    response = client.post(
        f"/markets/{market.symbol}/orders/",
        {"side": "buy", "type": "market", "quantity": "1", "protection_price": "150"},
        follow=True,
    )

    assert (
        "Buy 1 BTC: 0.5 filled; the rest was cancelled: nothing more was offered "
        "at or below your price limit of 150 USDT." in Page(response).text
    )


def test_a_capped_market_buy_with_nothing_under_its_cap_is_refused_by_the_cap(
    client, trader, market
):
    seller = user_make("seller")
    fund(seller, market.base, "1")
    sell(seller, market, "1", "200")

    response = client.post(
        f"/markets/{market.symbol}/orders/",
        {"side": "buy", "type": "market", "quantity": "1", "protection_price": "100"},
    )

    assert response.status_code == 400
    assert (
        "Too little is offered at or below your price limit of 100 USDT: less "
        "than the market's minimum value of 1 USDT."
    ) in Page(response).field_text("protection_price")
    assert balance(trader, market.quote) == (Decimal("100000"), Decimal("0"))


def test_a_market_order_the_matcher_has_not_taken_says_it_fills_not_rests(
    settings, client, trader, market
):
    settings.ORDER_MATCH_INLINE = False  # no matcher answers
    settings.ORDER_RESULT_WAIT_SECONDS = 0

    response = client.post(
        f"/markets/{market.symbol}/orders/",
        {"side": "buy", "type": "market", "quote_amount": "100"},
        follow=True,
    )

    page = Page(response)
    assert (
        "Buy BTC for 100 USDT: accepted, and waiting for the matcher. It fills "
        "when the matcher takes it, and shows in your trades then."
    ) in page.text
    assert "once it rests" not in page.text
    # Its open-orders row names what it is: a market order spending 100 USDT
    # (the empty row is the script's template).
    assert page.texts("td", **{"data-label": "Price"}) == ["Market", ""]
    assert page.texts("td", **{"data-label": "Amount"}) == ["spend 100 USDT", ""]
    drain(market_id=market.pk)


def test_the_next_order_starts_on_the_side_and_type_of_the_last(client, trader, market):
    response = client.post(
        f"/markets/{market.symbol}/orders/",
        {"side": "sell", "type": "limit", "price": "150", "quantity": "1"},
    )

    assert response.status_code == 302
    page = Page(client.get(response["Location"]))
    assert "placed (0 filled so far)" in page.text
    assert page.checked("side") == "sell" and page.checked("type") == "limit"
    assert page.value("price") == page.value("quantity") == ""


def test_a_market_order_ignores_the_fields_the_page_hides_for_it(
    client, trader, market
):
    buyer = user_make("buyer")
    fund(buyer, market.quote, "1000")
    buy(buyer, market, "1", "100.00")

    # Without script the hidden fields are sent as they were left.
    response = client.post(
        f"/markets/{market.symbol}/orders/",
        {
            "side": "sell",
            "type": "market",
            "quantity": "0.5",
            "price": "90",
            "quote_amount": "40",
            "protection_price": "95",
            "time_in_force": "FOK",
            "post_only": "on",
        },
        follow=True,
    )

    assert "Sell 0.5 BTC: filled." in response.content.decode()
    order = Order.objects.get(user=trader)
    assert order.type == Order.Type.MARKET and order.price is None
    assert order.time_in_force == Order.TimeInForce.IOC and not order.post_only


def test_cancelling_from_the_page_releases_the_funds(client, trader, market):
    order = buy(trader, market, "1", "50.00")

    client.post(f"/markets/{market.symbol}/orders/{order.pk}/cancel/")

    order.refresh_from_db()
    assert order.status == Order.Status.CANCELLED
    assert balance(trader, market.quote) == (Decimal("100000"), Decimal("0"))


@pytest.mark.reliability("access-by-id")
def test_nobody_can_cancel_another_users_order(client, trader, market):
    other = user_make("other")
    fund(other, market.quote, "1000")
    order = buy(other, market, "1", "50.00")

    response = client.post(f"/markets/{market.symbol}/orders/{order.pk}/cancel/")

    assert response.status_code == 404
    order.refresh_from_db()
    assert order.status == Order.Status.OPEN


def test_the_book_sums_the_depth_and_shows_the_spread(client, trader, market):
    other = user_make("other")
    fund(other, market.base, "10")
    fund(other, market.quote, "10000")
    sell(other, market, "1", "120.00")
    sell(other, market, "2", "120.00")
    sell(other, market, "1", "125.00")
    buy(other, market, "2", "110.00")
    buy(other, market, "0.5", "105.00")

    page = Page(client.get(f"/markets/{market.symbol}/"))

    # Price, amount, and the amount up to that price from the best one.
    assert page.rows("tbody.asks") == [["125", "1", "4"], ["120", "3", "3"]]
    assert page.rows("tbody.spread") == [["Spread 10 (8.33 %)"]]
    assert page.rows("tbody.bids") == [["110", "2", "2"], ["105", "0.5", "2.5"]]


def _tokens_of_18_decimals_market(base: str, quote: str, *, price_step, amount_step):
    """A market of two 18-decimal tokens, free of fees, and a user holding
    plenty of both."""
    market = market_make(
        token_make(base, decimals=18),
        token_make(quote, decimals=18),
        price_step=Decimal(price_step),
        amount_step=Decimal(amount_step),
        min_notional=Decimal(0),
        maker_fee=Decimal(0),
        taker_fee=Decimal(0),
    )
    maker = user_make(f"maker-{market.symbol}")
    fund(maker, market.base, "900000000000000")
    fund(maker, market.quote, "900000000000000")
    return market, maker


@pytest.mark.postgres
def test_the_books_totals_and_spread_are_exact_to_the_last_of_18_decimals(client):
    # 32 significant digits: at Python's default 28 the total would round.
    fine_amounts, maker = _tokens_of_18_decimals_market(
        "AAA", "BBB", price_step="0.1", amount_step="1E-17"
    )
    sell(maker, fine_amounts, "123456789012.12345678901234567", "2")
    sell(maker, fine_amounts, "1.00000000000000001", "3")
    fine_prices, maker = _tokens_of_18_decimals_market(
        "CCC", "DDD", price_step="1E-17", amount_step="0.1"
    )
    # The spread is 0.125 % of the ask less 1E-17: rounded to 28 digits it
    # would be 1,000,000,000,000 and its percent 0.125, half up 0.13.
    sell(maker, fine_prices, "0.1", "800000000000000")
    buy(maker, fine_prices, "0.1", "799000000000000.00000000000000001")

    book = Page(client.get(f"/markets/{fine_amounts.symbol}/"))
    spread = Page(client.get(f"/markets/{fine_prices.symbol}/"))

    assert [row[2] for row in book.rows("tbody.asks")] == [
        "123,456,789,013.12345678901234568",
        "123,456,789,012.12345678901234567",
    ]
    assert spread.rows("tbody.spread") == [
        ["Spread 999,999,999,999.99999999999999999 (0.12 %)"]
    ]


def test_a_price_picked_in_the_book_fills_the_order_form_without_script(
    client, trader, market
):
    other = user_make("other")
    fund(other, market.base, "10")
    sell(other, market, "1", "120.50")

    page = Page(client.get(f"/markets/{market.symbol}/"))
    [link] = page.links("tbody.asks")
    picked = Page(client.get(link))

    assert link == f"/markets/{market.symbol}/?price=120.5#order-form"
    assert picked.value("price") == "120.5"
    assert picked.checked("side") == "buy" and picked.checked("type") == "limit"
    garbage = Page(client.get(f"/markets/{market.symbol}/?price=-1&side=x&type=y"))
    assert garbage.value("price") == ""
    assert garbage.checked("side") == "buy" and garbage.checked("type") == "limit"


def test_without_script_the_chart_is_a_picture_with_axes_for_the_chosen_interval(
    client, trader, market
):
    other = user_make("other")
    fund(other, market.base, "5")
    sell(other, market, "1", "100.00")
    buy(trader, market, "1", "100.00")
    sell(other, market, "1", "110.00")
    buy(trader, market, "1", "110.00")

    page = Page(client.get(f"/markets/{market.symbol}/?interval=5m"))

    [current] = page.texts("a", **{"data-interval": None, "aria-current": "true"})
    assert current == "5m"
    *prices, time = page.texts("text")  # the picture's axes
    assert prices == ["100", "105", "110"]
    assert re.fullmatch(r"\d{1,2} \w{3} \d\d:\d\d", time)


def test_the_market_page_states_its_fee_rates_as_percentages(client, market):
    page = client.get(f"/markets/{market.symbol}/").content.decode()

    assert "Fees: maker 0.1 %, taker 0.2 %" in page


def test_the_chart_library_is_served_from_the_sites_own_static_files(client, market):
    from django.contrib.staticfiles import finders

    page = client.get(f"/markets/{market.symbol}/").content.decode()
    folder = "vendor/lightweight-charts/"

    assert f'src="/static/{folder}lightweight-charts.standalone.production.js"' in page
    assert f'data-candles-url="/api/v1/markets/{market.symbol}/candles/"' in page
    assert "TradingView" in page  # the credit its licence asks for
    script = Path(finders.find(f"{folder}lightweight-charts.standalone.production.js"))
    assert "TradingView Lightweight Charts™ v5.3.0" in script.read_text()[:300]
    for name in ("LICENSE", "NOTICE", "README.md"):
        assert finders.find(folder + name)


def test_the_market_page_costs_the_same_queries_with_more_orders(
    client, trader, market
):
    buy(trader, market, "1", "10.00")
    with CaptureQueriesContext(connection) as few:
        client.get(f"/markets/{market.symbol}/")
    for step in range(20):
        buy(trader, market, "1", f"{11 + step}.00")
    with CaptureQueriesContext(connection) as many:
        client.get(f"/markets/{market.symbol}/")

    assert len(few) == len(many)


@pytest.mark.reliability("outcome-repeat")
def test_requesting_a_withdrawal_locks_the_amount_and_a_resubmit_counts_once(
    client, trader, market
):
    form = {
        "token": "USDT",
        "amount": "250",
        "address": "T-addr-1",
        "reference": "abc123",
    }

    client.post("/wallet/", form)
    client.post("/wallet/", form)

    assert Withdrawal.objects.filter(user=trader).count() == 1
    assert balance(trader, market.quote) == (Decimal("99750"), Decimal("250"))
    page = client.get("/wallet/").content.decode()
    assert "Pending" in page
    assert '<th scope="col">Date (UTC)</th>' in page  # as every time shown
    assert 'data-label="Date (UTC)"' in page  # the label on a phone


def test_the_wallet_form_sent_again_after_its_token_was_delisted_returns_it(
    client, trader, market
):
    form = {"token": "USDT", "amount": "250", "address": "T-1", "reference": "r-1"}
    client.post("/wallet/", form)
    market.quote.is_active = False
    market.quote.save()

    again = client.post("/wallet/", form, follow=True)
    changed = client.post("/wallet/", {**form, "amount": "300"})

    assert again.redirect_chain == [("/wallet/", 302)]
    assert "Withdrawal requested" in again.content.decode()
    assert changed.status_code == 400
    assert "This form was already used for another withdrawal" in (
        changed.content.decode()
    )
    assert Withdrawal.objects.filter(user=trader).count() == 1
    assert balance(trader, market.quote) == (Decimal("99750"), Decimal("250"))


def test_another_users_reference_does_not_reopen_a_delisted_token(
    client, trader, market
):
    other = user_make("other")
    fund(other, market.quote, "1000")
    _pending_withdrawal(other, market.quote, reference="r-1")
    market.quote.is_active = False
    market.quote.save()

    response = client.post(
        "/wallet/",
        {"token": "USDT", "amount": "250", "address": "T-1", "reference": "r-1"},
    )

    assert response.status_code == 400
    assert "Select a valid choice" in response.content.decode()
    assert not Withdrawal.objects.filter(user=trader).exists()


def test_a_withdrawal_corrected_after_the_password_prompt_is_made(client, btc):
    demo_address_formats(btc)
    user = user_make("trader")
    fund(user, btc, "1")
    client.force_login(user)  # not confirmed recently: the password is asked
    address = "bc1qar0srrr7xfkvy5l643lydnw9re59gtzzwf5mdq"
    typo = address[:-1]  # one character short
    form = {"token": "BTC", "amount": "0.01", "address": typo, "reference": "r-1"}

    asked = client.post("/wallet/", form)
    assert asked.status_code == 302
    assert asked["Location"].startswith("/accounts/reauthenticate/")
    # allauth sends the stored form on to the wallet once the password is
    # given: the page, with the address refused, is the answer of this URL.
    refused = client.post(asked["Location"], {"password": PASSWORD})
    assert refused.status_code == 400
    page = Page(refused)
    [action] = [
        dict(element.attributes).get("action")
        for element in page._elements(page.root)
        if element.name == "form"
        and any(
            dict(field.attributes).get("name") == "reference"
            for field in page._elements(element)
        )
    ]
    assert action == "/wallet/"
    assert (page.value("reference"), page.value("address")) == ("r-1", typo)
    assert page.selected("token") == "BTC"

    made = client.post(action, {**form, "address": address}, follow=True)

    assert made.redirect_chain == [("/wallet/", 302)]
    assert "Withdrawal requested" in made.content.decode()
    assert Withdrawal.objects.get(user=user).address == address


@pytest.mark.reliability("overdraw")
def test_a_withdrawal_over_the_balance_is_refused_in_words(client, trader):
    response = client.post(
        "/wallet/",
        {"token": "USDT", "amount": "1000000", "address": "x", "reference": "r-1"},
    )

    assert response.status_code == 400
    # Next to the amount, as an order's is next to its quantity.
    assert response.context["form"].errors["amount"] == [
        "This needs 1,000,000 USDT; 100,000 is available."
    ]


def test_the_wallet_form_sent_again_after_its_withdrawal_ended_says_so(
    client, trader, market
):
    form = {"token": "USDT", "amount": "250", "address": "T-1", "reference": "r-1"}
    client.post("/wallet/", form, follow=True)
    withdrawal = Withdrawal.objects.get(user=trader)
    client.post(f"/wallet/withdrawals/{withdrawal.pk}/cancel/", follow=True)

    again = client.post("/wallet/", form, follow=True)  # Back, then send

    assert [str(message) for message in again.context["messages"]] == [
        "This withdrawal was already requested; it is cancelled now."
    ]
    assert Withdrawal.objects.filter(user=trader).count() == 1
    assert balance(trader, market.quote) == (Decimal("100000"), Decimal("0"))


def _pending_withdrawal(user, token, amount="250", reference="w-1"):
    from trading.services import withdrawal_request

    return withdrawal_request(
        user=user,
        token=token,
        amount=Decimal(amount),
        address="T-addr-1",
        reference=reference,
    )


def test_the_wallet_offers_to_cancel_only_pending_withdrawals(client, trader, market):
    from trading.services import withdrawal_cancel

    pending = _pending_withdrawal(trader, market.quote)
    ended = _pending_withdrawal(trader, market.quote, reference="w-2")
    withdrawal_cancel(user=trader, withdrawal=ended)

    page = client.get("/wallet/").content.decode()

    assert f'href="/wallet/withdrawals/{pending.pk}/cancel/"' in page
    assert f"/wallet/withdrawals/{ended.pk}/cancel/" not in page
    assert "Cancelled" in page


def test_cancelling_from_the_wallet_asks_to_confirm_then_releases_the_amount(
    client, trader, market, mailoutbox, django_capture_on_commit_callbacks
):
    pending = _pending_withdrawal(trader, market.quote)
    url = f"/wallet/withdrawals/{pending.pk}/cancel/"

    asked = client.get(url)
    assert balance(trader, market.quote) == (Decimal("99750"), Decimal("250"))
    with django_capture_on_commit_callbacks(execute=True):
        done = client.post(url, follow=True)

    assert "Cancel this withdrawal?" in asked.content.decode()
    assert "T-addr-1" in asked.content.decode()
    requested = f"{pending.created_at:%-d %b %Y %H:%M}"
    assert f"requested {requested} UTC." in asked.content.decode()
    assert '<form method="post">' in asked.content.decode()
    assert "cancelled; the amount is available again" in done.content.decode()
    pending.refresh_from_db()
    assert pending.status == Withdrawal.Status.CANCELLED
    assert balance(trader, market.quote) == (Decimal("100000"), Decimal("0"))
    assert [m.subject for m in mailoutbox if "cancelled" in m.subject] == [
        "[Crypto Exchange] Withdrawal of 250 USDT cancelled"
    ]


def test_a_decided_withdrawal_is_not_cancelled_and_the_wallet_says_why(
    client, trader, market
):
    from trading.services import withdrawal_reject

    pending = _pending_withdrawal(trader, market.quote)
    staff = user_make("staffer")
    withdrawal_reject(withdrawal=pending, staff=staff, reason="Address not allowed.")

    response = client.post(f"/wallet/withdrawals/{pending.pk}/cancel/", follow=True)

    page = response.content.decode()
    assert "already rejected" in page
    assert "Address not allowed." in page  # the reason, in the history
    assert balance(trader, market.quote) == (Decimal("100000"), Decimal("0"))


@pytest.mark.reliability("access-by-id")
def test_someone_elses_withdrawal_cannot_be_cancelled(client, trader, market):
    other = user_make("other")
    fund(other, market.quote, "10")
    theirs = _pending_withdrawal(other, market.quote, amount="10")

    for method in (client.get, client.post):
        assert method(f"/wallet/withdrawals/{theirs.pk}/cancel/").status_code == 404

    theirs.refresh_from_db()
    assert theirs.status == Withdrawal.Status.PENDING


def test_a_withdrawal_over_the_daily_limit_is_refused_in_words(client, trader, market):
    market.quote.withdrawal_daily_limit = Decimal("300")
    market.quote.save()
    _pending_withdrawal(trader, market.quote)

    response = client.post(
        "/wallet/",
        {"token": "USDT", "amount": "100", "address": "x", "reference": "r-2"},
    )

    assert response.status_code == 400
    page = response.content.decode()
    assert "at most 300 USDT a day; 50 USDT is left today" in page
    assert "00:00 UTC" in page


@pytest.mark.reliability("access-anonymous")
def test_pages_need_a_login_to_trade(client, market):
    assert client.get("/wallet/").status_code == 302
    assert client.post(f"/markets/{market.symbol}/orders/", {}).status_code == 302
    assert "Log in" in client.get(f"/markets/{market.symbol}/").content.decode()


def test_the_candle_chart_keeps_every_candle_inside_the_picture():
    from datetime import UTC, datetime

    candles = [
        Candle(
            datetime(2026, 1, 1, hour, tzinfo=UTC), *map(Decimal, prices), Decimal(1)
        )
        for hour, prices in enumerate(
            [("10", "12", "9", "11"), ("11", "11", "8", "8"), ("8", "15", "8", "14")]
        )
    ]

    chart = candle_chart(candles, width=600, height=200)

    assert [shape.rising for shape in chart.shapes] == [True, False, True]
    assert chart.high == Decimal("15") and chart.low == Decimal("8")
    assert max(shape.x for shape in chart.shapes) < chart.plot_width < 600
    for shape in chart.shapes:
        assert 0 <= shape.wick_top <= shape.body_top <= shape.wick_bottom
        assert shape.wick_bottom < shape.volume_top < chart.plot_height < 200
    # Round prices on the price axis, from the bottom up, inside the picture.
    assert [tick.price for tick in chart.price_ticks] == [8, 10, 12, 14]
    assert all(0 <= tick.y <= chart.plot_height for tick in chart.price_ticks)
    # Time labels far enough apart to be read: the newest candle's only.
    assert [tick.start.hour for tick in chart.time_ticks] == [2]


def test_the_candle_chart_draws_price_lines_for_a_range_far_below_the_price():
    from datetime import UTC, datetime

    # 30 significant digits: beyond the 28 of Python's default decimal context.
    low, high = Decimal("100000000000"), Decimal("100000000000.000000000000000001")
    candles = [
        Candle(datetime(2026, 1, 1, 0, tzinfo=UTC), low, high, low, high, Decimal(1)),
        Candle(datetime(2026, 1, 1, 1, tzinfo=UTC), high, high, low, low, Decimal(1)),
    ]

    chart = candle_chart(candles)

    prices = [tick.price for tick in chart.price_ticks]
    assert prices == sorted(set(prices))
    assert low <= prices[0] and prices[-1] <= high and len(prices) >= 2
    assert all(0 <= tick.y <= chart.plot_height for tick in chart.price_ticks)


def test_api_keys_are_made_and_revoked_from_the_profile_page(client, reauthenticate):
    from trading.models import ApiKey

    client.force_login(user_make("coder"))
    reauthenticate(client, PASSWORD)

    created = client.post(
        "/api/keys/create/", {"name": "my bot", "scopes": ["read", "trade"]}
    ).content.decode()
    key = ApiKey.objects.get(name="my bot")
    profile = client.get("/accounts/profile/").content.decode()

    assert "only time it is shown" in created
    assert f'value="{key.prefix}.' in created
    assert f"{key.prefix}.…" in profile and 'value="' + key.prefix + "." not in profile

    client.post(f"/api/keys/{key.pk}/revoke/")
    key.refresh_from_db()
    assert key.revoked_at is not None
    after = client.get("/accounts/profile/").content.decode()
    assert "“my bot” was revoked" in after
    assert f"{key.prefix}.…" not in after


def test_the_wallet_shows_amounts_grouped_and_the_history_by_page(
    client, trader, market
):
    for number in range(30):
        _pending_withdrawal(trader, market.quote, amount="1", reference=f"w-{number}")
    _pending_withdrawal(trader, market.quote, amount="1234.5", reference="big")

    first = client.get("/wallet/").content.decode()
    second = client.get("/wallet/", {"page": "2"}).content.decode()

    assert "98,735.5" in first  # USDT available: 100,000 - 30 - 1,234.5
    assert "1,234.5 USDT" in first  # the newest withdrawal leads the history
    assert "Page 1 of 2" in first and 'href="?page=2#history"' in first
    assert "Page 2 of 2" in second and 'href="?page=1#history"' in second
    # 31 withdrawals and 2 deposits: 25 rows, then 8 (both deposits last).
    assert first.count("/cancel/") == 25
    assert second.count("/cancel/") == 6
    assert second.count("Credited") == 2
    for page in ("0", "-1", "abc", "99999999999999999999"):
        assert client.get("/wallet/", {"page": page}).status_code == 200


def test_the_wallet_costs_the_same_queries_with_a_longer_history(
    client, trader, market
):
    _pending_withdrawal(trader, market.quote, amount="1", reference="first")
    with CaptureQueriesContext(connection) as few:
        client.get("/wallet/")
    for number in range(40):
        _pending_withdrawal(trader, market.quote, amount="1", reference=f"w-{number}")
        fund(trader, market.base, "1")
    with CaptureQueriesContext(connection) as many:
        client.get("/wallet/")

    assert len(few) == len(many)


def test_the_markets_page_sorts_by_a_query_parameter_and_ignores_unknown_ones(
    client, market
):
    other = market_make(token_make("ETH"), market.quote)
    maker, taker = user_make("maker"), user_make("taker")
    fund(maker, market.base, "1")
    fund(taker, market.quote, "100000")
    sell(maker, market, "1", "12345.67")
    buy(taker, market, "1", "12345.67")

    by_price = client.get("/markets/", {"sort": "-price"}).content.decode()
    unknown = client.get("/markets/", {"sort": "'; drop table"})

    assert by_price.index("BTC</strong>") < by_price.index("ETH</strong>")
    assert 'aria-sort="descending"' in by_price
    assert 'href="?sort=price"' in by_price  # the other way round next
    assert "12,345.67" in by_price
    assert unknown.status_code == 200
    page = unknown.content.decode()
    assert 'aria-sort="ascending"' in page  # by market, the default
    assert page.index("BTC</strong>") < page.index(f"{other.base.symbol}</strong>")
