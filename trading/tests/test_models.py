"""The database itself refuses rows that break an invariant."""

from decimal import Decimal as D

import pytest
from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction

from tests.factories import fund, sell
from trading.models import Balance, Order
from trading.services import market_create

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize("field", ["available", "locked"])
@pytest.mark.reliability("db-constraints")
def test_a_balance_can_never_be_negative(alice, btc, field):
    fund(alice, btc, "1")
    row = Balance.objects.filter(user=alice, token=btc)

    with pytest.raises(IntegrityError), transaction.atomic():
        row.update(**{field: D("-0.00000001")})

    assert row.get().available == D("1")


@pytest.mark.reliability("db-constraints")
def test_an_order_cannot_fill_beyond_its_quantity(market, alice, btc):
    fund(alice, btc, "1")
    order = sell(alice, market, "1", "100")

    with pytest.raises(IntegrityError), transaction.atomic():
        Order.objects.filter(pk=order.pk).update(filled_quantity=D("1.0001"))


@pytest.mark.reliability("db-constraints")
def test_a_closed_order_cannot_keep_funds_locked(market, alice, btc):
    fund(alice, btc, "1")
    order = sell(alice, market, "1", "100")

    with pytest.raises(IntegrityError), transaction.atomic():
        Order.objects.filter(pk=order.pk).update(status=Order.Status.CANCELLED)


@pytest.mark.reliability("db-constraints")
def test_two_open_orders_of_a_user_cannot_share_a_client_order_id(market, alice, btc):
    fund(alice, btc, "2")
    order = sell(alice, market, "1", "100", client_order_id="a")
    other = sell(alice, market, "1", "101", client_order_id="b")

    with pytest.raises(IntegrityError), transaction.atomic():
        Order.objects.filter(pk=other.pk).update(client_order_id=order.client_order_id)


@pytest.mark.parametrize(
    ("steps", "field"),
    [
        ({"amount_step": D("0.000000001")}, "amount_step"),  # BTC has 8 decimals
        ({"price_step": D("0.001"), "amount_step": D("0.0001")}, "price_step"),
        ({"min_notional": D("0.0000001")}, "min_notional"),  # USDT has 6
    ],
)
@pytest.mark.reliability("number-abuse")
def test_a_market_must_fit_its_tokens_units(btc, usdt, steps, field):
    options = {"price_step": D("0.01"), "amount_step": D("0.0001"), **steps}

    with pytest.raises(ValidationError) as refused:
        market_create(base=btc, quote=usdt, **options)

    assert field in refused.value.message_dict


def test_a_market_trades_two_different_tokens(btc):
    with pytest.raises(ValidationError):
        market_create(base=btc, quote=btc, price_step=D(1), amount_step=D(1))
