import pytest
from django.contrib.auth import get_user_model
from django.db import connection
from django.db.models.signals import post_save
from django.test import Client
from django.test.utils import CaptureQueriesContext

from tests.factories import buy, fund, market_make, png_upload, sell, user_make
from tests.threads import run_together
from tokens.models import Token
from tokens.services import token_create

pytestmark = pytest.mark.django_db


def make_tokens(count: int, *, start: int = 0) -> None:
    for number in range(start, start + count):
        token_create(name=f"Token {number}", symbol=f"T{number:03d}", logo=png_upload())


def test_the_token_list_shows_every_active_token_with_its_logo(client):
    make_tokens(3)
    Token.objects.filter(symbol="T002").update(is_active=False)

    page = client.get("/tokens/").content.decode()

    assert "T000" in page and "T001" in page
    assert "T002" not in page
    logo = Token.objects.get(symbol="T000").logo.url
    # Beside the token's name, which names the link: not read out twice.
    assert page.count(f'src="{logo}" alt=""') == 1


def test_search_matches_symbol_or_name_case_insensitively(client):
    token_create(name="Bitcoin", symbol="BTC")
    token_create(name="Ether", symbol="ETH")

    by_symbol = client.get("/tokens/", {"q": "btc"}).content.decode()
    by_name = client.get("/tokens/", {"q": "ethe"}).content.decode()
    nothing = client.get("/tokens/", {"q": "doge"}).content.decode()

    assert "Bitcoin" in by_symbol and "Ether" not in by_symbol
    assert "Ether" in by_name and "Bitcoin" not in by_name
    assert "No token matches" in nothing


def test_a_token_has_its_own_page(client):
    token_create(name="Bitcoin", symbol="BTC", description="Digital gold.")

    response = client.get("/tokens/btc/")

    assert response.status_code == 200
    assert "Digital gold." in response.content.decode()


def test_an_unknown_token_gets_the_site_404_page(client):
    response = client.get("/tokens/NOPE/")

    assert response.status_code == 404
    assert "Page not found" in response.content.decode()


@pytest.mark.parametrize("url", ["/", "/tokens/"])
def test_token_pages_cost_the_same_queries_for_10_or_60_tokens(client, url):
    make_tokens(10)
    with CaptureQueriesContext(connection) as few:
        client.get(url)
    make_tokens(50, start=10)
    with CaptureQueriesContext(connection) as many:
        client.get(url)

    assert len(few) == len(many)


@pytest.mark.reliability("store-refused")
def test_a_storage_outage_in_the_admin_is_a_503_page(client, dead_storage, mfa_enable):
    root = get_user_model().objects.create_superuser("root", password="x")
    mfa_enable(root)
    client.force_login(root)

    response = client.post(
        "/admin/tokens/token/add/",
        {"symbol": "ARB", "name": "Arbitrum", "decimals": 18, "logo": png_upload()},
    )

    assert response.status_code == 503
    assert "Temporarily unavailable" in response.content.decode()
    assert not Token.objects.filter(symbol="ARB").exists()


def test_error_pages_use_the_site_look(client):
    from django.template.loader import render_to_string

    for code in ("403", "404", "500", "503"):
        html = render_to_string(f"{code}.html")
        assert "Crypto Exchange" in html and f">{code}<" in html


def test_visitors_get_the_token_list_from_the_cache_until_a_token_changes(client):
    make_tokens(3)
    first = client.get("/tokens/").content
    with CaptureQueriesContext(connection) as queries:
        again = client.get("/tokens/").content
    token_create(name="Newcomer", symbol="NEW")
    after_change = client.get("/tokens/").content.decode()

    assert again == first
    assert len(queries) == 0
    assert "Newcomer" in after_change


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_a_visitor_arriving_during_an_admin_edit_leaves_no_stale_list_cached(
    staff_client,
):
    token = token_create(name="Bitcoin", symbol="BTC", logo=png_upload())
    old_logo = token.logo.url
    assert old_logo in Client().get("/tokens/").content.decode()
    seen_meanwhile = []

    def visitor_arrives(sender, **kwargs) -> None:
        # Served by another instance (its own connection) after the row is
        # saved, before the admin's transaction commits.
        [(_, response)] = run_together(lambda: Client().get("/tokens/"))
        seen_meanwhile.append(response.content.decode())

    uid = "test:visitor-during-admin-edit"
    post_save.connect(visitor_arrives, sender=Token, dispatch_uid=uid, weak=False)
    try:
        response = staff_client.post(
            f"/admin/tokens/token/{token.pk}/change/",
            {
                "name": "Bitcoin v2",
                "description": "",
                "is_active": "on",
                "logo": png_upload(colour=(0, 0, 200, 255)),
            },
        )
    finally:
        post_save.disconnect(sender=Token, dispatch_uid=uid)
    assert response.status_code == 302
    assert seen_meanwhile and all("Bitcoin v2" not in p for p in seen_meanwhile)
    token.refresh_from_db()

    page = Client().get("/tokens/").content.decode()

    assert "Bitcoin v2" in page
    assert token.logo.url in page and old_logo not in page


def test_signed_in_users_never_get_the_visitors_cached_list(client):
    make_tokens(2)
    client.get("/tokens/")
    client.force_login(get_user_model().objects.create_user("eve", password="x"))

    page = client.get("/tokens/").content.decode()

    assert "eve" in page and "Log out" in page


def test_a_token_page_lists_its_markets_with_last_price_and_links_to_trade(client):
    btc = token_create(name="Bitcoin", symbol="BTC")
    usdt = token_create(name="Tether", symbol="USDT", decimals=6)
    eth = token_create(name="Ether", symbol="ETH")
    btc_usdt = market_make(btc, usdt)
    market_make(eth, usdt)
    maker, taker = user_make("maker"), user_make("taker")
    fund(maker, btc, "1")
    fund(taker, usdt, "100000")
    sell(maker, btc_usdt, "1", "65432.1")
    buy(taker, btc_usdt, "1", "65432.1")

    page = client.get("/tokens/BTC/").content.decode()
    untraded = client.get("/tokens/ETH/").content.decode()

    assert "65,432.1" in page
    assert 'href="/markets/BTC-USDT/"' in page and ">Trade<" in page
    assert "ETH-USDT" not in page and "/markets/ETH-USDT/" in untraded


def test_a_token_without_markets_says_so(client):
    token_create(name="Bitcoin", symbol="BTC")

    page = client.get("/tokens/BTC/").content.decode()

    assert "BTC is not traded on any open market yet." in page


def test_a_token_page_costs_the_same_queries_for_1_or_6_markets(client):
    btc = token_create(name="Bitcoin", symbol="BTC")
    market_make(btc, token_create(name="Quote 0", symbol="Q0"))
    with CaptureQueriesContext(connection) as few:
        client.get("/tokens/BTC/")
    for number in range(1, 6):
        market_make(btc, token_create(name=f"Quote {number}", symbol=f"Q{number}"))
    with CaptureQueriesContext(connection) as many:
        client.get("/tokens/BTC/")

    assert len(few) == len(many)
