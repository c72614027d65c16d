"""ledger_problems and check_ledger find each kind of inconsistency.

Each test breaks one thing behind the services' back, checks that it is
reported, then puts it back (the autouse fixture checks the ledger after
every test).
"""

from contextlib import contextmanager
from decimal import Decimal as D
from io import StringIO

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from tests.factories import buy, fund, sell
from trading.invariants import ledger_problems
from trading.models import (
    Balance,
    Deposit,
    LedgerEntry,
    LedgerTransaction,
    Order,
    Trade,
)
from trading.services import withdrawal_request

pytestmark = pytest.mark.django_db


@pytest.fixture
def trading_day(market, alice, bob, btc, usdt):
    """Deposits, a pending withdrawal, trades with fees and resting orders."""
    for user in (alice, bob):
        fund(user, btc, "10")
        fund(user, usdt, "10000")
    withdrawal_request(user=alice, token=btc, amount=D(1), address="a", reference="w")
    sell(alice, market, "1", "100")
    buy(bob, market, "0.4", "100")
    buy(bob, market, "2", "99")
    assert ledger_problems() == []


@contextmanager
def changed(queryset, **values):
    """Update rows behind the services' back, and restore them afterwards."""
    fields = list(values)
    before = list(queryset.values("pk", *fields))
    queryset.update(**values)
    yield
    model = queryset.model
    for row in before:
        model.objects.filter(pk=row.pop("pk")).update(**row)


def test_a_consistent_ledger_passes_the_command(trading_day):
    out = StringIO()

    call_command("check_ledger", stdout=out)

    assert "consistent" in out.getvalue()


@pytest.mark.reliability("ledger-tampered")
def test_a_balance_row_that_disagrees_with_the_ledger_is_reported(
    trading_day, alice, usdt
):
    row = Balance.objects.filter(user=alice, token=usdt)
    with changed(row, available=D("10099.91")):
        problems = ledger_problems()

    assert any(
        f"user {alice.pk}'s user_available entries" in problem and "10099.91" in problem
        for problem in problems
    ), problems
    assert any("deposits - withdrawals" in problem for problem in problems)


@pytest.mark.reliability("ledger-tampered")
def test_the_command_lists_problems_and_fails(trading_day, alice, usdt):
    err = StringIO()
    row = Balance.objects.filter(user=alice, token=usdt)

    with changed(row, available=D("1")), pytest.raises(CommandError) as failed:
        call_command("check_ledger", stderr=err)

    assert "problem" in str(failed.value)
    assert "USDT: user" in err.getvalue()


@pytest.mark.reliability("ledger-tampered")
def test_a_transaction_that_does_not_sum_to_zero_is_reported(trading_day, bob, btc):
    record = LedgerTransaction.objects.create(kind=LedgerTransaction.Kind.DEPOSIT)
    stray = LedgerEntry.objects.create(
        transaction=record,
        token=btc,
        account=LedgerEntry.Account.FEES,
        amount=D("0.5"),
    )

    problems = ledger_problems()
    stray.delete()
    record_id = record.pk
    record.delete()

    assert f"BTC: ledger transaction {record_id} sums to 0.5, not zero." in problems
    assert any("users hold" in problem for problem in problems)


@pytest.mark.reliability("ledger-tampered")
def test_locked_funds_no_order_or_withdrawal_reserves_are_reported(
    trading_day, bob, usdt
):
    resting = Order.objects.filter(user=bob, status="open")
    with changed(resting, locked=D("1")):
        problems = ledger_problems()

    assert any("reserves 1, expected 198." in problem for problem in problems)
    assert any(
        "locked, but live orders, queued amends and withdrawals pending or being "
        "sent reserve" in problem
        for problem in problems
    )


@pytest.mark.reliability("ledger-tampered")
def test_a_deposit_record_without_its_ledger_entries_is_reported(trading_day, btc):
    deposit = Deposit.objects.filter(token=btc).first()
    with changed(Deposit.objects.filter(pk=deposit.pk), amount=D("11")):
        problems = ledger_problems()

    assert any("the custody account is" in problem for problem in problems)


@pytest.mark.reliability("ledger-tampered")
def test_an_order_whose_fills_disagree_with_its_trades_is_reported(trading_day):
    trade = Trade.objects.get()
    with changed(Trade.objects.filter(pk=trade.pk), quantity=D("0.3")):
        problems = ledger_problems()

    assert any(f"Order #{trade.maker_order_id} says" in problem for problem in problems)


@pytest.mark.reliability("ledger-tampered")
def test_a_crossed_book_is_reported(trading_day, market, bob):
    bid = Order.objects.get(user=bob, status="open")
    with changed(Order.objects.filter(pk=bid.pk), price=D("101")):
        problems = ledger_problems()

    assert any("book is crossed" in problem for problem in problems)
