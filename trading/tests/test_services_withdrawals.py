"""Withdrawals ended by their owner or by staff, the daily limit per token,
and tokens that are not listed."""

import json
import time
from datetime import UTC, timedelta
from decimal import Decimal as D

import pytest
from django.utils import timezone

from tests.factories import balance, fund
from trading.exceptions import (
    InsufficientBalance,
    TokenNotListed,
    WithdrawalLimitExceeded,
    WithdrawalNotFound,
    WithdrawalNotPending,
    WithdrawalNotProcessing,
)
from trading.invariants import ledger_problems
from trading.models import LedgerEntry, LedgerTransaction, Withdrawal
from trading.services import (
    withdrawal_approve,
    withdrawal_cancel,
    withdrawal_process_start,
    withdrawal_reject,
    withdrawal_request,
)

pytestmark = pytest.mark.django_db

Kind = LedgerTransaction.Kind


def request(user, token, amount: str, reference: str = "w") -> Withdrawal:
    return withdrawal_request(
        user=user, token=token, amount=D(amount), address="bc1q", reference=reference
    )


def limit(token, amount: str | None) -> None:
    token.withdrawal_daily_limit = None if amount is None else D(amount)
    token.save(update_fields=["withdrawal_daily_limit"])


def sent(*, withdrawal: Withdrawal, staff) -> Withdrawal:
    """Staff start sending the withdrawal, send it, and approve it."""
    withdrawal_process_start(withdrawal=withdrawal, staff=staff)
    return withdrawal_approve(withdrawal=withdrawal, staff=staff)


def ledger_kinds(withdrawal) -> list[str]:
    return list(
        LedgerTransaction.objects.filter(withdrawal=withdrawal)
        .order_by("pk")
        .values_list("kind", flat=True)
    )


# -- Cancel ---------------------------------------------------------------------


def test_cancelling_releases_the_locked_amount_through_the_ledger(alice, btc):
    fund(alice, btc, "5")
    withdrawal = request(alice, btc, "2")

    cancelled, did_cancel = withdrawal_cancel(user=alice, withdrawal=withdrawal)

    assert did_cancel is True
    assert cancelled.status == Withdrawal.Status.CANCELLED
    assert cancelled.decided_at is not None
    assert cancelled.decided_by == alice
    assert balance(alice, btc) == (D(5), D(0))
    assert ledger_kinds(withdrawal) == [Kind.WITHDRAWAL_REQUEST, Kind.WITHDRAWAL_CANCEL]
    assert sorted(
        LedgerEntry.objects.filter(
            transaction__withdrawal=withdrawal,
            transaction__kind=Kind.WITHDRAWAL_CANCEL,
        ).values_list("account", "user_id", "amount")
    ) == [("user_available", alice.pk, D(2)), ("user_locked", alice.pk, D(-2))]


@pytest.mark.reliability("race-cancel")
def test_cancelling_twice_returns_the_cancelled_withdrawal_and_releases_once(
    alice, btc
):
    fund(alice, btc, "5")
    withdrawal = request(alice, btc, "2")
    request(alice, btc, "1", reference="other")  # stays locked
    first, first_cancelled = withdrawal_cancel(user=alice, withdrawal=withdrawal)

    again, again_cancelled = withdrawal_cancel(user=alice, withdrawal=withdrawal)

    assert (first_cancelled, again_cancelled) == (True, False)
    assert again.pk == first.pk
    assert (again.status, again.decided_at) == (first.status, first.decided_at)
    assert balance(alice, btc) == (D(4), D(1))
    assert ledger_kinds(withdrawal).count(Kind.WITHDRAWAL_CANCEL) == 1


@pytest.mark.parametrize("decide", [sent, withdrawal_reject])
def test_a_decided_withdrawal_cannot_be_cancelled(alice, btc, staff, decide):
    fund(alice, btc, "5")
    withdrawal = request(alice, btc, "2")
    decide(withdrawal=withdrawal, staff=staff)
    after_decision = balance(alice, btc)

    with pytest.raises(WithdrawalNotPending, match="already"):
        withdrawal_cancel(user=alice, withdrawal=withdrawal)

    withdrawal.refresh_from_db()
    assert withdrawal.decided_by == staff
    assert balance(alice, btc) == after_decision


@pytest.mark.parametrize("decide", [withdrawal_approve, withdrawal_reject])
@pytest.mark.reliability("race-cancel")
def test_staff_cannot_decide_a_cancelled_withdrawal(alice, btc, staff, decide):
    fund(alice, btc, "5")
    withdrawal = request(alice, btc, "2")
    withdrawal_cancel(user=alice, withdrawal=withdrawal)

    with pytest.raises(WithdrawalNotPending, match="already cancelled"):
        decide(withdrawal=withdrawal, staff=staff)

    assert balance(alice, btc) == (D(5), D(0))


@pytest.mark.reliability("access-by-id")
def test_only_the_owner_can_cancel(alice, bob, btc):
    fund(alice, btc, "5")
    withdrawal = request(alice, btc, "2")

    with pytest.raises(WithdrawalNotFound):
        withdrawal_cancel(user=bob, withdrawal=withdrawal)

    withdrawal.refresh_from_db()
    assert withdrawal.status == Withdrawal.Status.PENDING
    assert balance(alice, btc) == (D(3), D(2))


# -- Being sent: staff start sending before they send ----------------------------


def test_a_withdrawal_being_sent_cannot_be_cancelled_and_stays_locked(
    alice, btc, staff
):
    fund(alice, btc, "5")
    withdrawal = request(alice, btc, "2")
    withdrawal_process_start(withdrawal=withdrawal, staff=staff)

    with pytest.raises(WithdrawalNotPending) as refused:
        withdrawal_cancel(user=alice, withdrawal=withdrawal)

    assert refused.value.code == "withdrawal_not_pending"
    assert refused.value.message == (
        "Withdrawal 'w' can no longer be cancelled: staff are sending the coins now."
    )
    withdrawal.refresh_from_db()
    assert (withdrawal.status, withdrawal.processing_by, withdrawal.decided_by) == (
        Withdrawal.Status.PROCESSING,
        staff,
        None,
    )
    assert withdrawal.processing_at is not None and withdrawal.decided_at is None
    assert balance(alice, btc) == (D(3), D(2))
    assert ledger_kinds(withdrawal) == [Kind.WITHDRAWAL_REQUEST]
    assert ledger_problems() == []


def test_a_pending_withdrawal_is_approved_only_once_staff_start_sending_it(
    alice, btc, staff
):
    fund(alice, btc, "5")
    withdrawal = request(alice, btc, "2")

    with pytest.raises(WithdrawalNotProcessing) as refused:
        withdrawal_approve(withdrawal=withdrawal, staff=staff)

    assert "start sending it first" in refused.value.message
    withdrawal.refresh_from_db()
    assert withdrawal.status == Withdrawal.Status.PENDING
    assert balance(alice, btc) == (D(3), D(2))

    withdrawal_process_start(withdrawal=withdrawal, staff=staff)
    approved = withdrawal_approve(withdrawal=withdrawal, staff=staff)

    assert approved.status == Withdrawal.Status.APPROVED
    assert balance(alice, btc) == (D(3), D(0))
    assert ledger_kinds(withdrawal) == [
        Kind.WITHDRAWAL_REQUEST,
        Kind.WITHDRAWAL_APPROVE,
    ]


def test_rejecting_a_withdrawal_being_sent_releases_the_funds(alice, btc, staff):
    fund(alice, btc, "5")
    withdrawal = request(alice, btc, "2")
    withdrawal_process_start(withdrawal=withdrawal, staff=staff)

    rejected = withdrawal_reject(
        withdrawal=withdrawal, staff=staff, reason="The node refused the address."
    )

    assert (rejected.status, rejected.reason) == (
        Withdrawal.Status.REJECTED,
        "The node refused the address.",
    )
    assert balance(alice, btc) == (D(5), D(0))
    assert ledger_kinds(withdrawal) == [Kind.WITHDRAWAL_REQUEST, Kind.WITHDRAWAL_REJECT]


@pytest.fixture
def other(django_user_model):
    """Another staff member."""
    return django_user_model.objects.create_superuser("clerk", password="x-1-secret")


def test_only_one_staff_member_starts_sending_a_withdrawal(alice, btc, staff, other):
    fund(alice, btc, "5")
    withdrawal = request(alice, btc, "2")
    withdrawal_process_start(withdrawal=withdrawal, staff=staff)

    with pytest.raises(WithdrawalNotPending) as refused:
        withdrawal_process_start(withdrawal=withdrawal, staff=other)

    assert refused.value.message.startswith(
        "Withdrawal 'w' is already being sent by root (since "
    )
    assert refused.value.message.endswith("UTC): only they send it.")
    withdrawal.refresh_from_db()
    assert withdrawal.processing_by == staff
    assert balance(alice, btc) == (D(3), D(2))


@pytest.mark.parametrize("decide", [withdrawal_approve, withdrawal_reject])
def test_only_who_sends_a_withdrawal_approves_or_rejects_it(
    alice, btc, staff, other, decide
):
    # The other had opened the confirmation while it was still pending.
    fund(alice, btc, "5")
    withdrawal = request(alice, btc, "2")
    withdrawal_process_start(withdrawal=withdrawal, staff=staff)

    with pytest.raises(WithdrawalNotPending) as refused:
        decide(withdrawal=withdrawal, staff=other)

    assert refused.value.message.startswith("Withdrawal 'w' is being sent by root")
    assert refused.value.message.endswith("UTC): only they approve or reject it.")
    withdrawal.refresh_from_db()
    assert withdrawal.status == Withdrawal.Status.PROCESSING
    assert balance(alice, btc) == (D(3), D(2))
    assert decide(withdrawal=withdrawal, staff=staff).decided_by == staff


@pytest.mark.parametrize("end", ["approve", "reject", "cancel"])
def test_an_ended_withdrawal_cannot_start_being_sent(alice, btc, staff, end):
    fund(alice, btc, "5")
    withdrawal = request(alice, btc, "2")
    if end == "approve":
        sent(withdrawal=withdrawal, staff=staff)
    elif end == "reject":
        withdrawal_reject(withdrawal=withdrawal, staff=staff)
    else:
        withdrawal_cancel(user=alice, withdrawal=withdrawal)
    after = balance(alice, btc)

    with pytest.raises(WithdrawalNotPending, match="is already"):
        withdrawal_process_start(withdrawal=withdrawal, staff=staff)

    assert balance(alice, btc) == after


# -- Decisions record who made them ---------------------------------------------


def test_a_rejection_records_the_staff_member_and_the_reason(alice, btc, staff):
    fund(alice, btc, "5")
    withdrawal = request(alice, btc, "2")

    rejected = withdrawal_reject(
        withdrawal=withdrawal, staff=staff, reason="  Address is sanctioned. "
    )

    rejected.refresh_from_db()
    assert (rejected.status, rejected.decided_by, rejected.reason) == (
        Withdrawal.Status.REJECTED,
        staff,
        "Address is sanctioned.",
    )


def test_an_approval_records_the_staff_member(alice, btc, staff):
    fund(alice, btc, "5")

    approved = sent(withdrawal=request(alice, btc, "2"), staff=staff)

    approved.refresh_from_db()
    assert (approved.status, approved.processing_by, approved.decided_by) == (
        Withdrawal.Status.APPROVED,
        staff,
        staff,
    )


# -- Daily limit ----------------------------------------------------------------


def test_without_a_limit_any_amount_the_balance_covers_goes(alice, btc):
    fund(alice, btc, "1000")

    request(alice, btc, "999")

    assert balance(alice, btc) == (D(1), D(999))


@pytest.mark.reliability("overdraw")
def test_requests_up_to_the_daily_limit_go_and_the_next_is_refused_in_words(alice, btc):
    limit(btc, "5")
    fund(alice, btc, "100")
    request(alice, btc, "2", reference="a")
    request(alice, btc, "3", reference="b")  # exactly the limit

    with pytest.raises(WithdrawalLimitExceeded) as refused:
        request(alice, btc, "0.00000001", reference="c")

    tomorrow = (timezone.now() + timedelta(days=1)).astimezone(UTC)
    assert refused.value.code == "withdrawal_limit_exceeded"
    assert refused.value.message == (
        "You may withdraw at most 5 BTC a day; 0 BTC is left today. The limit "
        f"resets at {tomorrow:%Y-%m-%d} 00:00 UTC."
    )
    assert balance(alice, btc) == (D(95), D(5))
    assert Withdrawal.objects.count() == 2


def test_the_refusal_says_what_is_left_today(alice, btc):
    limit(btc, "5")
    fund(alice, btc, "100")
    request(alice, btc, "3.5", reference="a")

    with pytest.raises(WithdrawalLimitExceeded, match=r"1\.5 BTC is left today"):
        request(alice, btc, "2", reference="b")


def test_rejected_and_cancelled_withdrawals_do_not_count_approved_ones_do(
    alice, btc, staff
):
    limit(btc, "5")
    fund(alice, btc, "100")
    withdrawal_reject(withdrawal=request(alice, btc, "5", reference="a"), staff=staff)
    withdrawal_cancel(user=alice, withdrawal=request(alice, btc, "5", reference="b"))
    sent(withdrawal=request(alice, btc, "4", reference="c"), staff=staff)

    request(alice, btc, "1", reference="d")
    with pytest.raises(WithdrawalLimitExceeded):
        request(alice, btc, "0.1", reference="e")


def test_withdrawals_being_sent_count_towards_the_limit(alice, btc, staff):
    limit(btc, "5")
    fund(alice, btc, "100")
    withdrawal_process_start(
        withdrawal=request(alice, btc, "4", reference="a"), staff=staff
    )

    with pytest.raises(WithdrawalLimitExceeded, match="1 BTC is left today"):
        request(alice, btc, "2", reference="b")


def test_the_limit_is_per_utc_day(alice, btc):
    limit(btc, "5")
    fund(alice, btc, "100")
    yesterday = request(alice, btc, "5", reference="a")
    midnight = (
        timezone.now()
        .astimezone(UTC)
        .replace(hour=0, minute=0, second=0, microsecond=0)
    )
    Withdrawal.objects.filter(pk=yesterday.pk).update(
        created_at=midnight - timedelta(microseconds=1)
    )

    request(alice, btc, "5", reference="b")

    assert balance(alice, btc) == (D(90), D(10))


def test_the_limit_is_per_user_and_per_token(alice, bob, btc, usdt):
    limit(btc, "1")
    for user in (alice, bob):
        fund(user, btc, "10")
        fund(user, usdt, "10")

    request(alice, btc, "1", reference="a")
    request(bob, btc, "1", reference="a")
    request(alice, usdt, "10", reference="b")

    assert Withdrawal.objects.count() == 3


def test_a_zero_limit_stops_withdrawals_of_the_token(alice, btc):
    limit(btc, "0")
    fund(alice, btc, "1")

    with pytest.raises(WithdrawalLimitExceeded) as refused:
        request(alice, btc, "1")

    assert refused.value.code == "withdrawal_limit_exceeded"
    assert refused.value.message == "Withdrawals of BTC are suspended."
    assert balance(alice, btc) == (D(1), D(0))


def test_a_repeated_request_is_returned_even_when_the_limit_is_used_up(alice, btc):
    limit(btc, "2")
    fund(alice, btc, "10")
    first = request(alice, btc, "2", reference="same")

    assert request(alice, btc, "2", reference="same").pk == first.pk
    assert balance(alice, btc) == (D(8), D(2))


def test_the_limit_read_is_the_current_one_not_the_callers_copy(alice, btc):
    fund(alice, btc, "10")
    stale = type(btc).objects.get(pk=btc.pk)
    limit(btc, "1")

    with pytest.raises(WithdrawalLimitExceeded):
        request(alice, stale, "2")


def test_the_balance_still_applies_under_the_limit(alice, btc):
    limit(btc, "100")
    fund(alice, btc, "1")

    with pytest.raises(InsufficientBalance):
        request(alice, btc, "2")


# -- Tokens that are not listed ---------------------------------------------------


def delist(token) -> None:
    """Staff untick "active"; the caller's copy of the token is left as it was."""
    type(token).objects.filter(pk=token.pk).update(is_active=False)


def test_a_token_delisted_after_the_caller_read_it_cannot_be_withdrawn(alice, btc):
    fund(alice, btc, "5")
    entries = LedgerEntry.objects.count()
    delist(btc)

    with pytest.raises(TokenNotListed) as refused:
        request(alice, btc, "1")

    assert refused.value.code == "token_not_listed"
    assert refused.value.message == "BTC is not listed now: it cannot be withdrawn."
    assert not Withdrawal.objects.exists()
    assert LedgerEntry.objects.count() == entries
    assert balance(alice, btc) == (D(5), D(0))


def test_a_repeated_request_is_returned_after_its_token_is_delisted(alice, btc):
    fund(alice, btc, "5")
    first = request(alice, btc, "2", reference="same")
    delist(btc)

    assert request(alice, btc, "2", reference="same").pk == first.pk
    with pytest.raises(TokenNotListed):
        request(alice, btc, "1", reference="new")
    assert balance(alice, btc) == (D(3), D(2))


def test_the_listing_read_is_the_current_one_not_the_callers_copy(alice, btc):
    fund(alice, btc, "5")
    btc.is_active = False  # a copy read before staff listed the token again

    request(alice, btc, "1")

    assert balance(alice, btc) == (D(4), D(1))


# -- Live pages -----------------------------------------------------------------


def subscribed(redis_server, user):
    subscriber = redis_server.client().pubsub()
    subscriber.psubscribe(f"0:trading.user.{user.pk}.*")
    assert subscriber.get_message(timeout=5)["type"] == "psubscribe"
    return subscriber


def published(subscriber, *, seconds: float = 2) -> list[tuple[str, dict]]:
    """(channel, body) of what ``subscriber`` receives within ``seconds``."""
    messages = []
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        message = subscriber.get_message(timeout=0.1)
        if message and message["type"] == "pmessage":
            messages.append((message["channel"].decode(), json.loads(message["data"])))
    return messages


@pytest.mark.django_db(transaction=True)
def test_a_withdrawal_publishes_each_balance_it_changes_once_committed(
    settings, redis_server, alice, btc, staff
):
    settings.REDIS_URL = redis_server.url
    fund(alice, btc, "10")
    subscriber = subscribed(redis_server, alice)

    with pytest.raises(InsufficientBalance):
        request(alice, btc, "11", reference="too-much")  # rolled back
    withdrawal = request(alice, btc, "3")
    withdrawal_reject(withdrawal=withdrawal, staff=staff)

    messages = published(subscriber)
    subscriber.close()
    channel = f"0:trading.user.{alice.pk}.balances"
    assert [name for name, _ in messages] == [channel, channel]
    assert [body["balances"] for _, body in messages] == [
        [{"token_id": btc.pk, "available": "7", "locked": "3"}],
        [{"token_id": btc.pk, "available": "10", "locked": "0"}],
    ]


@pytest.mark.reliability("redis-down")
@pytest.mark.django_db(transaction=True)
def test_a_withdrawal_is_made_while_redis_does_not_answer(
    settings, redis_server, alice, btc
):
    settings.REDIS_URL = redis_server.url
    settings.REDIS_TIMEOUT = 0.3
    fund(alice, btc, "10")
    redis_server.pause()
    try:
        started = time.monotonic()
        withdrawal = request(alice, btc, "3")
        took = time.monotonic() - started
    finally:
        redis_server.resume()

    assert withdrawal.status == Withdrawal.Status.PENDING
    assert balance(alice, btc) == (D("7"), D("3"))
    assert took < 2  # one REDIS_TIMEOUT at most
