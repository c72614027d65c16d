import io
import re
from decimal import Decimal as D

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from PIL import Image

from tests.factories import png_upload
from tokens.models import Token

BIG_LOGO = (2400, 1600)
TRANSLUCENT = (20, 200, 120, 180)  # a logo with transparency stays a PNG

pytestmark = pytest.mark.django_db


def test_adding_a_token_in_the_admin_stores_a_200_square_logo(
    staff_client, any_storage
):
    response = staff_client.post(
        "/admin/tokens/token/add/",
        {
            "symbol": "ARB",
            "name": "Arbitrum",
            "decimals": 18,
            "description": "",
            "logo": png_upload(BIG_LOGO, colour=TRANSLUCENT),
            "is_active": "on",
        },
    )

    assert response.status_code == 302, response.content[:2000]
    token = Token.objects.get(symbol="ARB")
    with any_storage.open(token.logo.name) as stored:
        image = Image.open(io.BytesIO(stored.read()))
    assert (image.format, image.size) == ("PNG", (200, 200))


@pytest.mark.reliability("upload-types")
def test_an_svg_logo_is_refused_in_the_admin_with_a_message(staff_client, any_storage):
    svg = SimpleUploadedFile("logo.png", b"<svg xmlns='http://www.w3.org/2000/svg'/>")

    response = staff_client.post(
        "/admin/tokens/token/add/",
        {"symbol": "BAD", "name": "Bad", "decimals": 18, "logo": svg},
    )

    assert response.status_code == 200
    assert b"SVG images are not allowed" in response.content
    assert not Token.objects.exists()


@pytest.mark.reliability("upload-slots")
def test_a_logo_finding_every_decode_slot_taken_is_a_message_in_the_admin(
    staff_client, settings, decode_slots_holder
):
    settings.IMAGE_DECODE_SLOTS = 1
    decode_slots_holder(1)

    response = staff_client.post(
        "/admin/tokens/token/add/",
        {
            "symbol": "ARB",
            "name": "Arbitrum",
            "decimals": 18,
            "logo": png_upload(BIG_LOGO, colour=TRANSLUCENT),
        },
    )

    assert response.status_code == 200
    assert b"Many images are being processed right now" in response.content
    assert not Token.objects.exists()


def test_the_token_list_shows_logo_thumbnails(staff_client, any_storage):
    from tokens.services import token_create

    token = token_create(name="Bitcoin", symbol="BTC", logo=png_upload((300, 300)))

    response = staff_client.get("/admin/tokens/token/")

    assert response.status_code == 200
    assert token.logo.url.encode() in response.content
    assert b'alt="BTC logo"' in response.content


def test_staff_set_a_tokens_daily_withdrawal_limit_in_the_admin(staff_client):
    token = Token.objects.create(symbol="BTC", name="Bitcoin", decimals=8)
    form = {"symbol": "BTC", "name": "Bitcoin", "decimals": 8, "is_active": "on"}
    url = f"/admin/tokens/token/{token.pk}/change/"

    assert b"withdrawal_daily_limit" in staff_client.get(url).content
    staff_client.post(url, {**form, "withdrawal_daily_limit": "2.5"})
    token.refresh_from_db()
    assert str(token.withdrawal_daily_limit).rstrip("0") == "2.5"
    refused = staff_client.post(url, {**form, "withdrawal_daily_limit": "-1"})
    assert refused.status_code == 200
    token.refresh_from_db()
    assert token.withdrawal_daily_limit is not None
    assert token.withdrawal_daily_limit > 0


@pytest.mark.parametrize("limit", ["0", "0.00000001", "2.5"])
def test_a_tokens_daily_withdrawal_limit_is_shown_plain_and_kept_on_save(
    staff_client, btc, limit
):
    Token.objects.filter(pk=btc.pk).update(withdrawal_daily_limit=D(limit))
    url = f"/admin/tokens/token/{btc.pk}/change/"

    page = staff_client.get(url).content.decode()
    shown = re.search(
        r'<input[^>]*name="withdrawal_daily_limit"[^>]*value="([^"]*)"', page
    ).group(1)
    response = staff_client.post(
        url,
        {
            "name": btc.name,
            "description": btc.description,
            "is_active": "on",
            "withdrawal_daily_limit": shown,
        },
    )

    assert shown == limit
    assert response.status_code == 302
    btc.refresh_from_db()
    assert btc.withdrawal_daily_limit == D(limit)


def test_a_tokens_symbol_and_decimals_are_fixed_once_it_is_added(
    staff_client, market, btc
):
    url = f"/admin/tokens/token/{btc.pk}/change/"

    page = staff_client.get(url).content.decode()
    response = staff_client.post(
        url,
        {
            "symbol": "XBT",
            "name": "Bitcoin",
            "decimals": 2,
            "description": "",
            "is_active": "on",
        },
    )

    assert 'name="symbol"' not in page and 'name="decimals"' not in page
    assert "Fixed once the token is added" in page
    assert response.status_code == 302
    btc.refresh_from_db()
    assert (btc.symbol, btc.decimals, btc.name) == ("BTC", 8, "Bitcoin")
    market.refresh_from_db()
    assert (market.symbol, market.base.symbol) == ("BTC-USDT", "BTC")


def test_a_tokens_symbol_and_decimals_are_chosen_when_it_is_added(staff_client):
    page = staff_client.get("/admin/tokens/token/add/").content.decode()
    response = staff_client.post(
        "/admin/tokens/token/add/",
        {"symbol": "USDC", "name": "USD Coin", "decimals": 6, "is_active": "on"},
    )

    assert 'name="symbol"' in page and 'name="decimals"' in page
    assert "Fixed once the token is added" in page
    assert response.status_code == 302
    token = Token.objects.get(name="USD Coin")
    assert (token.symbol, token.decimals) == ("USDC", 6)


def test_staff_clear_a_tokens_logo_and_its_file_is_deleted_after_commit(
    staff_client, any_storage, django_capture_on_commit_callbacks
):
    from tokens.services import token_create

    token = token_create(name="Bitcoin", symbol="BTC", logo=png_upload((300, 300)))
    logo = token.logo.name
    url = f"/admin/tokens/token/{token.pk}/change/"

    with django_capture_on_commit_callbacks(execute=True):
        response = staff_client.post(
            url,
            {
                "name": "Bitcoin",
                "description": "",
                "is_active": "on",
                "logo-clear": "on",
            },
        )

    assert response.status_code == 302
    token.refresh_from_db()
    assert token.logo.name == ""
    assert not any_storage.exists(logo)
