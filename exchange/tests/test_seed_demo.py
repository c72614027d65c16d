import io
import shutil
from decimal import Decimal

import pytest
from allauth.account.models import EmailAddress
from django.contrib.auth import get_user_model
from django.core.management import CommandError, call_command
from PIL import Image

from tests.factories import market_make, token_make, user_make
from tokens.models import Token
from trading.models import Deposit, Market, Order

pytestmark = pytest.mark.django_db


def test_seed_demo_refuses_to_run_without_debug(settings):
    settings.DEBUG = False

    with pytest.raises(CommandError, match="DEBUG=true"):
        call_command("seed_demo")


def test_seed_demo_is_idempotent_and_stores_real_pictures(
    settings, any_storage, stored_names
):
    settings.DEBUG = True

    notes = io.StringIO()
    call_command("seed_demo", stdout=io.StringIO(), stderr=notes)
    first = stored_names(any_storage)
    call_command("seed_demo", stdout=io.StringIO(), stderr=notes)

    assert notes.getvalue() == ""  # nothing of its own conflicts with it
    assert stored_names(any_storage) == first
    assert Token.objects.count() == 12
    assert get_user_model().objects.filter(username__in=["demo", "admin"]).count() == 2
    assert get_user_model().objects.get(username="admin").is_staff
    logo = Token.objects.get(symbol="BTC").logo
    with any_storage.open(logo.name) as stored:
        image = Image.open(io.BytesIO(stored.read()))
    assert (image.format, image.size) == ("PNG", (200, 200))
    demo = get_user_model().objects.get(username="demo")
    assert demo.profile.has_custom_avatar
    assert demo.check_password("demo-pass-2026")


def test_seed_demo_draws_again_the_pictures_whose_files_are_gone(
    settings, media_root, stored_names
):
    from django.core.files.storage import default_storage

    _seed(settings)
    shutil.rmtree(media_root)  # `rm -rf media/`, the database kept

    assert _seed(settings) == []

    pictures = [token.logo for token in Token.objects.order_by("symbol")] + [
        user.profile.avatar
        for user in get_user_model().objects.filter(username__in=["demo", "admin"])
    ]
    assert sorted(picture.name for picture in pictures) == stored_names(default_storage)
    sizes = set()
    for picture in pictures:
        with picture.open() as stored:
            sizes.add(Image.open(stored).size)
    assert sizes == {(200, 200), (300, 300)}  # logos and avatars, resized


# -- A database that already holds data -----------------------------------------


def _seed(settings) -> list[str]:
    """Run seed_demo as ``make run`` does; the notes it writes on stderr."""
    settings.DEBUG = True
    notes = io.StringIO()
    call_command("seed_demo", stdout=io.StringIO(), stderr=notes)
    return notes.getvalue().splitlines()


def _markets_with_trades() -> set[str]:
    return {
        market.symbol
        for market in Market.objects.select_related("base", "quote")
        if market.orders.filter(type="market").exists()
    }


def test_seed_demo_skips_btc_listed_with_fewer_decimals_and_seeds_the_rest(settings):
    token_make("BTC", decimals=2)

    notes = _seed(settings)

    assert notes == [
        "seed_demo: skipped market BTC-USDT: its demo amount step: Must be a "
        "whole number of BTC units (0.01)."
    ]
    assert not Market.objects.filter(base__symbol="BTC").exists()
    assert _markets_with_trades() == {"ETH-USDT", "SOL-USDT"}
    assert Token.objects.get(symbol="BTC").decimals == 2


def test_seed_demo_skips_the_markets_of_an_inactive_token(settings):
    usdt = token_make("USDT", decimals=6)
    Token.objects.filter(pk=usdt.pk).update(is_active=False)

    notes = _seed(settings)

    assert notes == [
        f"seed_demo: skipped market {pair}: USDT is inactive (delisted)"
        for pair in ("BTC-USDT", "ETH-USDT", "SOL-USDT")
    ]
    assert not Market.objects.exists()
    assert Token.objects.count() == 12
    assert get_user_model().objects.filter(username__in=["demo", "admin"]).count() == 2


def test_seed_demo_leaves_a_halted_market_alone_and_seeds_the_others(settings):
    btc, usdt = token_make("BTC"), token_make("USDT", decimals=6)
    market_make(btc, usdt, status=Market.Status.HALTED)

    notes = _seed(settings)
    assert _seed(settings) == notes  # the same note on every run, no traceback

    assert notes == [
        "seed_demo: skipped the demo orders on BTC-USDT: the market is halted "
        "(cancels only)"
    ]
    assert not Order.objects.filter(market__base=btc).exists()
    assert _markets_with_trades() == {"ETH-USDT", "SOL-USDT"}


def test_seed_demo_skips_the_orders_a_market_with_coarser_steps_refuses(settings):
    sol, usdt = token_make("SOL", decimals=9), token_make("USDT", decimals=6)
    market_make(sol, usdt, price_step=Decimal("1"), amount_step=Decimal("0.01"))

    notes = _seed(settings)

    assert notes == [
        "seed_demo: skipped the demo orders on SOL-USDT: its price step 1 does "
        "not fit the demo price 150.75"
    ]
    assert not Order.objects.filter(market__base=sol).exists()
    assert not Deposit.objects.filter(token=sol).exists()
    assert _markets_with_trades() == {"BTC-USDT", "ETH-USDT"}


def test_seed_demo_skips_a_demo_user_whose_address_is_taken_never_half_made(
    settings,
):
    someone = user_make("someone")
    EmailAddress.objects.filter(user=someone).update(email="demo@example.com")
    get_user_model().objects.filter(pk=someone.pk).update(email="demo@example.com")

    notes = _seed(settings)

    assert notes[0] == (
        "seed_demo: skipped user demo: demo@example.com belongs to user someone"
    )
    assert notes[1:] == [
        f"seed_demo: skipped the demo orders on {pair}: there is no user demo to trade"
        for pair in ("BTC-USDT", "ETH-USDT", "SOL-USDT")
    ]
    assert not get_user_model().objects.filter(username="demo").exists()
    assert EmailAddress.objects.get(email="demo@example.com").user == someone
    assert (
        get_user_model()
        .objects.get(username="admin")
        .emailaddress_set.get(verified=True)
    )
    assert Market.objects.count() == 3
