import io

import pytest
from django.core.management import call_command

from exchange.management.commands.seed_demo import DEMO_TOKENS
from trading.models import AddressFormat

pytestmark = pytest.mark.django_db


def test_seed_demo_gives_every_token_address_formats_once(settings):
    settings.DEBUG = True

    call_command("seed_demo", stdout=io.StringIO())
    first = sorted(AddressFormat.objects.values_list("pk", "token__symbol", "network"))
    AddressFormat.objects.filter(token__symbol="SOL").update(description="edited")
    call_command("seed_demo", stdout=io.StringIO())

    assert (
        sorted(AddressFormat.objects.values_list("pk", "token__symbol", "network"))
        == first
    )
    assert {symbol for _, symbol, _ in first} == {s for s, *_ in DEMO_TOKENS}
    assert AddressFormat.objects.get(token__symbol="SOL").description == "edited"
    assert set(
        AddressFormat.objects.filter(token__symbol="BTC").values_list(
            "checksum", flat=True
        )
    ) == {"segwit", "base58check"}


def test_the_demo_xrp_withdrawals_ask_for_a_destination_tag(settings):
    settings.DEBUG = True

    call_command("seed_demo", stdout=io.StringIO())

    assert AddressFormat.objects.filter(memo_name="").count() > 0
    assert list(
        AddressFormat.objects.exclude(memo_name="").values_list(
            "token__symbol", "memo_name", "memo_pattern", "memo_description"
        )
    ) == [("XRP", "Destination tag", "[0-9]{1,10}", "a number of 1 to 10 digits")]
