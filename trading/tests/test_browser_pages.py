"""The site's pages in a real browser as people use them: on a phone, the
wallet's history, and the markets list sorted without script."""

import re
from decimal import Decimal

import pytest
from playwright.sync_api import expect

from tests.factories import (
    PASSWORD,
    browser_log_in,
    buy,
    fund,
    market_make,
    sell,
    token_make,
    user_make,
)
from trading.api_keys import api_key_create
from trading.models import ApiKey, Withdrawal
from trading.services import saved_address_add, withdrawal_request

pytestmark = pytest.mark.django_db(transaction=True)

PHONE = {"width": 375, "height": 740}
# A phone, a tablet upright (where two columns are narrow), a laptop.
WIDTHS = (375, 768, 1280)
# Real addresses are long and have no place to break a line.
LONG_ADDRESS = "bc1q" + "w508d6qejxtdg4y5r3zarvary0c5xw7kv8f3t4" * 2
SIGNED_IN_PAGES = [
    "/",
    "/accounts/profile/",
    "/wallet/",
    "/markets/",
    "/markets/BTC-USDT/",
    "/tokens/",
    "/tokens/BTC/",
]
VISITOR_PAGES = [
    "/",
    "/markets/",
    "/markets/BTC-USDT/",
    "/tokens/",
    "/tokens/BTC/",
    "/accounts/login/",
    "/accounts/signup/",
    "/accounts/password/reset/",
]

# The account's own pages (allauth's, in the site's layout) and the API's.
ACCOUNT_PAGES = [
    "/accounts/email/",
    "/accounts/password/change/",
    "/accounts/2fa/",
    "/accounts/2fa/totp/activate/",
    "/accounts/sessions/",
    "/accounts/verification/",
    "/accounts/logout/",
    "/api/docs/",
    "/api/keys/revoke-all/",
]

# Every element that sticks out to the right of the page, for the message.
# Every cell or control of the page that lies to the right of the box that
# scrolls it (or of the page): seen only by scrolling a table sideways.
OFF_TO_THE_SIDE = """() => {
  const root = document.documentElement;
  const hidden = [];
  for (const node of document.querySelectorAll(
    "main th, main td, main a, main button, main input, main select"
  )) {
    const box = node.getBoundingClientRect();
    if (box.width <= 1) continue;  // visually hidden
    let up = node.parentElement;
    while (up && getComputedStyle(up).overflowX === "visible") up = up.parentElement;
    const right = up ? Math.min(up.getBoundingClientRect().right, root.clientWidth)
      : root.clientWidth;
    if (box.right > right + 0.5) {
      const text = node.innerText.trim().slice(0, 30);
      hidden.push(node.tagName.toLowerCase() + " " + text);
    }
  }
  return hidden;
}"""
OVERFLOW = """() => {
  const root = document.documentElement;
  const clipped = (node) => {
    let up = node.parentElement;
    while (up && getComputedStyle(up).overflowX === "visible") up = up.parentElement;
    return up !== null;
  };
  const sticking = [...document.querySelectorAll("body *")]
    .filter((node) => node.getBoundingClientRect().right > root.clientWidth + 0.5)
    .filter((node) => !clipped(node))
    .map((node) => node.tagName.toLowerCase() + "." + [...node.classList].join("."));
  return {
    scrollWidth: root.scrollWidth, clientWidth: root.clientWidth, sticking,
  };
}"""


@pytest.fixture
def btc_usdt():
    return market_make(token_make("BTC"), token_make("USDT", decimals=6))


@pytest.fixture
def trader(btc_usdt):
    """A user with everything that makes pages wide: big balances, trades at
    big prices, API keys tied to IPv6 networks, saved and withdrawn-to long
    addresses, withdrawals pending and rejected with a reason."""
    user = user_make("trader-with-a-rather-long-username")
    btc, usdt = btc_usdt.base, btc_usdt.quote
    fund(user, usdt, "123456789.123456")
    fund(user, btc, "98765.43210987")
    other = user_make("other")
    fund(other, btc, "10")
    sell(other, btc_usdt, "2", "65432.10")
    buy(user, btc_usdt, "1.5", "65432.10")
    buy(user, btc_usdt, "1.2345", "12345.67")
    for number in range(3):
        api_key_create(
            user=user,
            name=f"Trading bot number {number} on the big server",
            scopes=["read", "trade", "withdraw"],
            allowed_ips="2001:db8:85a3::8a2e:370:7334/128, 198.51.100.0/24",
            expires_in_days=90,
            require_signature=True,
        )
    saved_address_add(
        user=user, token=btc, address=LONG_ADDRESS, label="My cold storage wallet"
    )
    for number in range(2):
        withdrawal_request(
            user=user,
            token=btc,
            amount=Decimal("1234.5"),
            address=LONG_ADDRESS,
            reference=f"w-{number}",
        )
    return user


@pytest.mark.parametrize("site_storage", ["local"], indirect=True)
def test_no_page_scrolls_sideways_or_hides_a_column_on_a_phone_tablet_or_laptop(
    page, live_server, site_storage, trader
):
    wide, hidden = {}, {}

    def look_at(paths: list[str], who: str) -> None:
        for width in WIDTHS:
            page.set_viewport_size({**PHONE, "width": width})
            for path in paths:
                page.goto(live_server.url + path)
                page.wait_for_load_state("load")
                name = path.strip("/").replace("/", "-") or "home"
                page.screenshot_step(f"{who}-{width}-{name}")
                layout = page.evaluate(OVERFLOW)
                if layout["scrollWidth"] > layout["clientWidth"]:
                    wide[f"{who} {width} {path}"] = layout
                if off_to_the_side := page.evaluate(OFF_TO_THE_SIDE):
                    hidden[f"{who} {width} {path}"] = off_to_the_side

    look_at(VISITOR_PAGES, "visitor")
    browser_log_in(page, live_server, trader.username)
    withdrawal = Withdrawal.objects.filter(user=trader).first()
    cancel = f"/wallet/withdrawals/{withdrawal.pk}/cancel/"
    look_at([*SIGNED_IN_PAGES, *ACCOUNT_PAGES, cancel], "member")

    assert wide == {}
    # Nor does a table hide a column, or a button such as an order's Cancel,
    # in a box that scrolls sideways.
    assert hidden == {}


def test_the_wallet_lists_deposits_and_withdrawals_by_date_and_cancels_one(
    page, live_server, trader
):
    browser_log_in(page, live_server, trader.username)
    page.goto(f"{live_server.url}/wallet/")
    history = page.get_by_role("table", name="Your deposits and withdrawals")
    rows = history.locator("tbody tr")

    kinds = [
        text.split()[0] for text in rows.locator("td:nth-child(2)").all_inner_texts()
    ]
    assert kinds == ["Withdrawal", "Withdrawal", "Deposit", "Deposit"]
    assert rows.first.locator("td").nth(2).inner_text() == "1,234.5 BTC"
    assert "123,456,789.123456 USDT" in history.inner_text()
    cancel = history.get_by_role("link", name="Cancel the withdrawal of 1,234.5 BTC")
    assert cancel.count() == 2

    cancel.first.click()
    page.get_by_role("button", name="Cancel the withdrawal").click()
    page.get_by_text("cancelled; the amount is available again").wait_for()
    page.screenshot_step("cancelled")
    assert rows.first.locator("td").nth(3).inner_text() == "Cancelled"
    assert cancel.count() == 1


def test_the_markets_list_sorts_by_each_column_without_script(
    browser, watch_headers, live_server, btc_usdt
):
    eth_usdt = market_make(token_make("ETH"), btc_usdt.quote)
    market_make(token_make("DOGE"), btc_usdt.quote)  # no trade yet
    maker, taker = user_make("maker"), user_make("taker")
    for token in (btc_usdt.base, eth_usdt.base):
        fund(maker, token, "100")
    fund(taker, btc_usdt.quote, "1000000")
    for market, price, quantity in ((btc_usdt, "60000", "1"), (eth_usdt, "3000", "50")):
        sell(maker, market, quantity, price)
        buy(taker, market, quantity, price)
    context = browser.new_context(java_script_enabled=False)
    watch_headers(context)
    page = context.new_page()

    def market_order():
        names = page.locator("tbody th[scope=row]").all_inner_texts()
        return [name.split()[0] for name in names]

    page.goto(f"{live_server.url}/markets/")
    assert market_order() == ["BTC", "DOGE", "ETH"]

    page.get_by_role("link", name="Last price").click()
    assert market_order() == ["BTC", "ETH", "DOGE"]
    assert page.get_by_role("columnheader", name="Last price").get_attribute(
        "aria-sort"
    ) == ("descending")
    page.get_by_role("link", name="Last price").click()
    assert market_order() == ["ETH", "BTC", "DOGE"]

    page.get_by_role("link", name="24 h volume").click()
    assert market_order() == ["ETH", "BTC", "DOGE"]  # 50 ETH, 1 BTC, none
    page.get_by_role("link", name="Market", exact=True).click()
    page.get_by_role("link", name="Market", exact=True).click()
    assert market_order() == ["ETH", "DOGE", "BTC"]
    assert "60,000 USDT" in page.locator("tbody").inner_text()

    for unknown in ("price;drop", "--price", "", "market__symbol"):
        response = page.goto(f"{live_server.url}/markets/?sort={unknown}")
        assert response.status == 200
        assert market_order() == ["BTC", "DOGE", "ETH"]
    context.close()


@pytest.mark.parametrize("site_storage", ["local"], indirect=True)
def test_a_refused_api_key_form_comes_back_as_typed_with_the_reason_by_the_field(
    page, live_server, site_storage
):
    user_make("payer")
    browser_log_in(page, live_server, "payer")
    form = page.locator("form.api-key-form")
    form.get_by_label("Name").fill("payout bot")
    form.get_by_label("Trade: place and cancel orders").check()
    form.get_by_label("Withdraw: request and cancel withdrawals").check()
    typed = "203.0.113.7\n198.51.100.0/24\n2001:db8::1\n10.0.0.300"
    form.get_by_label("Allowed addresses").fill(typed)
    form.get_by_label("Expires").select_option(label="After 30 days")
    form.get_by_label("Sign every request").check()

    form.get_by_role("button", name="Create API key").click()
    # The form is sent on once the password is confirmed again.
    page.locator('input[name="password"]').fill(PASSWORD)
    page.get_by_role("button", name="Confirm").click()
    page.get_by_text("The API key was not created").wait_for()
    page.screenshot_step("refused")

    allowed = form.get_by_label("Allowed addresses")
    expect(allowed).to_have_accessible_description(
        re.compile("“10.0.0.300” is not an IP address or a CIDR range")
    )
    expect(allowed).to_have_attribute("aria-invalid", "true")
    expect(allowed).to_have_value(typed)
    expect(form.get_by_label("Name")).to_have_value("payout bot")
    for scope in ("Read (every key", "Trade: place", "Withdraw: request"):
        expect(form.get_by_label(scope)).to_be_checked()
    expect(form.get_by_label("Expires")).to_have_value("30")
    expect(form.get_by_label("Sign every request")).to_be_checked()
    assert not ApiKey.objects.exists()

    # Corrected, the same form creates the key as typed.
    allowed.fill(typed.replace("10.0.0.300", "10.0.0.3"))
    form.get_by_role("button", name="Create API key").click()
    page.get_by_text("this is the only time it is shown").wait_for()
    api_key = ApiKey.objects.get()
    assert (api_key.name, api_key.scopes) == ("payout bot", "read trade withdraw")
    assert api_key.requires_signature
