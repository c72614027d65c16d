"""Markets, address formats and deposits added twice at once, by two staff in
the admin or by two callers of the services: real threads on PostgreSQL, each
with its own connection (``tests.threads``), both past their checks before
either inserts unless they take turns."""

from __future__ import annotations

from decimal import Decimal as D

import pytest
from django.contrib.admin.models import ADDITION, LogEntry
from django.core.exceptions import ValidationError

from tests.factories import balance
from tests.threads import (
    inserts_held_together,
    posts_at_once,
    refused_page,
    run_together,
)
from trading.models import AddressFormat, Deposit, Market
from trading.services import (
    address_format_ensure,
    deposit_credit_or_get,
    market_create,
)

pytestmark = [pytest.mark.postgres, pytest.mark.django_db(transaction=True)]


@pytest.mark.reliability("race-admin")
def test_two_staff_listing_one_pair_at_once_get_one_market_and_a_form_error(
    staff_clients, btc, usdt
):
    form = {
        "base": btc.pk,
        "quote": usdt.pk,
        "price_step": "0.01",
        "amount_step": "0.0001",
        "min_notional": "1",
        "maker_fee": "0.001",
        "taker_fee": "0.002",
        "status": "open",
    }
    url = "/admin/trading/market/add/"

    responses = posts_at_once(
        url, [(client, form) for client in staff_clients(2)], held=Market
    )

    assert "Market with this Base and Quote already exists." in refused_page(responses)
    assert Market.objects.get().symbol == "BTC-USDT"


@pytest.mark.reliability("race-admin")
def test_two_staff_adding_one_network_of_a_token_at_once_get_one_and_a_form_error(
    staff_clients, btc
):
    form = {
        "token": btc.pk,
        "network": "Bitcoin",
        "pattern": "bc1[a-z0-9]{8,87}",
        "checksum": "",
        "description": "bc1 and letters",
        "example": "",
    }
    url = "/admin/trading/addressformat/add/"

    responses = posts_at_once(
        url, [(client, form) for client in staff_clients(2)], held=AddressFormat
    )

    assert "Address format with this Token and Network already exists." in (
        refused_page(responses)
    )
    assert AddressFormat.objects.get().network == "Bitcoin"


@pytest.mark.reliability("race-admin")
def test_one_market_created_twice_at_once_is_listed_once_and_refused_once(btc, usdt):
    def create() -> Market:
        return market_create(
            base=btc, quote=usdt, price_step=D("0.01"), amount_step=D("0.0001")
        )

    with inserts_held_together(Market):
        results = run_together(create, create)

    assert sorted(status for status, _ in results) == ["error", "ok"], results
    refusal = next(outcome for status, outcome in results if status == "error")
    assert isinstance(refusal, ValidationError), results
    assert "Market with this Base and Quote already exists." in refusal.messages
    assert Market.objects.count() == 1


@pytest.mark.reliability("race-admin")
def test_one_address_format_ensured_twice_at_once_is_created_once(btc):
    def ensure() -> bool:
        _, created = address_format_ensure(
            token=btc, network="Bitcoin", pattern="bc1[a-z0-9]{8,87}", description="x"
        )
        return created

    with inserts_held_together(AddressFormat):
        results = run_together(ensure, ensure)

    assert sorted(results) == [("ok", False), ("ok", True)]
    assert AddressFormat.objects.count() == 1


@pytest.mark.reliability("race-deposits")
def test_two_staff_crediting_one_deposit_at_once_are_told_it_was_credited_once(
    staff_clients, alice, btc
):
    form = {"user": alice.pk, "token": btc.pk, "amount": "1", "reference": "tx-7"}
    clients = staff_clients(2)

    responses = posts_at_once(
        "/admin/trading/deposit/add/",
        [(client, form) for client in clients],
        held=Deposit,
    )

    assert [response.status_code for response in responses] == [302, 302]
    pages = [
        client.get("/admin/trading/deposit/").content.decode() for client in clients
    ]
    told = sorted(
        (
            "Deposit tx-7: 1 BTC is credited." in page,
            "Nothing was credited: reference tx-7 was already credited" in page,
        )
        for page in pages
    )
    assert told == [(False, True), (True, False)]
    assert LogEntry.objects.filter(action_flag=ADDITION).count() == 1
    assert Deposit.objects.count() == 1
    assert balance(alice, btc) == (D("1"), D("0"))


@pytest.mark.reliability("race-deposits")
def test_one_deposit_credited_twice_at_once_says_which_call_credited_it(alice, btc):
    def credit() -> bool:
        _, credited = deposit_credit_or_get(
            user=alice, token=btc, amount=D("1"), reference="tx-8"
        )
        return credited

    with inserts_held_together(Deposit):
        results = run_together(credit, credit)

    assert sorted(results) == [("ok", False), ("ok", True)]
    assert Deposit.objects.count() == 1
    assert balance(alice, btc) == (D("1"), D("0"))
