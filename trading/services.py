"""Writes of the trading app: deposits, withdrawals, addresses, markets.

Orders are placed, cancelled and amended through ``trading.orders`` (the
request side) and matched by ``trading.matcher``; the rules below are the
contract of both, extended by ``trading.engine``'s docstring.

Every function here is keyword-only, owns its transaction
(``transaction.atomic(durable=True)``), takes its row locks through
``trading.locks`` in the global order, and records each balance change as
ledger entries that sum to zero per token; the balances it changed are
published for live pages once it commits (``trading.events``). Refusals
raise ``trading.exceptions.TradingError`` subclasses and change nothing.

Rules
-----
Amounts
    Every amount is a ``Decimal``; a float, NaN, zero or negative amount is
    refused (``InvalidAmount``), and so is one with more precision than
    allowed (``PrecisionTooHigh``): a price must be a multiple of the
    market's ``price_step``, a quantity of its ``amount_step``, a deposit or
    withdrawal of the token's smallest unit. Nothing is rounded silently.
Fees
    Each side pays its fee in the token it receives: the buyer in base, the
    seller in quote, at the market's maker or taker rate. The fee is rounded
    *up* to the token's smallest unit, so credits are rounded down and a
    positive fee below one unit is charged as one unit (a zero rate charges
    nothing). Markets are configured so that every notional (price x
    quantity) is a whole number of quote units, so the buyer pays exactly what
    the seller is credited before fees; fees are the only rounding.
Matching
    Price-time priority; a trade happens at the resting (maker) order's price.
    An order's time is when the matcher takes its command (its sequence),
    which follows acceptance order. A limit buy locks price x quantity of
    quote and gets back what price improvement saves; a sell locks its
    quantity of base.
Market orders
    Never rest: immediate-or-cancel (the default ``GTC`` and ``IOC`` mean the
    same for them) or fill-or-kill. A market buy is by quote amount to spend,
    or by base quantity with a protection price it never trades above; it
    reserves the amount, or quantity x protection price, and gets back what it
    does not spend (``trading.orders``). The market's ``min_notional`` applies
    to the value it would trade. Whatever the book cannot fill is cancelled.
Self-trade prevention
    "Cancel newest" by default: when the next resting order in priority is
    the user's own, the incoming order's remainder is cancelled (reason
    ``self_trade``) and the resting order is left alone; fills before it
    stand. Other modes per order: see ``trading.engine``.
Post-only, IOC, FOK
    A post-only order (GTC limit only) is refused whole if any resting order
    crosses its price. An IOC order's unfilled remainder is cancelled. A FOK
    order is refused whole unless it fills entirely at once (self-trade
    prevention counts as not filled).
Client order ids, and the order of the checks
    See ``trading.orders``.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal

from django.conf import settings
from django.contrib.auth.base_user import AbstractBaseUser
from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.utils import timezone

from accounts.locks import user_serialize
from core.locks import unique_value_serialize
from tokens.models import Token
from trading import events
from trading.addresses import (
    address_canonical,
    address_networks,
    memo_canonical,
    memo_name_in_text,
    text_character_problem,
)
from trading.exceptions import (
    AddressAlreadySaved,
    AddressNotAllowed,
    DuplicateReference,
    IdentityNotVerified,
    InsufficientBalance,
    InvalidAddress,
    InvalidAmount,
    InvalidReference,
    MemoRequired,
    PrecisionTooHigh,
    TokenNotListed,
    WithdrawalLimitExceeded,
    WithdrawalNotFound,
    WithdrawalNotPending,
    WithdrawalNotProcessing,
)
from trading.locks import balances_lock, withdrawal_lock
from trading.models import (
    CLIENT_ID,
    AddressFormat,
    Balance,
    Deposit,
    LedgerEntry,
    LedgerTransaction,
    Market,
    SavedAddress,
    Withdrawal,
    WithdrawalAddressPolicy,
)
from trading.money import (
    AMOUNT_LIMIT,
    ZERO,
    exact,
    grouped,
    positive_amount_check,
    unit,
)
from verification.models import IdentityVerification
from verification.selectors import identity_verification_state

Account = LedgerEntry.Account


# -- Ledger journal ---------------------------------------------------------


@dataclass(frozen=True)
class _Account:
    kind: str
    user_id: int | None = None


_FEES = _Account(Account.FEES)
_CUSTODY = _Account(Account.CUSTODY)


def _available(user_id: int) -> _Account:
    return _Account(Account.USER_AVAILABLE, user_id)


def _locked(user_id: int) -> _Account:
    return _Account(Account.USER_LOCKED, user_id)


class _Journal:
    """Collects the moves of one service call, then writes them at once.

    Each move is two ledger entries (minus from one account, plus to another)
    and, for user accounts, a change of the locked balance row. Balance rows
    are written with absolute values computed here: they are locked, and it
    keeps SQLite's floating-point arithmetic away from money.
    """

    def __init__(self, *, balances: dict[tuple[int, int], Balance]) -> None:
        self.balances = balances
        # (token_id, account, user_id, amount) of each LedgerEntry to write
        self.entries: list[tuple[int, str, int | None, Decimal]] = []
        self.touched: dict[int, Balance] = {}

    def move(
        self, *, token_id: int, amount: Decimal, source: _Account, target: _Account
    ) -> None:
        if amount == 0:
            return
        if amount < 0:
            raise ValueError(f"A move is positive, got {amount}.")
        self._post(source, token_id, -amount)
        self._post(target, token_id, amount)

    def _post(self, account: _Account, token_id: int, amount: Decimal) -> None:
        if account.kind in LedgerEntry.USER_ACCOUNTS:
            balance = self.balances[(account.user_id, token_id)]
            if account.kind == Account.USER_AVAILABLE:
                balance.available += amount
            else:
                balance.locked += amount
            if balance.available < 0 or balance.locked < 0:
                # Callers check what a user can spend before moving it; this
                # is a bug, and the transaction must not commit.
                raise RuntimeError(f"Balance {balance.pk} would go negative.")
            self.touched[balance.pk] = balance
        self.entries.append((token_id, account.kind, account.user_id, amount))

    def write(self, *, kind: str, **links: object) -> LedgerTransaction | None:
        if not self.entries:
            return None
        record = LedgerTransaction.objects.create(kind=kind, **links)
        LedgerEntry.objects.bulk_create(
            [
                LedgerEntry(
                    transaction=record,
                    token_id=token_id,
                    account=account,
                    user_id=user_id,
                    amount=amount,
                )
                for token_id, account, user_id, amount in self.entries
            ]
        )
        Balance.objects.bulk_update(
            list(self.touched.values()), ["available", "locked", "updated_at"]
        )
        rows = [
            (row.user_id, row.token_id, row.available, row.locked)
            for row in self.touched.values()
        ]
        # Live pages show the new balances once, and only if, they commit.
        transaction.on_commit(functools.partial(events.balances_publish, rows=rows))
        return record


# -- Input checks -----------------------------------------------------------


def _step_check(value: Decimal, *, name: str, step: Decimal) -> None:
    if value % step:
        raise PrecisionTooHigh(
            f"The {name} {grouped(value)} has too much precision: "
            f"it must be a multiple of {grouped(step)}."
        )


def _amount_check(value: object, *, name: str, step: Decimal) -> Decimal:
    amount = positive_amount_check(value, name=name)
    _step_check(amount, name=name, step=step)
    return amount


def _reference_check(reference: object) -> str:
    if not isinstance(reference, str) or not 0 < len(reference.strip()) <= 100:
        raise InvalidReference()
    return reference.strip()


def _balance_require(balance: Balance, amount: Decimal, token: Token) -> None:
    if balance.available < amount:
        raise InsufficientBalance(
            f"This needs {grouped(amount)} {token.symbol}; "
            f"{grouped(balance.available)} is available."
        )


def _token_listed_check(*, token: Token, refusal: str) -> None:
    """Refuse a token staff have delisted (``Token.is_active`` off), as its
    markets refuse orders (``MarketClosed``)."""
    # Read now, not from the caller's copy: staff may change it at any time.
    if not Token.objects.filter(pk=token.pk, is_active=True).exists():
        raise TokenNotListed(f"{token.symbol} is not listed now: {refusal}")


# -- Deposits and withdrawals -----------------------------------------------


def _deposit_same_or_raise(
    deposit: Deposit, *, user: AbstractBaseUser, token: Token, amount: Decimal
) -> Deposit:
    if (deposit.user_id, deposit.token_id, deposit.amount) == (
        user.pk,
        token.pk,
        amount,
    ):
        return deposit
    raise DuplicateReference(
        f"Deposit reference {deposit.reference!r} was already credited with "
        "different details."
    )


@exact
def deposit_credit(
    *, user: AbstractBaseUser, token: Token, amount: Decimal, reference: str
) -> Deposit:
    """Credit coins received outside the application (a staff action).

    Idempotent on ``reference``: repeating an identical credit returns the
    first deposit and credits nothing; a different credit under a used
    reference raises ``DuplicateReference``. A credit that would take the
    user's balance (available + locked) to ``AMOUNT_LIMIT`` or more raises
    ``InvalidAmount``.
    """
    deposit, _ = deposit_credit_or_get(
        user=user, token=token, amount=amount, reference=reference
    )
    return deposit


@exact
def deposit_credit_or_get(
    *, user: AbstractBaseUser, token: Token, amount: Decimal, reference: str
) -> tuple[Deposit, bool]:
    """``deposit_credit``, and whether this call credited the deposit (False:
    an identical repeat, the first one returned), even when the first and a
    repeat are sent at once."""
    amount = _amount_check(amount, name="amount", step=unit(token.decimals))
    reference = _reference_check(reference)
    try:
        with transaction.atomic(durable=True):
            existing = Deposit.objects.filter(reference=reference).first()
            if existing is not None:
                return _deposit_same_or_raise(
                    existing, user=user, token=token, amount=amount
                ), False
            deposit = Deposit.objects.create(
                user=user, token=token, amount=amount, reference=reference
            )
            balances = balances_lock(user_ids=[user.pk], token_ids=[token.pk])
            held = balances[(user.pk, token.pk)].total
            if held + amount >= AMOUNT_LIMIT:
                # An amount field holds less than 10^18: the balance row's
                # write would fail (PostgreSQL: numeric field overflow).
                raise InvalidAmount(
                    f"Nothing was credited: {grouped(amount)} {token.symbol} "
                    f"would take the balance to {grouped(held + amount)} "
                    f"{token.symbol}, and a balance holds less than "
                    f"{grouped(AMOUNT_LIMIT)}."
                )
            journal = _Journal(balances=balances)
            journal.move(
                token_id=token.pk,
                amount=amount,
                source=_CUSTODY,
                target=_available(user.pk),
            )
            journal.write(kind=LedgerTransaction.Kind.DEPOSIT, deposit=deposit)
            return deposit, True
    except IntegrityError:
        # A concurrent credit with the same reference committed first.
        existing = Deposit.objects.filter(reference=reference).first()
        if existing is None:
            raise
        return _deposit_same_or_raise(
            existing, user=user, token=token, amount=amount
        ), False


def _withdrawal_same_or_raise(
    withdrawal: Withdrawal,
    *,
    token: Token,
    amount: Decimal,
    address: str,
    network: str,
    memo: str | None,
) -> Withdrawal:
    # A request made before withdrawals recorded their network has none; one
    # made before memos has memo "", which a repeat without a memo matches.
    if (
        withdrawal.token_id,
        withdrawal.amount,
        withdrawal.address,
        withdrawal.memo,
    ) == (token.pk, amount, address, memo or "") and withdrawal.network in (
        "",
        network,
    ):
        return withdrawal
    raise DuplicateReference(
        f"Withdrawal reference {withdrawal.reference!r} is already used by a "
        "different request."
    )


@exact
def withdrawal_request(
    *,
    user: AbstractBaseUser,
    token: Token,
    amount: Decimal,
    address: str,
    reference: str,
    network: str = "",
    memo: str | None = None,
) -> Withdrawal:
    """Ask to send coins out; the amount stays locked until staff decide.

    The withdrawal records the network the address is for: the one the
    address fits among the token's address formats, or, if it fits several
    (an 0x address on two EVM chains), ``network``, which must then name one
    of them (``InvalidAddress`` otherwise).

    ``memo`` is the memo (destination tag) sent with the coins, "" for none,
    None for not said. A network whose format has a ``memo_name`` needs it
    said: None raises ``MemoRequired``, since a forgotten tag loses the coins
    at the recipient's exchange. A memo the network does not take or writes
    otherwise raises ``InvalidMemo``.

    ``reference`` is the user's idempotency key, unique per user: an identical
    repeat returns the first request, a different one raises
    ``DuplicateReference``. A token that is not listed now raises
    ``TokenNotListed`` (an identical repeat is still returned: it withdraws
    nothing more). A request that would take the user past the token's daily
    limit raises ``WithdrawalLimitExceeded``. With
    ``IDENTITY_REQUIRED_TO_WITHDRAW`` on, a user whose identity staff have not
    approved gets ``IdentityNotVerified`` (an identical repeat of an earlier
    request is still returned).
    """
    withdrawal, _ = withdrawal_request_or_get(
        user=user,
        token=token,
        amount=amount,
        address=address,
        reference=reference,
        network=network,
        memo=memo,
    )
    return withdrawal


@exact
def withdrawal_request_or_get(
    *,
    user: AbstractBaseUser,
    token: Token,
    amount: Decimal,
    address: str,
    reference: str,
    network: str = "",
    memo: str | None = None,
) -> tuple[Withdrawal, bool]:
    """``withdrawal_request``, and whether this call made the withdrawal
    (False: an identical repeat, the first one returned), even when the
    first and a repeat are sent at once."""
    amount = _amount_check(amount, name="amount", step=unit(token.decimals))
    reference = _reference_check(reference)
    if not CLIENT_ID.fullmatch(reference):
        raise InvalidReference(
            "A withdrawal reference has 1 to 100 characters: letters, digits and "
            '". _ : / -".'
        )
    address, network, address_format = _withdrawal_address_network(
        token=token, address=address, network=network
    )
    if memo is not None:
        memo = memo_canonical(
            token=token,
            memo=memo,
            formats=[] if address_format is None else [address_format],
        )
    try:
        with transaction.atomic(durable=True):
            existing = Withdrawal.objects.filter(user=user, reference=reference)
            if (found := existing.first()) is None:
                # Only for a new request: a repeat without a memo still finds
                # one made before memos were asked for.
                memo = _withdrawal_memo_said(address_format, memo=memo)
                if (refusal := withdrawal_identity_refusal(user=user)) is not None:
                    raise refusal
                _token_listed_check(token=token, refusal="it cannot be withdrawn.")
                _withdrawal_address_allowed_check(
                    user=user, token=token, address=address, memo=memo
                )
                balances = balances_lock(user_ids=[user.pk], token_ids=[token.pk])
                # A repeat sent at once waited for the first's lock: it finds
                # the first now, rather than a balance or a limit it used up.
                found = existing.first()
            if found is not None:
                return _withdrawal_same_or_raise(
                    found,
                    token=token,
                    amount=amount,
                    address=address,
                    network=network,
                    memo=memo,
                ), False
            _withdrawal_daily_limit_check(user=user, token=token, amount=amount)
            _balance_require(balances[(user.pk, token.pk)], amount, token)
            withdrawal = Withdrawal.objects.create(
                user=user,
                token=token,
                amount=amount,
                address=address,
                network=network,
                memo=memo,
                reference=reference,
            )
            journal = _Journal(balances=balances)
            journal.move(
                token_id=token.pk,
                amount=amount,
                source=_available(user.pk),
                target=_locked(user.pk),
            )
            journal.write(
                kind=LedgerTransaction.Kind.WITHDRAWAL_REQUEST, withdrawal=withdrawal
            )
            return withdrawal, True
    except IntegrityError:
        # The same reference, sent at once, committed first.
        found = Withdrawal.objects.filter(user=user, reference=reference).first()
        if found is None:
            raise
        return _withdrawal_same_or_raise(
            found,
            token=token,
            amount=amount,
            address=address,
            network=network,
            memo=memo,
        ), False


def _withdrawal_memo_said(
    address_format: AddressFormat | None, *, memo: str | None
) -> str:
    """The memo of a new withdrawal ("" for none), or ``MemoRequired`` when
    its network takes one and the user did not say whether there is one."""
    if memo is not None:
        return memo
    if address_format is None or not address_format.memo_name:
        return ""
    name = memo_name_in_text(address_format.memo_name)
    raise MemoRequired(
        f"{address_format.network} takes a {name} with each transaction: "
        f"exchanges and custodians usually need it to credit the coins to the "
        f"right customer, and without it they may be lost. Give the recipient's "
        f"{name}, or say that they need none (a personal wallet)."
    )


def _withdrawal_address_network(
    *, token: Token, address: str, network: str
) -> tuple[str, str, AddressFormat | None]:
    """The address in its canonical spelling, the network the coins go out
    on (empty for a token without address formats) and its format, or
    ``InvalidAddress``."""
    formats = list(token.address_formats.all())
    spellings = address_networks(token=token, address=address, formats=formats)
    network = network.strip() if isinstance(network, str) else ""
    by_network = {f.network: f for f in formats}
    if "" in spellings:  # no formats: any address, on no network in particular
        if network:
            raise InvalidAddress(
                f"No networks are set up for {token.symbol}: leave the network empty."
            )
        return spellings[""], "", None
    if not network:
        if len(spellings) == 1:
            [(network, address)] = spellings.items()
            return address, network, by_network[network]
        raise InvalidAddress(
            f"This address is valid on {' and '.join(spellings)}: choose the network."
        )
    if network in spellings:
        return spellings[network], network, by_network[network]
    if network not in by_network:
        raise InvalidAddress(
            f"{token.symbol} is not sent on “{network}”: choose "
            f"{' or '.join(by_network)}."
        )
    raise InvalidAddress(
        f"This address is not valid for {token.symbol} on {network}: it should "
        f"be {by_network[network].description}. It is one on "
        f"{' or '.join(spellings)}: check the network and the address."
    )


_IDENTITY_REFUSALS = {
    IdentityVerification.State.PENDING: (
        "Your identity documents are under review: you can withdraw once staff "
        "approve them."
    ),
    IdentityVerification.State.REJECTED: (
        "Your identity verification was rejected: send new documents on the "
        "identity verification page (/accounts/verification/); you can withdraw "
        "once staff approve them."
    ),
}


def withdrawal_identity_refusal(
    *, user: AbstractBaseUser
) -> IdentityNotVerified | None:
    """Why ``user`` may not request a withdrawal for want of an approved
    identity verification (``IDENTITY_REQUIRED_TO_WITHDRAW``), or None. The
    wallet shows it before the form is sent."""
    if not settings.IDENTITY_REQUIRED_TO_WITHDRAW:
        return None
    state = identity_verification_state(user=user)
    if state == IdentityVerification.State.APPROVED:
        return None
    return IdentityNotVerified(_IDENTITY_REFUSALS.get(state))


def _utc_day_start(moment: datetime) -> datetime:
    return moment.astimezone(UTC).replace(hour=0, minute=0, second=0, microsecond=0)


def _withdrawal_daily_limit_check(
    *, user: AbstractBaseUser, token: Token, amount: Decimal
) -> None:
    """Refuse a withdrawal that would take the user's pending, being sent and
    approved withdrawals of ``token`` requested since 00:00 UTC past the
    token's limit. A limit of 0 means the token's withdrawals are suspended.

    The caller holds the user's balance row of the token, so requests of one
    user and token pass here one at a time, each seeing every earlier one
    committed: concurrent requests never pass the limit together. A request
    made just before midnight and saved just after counts for the new day,
    which only makes the check stricter.
    """
    # Read now, not from the caller's copy: staff may change it at any time.
    limit = Token.objects.values_list("withdrawal_daily_limit", flat=True).get(
        pk=token.pk
    )
    if limit is None:
        return
    if limit == 0:
        raise WithdrawalLimitExceeded(f"Withdrawals of {token.symbol} are suspended.")
    day_start = _utc_day_start(timezone.now())
    amounts = Withdrawal.objects.filter(
        user=user,
        token=token,
        created_at__gte=day_start,
        status__in=[*Withdrawal.OPEN, Withdrawal.Status.APPROVED],
    ).values_list("amount", flat=True)
    used = sum(amounts, ZERO)  # in Python: SQLite would sum in floating point
    if used + amount > limit:
        left = max(limit - used, ZERO)
        resets = day_start + timedelta(days=1)
        raise WithdrawalLimitExceeded(
            f"You may withdraw at most {grouped(limit)} {token.symbol} a day; "
            f"{grouped(left)} {token.symbol} is left today. The limit resets at "
            f"{resets:%Y-%m-%d %H:%M} UTC."
        )


@exact
def withdrawal_process_start(
    *, withdrawal: Withdrawal, staff: AbstractBaseUser
) -> Withdrawal:
    """Staff are about to send the coins: the withdrawal is being sent. Its
    owner can no longer cancel it, and no one else starts sending it; staff
    approve it once the coins were sent, or reject it if they were not. The
    amount stays locked meanwhile.

    Locks the withdrawal's row as its ends do: of two starts and a cancel
    racing, the first to lock the row wins and the others are refused. One
    that is not pending raises ``WithdrawalNotPending``.
    """
    with transaction.atomic(durable=True):
        withdrawal = withdrawal_lock(withdrawal_id=withdrawal.pk)
        if withdrawal.status == Withdrawal.Status.PROCESSING:
            raise WithdrawalNotPending(
                f"Withdrawal {withdrawal.reference!r} is already being sent by "
                f"{withdrawal.processing_by} (since "
                f"{_moment(withdrawal.processing_at)}): only they send it."
            )
        if withdrawal.status != Withdrawal.Status.PENDING:
            raise WithdrawalNotPending(
                f"Withdrawal {withdrawal.reference!r} is already "
                f"{withdrawal.get_status_display().lower()}."
            )
        withdrawal.status = Withdrawal.Status.PROCESSING
        withdrawal.processing_at = timezone.now()
        withdrawal.processing_by = staff
        withdrawal.save(update_fields=["status", "processing_at", "processing_by"])
        return withdrawal


# How each end of an open withdrawal is written in the ledger.
_WITHDRAWAL_ENDS = {
    Withdrawal.Status.APPROVED: LedgerTransaction.Kind.WITHDRAWAL_APPROVE,
    Withdrawal.Status.REJECTED: LedgerTransaction.Kind.WITHDRAWAL_REJECT,
    Withdrawal.Status.CANCELLED: LedgerTransaction.Kind.WITHDRAWAL_CANCEL,
}


def _withdrawal_end(
    *,
    withdrawal: Withdrawal,
    status: str,
    by: AbstractBaseUser,
    reason: str = "",
    owner: AbstractBaseUser | None = None,
) -> tuple[Withdrawal, bool]:
    """End an open withdrawal: approved (only once it is being sent), its
    locked amount goes to custody; rejected (pending or being sent) or
    cancelled (pending only), back to the owner's available balance.

    Every end locks the withdrawal's row first, then its balance row (the
    order of ``trading.locks``): of an approval, a rejection, a cancel and a
    start of sending racing, the first to lock the row decides and the others
    find it changed. A withdrawal being sent is approved or rejected only by
    who started sending it. With ``owner``, someone else's withdrawal is not
    found. Returns the withdrawal and whether this call ended it (False: a
    repeated cancel).
    """
    with transaction.atomic(durable=True):
        withdrawal = withdrawal_lock(withdrawal_id=withdrawal.pk)
        if owner is not None and withdrawal.user_id != owner.pk:
            raise WithdrawalNotFound()
        if withdrawal.status == status == Withdrawal.Status.CANCELLED:
            return withdrawal, False  # a repeated cancel releases nothing again
        if withdrawal.status == Withdrawal.Status.PROCESSING and (
            status == Withdrawal.Status.CANCELLED
        ):
            # Staff may have sent the coins already: cancelling now could
            # give the owner both the coins and the balance.
            raise WithdrawalNotPending(
                f"Withdrawal {withdrawal.reference!r} can no longer be "
                "cancelled: staff are sending the coins now."
            )
        if withdrawal.status == Withdrawal.Status.PENDING and (
            status == Withdrawal.Status.APPROVED
        ):
            raise WithdrawalNotProcessing(
                f"Withdrawal {withdrawal.reference!r} is pending: start sending "
                "it first (its owner can then no longer cancel it), and approve "
                "it once the coins were sent."
            )
        if withdrawal.status not in Withdrawal.OPEN:
            raise WithdrawalNotPending(
                f"Withdrawal {withdrawal.reference!r} is already "
                f"{withdrawal.get_status_display().lower()}."
            )
        if (
            withdrawal.status == Withdrawal.Status.PROCESSING
            and withdrawal.processing_by_id != by.pk
        ):
            # Only the one sending knows whether the coins went out: another
            # rejecting it (from a page that showed it pending) could release
            # the funds of coins sent.
            raise WithdrawalNotPending(
                f"Withdrawal {withdrawal.reference!r} is being sent by "
                f"{withdrawal.processing_by} (since "
                f"{_moment(withdrawal.processing_at)}): only they approve or "
                "reject it."
            )
        user_id, token_id = withdrawal.user_id, withdrawal.token_id
        journal = _Journal(
            balances=balances_lock(user_ids=[user_id], token_ids=[token_id])
        )
        journal.move(
            token_id=token_id,
            amount=withdrawal.amount,
            source=_locked(user_id),
            target=_CUSTODY
            if status == Withdrawal.Status.APPROVED
            else _available(user_id),
        )
        withdrawal.status = status
        withdrawal.decided_at = timezone.now()
        withdrawal.decided_by = by
        withdrawal.reason = reason
        withdrawal.save(update_fields=["status", "decided_at", "decided_by", "reason"])
        journal.write(kind=_WITHDRAWAL_ENDS[status], withdrawal=withdrawal)
        return withdrawal, True


@exact
def withdrawal_approve(
    *, withdrawal: Withdrawal, staff: AbstractBaseUser
) -> Withdrawal:
    """The coins were sent: the locked amount leaves the user's balance.

    Only a withdrawal being sent (``withdrawal_process_start``); a pending one
    raises ``WithdrawalNotProcessing``, an ended one ``WithdrawalNotPending``.
    """
    withdrawal, _ = _withdrawal_end(
        withdrawal=withdrawal, status=Withdrawal.Status.APPROVED, by=staff
    )
    return withdrawal


@exact
def withdrawal_reject(
    *, withdrawal: Withdrawal, staff: AbstractBaseUser, reason: str = ""
) -> Withdrawal:
    """Refuse the request, pending or being sent (the coins were not sent):
    the locked amount becomes available again.

    ``reason`` is shown to the owner in the wallet and the mail.
    """
    withdrawal, _ = _withdrawal_end(
        withdrawal=withdrawal,
        status=Withdrawal.Status.REJECTED,
        by=staff,
        reason=reason.strip(),
    )
    return withdrawal


@exact
def withdrawal_cancel(
    *, user: AbstractBaseUser, withdrawal: Withdrawal
) -> tuple[Withdrawal, bool]:
    """The owner takes back a pending request: the locked amount becomes
    available again. Returns the withdrawal and whether this call cancelled
    it, so that of two cancels sent at once (a double click) only one tells
    the owner.

    Idempotent: cancelling a cancelled withdrawal returns it (and False) and
    releases nothing. One that staff are sending, approved or rejected raises
    ``WithdrawalNotPending``; another user's, ``WithdrawalNotFound``.
    """
    return _withdrawal_end(
        withdrawal=withdrawal,
        status=Withdrawal.Status.CANCELLED,
        by=user,
        owner=user,
    )


# -- Address formats and the address book ----------------------------------

MAX_SAVED_ADDRESSES = 200


def address_format_ensure(
    *,
    token: Token,
    network: str,
    pattern: str,
    checksum: str = "",
    description: str,
    memo_name: str = "",
    memo_pattern: str = "",
    memo_description: str = "",
) -> tuple[AddressFormat, bool]:
    """The token's format for ``network``, created (validated like the admin
    does) if missing; an existing one is left as staff may have edited it."""
    with transaction.atomic():
        # Two callers at once: the second waits, then finds the first's.
        unique_value_serialize(model=AddressFormat, token=token.pk, network=network)
        existing = AddressFormat.objects.filter(token=token, network=network).first()
        if existing is not None:
            return existing, False
        address_format = AddressFormat(
            token=token,
            network=network,
            pattern=pattern,
            checksum=checksum,
            description=description,
            memo_name=memo_name,
            memo_pattern=memo_pattern,
            memo_description=memo_description,
        )
        address_format.full_clean()
        address_format.save()
    return address_format, True


def _address_delay() -> timedelta:
    return timedelta(hours=settings.WITHDRAWAL_ADDRESS_DELAY_HOURS)


def _moment(value: datetime) -> str:
    return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")


def _withdrawal_address_allowed_check(
    *, user: AbstractBaseUser, token: Token, address: str, memo: str
) -> None:
    """When the user allows only saved addresses: the address must be in the
    book for this token with this memo (another customer of the same
    exchange has another), and past its delay."""
    now = timezone.now()
    policy = WithdrawalAddressPolicy.objects.filter(user=user).first()
    if policy is None or not policy.saved_only_at(now):
        return
    entry = _saved_entry(user=user, token=token, address=address, memo=memo)
    if entry is None:
        what = f"address with memo {memo}" if memo else "address"
        other_memo = (
            SavedAddress.objects.filter(user=user, token=token, address=address)
            .exclude(memo=memo)
            .exists()
        )
        raise AddressNotAllowed(
            f"You allow withdrawals only to saved addresses, and this "
            f"{token.symbol} {what} is not in your address book"
            + (" (it is saved with another memo, or none)" if other_memo else "")
            + f". Save it first: it can be used "
            f"{settings.WITHDRAWAL_ADDRESS_DELAY_HOURS} hours later."
        )
    if entry.usable_from > now:
        raise AddressNotAllowed(
            f"The saved address “{entry.label}” can be used from "
            f"{_moment(entry.usable_from)}: a newly saved address waits "
            f"{settings.WITHDRAWAL_ADDRESS_DELAY_HOURS} hours."
        )


def _saved_entry(
    *, user: AbstractBaseUser, token: Token, address: str, memo: str
) -> SavedAddress | None:
    """The user's book entry for ``address`` (canonical) with ``memo``:
    saved in these characters, or in a spelling that the token's formats,
    changed since it was saved, now make the same (a format added to a token
    that had none lowercases its bech32 addresses)."""
    entries = list(SavedAddress.objects.filter(user=user, token=token, memo=memo))
    if exact := [entry for entry in entries if entry.address == address]:
        return exact[0]
    formats = list(token.address_formats.all())
    for entry in entries:
        try:
            spelled = address_canonical(
                token=token, address=entry.address, formats=formats
            )
        except InvalidAddress:
            continue  # saved before a format that it does not fit
        if spelled == address:
            return entry
    return None


def saved_address_add(
    *,
    user: AbstractBaseUser,
    token: Token,
    address: str,
    label: str,
    memo: str = "",
) -> SavedAddress:
    """Save a destination in the user's address book; it is usable for
    withdrawals ``WITHDRAWAL_ADDRESS_DELAY_HOURS`` later. The token must be
    listed now (``TokenNotListed``), the address must fit the token's formats
    (``InvalidAddress``), the memo one of the networks it fits
    (``InvalidMemo``), and the two not be saved already
    (``AddressAlreadySaved``): one address may be saved with several memos,
    one per customer of the exchange it belongs to."""
    label = label.strip() if isinstance(label, str) else ""
    if not 0 < len(label) <= 60:
        raise ValidationError(
            {"label": "Give the address a label of 1 to 60 characters."}
        )
    # The label is shown in the owner's security mail and on every page that
    # lists the book: a line break or a text-direction control would let it
    # forge lines there or turn the address next to it around.
    if problem := text_character_problem(label, spaces_allowed=True):
        raise ValidationError(
            {
                "label": f"The label contains {problem}. Use letters, digits, "
                "punctuation and spaces only."
            }
        )
    formats = list(token.address_formats.all())
    spellings = address_networks(token=token, address=address, formats=formats)
    address = next(iter(spellings.values()))
    # A saved address records no network: the memo must suit one it fits.
    memo = memo_canonical(
        token=token, memo=memo, formats=[f for f in formats if f.network in spellings]
    )
    try:
        with transaction.atomic(durable=True):
            _token_listed_check(token=token, refusal="its addresses cannot be saved.")
            # One addition at a time per user, so additions at once cannot
            # all count the same entries (accounts.locks.user_serialize).
            user_serialize(user_id=user.pk)
            entry = _saved_entry(user=user, token=token, address=address, memo=memo)
            if entry is not None:
                raise _already_saved(entry, token=token)
            if SavedAddress.objects.filter(
                user=user, token=token, label__iexact=label
            ).exists():
                raise ValidationError(
                    {
                        "label": f"You already have an address labelled "
                        f"“{label}” for {token.symbol}: choose another label."
                    }
                )
            if SavedAddress.objects.filter(user=user).count() >= MAX_SAVED_ADDRESSES:
                raise AddressNotAllowed(
                    f"An address book holds at most {MAX_SAVED_ADDRESSES} "
                    "addresses; remove one first."
                )
            return SavedAddress.objects.create(
                user=user,
                token=token,
                address=address,
                memo=memo,
                label=label,
                usable_from=timezone.now() + _address_delay(),
            )
    except IntegrityError:
        entry = _saved_entry(user=user, token=token, address=address, memo=memo)
        if entry is None:
            raise
        raise _already_saved(entry, token=token) from None


def _already_saved(entry: SavedAddress, *, token: Token) -> AddressAlreadySaved:
    what = f"address with memo {entry.memo}" if entry.memo else "address"
    return AddressAlreadySaved(
        f"This {token.symbol} {what} is already in your address book as "
        f"“{entry.label}”."
    )


def saved_address_remove(
    *, user: AbstractBaseUser, saved_address: SavedAddress
) -> None:
    """Delete an entry of the user's own address book."""
    with transaction.atomic(durable=True):
        SavedAddress.objects.filter(pk=saved_address.pk, user=user).delete()


def withdrawal_address_policy_set(
    *, user: AbstractBaseUser, saved_only: bool
) -> WithdrawalAddressPolicy:
    """Allow withdrawals only to saved addresses, at once; or stop doing so,
    ``WITHDRAWAL_ADDRESS_DELAY_HOURS`` from now (asking again does not push
    that moment back; turning it on again cancels it)."""
    with transaction.atomic(durable=True):
        policy, _ = WithdrawalAddressPolicy.objects.select_for_update().get_or_create(
            user=user
        )
        now = timezone.now()
        if saved_only:
            policy.saved_only, policy.saved_only_ends_at = True, None
        elif not policy.saved_only_at(now):
            policy.saved_only, policy.saved_only_ends_at = False, None
        elif policy.saved_only_ends_at is None:
            policy.saved_only_ends_at = now + _address_delay()
        policy.save()
        return policy


# -- Markets ----------------------------------------------------------------


def market_create(
    *,
    base: Token,
    quote: Token,
    price_step: Decimal,
    amount_step: Decimal,
    min_notional: Decimal = ZERO,
    maker_fee: Decimal = ZERO,
    taker_fee: Decimal = ZERO,
    status: str = Market.Status.OPEN,
) -> Market:
    """List a market; raises ``ValidationError`` for steps the tokens cannot
    hold, or a pair listed already (even at the same moment)."""
    market = Market(
        base=base,
        quote=quote,
        symbol=Market.symbol_for(base, quote),
        price_step=price_step,
        amount_step=amount_step,
        min_notional=min_notional,
        maker_fee=maker_fee,
        taker_fee=taker_fee,
        status=status,
    )
    with transaction.atomic():
        unique_value_serialize(model=Market, symbol=market.symbol)
        market.full_clean()
        market.save()
    return market
