"""Staff add a token with its logo in the admin; the token list shows it.
Every picture loads, and one whose file is gone shows as no picture."""

import io

import pytest
from django.contrib.auth import get_user_model
from django.core.files.storage import default_storage
from PIL import Image, ImageDraw
from playwright.sync_api import expect

from accounts.tests.test_browser import broken_images
from accounts.tests.totp import AuthenticatorApp
from tests.factories import (
    PASSWORD,
    fund,
    market_make,
    png_upload,
    token_make,
    user_make,
)
from tokens.services import token_logo_replace

pytestmark = pytest.mark.django_db(transaction=True)


def big_transparent_png(path):
    """A round logo on a transparent 3000x2000 canvas: its corners stay clear."""
    image = Image.new("RGBA", (3000, 2000), (0, 0, 0, 0))
    ImageDraw.Draw(image).ellipse((600, 100, 2400, 1900), fill=(98, 126, 234, 255))
    image.save(path, "PNG")
    return path


@pytest.mark.reliability("upload-huge")
def test_staff_add_a_token_with_a_large_logo_and_the_list_shows_it_at_200(
    page, live_server, site_storage, tmp_path, mfa_enable
):
    staff = get_user_model().objects.create_superuser(
        "staff", password="staff-pass-2026"
    )
    app = AuthenticatorApp(mfa_enable(staff))
    # The admin sends staff to the site's log-in, which asks for the code.
    page.goto(f"{live_server.url}/admin/tokens/token/add/")
    page.locator('input[name="login"]').fill("staff")
    page.locator('input[name="password"]').fill("staff-pass-2026")
    page.get_by_role("button", name="Sign In").click()
    page.locator('input[name="code"]').fill(app.code())
    page.get_by_role("button", name="Sign In").click()
    page.wait_for_url("**/admin/tokens/token/add/")

    page.locator("#id_symbol").fill("ETH")
    page.locator("#id_name").fill("Ether")
    page.locator("#id_logo").set_input_files(
        big_transparent_png(tmp_path / "ether-logo.png")
    )
    page.screenshot_step("admin-add")
    page.get_by_role("button", name="Save", exact=True).click()
    page.get_by_text("was added successfully").wait_for()
    page.screenshot_step("admin-list")

    page.goto(f"{live_server.url}/tokens/")
    # The link is named by the token (the logo's alt is empty).
    card = page.get_by_role("link", name="ETH Ether")
    logo = card.locator("img.token-logo")
    logo.wait_for()
    page.wait_for_load_state("load")
    page.screenshot_step("token-list")
    assert logo.evaluate("img => img.complete && img.naturalWidth") == 200
    src = logo.get_attribute("src")
    response = page.request.get(src if "://" in src else live_server.url + src)
    assert response.status == 200
    assert response.headers["content-type"] == "image/png"
    stored = Image.open(io.BytesIO(response.body()))
    assert (stored.format, stored.size, stored.mode) == ("PNG", (200, 200), "RGBA")
    assert stored.getpixel((0, 0))[3] == 0  # a corner is still transparent


def test_every_image_on_every_page_loads_with_an_image_type(
    page, live_server, site_storage, settings
):
    from django.core.management import call_command

    settings.DEBUG = True  # seed_demo refuses to run otherwise
    call_command("seed_demo", stdout=io.StringIO())
    settings.DEBUG = False
    page.goto(f"{live_server.url}/accounts/login/")
    page.locator('input[name="login"]').fill("demo")
    page.locator('input[name="password"]').fill("demo-pass-2026")
    page.get_by_role("button", name="Sign In").click()
    page.wait_for_url("**/accounts/profile/")

    for path in ("/", "/tokens/", "/tokens/BTC/", "/accounts/profile/"):
        page.goto(live_server.url + path)
        # Lazy images load once scrolled into view: bring them all in.
        page.evaluate("window.scrollTo(0, document.body.scrollHeight)")
        # A function, not an expression: Playwright would eval() an expression,
        # which the page's Content-Security-Policy forbids.
        page.wait_for_function(
            """() => Array.from(document.images)
                 .filter(i => i.getAttribute("src"))
                 .every(i => i.complete && i.naturalWidth > 0)"""
        )
        page.screenshot_step(path.strip("/").replace("/", "-") or "home")
        sources = page.evaluate(
            """Array.from(document.images)
                 .filter(i => i.getAttribute("src"))
                 .map(i => [i.currentSrc, i.naturalWidth])"""
        )
        assert sources, path
        for source, width in sources:
            assert width > 0, (path, source)
            response = page.request.get(source)
            assert response.status == 200, (path, source)
            assert response.headers["content-type"].startswith("image/"), source


def test_a_logo_whose_file_is_gone_shows_as_no_logo_not_a_broken_image(
    page, live_server, site_storage
):
    btc, usdt = token_make("BTC"), token_make("USDT", decimals=6)
    for token in (btc, usdt):
        token_logo_replace(token=token, upload=png_upload())
    market_make(btc, usdt)
    fund(user_make("holder"), btc, "1")
    # A database restored newer than the bucket: the row names a file the
    # store no longer has.
    default_storage.delete(btc.logo.name)
    page.goto(f"{live_server.url}/accounts/login/")
    page.locator('input[name="login"]').fill("holder")
    page.locator('input[name="password"]').fill(PASSWORD)
    page.get_by_role("button", name="Sign In").click()
    page.wait_for_url("**/accounts/profile/")

    for path in ("/", "/tokens/"):
        page.goto(f"{live_server.url}{path}")
        assert broken_images(page) == [], path
        # The letter the card shows for a token without a logo.
        letter = page.get_by_role("link", name="BTC BTC token").locator("span").first
        expect(letter).to_have_text("B")
        expect(letter).to_have_class("token-logo token-logo-empty")
        expect(letter).to_have_attribute("aria-hidden", "true")
        usdt_logo = page.get_by_role("link", name="USDT USDT token").locator("img")
        expect(usdt_logo).to_be_visible()
    page.screenshot_step("tokens")

    page.goto(f"{live_server.url}/tokens/BTC/")
    assert broken_images(page) == []
    expect(page.locator(".token-detail img")).to_have_count(0)
    expect(page.get_by_role("heading", name="BTC token BTC")).to_be_visible()

    # One logo left beside the market (USDT's), none beside the balance.
    page.goto(f"{live_server.url}/markets/")
    assert broken_images(page) == []
    market = page.locator("tbody tr").filter(has_text="BTC / USDT")
    expect(market.locator("img")).to_have_count(1)
    page.goto(f"{live_server.url}/wallet/")
    assert broken_images(page) == []
    balances = page.get_by_role("region", name="Balances")
    expect(balances.get_by_role("row").filter(has_text="BTC token")).to_have_count(1)
    expect(balances.locator("img")).to_have_count(0)
    page.screenshot_step("wallet")
