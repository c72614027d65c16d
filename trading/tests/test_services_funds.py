"""Deposits and withdrawals: credited once, locked until decided."""

from decimal import Decimal as D

import pytest

from tests.factories import balance, fund
from trading.exceptions import (
    DuplicateReference,
    InsufficientBalance,
    InvalidAddress,
    InvalidAmount,
    InvalidReference,
    PrecisionTooHigh,
    WithdrawalNotPending,
)
from trading.models import Deposit, LedgerEntry, LedgerTransaction, Withdrawal
from trading.services import (
    deposit_credit,
    withdrawal_approve,
    withdrawal_process_start,
    withdrawal_reject,
    withdrawal_request,
)

pytestmark = pytest.mark.django_db


def entries_of(record_filter) -> list[tuple[str, int | None, D]]:
    return sorted(
        LedgerEntry.objects.filter(**record_filter).values_list(
            "account", "user_id", "amount"
        )
    )


def test_a_deposit_credits_the_available_balance_from_custody(alice, btc):
    deposit = deposit_credit(user=alice, token=btc, amount=D("1.5"), reference="tx-1")

    assert balance(alice, btc) == (D("1.5"), D(0))
    assert entries_of({"transaction__deposit": deposit}) == [
        ("custody", None, D("-1.5")),
        ("user_available", alice.pk, D("1.5")),
    ]


@pytest.mark.reliability("outcome-repeat")
def test_repeating_a_deposit_reference_credits_it_once(alice, btc):
    first = deposit_credit(user=alice, token=btc, amount=D("2"), reference="tx-1")
    again = deposit_credit(user=alice, token=btc, amount=D("2.0"), reference="tx-1")

    assert again.pk == first.pk
    assert Deposit.objects.count() == 1
    assert balance(alice, btc) == (D("2"), D(0))


@pytest.mark.parametrize("change", ["user", "amount", "token"])
def test_a_different_deposit_under_a_used_reference_is_refused(
    change, alice, bob, btc, usdt
):
    deposit_credit(user=alice, token=btc, amount=D("2"), reference="tx-1")
    details = {"user": alice, "token": btc, "amount": D("2")}
    details[change] = {"user": bob, "amount": D("3"), "token": usdt}[change]

    with pytest.raises(DuplicateReference) as refused:
        deposit_credit(**details, reference="tx-1")

    assert refused.value.code == "duplicate_reference"
    assert balance(alice, btc) == (D("2"), D(0))
    assert balance(bob, btc) == balance(alice, usdt) == (D(0), D(0))


@pytest.mark.parametrize(
    ("amount", "error"),
    [
        (D("0.000000001"), PrecisionTooHigh),  # BTC has 8 decimals
        (D("0"), InvalidAmount),
        (D("-1"), InvalidAmount),
        (D("NaN"), InvalidAmount),
        (D("Infinity"), InvalidAmount),
        (1.5, InvalidAmount),
        ("1.5", InvalidAmount),
        (D("1E+18"), InvalidAmount),
    ],
)
@pytest.mark.reliability("number-abuse")
def test_a_deposit_with_a_bad_amount_is_refused_not_rounded(alice, btc, amount, error):
    with pytest.raises(error):
        deposit_credit(user=alice, token=btc, amount=amount, reference="tx-1")

    assert not Deposit.objects.exists()
    assert balance(alice, btc) == (D(0), D(0))


@pytest.mark.parametrize("reference", ["", "   ", "x" * 101, None])
def test_a_deposit_needs_a_reference(alice, btc, reference):
    with pytest.raises(InvalidReference):
        deposit_credit(user=alice, token=btc, amount=D(1), reference=reference)


def test_trailing_zeros_beyond_the_token_decimals_are_not_extra_precision(alice, btc):
    deposit_credit(user=alice, token=btc, amount=D("1.1000000000"), reference="tx-1")

    assert balance(alice, btc) == (D("1.1"), D(0))


def test_a_withdrawal_request_locks_the_amount_until_decided(alice, btc):
    fund(alice, btc, "5")

    withdrawal = withdrawal_request(
        user=alice, token=btc, amount=D("2"), address="bc1qxyz", reference="w-1"
    )

    assert withdrawal.status == Withdrawal.Status.PENDING
    assert balance(alice, btc) == (D("3"), D("2"))


@pytest.mark.reliability("overdraw")
def test_a_withdrawal_above_the_available_balance_is_refused(alice, btc):
    fund(alice, btc, "1")

    with pytest.raises(InsufficientBalance) as refused:
        withdrawal_request(
            user=alice, token=btc, amount=D("1.00000001"), address="a", reference="w"
        )

    assert "1.00000001" in refused.value.message
    assert not Withdrawal.objects.exists()
    assert balance(alice, btc) == (D("1"), D(0))


@pytest.mark.reliability("overdraw")
def test_locked_funds_cannot_be_withdrawn_twice(alice, btc):
    fund(alice, btc, "1")
    withdrawal_request(user=alice, token=btc, amount=D(1), address="a", reference="w1")

    with pytest.raises(InsufficientBalance):
        withdrawal_request(
            user=alice, token=btc, amount=D(1), address="a", reference="w2"
        )


@pytest.mark.reliability("outcome-repeat")
def test_repeating_a_withdrawal_request_counts_once(alice, btc):
    fund(alice, btc, "5")
    first = withdrawal_request(
        user=alice, token=btc, amount=D(2), address="addr", reference="w-1"
    )
    again = withdrawal_request(
        user=alice, token=btc, amount=D(2), address="addr", reference="w-1"
    )

    assert again.pk == first.pk
    assert balance(alice, btc) == (D(3), D(2))


@pytest.mark.reliability("outcome-repeat")
def test_a_different_withdrawal_under_a_used_reference_is_refused(alice, btc):
    fund(alice, btc, "5")
    withdrawal_request(user=alice, token=btc, amount=D(2), address="a", reference="w")

    with pytest.raises(DuplicateReference):
        withdrawal_request(
            user=alice, token=btc, amount=D(2), address="b", reference="w"
        )

    assert balance(alice, btc) == (D(3), D(2))


def test_withdrawal_references_are_per_user(alice, bob, btc):
    fund(alice, btc, "1")
    fund(bob, btc, "1")

    withdrawal_request(user=alice, token=btc, amount=D(1), address="a", reference="w")
    withdrawal_request(user=bob, token=btc, amount=D(1), address="a", reference="w")

    assert Withdrawal.objects.count() == 2


@pytest.mark.parametrize("address", ["", "  ", "x" * 256, None])
def test_a_withdrawal_needs_an_address(alice, btc, address):
    fund(alice, btc, "1")

    with pytest.raises(InvalidAddress):
        withdrawal_request(
            user=alice, token=btc, amount=D(1), address=address, reference="w"
        )

    assert balance(alice, btc) == (D(1), D(0))


def test_approving_a_withdrawal_sends_the_locked_amount_to_custody(alice, btc, staff):
    fund(alice, btc, "5")
    withdrawal = withdrawal_request(
        user=alice, token=btc, amount=D(2), address="a", reference="w"
    )

    withdrawal_process_start(withdrawal=withdrawal, staff=staff)
    approved = withdrawal_approve(withdrawal=withdrawal, staff=staff)

    assert approved.status == Withdrawal.Status.APPROVED
    assert approved.decided_at is not None
    assert balance(alice, btc) == (D(3), D(0))
    assert entries_of(
        {
            "transaction__withdrawal": withdrawal,
            "transaction__kind": LedgerTransaction.Kind.WITHDRAWAL_APPROVE,
        }
    ) == [("custody", None, D(2)), ("user_locked", alice.pk, D(-2))]


def test_rejecting_a_withdrawal_releases_the_funds(alice, btc, staff):
    fund(alice, btc, "5")
    withdrawal = withdrawal_request(
        user=alice, token=btc, amount=D(2), address="a", reference="w"
    )

    rejected = withdrawal_reject(withdrawal=withdrawal, staff=staff)

    assert rejected.status == Withdrawal.Status.REJECTED
    assert balance(alice, btc) == (D(5), D(0))


@pytest.mark.parametrize(
    ("first", "second"),
    [
        (withdrawal_approve, withdrawal_approve),
        (withdrawal_approve, withdrawal_reject),
        (withdrawal_reject, withdrawal_approve),
        (withdrawal_reject, withdrawal_reject),
    ],
)
def test_a_withdrawal_is_decided_only_once(alice, btc, staff, first, second):
    fund(alice, btc, "5")
    withdrawal = withdrawal_request(
        user=alice, token=btc, amount=D(2), address="a", reference="w"
    )
    withdrawal_process_start(withdrawal=withdrawal, staff=staff)
    first(withdrawal=withdrawal, staff=staff)
    after_first = balance(alice, btc)

    with pytest.raises(WithdrawalNotPending):
        second(withdrawal=withdrawal, staff=staff)

    assert balance(alice, btc) == after_first
