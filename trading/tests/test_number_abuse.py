"""Amounts that are not plain positive decimals the market or token allows
are refused where they come in (the API and the web forms), with a 400 and
nothing placed, requested or locked; never rounded, never an error page."""

from __future__ import annotations

from decimal import Decimal

import pytest

from tests.factories import PASSWORD, balance
from trading.models import Order, Withdrawal

# Every test here trades as alice, funded.
pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("funded")]

HOSTILE_AMOUNTS = [
    "NaN",
    "-NaN",
    "sNaN",
    "Infinity",
    "-Infinity",
    "inf",
    "-1",
    "0",
    "-0",
    "1e400",
    "1E+30",
    "9" * 40,
    "0." + "0" * 40 + "1",
    "0x10",
    "1_000",
    "\u0661",  # an Arabic-Indic digit one
    "1,5",
    " ",
]
# Django's form fields read "1_000" as 1000 and an Arabic-Indic one as 1
# (Python's Decimal does), numbers a person may mean; the JSON API refuses them.
WRITTEN_OTHERWISE = {"1_0": Decimal("10"), "\u0661": Decimal("1")}
HOSTILE_IN_FORMS = [a for a in HOSTILE_AMOUNTS if a not in ("1_000", "\u0661")]


@pytest.fixture
def before(alice, btc, usdt, funded):
    return balance(alice, btc), balance(alice, usdt)


def assert_nothing_changed(alice, btc, usdt, before) -> None:
    assert not Order.objects.exists()
    assert not Withdrawal.objects.exists()
    assert (balance(alice, btc), balance(alice, usdt)) == before


@pytest.mark.parametrize("amount", HOSTILE_AMOUNTS)
@pytest.mark.parametrize("field", ["quantity", "price"])
@pytest.mark.reliability("number-abuse")
def test_a_hostile_order_amount_on_the_api_is_a_400_and_places_nothing(
    as_alice, market, alice, btc, usdt, before, field, amount
):
    order = {
        "market": "BTC-USDT",
        "side": "buy",
        "type": "limit",
        "quantity": "0.5",
        "price": "100",
    }

    response = as_alice.post("/api/v1/orders/", {**order, field: amount}, format="json")

    assert response.status_code == 400, response.content
    assert response.json()["error"]["code"] in (
        "invalid",
        "invalid_amount",
        "precision_too_high",
    )
    assert_nothing_changed(alice, btc, usdt, before)


@pytest.mark.parametrize("amount", HOSTILE_AMOUNTS)
@pytest.mark.reliability("number-abuse")
def test_a_hostile_withdrawal_amount_on_the_api_is_a_400_and_requests_nothing(
    as_alice, alice, btc, usdt, before, amount
):
    response = as_alice.post(
        "/api/v1/withdrawals/",
        {"token": "BTC", "amount": amount, "address": "bc1qx", "reference": "w-1"},
        format="json",
    )

    assert response.status_code == 400, response.content
    assert_nothing_changed(alice, btc, usdt, before)


@pytest.mark.parametrize("amount", HOSTILE_IN_FORMS)
@pytest.mark.reliability("number-abuse")
def test_a_hostile_amount_in_the_web_forms_is_refused_in_the_form(
    client, market, alice, btc, usdt, before, reauthenticate, amount
):
    client.force_login(alice)
    reauthenticate(client, PASSWORD)

    order = client.post(
        "/markets/BTC-USDT/orders/",
        {
            "side": "buy",
            "type": "limit",
            "price": amount,
            "quantity": amount,
            "time_in_force": "GTC",
        },
        follow=True,
    )
    withdrawal = client.post(
        "/wallet/",
        {"token": "BTC", "amount": amount, "address": "bc1qx", "reference": "w-1"},
    )

    # The order form comes back refused, the reason beside a field.
    assert order.status_code == 400
    assert 'class="errors' in order.content.decode()
    assert withdrawal.status_code == 400
    refused = withdrawal.content.decode()
    assert 'class="field field-invalid"' in refused or 'role="alert"' in refused
    assert_nothing_changed(alice, btc, usdt, before)


@pytest.mark.parametrize(("amount", "read"), WRITTEN_OTHERWISE.items())
@pytest.mark.reliability("number-abuse")
def test_an_amount_written_with_underscores_or_other_digits_is_read_in_the_form(
    client, market, alice, btc, usdt, before, reauthenticate, amount, read
):
    client.force_login(alice)
    reauthenticate(client, PASSWORD)

    client.post(
        "/markets/BTC-USDT/orders/",
        {
            "side": "buy",
            "type": "limit",
            "price": amount,
            "quantity": "1",
            "time_in_force": "GTC",
        },
    )

    assert Order.objects.get().price == read
