"""Writes of the trading app: the one way money moves.

Every function here is keyword-only, owns its transaction
(``transaction.atomic(durable=True)``), takes its row locks through
``trading.locks`` in the global order, and records each balance change as
ledger entries that sum to zero per token. Refusals raise
``trading.exceptions.TradingError`` subclasses and change nothing.

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
    An order's time is its arrival: its key is taken when it is received,
    before it waits for the market's lock, and resting orders of one price
    trade in key order. A limit buy locks price x quantity of quote and gets
    back what price improvement saves; a sell locks its quantity of base.
Market orders
    Market orders are specified by base quantity and never rest: they are
    immediate-or-cancel (the default ``GTC`` and ``IOC`` mean the same for
    them) or fill-or-kill. At placement, under the market lock, the book is
    walked to find what the order will trade; a market buy locks exactly the
    quote that fill costs (no fee is due in quote, the buyer's fee is taken
    from the base received) and is refused whole (``InsufficientBalance``) if
    the available quote does not cover it. The market's ``min_notional``
    applies to the value that walk would trade. Whatever the book cannot fill
    is cancelled.
Self-trade prevention
    "Cancel newest": an order never trades with a resting order of the same
    user. When the next resting order in priority is the user's own, the
    incoming order's remainder is cancelled (reason ``self_trade``) and the
    resting order is left alone; fills before it stand.
Post-only, IOC, FOK
    A post-only order (GTC limit only) is refused whole if any resting order
    crosses its price. An IOC order's unfilled remainder is cancelled. A FOK
    order is refused whole unless it fills entirely at once (self-trade
    prevention counts as not filled).
Client order ids
    Unique per user among open orders. A create that repeats the user's
    latest order with that id (same market, side, type, quantity, price and
    options) returns that order, whatever its status, and places nothing; a
    different order under an id still open is refused
    (``DuplicateClientOrderId``); once that order is closed the id may be
    reused for a different order.
Checks run in this order: the order's options, the amounts, the market's
status, steps and precision, limit ``min_notional``, the client order id,
post-only, fill-or-kill, market ``min_notional``, then the balance.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal

from django.conf import settings
from django.contrib.auth.base_user import AbstractBaseUser
from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.utils import timezone

from tokens.models import Token
from trading import sql
from trading.addresses import address_canonical
from trading.exceptions import (
    AddressAlreadySaved,
    AddressNotAllowed,
    BelowMinNotional,
    DuplicateClientOrderId,
    DuplicateReference,
    FillOrKillNotFilled,
    InsufficientBalance,
    InvalidAmount,
    InvalidOrder,
    InvalidReference,
    MarketClosed,
    OrderNotFound,
    OrderNotOpen,
    PostOnlyWouldTake,
    PrecisionTooHigh,
    WithdrawalLimitExceeded,
    WithdrawalNotFound,
    WithdrawalNotPending,
)
from trading.locks import (
    balances_ensure,
    balances_lock,
    balances_lock_later,
    market_lock_later,
    withdrawal_lock,
)
from trading.models import (
    AMOUNT,
    AddressFormat,
    Balance,
    Deposit,
    LedgerEntry,
    LedgerTransaction,
    Market,
    Order,
    SavedAddress,
    Trade,
    Withdrawal,
    WithdrawalAddressPolicy,
)
from trading.money import AMOUNT_LIMIT, ZERO, exact, fee_for, plain, unit

Side, OrderType, TimeInForce = Order.Side, Order.Type, Order.TimeInForce
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
        if not self.entries:  # e.g. a market order that met an empty book
            return None
        record = LedgerTransaction(kind=kind, **links)
        sql.rows_insert([record])
        self.write_into(record)
        return record

    def write_into(self, record: LedgerTransaction) -> None:
        """Write the entries into ``record``, a transaction already saved,
        and the balance rows; nothing is read back, so both statements can
        be queued in a ``sql.pipeline()``."""
        sql.values_insert(
            LedgerEntry,
            ("transaction_id", "token_id", "account", "user_id", "amount"),
            [(record.pk, *entry) for entry in self.entries],
        )
        sql.rows_update(
            list(self.touched.values()), ["available", "locked", "updated_at"]
        )


# -- Input checks -----------------------------------------------------------


def _positive_check(value: object, *, name: str) -> Decimal:
    if not isinstance(value, Decimal):
        raise InvalidAmount(
            f"The {name} must be a Decimal, not {type(value).__name__}."
        )
    if not value.is_finite() or value <= 0:
        raise InvalidAmount(f"The {name} must be a positive number.")
    if value >= AMOUNT_LIMIT:
        raise InvalidAmount(f"The {name} is too large.")
    if _decimal_places(value) > AMOUNT["decimal_places"]:
        raise PrecisionTooHigh(
            f"The {name} has more than {AMOUNT['decimal_places']} decimals."
        )
    return value


def _decimal_places(value: Decimal) -> int:
    """How many decimals ``value`` really has (trailing zeros do not count)."""
    _, digits, exponent = value.as_tuple()
    significant = "".join(map(str, digits)).rstrip("0")
    return max(0, -(exponent + len(digits) - len(significant)))


def _step_check(value: Decimal, *, name: str, step: Decimal) -> None:
    if value % step:
        raise PrecisionTooHigh(
            f"The {name} {plain(value)} has too much precision: "
            f"it must be a multiple of {plain(step)}."
        )


def _amount_check(value: object, *, name: str, step: Decimal) -> Decimal:
    amount = _positive_check(value, name=name)
    _step_check(amount, name=name, step=step)
    return amount


def _reference_check(reference: object) -> str:
    if not isinstance(reference, str) or not 0 < len(reference.strip()) <= 100:
        raise InvalidReference()
    return reference.strip()


def _balance_require(balance: Balance, amount: Decimal, token: Token) -> None:
    if balance.available < amount:
        raise InsufficientBalance(
            f"This needs {plain(amount)} {token.symbol}; "
            f"{plain(balance.available)} is available."
        )


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
    reference raises ``DuplicateReference``.
    """
    amount = _amount_check(amount, name="amount", step=unit(token.decimals))
    reference = _reference_check(reference)
    try:
        with transaction.atomic(durable=True):
            existing = Deposit.objects.filter(reference=reference).first()
            if existing is not None:
                return _deposit_same_or_raise(
                    existing, user=user, token=token, amount=amount
                )
            deposit = Deposit.objects.create(
                user=user, token=token, amount=amount, reference=reference
            )
            journal = _Journal(
                balances=balances_lock(user_ids=[user.pk], token_ids=[token.pk])
            )
            journal.move(
                token_id=token.pk,
                amount=amount,
                source=_CUSTODY,
                target=_available(user.pk),
            )
            journal.write(kind=LedgerTransaction.Kind.DEPOSIT, deposit=deposit)
            return deposit
    except IntegrityError:
        # A concurrent credit with the same reference committed first.
        existing = Deposit.objects.filter(reference=reference).first()
        if existing is None:
            raise
        return _deposit_same_or_raise(existing, user=user, token=token, amount=amount)


def _withdrawal_same_or_raise(
    withdrawal: Withdrawal, *, token: Token, amount: Decimal, address: str
) -> Withdrawal:
    if (withdrawal.token_id, withdrawal.amount, withdrawal.address) == (
        token.pk,
        amount,
        address,
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
) -> Withdrawal:
    """Ask to send coins out; the amount stays locked until staff decide.

    ``reference`` is the user's idempotency key, unique per user: an identical
    repeat returns the first request, a different one raises
    ``DuplicateReference``. A request that would take the user past the
    token's daily limit raises ``WithdrawalLimitExceeded``.
    """
    amount = _amount_check(amount, name="amount", step=unit(token.decimals))
    reference = _reference_check(reference)
    address = address_canonical(token=token, address=address)
    try:
        with transaction.atomic(durable=True):
            existing = Withdrawal.objects.filter(user=user, reference=reference)
            if (found := existing.first()) is not None:
                return _withdrawal_same_or_raise(
                    found, token=token, amount=amount, address=address
                )
            _withdrawal_address_allowed_check(user=user, token=token, address=address)
            balances = balances_lock(user_ids=[user.pk], token_ids=[token.pk])
            _withdrawal_daily_limit_check(user=user, token=token, amount=amount)
            _balance_require(balances[(user.pk, token.pk)], amount, token)
            withdrawal = Withdrawal.objects.create(
                user=user,
                token=token,
                amount=amount,
                address=address,
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
            return withdrawal
    except IntegrityError:
        found = Withdrawal.objects.filter(user=user, reference=reference).first()
        if found is None:
            raise
        return _withdrawal_same_or_raise(
            found, token=token, amount=amount, address=address
        )


def _utc_day_start(moment: datetime) -> datetime:
    return moment.astimezone(UTC).replace(hour=0, minute=0, second=0, microsecond=0)


def _withdrawal_daily_limit_check(
    *, user: AbstractBaseUser, token: Token, amount: Decimal
) -> None:
    """Refuse a withdrawal that would take the user's pending and approved
    withdrawals of ``token`` requested since 00:00 UTC past the token's limit.

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
    day_start = _utc_day_start(timezone.now())
    amounts = Withdrawal.objects.filter(
        user=user,
        token=token,
        created_at__gte=day_start,
        status__in=[Withdrawal.Status.PENDING, Withdrawal.Status.APPROVED],
    ).values_list("amount", flat=True)
    used = sum(amounts, ZERO)  # in Python: SQLite would sum in floating point
    if used + amount > limit:
        left = max(limit - used, ZERO)
        resets = day_start + timedelta(days=1)
        raise WithdrawalLimitExceeded(
            f"You may withdraw at most {plain(limit)} {token.symbol} a day; "
            f"{plain(left)} {token.symbol} is left today. The limit resets at "
            f"{resets:%Y-%m-%d %H:%M} UTC."
        )


# How each end of a pending withdrawal is written in the ledger.
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
) -> Withdrawal:
    """End a pending withdrawal: approved, its locked amount goes to custody;
    rejected or cancelled, back to the owner's available balance.

    Every end locks the withdrawal's row first, then its balance row (the
    order of ``trading.locks``): of an approval, a rejection and a cancel
    racing, the first to lock the row decides and the others find it ended.
    With ``owner``, someone else's withdrawal is not found.
    """
    with transaction.atomic(durable=True):
        withdrawal = withdrawal_lock(withdrawal_id=withdrawal.pk)
        if owner is not None and withdrawal.user_id != owner.pk:
            raise WithdrawalNotFound()
        if withdrawal.status == status == Withdrawal.Status.CANCELLED:
            return withdrawal  # a repeated cancel releases nothing again
        if withdrawal.status != Withdrawal.Status.PENDING:
            raise WithdrawalNotPending(
                f"Withdrawal {withdrawal.reference!r} is already "
                f"{withdrawal.get_status_display().lower()}."
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
        return withdrawal


@exact
def withdrawal_approve(
    *, withdrawal: Withdrawal, staff: AbstractBaseUser
) -> Withdrawal:
    """The coins were sent: the locked amount leaves the user's balance."""
    return _withdrawal_end(
        withdrawal=withdrawal, status=Withdrawal.Status.APPROVED, by=staff
    )


@exact
def withdrawal_reject(
    *, withdrawal: Withdrawal, staff: AbstractBaseUser, reason: str = ""
) -> Withdrawal:
    """Refuse the request: the locked amount becomes available again.

    ``reason`` is shown to the owner in the wallet and the mail.
    """
    return _withdrawal_end(
        withdrawal=withdrawal,
        status=Withdrawal.Status.REJECTED,
        by=staff,
        reason=reason.strip(),
    )


@exact
def withdrawal_cancel(*, user: AbstractBaseUser, withdrawal: Withdrawal) -> Withdrawal:
    """The owner takes back a pending request: the locked amount becomes
    available again.

    Idempotent: cancelling a cancelled withdrawal returns it and releases
    nothing. One that staff approved or rejected raises
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
) -> tuple[AddressFormat, bool]:
    """The token's format for ``network``, created (validated like the admin
    does) if missing; an existing one is left as staff may have edited it."""
    existing = AddressFormat.objects.filter(token=token, network=network).first()
    if existing is not None:
        return existing, False
    address_format = AddressFormat(
        token=token,
        network=network,
        pattern=pattern,
        checksum=checksum,
        description=description,
    )
    address_format.full_clean()
    address_format.save()
    return address_format, True


def _address_delay() -> timedelta:
    return timedelta(hours=settings.WITHDRAWAL_ADDRESS_DELAY_HOURS)


def _moment(value: datetime) -> str:
    return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")


def _withdrawal_address_allowed_check(
    *, user: AbstractBaseUser, token: Token, address: str
) -> None:
    """When the user allows only saved addresses: the address must be in the
    book for this token and past its delay."""
    now = timezone.now()
    policy = WithdrawalAddressPolicy.objects.filter(user=user).first()
    if policy is None or not policy.saved_only_at(now):
        return
    saved = SavedAddress.objects.filter(user=user, token=token, address=address)
    if (entry := saved.first()) is None:
        raise AddressNotAllowed(
            f"You allow withdrawals only to saved addresses, and this "
            f"{token.symbol} address is not in your address book. Save it "
            f"first: it can be used {settings.WITHDRAWAL_ADDRESS_DELAY_HOURS} "
            "hours later."
        )
    if entry.usable_from > now:
        raise AddressNotAllowed(
            f"The saved address “{entry.label}” can be used from "
            f"{_moment(entry.usable_from)}: a newly saved address waits "
            f"{settings.WITHDRAWAL_ADDRESS_DELAY_HOURS} hours."
        )


def saved_address_add(
    *, user: AbstractBaseUser, token: Token, address: str, label: str
) -> SavedAddress:
    """Save a destination in the user's address book; it is usable for
    withdrawals ``WITHDRAWAL_ADDRESS_DELAY_HOURS`` later. The address must fit
    the token's formats (``InvalidAddress``) and not be saved already
    (``AddressAlreadySaved``)."""
    label = label.strip() if isinstance(label, str) else ""
    if not 0 < len(label) <= 60:
        raise ValidationError(
            {"label": "Give the address a label of 1 to 60 characters."}
        )
    address = address_canonical(token=token, address=address)
    try:
        with transaction.atomic(durable=True):
            if SavedAddress.objects.filter(user=user).count() >= MAX_SAVED_ADDRESSES:
                raise AddressNotAllowed(
                    f"An address book holds at most {MAX_SAVED_ADDRESSES} "
                    "addresses; remove one first."
                )
            return SavedAddress.objects.create(
                user=user,
                token=token,
                address=address,
                label=label,
                usable_from=timezone.now() + _address_delay(),
            )
    except IntegrityError:
        saved = SavedAddress.objects.filter(user=user, token=token, address=address)
        if (entry := saved.first()) is None:
            raise
        raise AddressAlreadySaved(
            f"This {token.symbol} address is already in your address book as "
            f"“{entry.label}”."
        ) from None


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
    """List a market; raises ``ValidationError`` for steps the tokens cannot hold."""
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
    market.full_clean()
    market.save()
    return market


# -- Orders -----------------------------------------------------------------


@dataclass(frozen=True)
class _OrderRequest:
    market_id: int
    base_id: int
    quote_id: int
    side: str
    type: str
    quantity: Decimal
    price: Decimal | None
    time_in_force: str
    post_only: bool

    def matches(self, order: Order) -> bool:
        return (
            order.market_id == self.market_id
            and order.side == self.side
            and order.type == self.type
            and order.quantity == self.quantity
            and order.price == self.price
            and order.time_in_force == self.time_in_force
            and order.post_only == self.post_only
        )


def _options_check(
    *, side: str, type: str, price: object, time_in_force: str, post_only: bool
) -> str:
    """Check the order's options; return the time in force it will have."""
    if side not in Side.values:
        raise InvalidOrder(f"The side must be buy or sell, not {side!r}.")
    if type not in OrderType.values:
        raise InvalidOrder(f"The type must be limit or market, not {type!r}.")
    if time_in_force not in TimeInForce.values:
        raise InvalidOrder(
            f"The time in force must be GTC, IOC or FOK, not {time_in_force!r}."
        )
    if type == OrderType.LIMIT and price is None:
        raise InvalidOrder("A limit order needs a price.")
    if type == OrderType.MARKET:
        if price is not None:
            raise InvalidOrder("A market order takes no price.")
        if post_only:
            raise InvalidOrder("A market order cannot be post-only.")
        return TimeInForce.FOK if time_in_force == TimeInForce.FOK else TimeInForce.IOC
    if post_only and time_in_force != TimeInForce.GTC:
        raise InvalidOrder("A post-only order must be good till cancelled.")
    return time_in_force


_BOOK_PAGE = 4  # a crossing order most often meets one or two


def _book_query(
    *, market_id: int, side: str, price: Decimal | None
) -> tuple[dict[str, object], tuple[str, str]]:
    """The resting orders an incoming order on ``side`` may trade with: the
    conditions and the matching priority (best price first, then oldest)."""
    where: dict[str, object] = {
        "market": market_id,
        # In the statement, so that the book's partial indexes serve it.
        "status": sql.Choice(Order.Status.OPEN),
        "side": sql.Choice(Side.SELL if side == Side.BUY else Side.BUY),
    }
    if price is not None:
        where["price__lte" if side == Side.BUY else "price__gte"] = price
    order_by = ("price", "id") if side == Side.BUY else ("-price", "id")
    return where, order_by


def _book_page_later(
    *, market_id: int, side: str, price: Decimal | None, offset: int = 0, size: int
):
    """A page of ``_book_query``, read when the result is called."""
    where, order_by = _book_query(market_id=market_id, side=side, price=price)
    return sql.rows_select_later(
        Order, where=where, order_by=order_by, limit=size, offset=offset
    )


def _book_opposite(
    *,
    market_id: int,
    side: str,
    price: Decimal | None,
    first_page: list[Order],
    first_page_only: bool = False,
) -> Iterator[Order]:
    """The resting orders an incoming order on ``side`` may trade with, in
    matching priority (best price first, then oldest), read a page at a time.

    Most orders trade with the first few; a page of ``LIMIT``/``OFFSET`` is
    one round trip where ``iterator()`` would open a server-side cursor
    (three). ``first_page`` (``_BOOK_PAGE`` orders) was read with the market's
    lock. Offsets are stable because the market's lock holds the book still.
    The book's partial indexes (``order_book_asks``, ``order_book_bids``) serve
    both orders.
    """
    page, start, size = first_page, 0, _BOOK_PAGE
    while True:
        yield from page
        if len(page) < size:
            return
        if first_page_only:
            raise _GuessedWrong()
        start, size = start + size, size * 4
        page = _book_page_later(
            market_id=market_id, side=side, price=price, offset=start, size=size
        )()


@dataclass
class _Plan:
    fills: list[tuple[Order, Decimal]]
    self_trade: bool
    filled: Decimal
    notional: Decimal


def _plan(
    *,
    user_id: int,
    request: _OrderRequest,
    first_page: list[Order],
    first_page_only: bool,
) -> _Plan:
    """Walk the book as matching will, without writing anything.

    The market row is locked, so the book cannot change before the plan is
    carried out.
    """
    fills: list[tuple[Order, Decimal]] = []
    remaining, notional, self_trade = request.quantity, ZERO, False
    book = _book_opposite(
        market_id=request.market_id,
        side=request.side,
        price=request.price,
        first_page=first_page,
        first_page_only=first_page_only,
    )
    for maker in book:
        if maker.user_id == user_id:
            self_trade = True
            break
        quantity = min(remaining, maker.remaining)
        fills.append((maker, quantity))
        remaining -= quantity
        notional += maker.price * quantity
        if remaining == 0:
            break
    return _Plan(
        fills=fills,
        self_trade=self_trade,
        filled=request.quantity - remaining,
        notional=notional,
    )


def _client_order_existing(
    *,
    user: AbstractBaseUser,
    client_order_id: str,
    request: _OrderRequest,
    placing: Order | None = None,
) -> Order | None:
    """The order an identical repeat returns; raises for a clash with an open
    one. ``placing`` is the placeholder of the order being placed."""
    earlier = Order.objects.filter(user=user, client_order_id=client_order_id)
    if placing is not None:
        earlier = earlier.exclude(pk=placing.pk)
    latest = earlier.order_by("-pk").first()
    if latest is None:
        return None
    if request.matches(latest):
        return latest
    if latest.is_open:
        raise DuplicateClientOrderId(
            f"Open order #{latest.pk} already uses client order id {client_order_id!r}."
        )
    return None


@exact
def order_place(
    *,
    user: AbstractBaseUser,
    market: Market,
    side: str,
    type: str,
    quantity: Decimal,
    price: Decimal | None = None,
    time_in_force: str = "GTC",
    post_only: bool = False,
    client_order_id: str | None = None,
) -> Order:
    """Place an order and match it at once; return it as it stands afterwards.

    See the module docstring for the rules (market orders, fees, self-trade
    prevention, client order ids).
    """
    time_in_force = _options_check(
        side=side,
        type=type,
        price=price,
        time_in_force=time_in_force,
        post_only=post_only,
    )
    if client_order_id is not None and not (
        isinstance(client_order_id, str) and 0 < len(client_order_id) <= 64
    ):
        raise InvalidOrder("A client order id has 1 to 64 characters.")
    quantity = _positive_check(quantity, name="quantity")
    if price is not None:
        price = _positive_check(price, name="price")
        if price * quantity >= AMOUNT_LIMIT:
            raise InvalidAmount("The order's value is too large.")
    request = _OrderRequest(
        market_id=market.pk,
        base_id=market.base_id,
        quote_id=market.quote_id,
        side=side,
        type=type,
        quantity=quantity,
        price=price,
        time_in_force=time_in_force,
        post_only=post_only,
    )
    try:
        try:
            return _order_place_once(
                user=user,
                market=market,
                request=request,
                client_order_id=client_order_id,
                guess_balances=True,
            )
        except _GuessedWrong:
            # Rare: the order trades beyond the book's first page, or it is
            # the user's first in this market (a balance row is missing).
            return _order_place_once(
                user=user,
                market=market,
                request=request,
                client_order_id=client_order_id,
                guess_balances=False,
            )
    except _Repeated as repeated:
        return repeated.order
    except IntegrityError:
        # The same client order id was placed concurrently on another market.
        if client_order_id is None:
            raise
        existing = _client_order_existing(
            user=user, client_order_id=client_order_id, request=request
        )
        if existing is None:
            raise
        return existing


def _order_place_once(
    *,
    user: AbstractBaseUser,
    market: Market,
    request: _OrderRequest,
    client_order_id: str | None,
    guess_balances: bool,
) -> Order:
    # In one pipeline, so that the database is waited for only where a result
    # is needed: the order's key, the market's lock with the book's first
    # page and the balance rows, then the commit with every write.
    with sql.pipeline(), transaction.atomic(durable=True):
        # Before the market's lock, so that other orders of the market can go
        # on meanwhile: the order's row, which only the commit makes visible
        # (as a closed placeholder until its outcome is known), and, unless
        # they are expected to exist (the user has ordered in this market
        # before), the user's balance rows.
        if not guess_balances:
            balances_ensure(
                user_id=user.pk, token_ids=[market.base_id, market.quote_id]
            )
        order = Order(
            user=user,
            market=market,
            side=request.side,
            type=request.type,
            time_in_force=request.time_in_force,
            post_only=request.post_only,
            client_order_id=client_order_id or "",
            price=request.price,
            quantity=request.quantity,
            status=Order.Status.CANCELLED,
        )
        sql.rows_insert([order])
        return _order_place_locked(
            user=user, order=order, request=request, guess_balances=guess_balances
        )


class _Repeated(Exception):
    """Raised to roll back an order's placeholder rows when the create repeats
    an earlier order, which ``order_place`` then returns."""

    def __init__(self, order: Order) -> None:
        super().__init__(order.pk)
        self.order = order


class _GuessedWrong(Exception):
    """The balance rows locked with the market (the user's, and those of the
    owners of the book's first page) are not all that matching needs."""


def _order_place_locked(
    *,
    user: AbstractBaseUser,
    order: Order,
    request: _OrderRequest,
    guess_balances: bool,
) -> Order:
    # Steps are read from the locked row: staff may change them at any time.
    # The ledger transaction, the book's first page and the balance rows the
    # order will most likely need (the user's and those of the page's owners)
    # go with the market's lock, in one round trip. If matching needs others,
    # the whole attempt is rolled back and made again locking the rows after
    # matching: adding rows to those held would break the one global order of
    # balance locks.
    record = LedgerTransaction(kind=LedgerTransaction.Kind.ORDER_PLACE)
    record.order = order
    record_saved = sql.rows_insert_later([record])
    market_locked = market_lock_later(market_id=request.market_id)
    first_page = _book_page_later(
        market_id=request.market_id,
        side=request.side,
        price=request.price,
        size=_BOOK_PAGE,
    )
    where, order_by = _book_query(
        market_id=request.market_id, side=request.side, price=request.price
    )
    tokens = [request.base_id, request.quote_id]
    likely_balances = None
    if guess_balances:
        likely_balances = balances_lock_later(
            user_ids=[user.pk],
            token_ids=tokens,
            owners=sql.column_of(
                Order, "user", where=where, order_by=order_by, limit=_BOOK_PAGE
            ),
        )
    market, first_page = market_locked(), first_page()
    record_saved()
    order.market = market
    if market.status != Market.Status.OPEN or not (
        market.base.is_active and market.quote.is_active
    ):
        raise MarketClosed(f"The {market.symbol} market does not accept orders now.")
    quantity, price = request.quantity, request.price
    if price is not None:
        _step_check(price, name="price", step=market.price_step)
    _step_check(quantity, name="quantity", step=market.amount_step)
    if price is not None and price * quantity < market.min_notional:
        raise BelowMinNotional(
            f"The order is worth {plain(price * quantity)} "
            f"{market.quote.symbol}; the minimum is {plain(market.min_notional)}."
        )
    if order.client_order_id:
        existing = _client_order_existing(
            user=user,
            client_order_id=order.client_order_id,
            request=request,
            placing=order,
        )
        if existing is not None:
            raise _Repeated(existing)
    if request.post_only and first_page:  # the page is of crossing orders
        raise PostOnlyWouldTake(
            f"A resting order crosses {plain(price)}; the post-only order "
            "would trade at once."
        )
    plan = _plan(
        user_id=user.pk,
        request=request,
        first_page=first_page,
        first_page_only=guess_balances,
    )
    if request.time_in_force == TimeInForce.FOK and plan.filled < quantity:
        raise FillOrKillNotFilled(
            f"Only {plain(plan.filled)} of {plain(quantity)} "
            f"{market.base.symbol} can be filled at once."
        )
    if request.type == OrderType.MARKET and plan.notional < market.min_notional:
        raise BelowMinNotional(
            f"The order would trade {plain(plan.notional)} "
            f"{market.quote.symbol}; the minimum is {plain(market.min_notional)}."
        )
    buying = request.side == Side.BUY
    if not buying:
        lock_token, to_lock = market.base, quantity
    elif price is not None:
        lock_token, to_lock = market.quote, price * quantity
    else:
        lock_token, to_lock = market.quote, plan.notional

    user_ids = {user.pk} | {maker.user_id for maker, _ in plan.fills}
    if likely_balances is None:
        balances = balances_lock(
            user_ids=user_ids, token_ids=[market.base_id, market.quote_id]
        )
    else:
        balances = likely_balances()
        if tokens != [market.base_id, market.quote_id] or any(
            (user_id, token_id) not in balances
            for user_id in user_ids
            for token_id in tokens
        ):
            raise _GuessedWrong()
    _balance_require(balances[(user.pk, lock_token.pk)], to_lock, lock_token)

    order.locked = to_lock
    journal = _Journal(balances=balances)
    journal.move(
        token_id=lock_token.pk,
        amount=to_lock,
        source=_available(user.pk),
        target=_locked(user.pk),
    )
    trades = [
        _fill(journal=journal, market=market, taker=order, maker=maker, quantity=q)
        for maker, q in plan.fills
    ]

    if order.remaining == 0:
        order.status = Order.Status.FILLED
        keep = ZERO
    elif plan.self_trade or request.time_in_force != TimeInForce.GTC:
        order.status = Order.Status.CANCELLED
        order.cancel_reason = (
            Order.CancelReason.SELF_TRADE
            if plan.self_trade
            else Order.CancelReason.UNFILLED
        )
        keep = ZERO
    else:
        order.status = Order.Status.OPEN
        keep = price * order.remaining if buying else order.remaining
    # A buy that traded below its limit price gets the difference back now.
    journal.move(
        token_id=lock_token.pk,
        amount=order.locked - keep,
        source=_locked(user.pk),
        target=_available(user.pk),
    )
    order.locked = keep
    makers = [maker for maker, _ in plan.fills]
    # Nothing is read back: on PostgreSQL these go with the commit.
    sql.rows_update([order, *makers], _ORDER_OUTCOME)
    sql.rows_insert(trades, returning=False)
    if journal.entries:
        journal.write_into(record)
    else:  # a market order that met an empty book moved nothing
        sql.rows_delete([record])
    return order


# What matching changes in an order (a maker's cancel reason stays empty).
_ORDER_OUTCOME = (
    "filled_quantity",
    "executed_value",
    "fee",
    "locked",
    "status",
    "cancel_reason",
    "updated_at",
)


def _fill(
    *, journal: _Journal, market: Market, taker: Order, maker: Order, quantity: Decimal
) -> Trade:
    """Exchange ``quantity`` base between the two orders at the maker's price."""
    price = maker.price
    quote_amount = price * quantity
    buyer, seller = (taker, maker) if taker.side == Side.BUY else (maker, taker)
    taker_rate, maker_rate = market.taker_fee, market.maker_fee
    buyer_rate = taker_rate if buyer is taker else maker_rate
    seller_rate = taker_rate if seller is taker else maker_rate
    base_unit, quote_unit = unit(market.base.decimals), unit(market.quote.decimals)
    buyer_fee = fee_for(quantity, rate=buyer_rate, token_unit=base_unit)
    seller_fee = fee_for(quote_amount, rate=seller_rate, token_unit=quote_unit)

    base_id, quote_id = market.base_id, market.quote_id
    journal.move(
        token_id=base_id,
        amount=quantity - buyer_fee,
        source=_locked(seller.user_id),
        target=_available(buyer.user_id),
    )
    journal.move(
        token_id=base_id,
        amount=buyer_fee,
        source=_locked(seller.user_id),
        target=_FEES,
    )
    journal.move(
        token_id=quote_id,
        amount=quote_amount - seller_fee,
        source=_locked(buyer.user_id),
        target=_available(seller.user_id),
    )
    journal.move(
        token_id=quote_id,
        amount=seller_fee,
        source=_locked(buyer.user_id),
        target=_FEES,
    )
    for order, fee in ((buyer, buyer_fee), (seller, seller_fee)):
        order.filled_quantity += quantity
        order.executed_value += quote_amount
        order.fee += fee
        order.locked -= quote_amount if order is buyer else quantity
    if maker.remaining == 0:
        maker.status = Order.Status.FILLED
    return Trade(
        market=market,
        maker_order=maker,
        taker_order=taker,
        taker_side=taker.side,
        price=price,
        quantity=quantity,
        quote_amount=quote_amount,
        maker_fee=buyer_fee if maker is buyer else seller_fee,
        taker_fee=buyer_fee if taker is buyer else seller_fee,
    )


@exact
def order_cancel(*, user: AbstractBaseUser, order: Order) -> Order:
    """Cancel an open order of ``user`` and release exactly what it still locks.

    Allowed on a halted market too: users can always take their funds back.
    """
    # The balance row to release into follows from the order's side and
    # market, which never change: when the caller's copy has its market, the
    # row is locked with the market, in one round trip.
    known = Order._meta.get_field("market").is_cached(order)
    try:
        return _order_cancel_once(user=user, order=order, guess_balance=known)
    except _GuessedWrong:  # a copy that was not this order's
        return _order_cancel_once(user=user, order=order, guess_balance=False)


def _order_cancel_once(
    *, user: AbstractBaseUser, order: Order, guess_balance: bool
) -> Order:
    # One pipeline, as in order_place: the lock with the order, the ledger
    # transaction and the balance row, then the commit with the writes.
    with sql.pipeline(), transaction.atomic(durable=True):
        record = LedgerTransaction(kind=LedgerTransaction.Kind.ORDER_CANCEL)
        record.order_id = order.pk
        record_saved = sql.rows_insert_later([record])
        market_locked = market_lock_later(market_id=order.market_id)
        found = sql.rows_select_later(Order, where={"id": order.pk, "user": user.pk})
        guessed = None
        if guess_balance:
            guessed_token_id = _reserved_token_id(order.market, order.side)
            guessed = balances_lock_later(
                user_ids=[user.pk], token_ids=[guessed_token_id]
            )
        market, found = market_locked(), found()
        record_saved()
        if not found:
            raise OrderNotFound()
        order = found[0]
        if not order.is_open:
            raise OrderNotOpen(f"Order #{order.pk} is already {order.status}.")
        token_id = _reserved_token_id(market, order.side)
        balances = guessed() if guessed is not None else {}
        if guessed is not None and guessed_token_id != token_id:
            raise _GuessedWrong()
        if (user.pk, token_id) not in balances:  # not guessed, or a missing row
            balances = balances_lock(user_ids=[user.pk], token_ids=[token_id])
        journal = _Journal(balances=balances)
        journal.move(
            token_id=token_id,
            amount=order.locked,
            source=_locked(user.pk),
            target=_available(user.pk),
        )
        order.status = Order.Status.CANCELLED
        order.cancel_reason = Order.CancelReason.USER
        order.locked = ZERO
        sql.rows_update([order], ["status", "cancel_reason", "locked", "updated_at"])
        journal.write_into(record)
        return order


def _reserved_token_id(market: Market, side: str) -> int:
    """What an open order on ``side`` reserves: quote for a buy, base for a sell."""
    return market.quote_id if side == Side.BUY else market.base_id
