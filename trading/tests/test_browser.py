"""Trading in a real browser: the order form, cancel, and the page refreshing."""

from decimal import Decimal

import pytest

from trading.models import Order
from trading.tests.factories import (
    balance,
    buy,
    fund,
    market_make,
    sell,
    token_make,
    user_make,
)

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def market():
    return market_make(token_make("BTC"), token_make("USDT", decimals=6))


def log_in(page, live_server, username):
    from django.contrib.auth import get_user_model

    user = get_user_model().objects.get(username=username)
    user.set_password("trade-pass-2026")
    user.save()
    page.goto(f"{live_server.url}/accounts/login/")
    page.locator('input[name="login"]').fill(username)
    page.locator('input[name="password"]').fill("trade-pass-2026")
    page.get_by_role("button", name="Sign In").click()
    page.wait_for_url("**/accounts/profile/")


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
    log_in(page, live_server, "trader")

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
    maker = user_make("maker")
    fund(maker, market.base, "2")
    resting = sell(maker, market, "2", "150.00")
    log_in(page, live_server, "maker")
    page.goto(f"{live_server.url}/markets/{market.symbol}/")
    asks = page.locator("#market-live tbody.asks")
    asks.get_by_text("150", exact=True).wait_for()
    base_balance = page.locator(f'[data-balance="{market.base.symbol}"]').first
    quote_balance = page.locator(f'[data-balance="{market.quote.symbol}"]').first
    assert base_balance.text_content() == "0"
    assert quote_balance.text_content() == "0"
    page.evaluate("window.__notReloaded = true")
    page.locator('#market-live[data-stream="open"]').wait_for()

    # Another user buys half of the resting order: no reload, the book shows
    # what is left, the balance what was received, and a notice says so.
    taker = user_make("taker")
    fund(taker, market.quote, "1000")
    buy(taker, market, "0.5", "150.00")

    asks.get_by_text("1.5", exact=True).wait_for()
    page.get_by_text(f"Your sell order {resting.pk} filled 0.5").wait_for()
    available = balance(maker, market.quote)[0]
    page.wait_for_function(
        "([node, value]) => node.textContent === value",
        arg=[quote_balance.element_handle(), str(available.normalize())],
    )
    page.locator('[data-ticker="last_price"]').get_by_text("150").wait_for()
    assert page.evaluate("window.__notReloaded") is True
    page.screenshot_step("filled-live")
