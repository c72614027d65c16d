"""Trading in a real browser: the chart, the order form, the book, cancel,
and the page kept current by the live stream."""

import re
from datetime import datetime, timedelta
from decimal import Decimal

import pytest
from playwright.sync_api import expect

from tests.factories import (
    balance,
    browser_log_in,
    buy,
    fund,
    market_make,
    sell,
    token_make,
    user_make,
)
from trading.matcher import drain
from trading.models import Order, Trade
from trading.orders import order_place
from trading.tests.streaming import StreamServer

pytestmark = pytest.mark.django_db(transaction=True)


def maker_watching(page, live_server, market):
    """A maker with a sell of 2 at 150 resting, signed in on the market page
    with its stream open; the maker and the order."""
    maker = user_make("maker")
    fund(maker, market.base, "2")
    resting = sell(maker, market, "2", "150.00")
    browser_log_in(page, live_server, "maker")
    page.goto(f"{live_server.url}/markets/{market.symbol}/")
    page.locator('#market-live[data-stream="open"]').wait_for()
    return maker, resting


@pytest.fixture
def live_stream(settings, live_server, stream_server):
    """The page's stream on the ASGI process's own port, as in `make run`."""
    port = stream_server.port
    settings.STREAM_ORIGIN = f"http://localhost:{port}"
    settings.STREAM_CORS_ORIGINS = [live_server.url]
    return stream_server


def test_place_and_cancel_an_order_and_see_the_book_refresh(
    live_stream, page, live_server, market
):
    trader = user_make("trader")
    fund(trader, market.quote, "10000")
    browser_log_in(page, live_server, "trader")

    page.goto(f"{live_server.url}/markets/{market.symbol}/")
    page.get_by_label("Buy").check()
    page.get_by_label("Limit").check()
    page.get_by_role("textbox", name="Price").fill("100.00")
    page.get_by_role("textbox", name="Amount").fill("3")
    page.get_by_role("button", name="Place order").click()
    page.get_by_text("placed (0 filled so far)").wait_for()
    page.locator('#market-live[data-stream="open"]').wait_for()
    page.screenshot_step("order-placed")
    order = Order.objects.get(user=trader)
    assert balance(trader, market.quote) == (Decimal("9700"), Decimal("300"))

    # Another user sells into the order while the page is open: the page
    # shows the trade without a reload.
    seller = user_make("seller")
    fund(seller, market.base, "1")
    sell(seller, market, "1", "100.00")
    page.locator("#market-live").get_by_text("You have not traded").wait_for(
        state="detached", timeout=10_000
    )
    page.screenshot_step("refreshed")

    page.get_by_role("button", name=f"Cancel order {order.pk}").click()
    page.get_by_text("Order cancelled").wait_for()
    page.screenshot_step("cancelled")
    order.refresh_from_db()
    assert order.status == Order.Status.CANCELLED
    assert order.filled_quantity == Decimal("1")
    assert balance(trader, market.quote)[1] == Decimal("0")


def test_the_market_page_updates_book_and_balances_when_an_order_fills(
    live_stream, page, live_server, market
):
    maker, resting = maker_watching(page, live_server, market)
    asks = page.locator("#market-live tbody.asks")
    asks.get_by_text("150", exact=True).wait_for()
    base_balance = page.locator(f'[data-balance="{market.base.symbol}"]').first
    quote_balance = page.locator(f'[data-balance="{market.quote.symbol}"]').first
    assert base_balance.text_content() == "0"
    assert quote_balance.text_content() == "0"
    page.evaluate("window.__notReloaded = true")

    # Another user buys half of the resting order: no reload, the book shows
    # what is left, the balance what was received, and a notice says so.
    # Someone tabbing through the book is on the price the fill changes.
    price_link = asks.get_by_role("link", name="150", exact=True)
    price_link.focus()
    taker = user_make("taker")
    fund(taker, market.quote, "1000")
    buy(taker, market, "0.5", "150.00")

    # What is left at 150: amount and depth so far; the price, in a new row,
    # still has focus.
    expect(asks.locator("tr", has_text="150").locator("td")).to_have_text(
        ["150", "1.5", "1.5"]
    )
    expect(price_link).to_be_focused()
    page.get_by_text(f"Your sell order {resting.pk} filled 0.5").wait_for()
    mine = page.locator("#market-live .my-orders tbody tr td:nth-child(-n+4)")
    expect(mine).to_have_text(["Sell", "150", "2", "0.5"])
    available = balance(maker, market.quote)[0]
    page.wait_for_function(
        "([node, value]) => node.textContent === value",
        arg=[quote_balance.element_handle(), str(available.normalize())],
    )
    page.locator('[data-ticker="last_price"]').get_by_text("150").wait_for()
    assert page.evaluate("window.__notReloaded") is True
    page.screenshot_step("filled-live")

    # The user scrolled away from the book, its price link still focused: the
    # next update keeps focus there without scrolling the book back.
    page.set_viewport_size({"width": 375, "height": 740})
    page.evaluate("window.scrollTo(0, document.body.scrollHeight)")
    assert page.evaluate(OUT_OF_VIEW, price_link.element_handle())
    buy(taker, market, "0.25", "150.00")
    expect(asks.locator("tr", has_text="150").locator("td")).to_have_text(
        ["150", "1.25", "1.25"]
    )
    expect(price_link).to_be_focused()
    assert page.evaluate(OUT_OF_VIEW, price_link.element_handle())


OUT_OF_VIEW = """(node) => {
  const box = node.getBoundingClientRect();
  return box.bottom < 0 || box.top > innerHeight;
}"""


def test_a_page_signed_out_elsewhere_stops_showing_the_account(
    live_stream, page, live_server, market
):
    from allauth.usersessions.adapter import get_adapter
    from allauth.usersessions.models import UserSession

    maker, resting = maker_watching(page, live_server, market)
    expect(page.locator("#market-live .my-orders tbody tr")).to_have_count(1)

    # Signed out from the sessions page of another browser; then the order
    # fills, an event of the account the stream no longer sends.
    get_adapter().end_sessions(list(UserSession.objects.filter(user=maker)))
    taker = user_make("taker")
    fund(taker, market.quote, "1000")
    buy(taker, market, "0.5", "150.00")

    page.locator("#main").get_by_role("link", name="Log in").wait_for()
    expect(page.locator("#market-live .my-orders")).to_have_count(0)
    expect(page.get_by_text(f"Your sell order {resting.pk}")).to_have_count(0)
    page.screenshot_step("signed-out-elsewhere")


def test_a_fill_made_while_the_stream_reconnects_shows_in_your_trades(
    live_stream, page, live_server, market
):
    _, resting = maker_watching(page, live_server, market)
    mine = page.locator("#market-live .my-trades")
    expect(mine).to_contain_text("You have not traded")
    # The notices' live region is shown, empty, before any notice: one shown
    # with its first line may not be announced by a screen reader.
    assert page.eval_on_selector("#fill-notices", "box => box.hidden") is False
    page.evaluate("window.__notReloaded = true")

    # The stream goes away (a deploy), and the order fills before it is back.
    live_stream.stop()
    page.locator('#market-live[data-stream="reconnecting"]').wait_for()
    taker = user_make("taker")
    fund(taker, market.quote, "1000")
    buy(taker, market, "0.5", "150.00")
    made = Trade.objects.get()
    restarted = StreamServer(port=live_stream.port)
    restarted.start()
    try:
        page.get_by_text(f"Your sell order {resting.pk} filled 0.5").wait_for()
        # Drawn by the script as the server draws it, the zone in the header.
        expect(mine.locator("tbody tr td")).to_have_text(
            ["Sell", "150", "0.5", "maker", made.created_at.strftime("%-d %b %Y %H:%M")]
        )
        expect(mine.locator("th").last).to_have_text("Time (UTC)")
        expect(mine.locator("tbody td").last).to_have_attribute(
            "data-label", "Time (UTC)"
        )
        expect(page.locator("#fill-notices p")).to_have_count(1)
        assert page.evaluate("window.__notReloaded") is True
        page.screenshot_step("filled-while-reconnecting")
    finally:
        restarted.stop()


def test_a_fill_made_before_the_stream_first_answers_shows_in_your_trades(
    live_stream, page, live_server, market
):
    maker = user_make("maker")
    fund(maker, market.base, "2")
    resting = sell(maker, market, "2", "150.00")
    taker = user_make("taker")
    fund(taker, market.quote, "1000")
    buy(taker, market, "0.5", "150.00")  # before the page: rendered
    browser_log_in(page, live_server, "maker")
    held = []
    page.route("**/stream/", lambda route: held.append(route))
    page.goto(f"{live_server.url}/markets/{market.symbol}/")
    mine = page.locator("#market-live .my-trades")
    expect(mine.locator("tbody tr")).to_have_count(1)
    rendered = Trade.objects.get()
    day_and_time = rendered.created_at.strftime("%-d %b %Y %H:%M")
    expect(mine.locator("tbody td:nth-child(5)")).to_have_text([day_and_time])
    expect(mine.locator("th").last).to_have_text("Time (UTC)")
    while not held:
        page.wait_for_timeout(50)

    # Rendered, but the stream's first event is still to come.
    buy(taker, market, "0.25", "150.00")
    held[0].continue_()

    page.get_by_text(f"Your sell order {resting.pk} filled 0.25").wait_for()
    expect(mine.locator("tbody tr td:nth-child(3)")).to_have_text(["0.25", "0.5"])
    # Redrawn by the script, the rendered fill reads the same.
    expect(mine.locator("tbody tr:nth-child(2) td:nth-child(5)")).to_have_text(
        day_and_time
    )
    expect(mine.locator("th").last).to_have_text("Time (UTC)")
    # The fill the page was rendered with is no news.
    expect(page.locator("#fill-notices p")).to_have_count(1)
    page.screenshot_step("filled-before-the-stream")


# Draws in the page: the pane holds ink (candles), and the axes right of it
# (prices) and under it (times) hold ink (their labels).
CHART_DRAWN = """
() => {
  const box = document.querySelector("[data-chart-box]");
  const canvases = Array.from(box ? box.querySelectorAll("canvas") : []).map((c) => {
    const r = c.getBoundingClientRect();
    let inked = false;
    if (c.width && c.height) {
      const d = c.getContext("2d").getImageData(0, 0, c.width, c.height).data;
      for (let i = 4; i < d.length && !inked; i += 4) {
        inked = [0, 1, 2, 3].some((k) => d[i + k] !== d[k]);
      }
    }
    return { x: r.x, y: r.y, w: r.width, h: r.height, inked };
  });
  if (!canvases.length) return false;
  const pane = canvases.reduce((a, b) => (b.w * b.h > a.w * a.h ? b : a));
  const inked = canvases.filter((c) => c.inked);
  return {
    pane: inked.some((c) => c.x === pane.x && c.y === pane.y && c.w === pane.w),
    prices: inked.some((c) => c.x >= pane.x + pane.w - 1 && c.y < pane.y + pane.h),
    times: inked.some((c) => c.y >= pane.y + pane.h - 1 && c.x < pane.x + pane.w),
  };
}
"""

# A function, not an expression: Playwright evaluates it once and calls it on
# each poll; an expression it would eval() on each poll, which the CSP refuses.
CHART_DRAWN_WITH_AXES = (
    f"() => {{ const d = ({CHART_DRAWN})(); "
    "return d && d.pane && d.prices && d.times; }"
)


def trade(market, price: str, quantity: str = "1") -> None:
    """A trade at ``price``, between two users of its own."""
    maker, taker = user_make(f"maker-{price}"), user_make(f"taker-{price}")
    fund(maker, market.base, quantity)
    # Exactly what the buy reserves: on SQLite, balances keep about 15
    # digits, and an 18-decimal price must not be taken from a large one.
    fund(taker, market.quote, Decimal(price) * Decimal(quantity))
    sell(maker, market, quantity, price)
    buy(taker, market, quantity, price)


def test_the_chart_draws_candles_with_axes_and_switches_interval(
    page, live_server, market
):
    trade(market, "100.00")
    trade(market, "110.00", "2")
    url = f"{live_server.url}/markets/{market.symbol}/"

    with page.expect_request(lambda request: "/candles/" in request.url) as first:
        page.goto(url)
    assert "interval=1h" in first.value.url
    page.locator('#chart[data-candles="1h"]').wait_for()
    page.wait_for_function(CHART_DRAWN_WITH_AXES)
    # The candle's figures, as the crosshair's legend gives them.
    expect(page.locator("[data-chart-legend]")).to_contain_text(
        "O 100 H 110 L 100 C 110 · Vol 3 BTC"
    )
    expect(page.get_by_text("Chart by TradingView")).to_be_visible()
    page.screenshot_step("chart")

    with page.expect_request(lambda request: "/candles/" in request.url) as switched:
        page.get_by_role("link", name="5m", exact=True).click()
    assert "interval=5m" in switched.value.url
    page.locator('#chart[data-candles="5m"]').wait_for()
    expect(page.get_by_role("link", name="5m", exact=True)).to_have_attribute(
        "aria-current", "true"
    )
    assert page.url == f"{url}?interval=5m"
    expect(page.locator("[data-chart-legend]")).to_contain_text("C 110")


def chart_library_with(page, script: str) -> None:
    """The chart library as the browser gets it, with ``script`` appended."""

    def serve(route):
        response = route.fetch()
        route.fulfill(response=response, body=response.text() + script)

    page.route("**/lightweight-charts.standalone.production.js", serve)


# Appended to the chart library: keeps the price formatter market.js gives the
# candle series (its price scale and last-price label, drawn on a canvas).
PRICE_FORMATTER_KEPT = """
(function (Charts) {
  window.LightweightCharts = Object.assign({}, Charts, {
    createChart: function (box, options) {
      var view = Charts.createChart(box, options);
      var addSeries = view.addSeries.bind(view);
      view.addSeries = function (type, seriesOptions) {
        var format = seriesOptions && seriesOptions.priceFormat;
        if (format && format.formatter) window.priceText = format.formatter;
        return addSeries(type, seriesOptions);
      };
      return view;
    },
  });
})(window.LightweightCharts);
"""


@pytest.mark.parametrize(
    "price_step, price",
    [
        ("0.00000000000000001", "0.00000000412345678"),
        ("0.000000000000000001", "0.000000004123456789"),
        ("0.03", "12.33"),
    ],
    ids=["17-decimals", "18-decimals", "not-a-power-of-ten"],
)
def test_the_chart_draws_for_any_price_step_a_market_may_have(
    page, live_server, price_step, price
):
    # A token priced in an 18-decimal token (ETH) may have a step of 1e-18.
    meme, weth = token_make("MEME", decimals=18), token_make("WETH", decimals=18)
    market = market_make(
        meme,
        weth,
        price_step=Decimal(price_step),
        amount_step=Decimal("1"),
        min_notional=Decimal(0),
    )
    trade(market, price, "1000")
    errors = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    chart_library_with(page, PRICE_FORMATTER_KEPT)

    page.goto(f"{live_server.url}/markets/{market.symbol}/")
    page.locator('#chart[data-candles="1h"]').wait_for()
    page.wait_for_function(CHART_DRAWN_WITH_AXES)
    expect(page.locator("[data-chart-legend]")).to_contain_text(f"C {price} ")
    expect(page.locator("[data-chart-fallback]")).to_be_hidden()
    page.screenshot_step("chart")
    assert errors == []
    # The chart gets prices as floats: a close as market.js passes it, a mark
    # of the price scale (0.1 + 0.2), a large price. It writes them as the
    # book does, without the float's binary remainder past 15 digits.
    written = page.evaluate(
        "(price) => [price, '0.1', 0.1 + 0.2, '123456.78'].map(Number).map(priceText)",
        price,
    )
    assert written == [price, "0.1", "0.3", "123,456.78"]


# Appended to the chart library as the browser gets it: a library that throws
# while setting up, or while drawing (faults no real input causes any more).
BROKEN_CHART_LIBRARY = {
    "setting-up": """
window.LightweightCharts = Object.assign({}, window.LightweightCharts, {
  createChart: function () { throw new Error("broken while setting up"); },
});
""",
    "drawing": """
(function (Charts) {
  function broken() { throw new Error("broken while drawing"); }
  window.LightweightCharts = Object.assign({}, Charts, {
    createChart: function (box, options) {
      var view = Charts.createChart(box, options);
      var addSeries = view.addSeries.bind(view);
      view.addSeries = function (type, seriesOptions) {
        var series = addSeries(type, seriesOptions);
        series.applyOptions({ priceFormat: { type: "custom", formatter: broken } });
        return series;
      };
      return view;
    },
  });
})(window.LightweightCharts);
""",
}


@pytest.mark.parametrize("fault", BROKEN_CHART_LIBRARY)
def test_if_the_chart_library_fails_the_page_keeps_its_picture_and_stays_live(
    live_stream, page, live_server, market, fault
):
    trade(market, "100.00")
    chart_library_with(page, BROKEN_CHART_LIBRARY[fault])
    page.goto(f"{live_server.url}/markets/{market.symbol}/")
    page.locator('#market-live[data-stream="open"]').wait_for()
    expect(page.locator("[data-chart-fallback] svg.candles")).to_be_visible()
    expect(page.locator("[data-chart-frame]")).to_be_hidden()
    expect(page.get_by_text("Chart by TradingView")).to_be_hidden()
    page.screenshot_step("picture")

    # The interval links go to the page's picture of that interval.
    page.get_by_role("link", name="5m", exact=True).click()
    page.wait_for_url("**/?interval=5m")
    expect(page.locator("[data-chart-fallback] svg.candles")).to_be_visible()


# The focused control's field (label, control and errors): inside the window,
# below the sticky header.
FOCUSED_FIELD_IN_VIEW = """() => {
  const field = document.activeElement.closest(".field").getBoundingClientRect();
  const header = document.querySelector(".site-header").getBoundingClientRect();
  return field.top >= header.bottom && field.bottom <= innerHeight;
}"""

# What the browser computed for the focused control's focus ring and for the
# page's scroll padding, with the sticky header's height.
FOCUS_STYLE = """() => {
  const style = getComputedStyle(document.activeElement);
  const page = getComputedStyle(document.documentElement);
  const header = document.querySelector(".site-header");
  return {
    outline: [style.outlineStyle, parseFloat(style.outlineWidth), style.outlineColor],
    shadow: style.boxShadow,
    scrollPadding: parseFloat(page.scrollPaddingTop),
    header: header.getBoundingClientRect().height,
  };
}"""


def luminance(colour: str) -> float:
    """The WCAG relative luminance of a computed ``rgb(...)`` colour."""
    channels = [int(c) / 255 for c in re.findall(r"\d+", colour)[:3]]
    r, g, b = (
        c / 12.92 if c <= 0.04045 else ((c + 0.055) / 1.055) ** 2.4 for c in channels
    )
    return 0.2126 * r + 0.7152 * g + 0.0722 * b


def test_an_order_error_keeps_what_was_typed_next_to_the_field_in_view_and_focused(
    page, live_server, market
):
    trader = user_make("trader")
    fund(trader, market.base, "5")
    browser_log_in(page, live_server, "trader")
    # A phone: the order form is a screen and more below the top of the page.
    page.set_viewport_size({"width": 375, "height": 740})
    page.goto(f"{live_server.url}/markets/{market.symbol}/")

    page.get_by_label("Sell").check()
    page.get_by_role("textbox", name="Price").fill("100.001")
    page.get_by_role("textbox", name="Amount").fill("1.5")
    page.get_by_role("button", name="Place order").click()

    price_field = page.locator(".field", has=page.get_by_role("textbox", name="Price"))
    expect(price_field).to_contain_text("The price 100.001 has too much precision")
    expect(page.get_by_role("textbox", name="Price")).to_have_value("100.001")
    expect(page.get_by_role("textbox", name="Amount")).to_have_value("1.5")
    expect(page.get_by_label("Sell")).to_be_checked()
    # The answer is a new page: focus on the refused field, shown with its
    # error, not at the top of the page.
    expect(page.get_by_role("textbox", name="Price")).to_be_focused()
    assert page.evaluate(FOCUSED_FIELD_IN_VIEW)
    page.screenshot_step("refused")
    assert not Order.objects.filter(user=trader).exists()
    # The focus ring stands out against white (3:1), forced colours (Windows
    # High Contrast, which drops box shadows) paint an outline, and what
    # focus scrolls to stops below the sticky header.
    shown = page.evaluate(FOCUS_STYLE)
    ring = re.findall(r"rgba?\([^)]*\)", shown["shadow"])[-1]
    assert (1 + 0.05) / (luminance(ring) + 0.05) >= 3, ring
    assert shown["scrollPadding"] >= shown["header"]
    # Wider, the navigation may still wrap onto two lines (a long name, or
    # just above the phone's width): the padding follows the header.
    for width in (641, 1200):
        page.set_viewport_size({"width": width, "height": 740})
        page.wait_for_function(
            "() => parseFloat(getComputedStyle(document.documentElement)"
            ".scrollPaddingTop) >= document.querySelector('.site-header')"
            ".getBoundingClientRect().height"
        )
    page.set_viewport_size({"width": 375, "height": 740})
    page.emulate_media(forced_colors="active")
    style, width, colour = page.evaluate(FOCUS_STYLE)["outline"]
    assert (style, width >= 2) == ("solid", True)
    assert colour != "rgba(0, 0, 0, 0)"
    page.emulate_media(forced_colors="none")

    page.get_by_role("textbox", name="Price").fill("100.01")
    page.get_by_role("button", name="Place order").click()
    page.get_by_text("placed (0 filled so far)").wait_for()
    # The next order starts on the side of the last one.
    expect(page.get_by_label("Sell")).to_be_checked()
    assert Order.objects.get(user=trader).price == Decimal("100.01")


def test_a_market_order_hides_price_time_in_force_and_post_only(
    page, live_server, market
):
    user_make("trader")
    browser_log_in(page, live_server, "trader")
    page.goto(f"{live_server.url}/markets/{market.symbol}/")
    price = page.get_by_role("textbox", name="Price")
    time_in_force = page.get_by_label("Time in force")
    post_only = page.get_by_label("Post only")
    spend = page.get_by_role("textbox", name="Or spend")
    submit = page.get_by_role("button", name="Place order")

    for shown in (price, time_in_force, post_only):
        expect(shown).to_be_visible()
    expect(spend).to_be_hidden()
    buy_colour = submit.evaluate("node => getComputedStyle(node).backgroundColor")

    page.get_by_label("Market").check()
    for hidden in (price, time_in_force, post_only):
        expect(hidden).to_be_hidden()
    expect(spend).to_be_visible()
    expect(page.get_by_role("textbox", name="Amount")).to_be_visible()
    page.screenshot_step("market-buy")

    # Buy and sell look different; a market sell spends no quote amount.
    page.get_by_label("Sell").check()
    expect(spend).to_be_hidden()
    expect(submit).to_have_accessible_name("Place order · sell BTC")
    sell_colour = submit.evaluate("node => getComputedStyle(node).backgroundColor")
    assert sell_colour != buy_colour

    page.get_by_label("Limit").check()
    expect(price).to_be_visible()


def test_clicking_a_price_in_the_book_fills_the_form_and_shows_total_and_fee(
    page, live_server, market
):
    other = user_make("other")
    fund(other, market.base, "10")
    fund(other, market.quote, "1000")
    sell(other, market, "3", "120.50")
    buy(other, market, "1", "119.00")
    user_make("trader")
    browser_log_in(page, live_server, "trader")
    page.goto(f"{live_server.url}/markets/{market.symbol}/")
    expect(page.locator("tbody.spread")).to_have_text("Spread 1.5 (1.24 %)")
    page.evaluate("window.__notReloaded = true")

    page.locator("tbody.asks").get_by_role("link", name="120.5").click()
    page.get_by_role("textbox", name="Amount").fill("2")

    expect(page.get_by_role("textbox", name="Price")).to_have_value("120.5")
    estimate = page.locator("[data-estimate]")
    expect(estimate).to_contain_text("241 USDT")
    # A buyer's fee is taken from the BTC bought: 2 x 0.2 % at most.
    expect(estimate).to_contain_text("0.004 BTC (0.2 %, at most, as taker)")
    assert page.evaluate("window.__notReloaded") is True
    page.screenshot_step("price-picked")

    # A sell at 100 fills at the bid of 119 first: its fee, on the USDT it
    # receives, is more than at its limit price, and the page says so.
    page.get_by_label("Sell").check()
    page.get_by_role("textbox", name="Price").fill("100")
    expect(estimate).to_contain_text("200 USDT")
    expect(estimate).to_contain_text(
        "0.4 USDT (0.2 %, as taker, at your limit price; more if it sells higher)"
    )
    expect(estimate).not_to_contain_text("at most")


def test_a_limit_order_fee_estimate_takes_the_higher_rate_when_makers_pay_more(
    page, live_server, btc, usdt
):
    market = market_make(btc, usdt, maker_fee=Decimal("0.003"))
    other = user_make("other")
    fund(other, market.base, "2")
    sell(other, market, "2", "120.00")
    user_make("trader")
    browser_log_in(page, live_server, "trader")
    page.goto(f"{live_server.url}/markets/{market.symbol}/")
    page.get_by_role("textbox", name="Price").fill("100")
    page.get_by_role("textbox", name="Amount").fill("2")

    # Resting, the buy pays 0.3 % of the 2 BTC: the most it can pay.
    estimate = page.locator("[data-estimate]")
    expect(estimate).to_contain_text("0.006 BTC (0.3 %, at most, as maker)")
    page.get_by_label("Post only").check()
    expect(estimate).to_contain_text("0.006 BTC (0.3 %, maker)")
    # A market order never rests: it pays the taker rate.
    page.get_by_label("Market").check()
    expect(estimate).to_contain_text("≈ 0.004 BTC (0.2 %, taker)")


def test_a_capped_market_buy_estimates_only_what_is_offered_under_its_cap(
    page, live_server, market
):
    other = user_make("other")
    fund(other, market.base, "2")
    sell(other, market, "0.5", "100.00")
    sell(other, market, "1", "200.00")
    user_make("trader")
    browser_log_in(page, live_server, "trader")
    page.goto(f"{live_server.url}/markets/{market.symbol}/")
    page.get_by_label("Market").check()
    page.get_by_role("textbox", name="Amount").fill("1")
    cap = page.get_by_role("textbox", name="Pay at most per unit")
    estimate = page.locator("[data-estimate]")

    # The matcher stops at 150: 0.5 BTC at 100, not the 1 BTC at 200 above.
    cap.fill("150")
    expect(estimate).to_contain_text("≈ 50 USDT for 0.5 BTC at or below your price")
    cap.fill("90")
    expect(estimate).to_contain_text("(nothing offered at or below your price)")
    cap.fill("200")
    expect(estimate).to_contain_text("≈ 150 USDT")
    expect(estimate).not_to_contain_text("your price")


def test_a_market_order_waiting_for_the_matcher_shows_as_market_in_your_orders(
    settings, live_stream, page, live_server, market
):
    settings.ORDER_MATCH_INLINE = False  # the matcher is stopped
    trader = user_make("trader")
    fund(trader, market.quote, "1000")
    order_place(
        user=trader,
        market=market,
        side=Order.Side.BUY,
        type=Order.Type.MARKET,
        quote_amount=Decimal("100"),
    )
    browser_log_in(page, live_server, "trader")

    page.goto(f"{live_server.url}/markets/{market.symbol}/")
    page.locator('#market-live[data-stream="open"]').wait_for()

    # As the stream's snapshot redraws it: no price, the amount to spend.
    mine = page.locator("#market-live .my-orders tbody tr td:nth-child(-n+4)")
    expect(mine).to_have_text(["Buy accepted", "Market", "spend 100 USDT", "0"])
    page.screenshot_step("market-order-accepted")
    drain(market_id=market.pk)


def test_max_fills_the_amount_from_the_available_balance(page, live_server, market):
    trader = user_make("trader")
    fund(trader, market.quote, "12345.67")
    fund(trader, market.base, "2.5")
    browser_log_in(page, live_server, "trader")
    page.goto(f"{live_server.url}/markets/{market.symbol}/")
    amount = page.get_by_role("textbox", name="Amount")
    max_button = page.get_by_role("button", name="Max")

    expect(page.locator('[data-balance="USDT"]')).to_have_text("12,345.67")
    page.get_by_role("textbox", name="Price").fill("100")
    max_button.click()
    # 12,345.67 USDT at 100 buys 123.4567 BTC (the amount step is 0.0001).
    expect(amount).to_have_value("123.4567")
    expect(page.locator("[data-estimate]")).to_contain_text("12,345.67 USDT")

    page.get_by_label("Sell").check()
    max_button.click()
    expect(amount).to_have_value("2.5")

    page.get_by_label("Buy").check()
    page.get_by_label("Market").check()
    max_button.click()
    expect(page.get_by_role("textbox", name="Or spend")).to_have_value("12345.67")
    expect(amount).to_have_value("")
    page.screenshot_step("max")


def test_a_trade_appears_live_with_its_time_and_moves_the_chart(
    live_stream, page, live_server, market
):
    maker = user_make("maker")
    fund(maker, market.base, "1")
    sell(maker, market, "1", "130.00")
    page.goto(f"{live_server.url}/markets/{market.symbol}/")
    page.locator('#market-live[data-stream="open"]').wait_for()
    page.locator('#chart[data-candles="1h"]').wait_for()
    expect(page.locator("tbody.trade-rows")).to_have_text("No trade yet")
    page.evaluate("window.__notReloaded = true")

    taker = user_make("taker")
    fund(taker, market.quote, "1000")
    buy(taker, market, "0.4", "130.00")
    made = Trade.objects.get()

    row = page.locator("tbody.trade-rows tr", has_text="130")
    expect(row.locator("td")).to_have_text(
        ["130", "0.4", made.created_at.strftime("%H:%M:%S")]
    )
    shown = datetime.fromisoformat(row.locator("time").get_attribute("datetime"))
    assert abs(shown - made.created_at) < timedelta(milliseconds=1)
    expect(page.locator("[data-chart-legend]")).to_contain_text("C 130 · Vol 0.4 BTC")
    expect(page.locator("tbody.asks tr", has_text="130").locator("td")).to_have_text(
        ["130", "0.6", "0.6"]
    )
    assert page.evaluate("window.__notReloaded") is True
    page.screenshot_step("live-trade")


def test_a_fall_too_small_to_show_arrives_live_as_no_change(
    live_stream, page, live_server, market
):
    trade(market, "10000.00", "0.001")
    page.goto(f"{live_server.url}/markets/{market.symbol}/")
    page.locator('#market-live[data-stream="open"]').wait_for()
    change = page.locator('[data-ticker="change_percent"]')
    expect(change).to_have_text("+0.00 %")

    trade(market, "9999.99", "0.001")  # -0.0001 %

    expect(page.locator('[data-ticker="last_price"]')).to_have_text("9,999.99")
    expect(change).to_have_text("+0.00 %")
    expect(change).not_to_have_class(re.compile(r"\b(up|down)\b"))
    page.screenshot_step("tiny-fall")
