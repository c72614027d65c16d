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
# What Python's Decimal reads but a person does not write as a plain number;
# the market page's estimate cannot read them either, so the web forms refuse
# them as the JSON API does (the trader would place 100 BTC typing "1e2").
WRITTEN_OTHERWISE = ["1e2", "6e4", "+1", "1_0", "\u0661", "1,5", "1 000", "1.2.3"]
HOSTILE_IN_FORMS = HOSTILE_AMOUNTS + WRITTEN_OTHERWISE
PLAIN_ONLY = (
    "Write the amount in digits with one decimal point, like 0.25 "
    "(no commas, spaces, signs or exponents)."
)


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


@pytest.mark.parametrize("amount", WRITTEN_OTHERWISE)
@pytest.mark.reliability("number-abuse")
def test_an_amount_not_written_in_plain_digits_is_refused_once_in_the_order_form(
    client, market, alice, btc, usdt, before, reauthenticate, amount
):
    client.force_login(alice)
    reauthenticate(client, PASSWORD)

    response = client.post(
        "/markets/BTC-USDT/orders/",
        {
            "side": "buy",
            "type": "limit",
            "price": "100",
            "quantity": amount,
            "time_in_force": "GTC",
        },
    )

    assert response.status_code == 400
    page = response.content.decode()
    assert page.count(PLAIN_ONLY) == 1
    assert "Give the amount to trade." not in page
    assert_nothing_changed(alice, btc, usdt, before)


@pytest.mark.reliability("number-abuse")
def test_a_plain_amount_with_spaces_around_it_is_read_in_the_order_form(
    client, market, alice, reauthenticate
):
    client.force_login(alice)
    reauthenticate(client, PASSWORD)

    client.post(
        "/markets/BTC-USDT/orders/",
        {
            "side": "buy",
            "type": "limit",
            "price": " 100.5 ",
            "quantity": "\t.5",
            "time_in_force": "GTC",
        },
    )

    order = Order.objects.get()
    assert (order.price, order.quantity) == (Decimal("100.5"), Decimal("0.5"))
