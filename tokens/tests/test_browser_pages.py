"""The home and token pages in a real browser: readable buttons, and a token's
markets with a way to trade them."""

import pytest
from playwright.sync_api import expect

from tests.factories import buy, fund, market_make, sell, token_make, user_make

pytestmark = pytest.mark.django_db(transaction=True)

# The WCAG contrast ratio of an element's text against the first opaque
# background under it, from the colours the browser computed.
CONTRAST = """(node) => {
  const rgb = (text) => text.match(/[\\d.]+/g).map(Number);
  const luminance = ([r, g, b]) => {
    const linear = (c) => {
      c /= 255;
      return c <= 0.04045 ? c / 12.92 : ((c + 0.055) / 1.055) ** 2.4;
    };
    return 0.2126 * linear(r) + 0.7152 * linear(g) + 0.0722 * linear(b);
  };
  let back = node;
  while (back && rgb(getComputedStyle(back).backgroundColor)[3] === 0) {
    back = back.parentElement;
  }
  const background = back
    ? getComputedStyle(back).backgroundColor : "rgb(255, 255, 255)";
  const [fore, behind] = [
    luminance(rgb(getComputedStyle(node).color)), luminance(rgb(background)),
  ];
  return (Math.max(fore, behind) + 0.05) / (Math.min(fore, behind) + 0.05);
}"""


@pytest.mark.parametrize("scheme", ["light", "dark"])
def test_the_sign_up_buttons_of_the_home_page_are_readable(
    browser, watch_headers, live_server, scheme
):
    context = browser.new_context(color_scheme=scheme)
    watch_headers(context)
    page = context.new_page()
    page.goto(f"{live_server.url}/")

    for name in ("Sign up", "Create an account"):
        button = page.get_by_role("link", name=name, exact=True)
        expect(button).to_be_visible()
        assert button.evaluate(CONTRAST) >= 4.5, name
        button.hover()
        assert button.evaluate(CONTRAST) >= 4.5, f"{name} under the pointer"
    context.close()


def test_a_token_page_lists_its_markets_with_last_price_and_a_link_to_trade(
    page, live_server
):
    btc, usdt, eth = (
        token_make("BTC"),
        token_make("USDT", decimals=6),
        token_make("ETH"),
    )
    btc_usdt, eth_btc = market_make(btc, usdt), market_make(eth, btc)
    market_make(eth, usdt)
    maker, taker = user_make("maker"), user_make("taker")
    fund(maker, btc, "10")
    fund(taker, usdt, "1000000")
    sell(maker, btc_usdt, "1", "61234.5")
    buy(taker, btc_usdt, "1", "61234.5")

    page.goto(f"{live_server.url}/tokens/BTC/")
    markets = page.get_by_role("table", name="Markets")
    rows = markets.locator("tbody tr")
    expect(rows).to_have_count(2)  # BTC-USDT and ETH-BTC, not ETH-USDT
    expect(rows.nth(0)).to_contain_text("61,234.5 USDT")
    expect(rows.nth(1)).to_contain_text("ETH / BTC")
    expect(rows.nth(1).locator("td").first).to_have_text("—")
    page.screenshot_step("token-markets")

    markets.get_by_role("link", name="Trade BTC for USDT").click()
    page.wait_for_url(f"**/markets/{btc_usdt.symbol}/")
    page.goto(f"{live_server.url}/tokens/ETH/")
    page.get_by_role("link", name="Trade ETH for BTC").click()
    page.wait_for_url(f"**/markets/{eth_btc.symbol}/")
