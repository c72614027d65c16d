"""Orders, the request side: what the web views, the API and the admin call.

Placing, cancelling or amending an order never waits for a market: the
request checks what it can know, reserves the funds, and records the order
and a command for the market's matcher (``trading.matcher``) in one short
transaction. The matcher takes the commands in acceptance order, matches
them in memory and writes the results in batches. A request may then wait a
bounded time for its result (``order_wait``, ``command_wait``).

Order states
------------
``accepted``
    Recorded, funds reserved; the matcher has not taken it yet.
``waiting``
    A stop-limit order the matcher holds outside the book until the last
    trade price reaches its stop.
``open``
    Resting in the book, possibly partly filled.
``filled``, ``cancelled`` (``cancel_reason``: ``user``, ``unfilled`` for the
remainder of an immediate order, ``self_trade``)
    Closed; nothing is reserved any more.
``rejected`` (``reject_reason``, the matcher's code)
    Refused by the matcher as a whole (post-only that would trade, fill-or-kill
    that cannot fill, a market order below the minimum value, trades that
    would take a balance to 10^18 or more); its reservation is released and
    nothing else happened.

A cancel is a request too: acknowledged, it is queued, and the matcher
applies it in turn. By then the order may have filled: an acknowledged
cancel means "asked", and its result is either the order cancelled or
``order_not_open`` (it filled or closed first). An amend is the same, and
the matcher may refuse it with the order still open and unchanged:
``order_changed`` when the order changed meanwhile (it filled past the new
quantity, or a fill, self-trade prevention or an earlier amend left what it
has reserved short of the amended order),
``post_only_would_take`` when a post-only order's new price would trade at
once, or a market rule staff changed meanwhile (``command_refusal``).

Rules
-----
The rules of ``trading.engine`` hold (matching, fees, market orders,
self-trade prevention, post-only/IOC/FOK, stops, amends). Added here:

Checks of the request, in this order
    the order's options, the amounts, the client order id's length, the
    market's status, steps and precision, limit ``min_notional``, the client
    order id's uniqueness, then the balance.
    The matcher checks what needs the book: post-only, fill-or-kill, market
    ``min_notional``; an order it refuses ends ``rejected``.
Reservations
    A sell reserves its quantity of base. A limit or stop-limit buy reserves
    price x quantity of quote. A market buy is either by ``quote_amount`` (it
    reserves that amount and buys what it buys) or by base ``quantity`` with a
    ``protection_price`` it will never trade above (it reserves quantity x
    protection price); what is not spent is released as soon as it is
    matched. A request that cannot reserve is refused
    (``insufficient_balance``) and records nothing.
Market orders
    Never rest: ``GTC`` means ``IOC`` for them.
Client order ids
    Unique per user among live (accepted, waiting, open) orders. A create that
    repeats the user's latest order with that id (same market, side, type,
    amounts and options) returns that order, whatever its status (except
    rejected: a rejected order's id may be used again at once), and records
    nothing; a different order under an id still live is refused
    (``DuplicateClientOrderId``). Placements under one id take turns, so a
    repeat sent with the first finds it too (``_order_record``).
Halted markets
    Refuse new orders and amends; cancels are always accepted. Orders
    accepted before the halt are still matched.

Cost
----
A placement is one statement on PostgreSQL (``_PLACE_SQL``): it reserves
the funds and records the order, its command and the reservation's ledger
entries, committed on its own. With a client order id it runs in a
transaction after the id's turn is taken and the earlier order looked for
(four round trips). The market is not read for it: each process
keeps the markets it has read, and the statement reserves only while the
market is open on the terms the request was checked against (its tokens
active, the same steps and minimum). Otherwise the market is read again and
the request checked again, so a halt or new steps apply to the very next
order. A cancel is one statement too.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable, Sequence
from dataclasses import astuple, dataclass
from decimal import Decimal
from typing import NamedTuple, TypeVar

from django.conf import settings
from django.contrib.auth.base_user import AbstractBaseUser
from django.db import connection, connections, transaction
from django.utils import timezone

from core.locks import unique_value_serialize
from trading.exceptions import (
    BalanceLimitExceeded,
    BelowMinNotional,
    CommandFailed,
    DuplicateClientOrderId,
    FillOrKillNotFilled,
    InsufficientBalance,
    InvalidAmount,
    InvalidOrder,
    MarketClosed,
    OrderChanged,
    OrderNotFound,
    OrderNotOpen,
    PostOnlyWouldTake,
    PrecisionTooHigh,
    TradingError,
)
from trading.models import (
    CLIENT_ID,
    Balance,
    CommandRefusal,
    LedgerEntry,
    LedgerTransaction,
    Market,
    Order,
    OrderCommand,
)
from trading.money import (
    AMOUNT_LIMIT,
    EXACT,
    ZERO,
    exact,
    grouped,
    positive_amount_check,
    unit,
)

Side, OrderType, TimeInForce = Order.Side, Order.Type, Order.TimeInForce
Status, Kind = Order.Status, OrderCommand.Kind
T = TypeVar("T")


# -- Input checks -----------------------------------------------------------


def _step_check(value: Decimal | None, *, name: str, step: Decimal) -> None:
    if value is not None and value % step:
        raise PrecisionTooHigh(
            f"The {name} {grouped(value)} has too much precision: "
            f"it must be a multiple of {grouped(step)}."
        )


@dataclass(frozen=True)
class _Request:
    """A placement as checked, before the market is read."""

    side: str
    type: str
    quantity: Decimal | None
    price: Decimal | None
    quote_amount: Decimal | None
    protection_price: Decimal | None
    stop_price: Decimal | None
    time_in_force: str
    post_only: bool
    self_trade: str

    def digest(self, market: Market) -> str:
        """This request on ``market``, as ``Order.client_request`` keeps it:
        equal amounts written differently (1.0, 1) give the same digest."""
        fields = [market.pk, *astuple(self)]
        text = "\n".join(
            str(f.normalize() if isinstance(f, Decimal) else f) for f in fields
        )
        return hashlib.sha256(text.encode()).hexdigest()

    def matches(self, order: Order, market: Market) -> bool:
        """Whether ``order`` is this request, repeated. Compared with the
        request as sent: the matcher may have shrunk the order (self-trade
        prevention) and its owner amended it since."""
        if order.client_request:
            return order.client_request == self.digest(market)
        return (  # an order accepted before client_request was kept
            order.market_id == market.pk
            and order.side == self.side
            and order.type == self.type
            and order.quantity == self.quantity
            and order.price == self.price
            and order.quote_amount == self.quote_amount
            and order.protection_price == self.protection_price
            and order.stop_price == self.stop_price
            and order.time_in_force == self.time_in_force
            and order.post_only == self.post_only
            and order.self_trade == self.self_trade
        )

    def reservation(self) -> Decimal:
        """What the order reserves, in the token it pays with (base for a
        sell, quote for a buy): see the module docstring."""
        if self.side == Side.SELL:
            return self.quantity
        if self.quote_amount is not None:
            return self.quote_amount
        limit = self.price if self.price is not None else self.protection_price
        return limit * self.quantity


# Checked on every request: sets, not the enums' lists built at each call.
_SIDES, _TYPES = frozenset(Side.values), frozenset(OrderType.values)
_TIMES_IN_FORCE, _SELF_TRADES = (
    frozenset(TimeInForce.values),
    frozenset(Order.SelfTrade.values),
)


def _options_check(
    *,
    side: str,
    type: str,
    quantity: object,
    price: object,
    quote_amount: object,
    protection_price: object,
    stop_price: object,
    time_in_force: str,
    post_only: bool,
    self_trade: str,
) -> str:
    """Check the order's options; return the time in force it will have."""
    if side not in _SIDES:
        raise InvalidOrder(f"The side must be buy or sell, not {side!r}.")
    if type not in _TYPES:
        raise InvalidOrder(
            f"The type must be limit, market or stop_limit, not {type!r}."
        )
    if time_in_force not in _TIMES_IN_FORCE:
        raise InvalidOrder(
            f"The time in force must be GTC, IOC or FOK, not {time_in_force!r}."
        )
    if self_trade not in _SELF_TRADES:
        raise InvalidOrder(
            "Self-trade prevention must be one of "
            f"{', '.join(Order.SelfTrade.values)}, not {self_trade!r}."
        )
    if type == OrderType.MARKET:
        if price is not None:
            raise InvalidOrder("A market order takes no price.")
        if stop_price is not None:
            raise InvalidOrder("Only a stop-limit order takes a stop price.")
        if post_only:
            raise InvalidOrder("A market order cannot be post-only.")
        if quote_amount is not None:
            if side == Side.SELL:
                raise InvalidOrder("Only a market buy can give a quote amount.")
            if quantity is not None or protection_price is not None:
                raise InvalidOrder(
                    "A market buy gives either a quote amount to spend, or a "
                    "quantity with a protection price."
                )
        elif quantity is None:
            raise InvalidOrder("A market order needs a quantity.")
        elif side == Side.BUY and protection_price is None:
            raise InvalidOrder(
                "A market buy by quantity needs a protection price, the highest "
                "price it may pay (or give a quote amount to spend instead)."
            )
        return TimeInForce.FOK if time_in_force == TimeInForce.FOK else TimeInForce.IOC
    if price is None:
        raise InvalidOrder(f"A {type.replace('_', '-')} order needs a price.")
    if quantity is None:
        raise InvalidOrder("A limit order needs a quantity.")
    if quote_amount is not None or protection_price is not None:
        raise InvalidOrder(
            "Only a market order takes a quote amount or a protection price."
        )
    if type == OrderType.STOP_LIMIT and stop_price is None:
        raise InvalidOrder("A stop-limit order needs a stop price.")
    if type == OrderType.LIMIT and stop_price is not None:
        raise InvalidOrder("Only a stop-limit order takes a stop price.")
    if post_only and (type != OrderType.LIMIT or time_in_force != TimeInForce.GTC):
        raise InvalidOrder("A post-only order must be a good-till-cancelled limit.")
    return time_in_force


def _request_check(**fields) -> _Request:
    """Options, then amounts (the first two checks, before the market is read)."""
    time_in_force = _options_check(**fields)
    amounts = {
        name: None
        if fields[name] is None
        else positive_amount_check(fields[name], name=name.replace("_", " "))
        for name in ("quantity", "price", "quote_amount", "protection_price")
    }
    stop_price = fields["stop_price"]
    if stop_price is not None:
        stop_price = positive_amount_check(stop_price, name="stop price")
    limit = amounts["price"] or amounts["protection_price"]
    if limit is not None and limit * amounts["quantity"] >= AMOUNT_LIMIT:
        raise InvalidAmount("The order's value is too large.")
    return _Request(
        side=fields["side"],
        type=fields["type"],
        time_in_force=time_in_force,
        post_only=fields["post_only"],
        self_trade=fields["self_trade"],
        stop_price=stop_price,
        **amounts,
    )


def _market_fresh(market_id: int) -> Market:
    """The market as it is now: staff may halt it or change it at any time."""
    return Market.objects.select_related("base", "quote").get(pk=market_id)


# The markets this process has read, with their tokens: a request checks its
# amounts against this copy, and its write (``_order_insert_pg``, or the
# transaction elsewhere) checks that the market is still open and still has
# the steps and minimum it was checked against; when not, it is read again.
_markets: dict[int, Market] = {}


def _market_known(market_id: int) -> Market:
    market = _markets.get(market_id)
    if market is None:
        market = _markets[market_id] = _market_fresh(market_id)
    return market


def _market_reread(market_id: int) -> Market:
    market = _markets[market_id] = _market_fresh(market_id)
    return market


def _market_open_check(market: Market) -> None:
    if market.status != Market.Status.OPEN or not (
        market.base.is_active and market.quote.is_active
    ):
        raise MarketClosed(f"The {market.symbol} market does not accept orders now.")


def _steps_check(request: _Request, market: Market) -> None:
    for name in ("price", "stop_price", "protection_price"):
        _step_check(
            getattr(request, name),
            name=name.replace("_", " "),
            step=market.price_step,
        )
    _step_check(request.quantity, name="quantity", step=market.amount_step)
    _step_check(
        request.quote_amount, name="quote amount", step=unit(market.quote.decimals)
    )
    if request.price is not None and request.price * request.quantity < (
        market.min_notional
    ):
        raise BelowMinNotional(
            f"The order is worth {grouped(request.price * request.quantity)} "
            f"{market.quote.symbol}; the minimum is {grouped(market.min_notional)}."
        )


# -- Reservations -------------------------------------------------------------


def _reserved_token(market: Market, side: str):
    """What an order on ``side`` reserves: quote for a buy, base for a sell."""
    return market.quote if side == Side.BUY else market.base


def _reserved(*, user_id: int, token_id: int, amount: Decimal) -> bool:
    """Move ``amount`` from the user's available balance to locked, if it is
    available. Called inside the request's transaction. (Whoever the order
    trades with needs a balance row of each token of the market too: the
    matcher creates missing ones before its batch.)"""
    if connection.vendor == "postgresql":
        # One conditional statement: the row is locked only for this
        # transaction's few remaining statements, and never waited for first.
        with connection.cursor() as cursor:
            cursor.execute(
                "UPDATE trading_balance SET available = available - %s,"
                " locked = locked + %s, updated_at = %s"
                " WHERE user_id = %s AND token_id = %s AND available >= %s",
                [amount, amount, timezone.now(), user_id, token_id, amount],
            )
            return cursor.rowcount == 1
    # SQLite sums decimals as floats: compute here, write absolute values.
    # Its transactions take the write lock when they begin (settings:
    # transaction_mode IMMEDIATE), so nothing changes between.
    row = Balance.objects.filter(user_id=user_id, token_id=token_id).first()
    if row is None or row.available < amount:
        return False
    row.available -= amount
    row.locked += amount
    row.save(update_fields=["available", "locked", "updated_at"])
    return True


def _insufficient(*, user_id: int, token, amount: Decimal) -> InsufficientBalance:
    available = (
        Balance.objects.filter(user_id=user_id, token=token)
        .values_list("available", flat=True)
        .first()
    )
    return InsufficientBalance(
        f"This needs {grouped(amount)} {token.symbol}; "
        f"{grouped(available or ZERO)} is available."
    )


def _reserve(*, user_id: int, token, amount: Decimal) -> None:
    """``_reserved``, or raise ``InsufficientBalance``."""
    if not _reserved(user_id=user_id, token_id=token.pk, amount=amount):
        raise _insufficient(user_id=user_id, token=token, amount=amount)


def _reservation_record(
    *, kind: str, order: Order, token_id: int, amount: Decimal
) -> None:
    record = LedgerTransaction.objects.create(kind=kind, order=order)
    Account = LedgerEntry.Account
    LedgerEntry.objects.bulk_create(
        [
            LedgerEntry(
                transaction=record,
                token_id=token_id,
                account=account,
                user_id=order.user_id,
                amount=signed,
            )
            for account, signed in (
                (Account.USER_AVAILABLE, -amount),
                (Account.USER_LOCKED, amount),
            )
        ]
    )


# -- Placing ------------------------------------------------------------------


def _client_order_existing(
    *, user: AbstractBaseUser, client_order_id: str, request: _Request, market: Market
) -> Order | None:
    """The order an identical repeat returns; raises for a clash with a live
    one."""
    latest = (
        Order.objects.filter(user=user, client_order_id=client_order_id)
        .exclude(status=Status.REJECTED)
        .order_by("-pk")
        .first()
    )
    if latest is None:
        return None
    if request.matches(latest, market):
        return latest
    if latest.is_live:
        raise DuplicateClientOrderId(
            f"Order #{latest.pk}, still {latest.status}, already uses client "
            f"order id {client_order_id!r}."
        )
    return None


@exact
def order_place(
    *,
    user: AbstractBaseUser,
    market: Market,
    side: str,
    type: str,
    quantity: Decimal | None = None,
    price: Decimal | None = None,
    quote_amount: Decimal | None = None,
    protection_price: Decimal | None = None,
    stop_price: Decimal | None = None,
    time_in_force: str = "GTC",
    post_only: bool = False,
    self_trade: str = Order.SelfTrade.CANCEL_NEWEST,
    client_order_id: str | None = None,
) -> Order:
    """Accept an order: check it, reserve its funds, record it ``accepted``
    with a command for the matcher. Returns the order (an identical repeat
    of a client order id returns the earlier one). The result comes from
    the matcher: see ``order_wait``."""
    request = _request_check(
        side=side,
        type=type,
        quantity=quantity,
        price=price,
        quote_amount=quote_amount,
        protection_price=protection_price,
        stop_price=stop_price,
        time_in_force=time_in_force,
        post_only=post_only,
        self_trade=self_trade,
    )
    if client_order_id is not None and not (
        isinstance(client_order_id, str)
        and len(client_order_id) <= 64
        and CLIENT_ID.fullmatch(client_order_id)
    ):
        raise InvalidOrder(
            'A client order id has 1 to 64 characters: letters, digits and ". _ : / -".'
        )
    market = _market_known(market.pk)
    try:
        _market_open_check(market)
        _steps_check(request, market)
    except TradingError:
        market = _market_reread(market.pk)  # staff may just have changed it
        _market_open_check(market)
        _steps_check(request, market)
    return _order_accept(
        user=user, market=market, request=request, client_order_id=client_order_id
    )


class _Terms(NamedTuple):
    """What a request is checked against, besides the balance; the names are
    ``_PLACE_SQL``'s parameters."""

    base: int
    quote: int
    status: str
    base_active: bool
    quote_active: bool
    decimals: int
    price_step: Decimal
    amount_step: Decimal
    min_notional: Decimal


def _market_terms(market: Market) -> _Terms:
    return _Terms(
        base=market.base_id,
        quote=market.quote_id,
        status=market.status,
        base_active=market.base.is_active,
        quote_active=market.quote.is_active,
        decimals=market.quote.decimals,
        price_step=market.price_step,
        amount_step=market.amount_step,
        min_notional=market.min_notional,
    )


def _order_accept(
    *,
    user: AbstractBaseUser,
    market: Market,
    request: _Request,
    client_order_id: str | None,
) -> Order:
    """Record the order if the market still has the terms it was checked
    against and the funds are there; otherwise read the market again,
    check again, and tell which failed."""
    amount = request.reservation()
    for _attempt in range(2):
        token = _reserved_token(market, request.side)
        order = Order(
            user=user,
            market=market,
            side=request.side,
            type=request.type,
            time_in_force=request.time_in_force,
            post_only=request.post_only,
            self_trade=request.self_trade,
            client_order_id=client_order_id or "",
            client_request=request.digest(market) if client_order_id else "",
            price=request.price,
            quantity=request.quantity,
            quote_amount=request.quote_amount,
            protection_price=request.protection_price,
            stop_price=request.stop_price,
            locked=amount,
            status=Status.ACCEPTED,
        )
        recorded = _order_record(
            order, request=request, token_id=token.pk, terms=_market_terms(market)
        )
        if recorded is not None:
            return recorded
        fresh = _market_reread(market.pk)
        _market_open_check(fresh)
        _steps_check(request, fresh)
        if _market_terms(fresh) == _market_terms(market):
            break  # the balance
        market = fresh
    raise _insufficient(user_id=user.pk, token=token, amount=amount)


def _order_record(
    order: Order, *, request: _Request, token_id: int, terms: _Terms
) -> Order | None:
    """Record ``order`` (``_order_insert``): the order, or the earlier one an
    identical repeat of its client order id returns; None if the market's
    terms are no longer ``terms`` or the funds are not there.

    Looking for an earlier order under the id and inserting are two
    statements, and the unique index holds live orders only. Two placements
    under one id sent together both found none; if the matcher filled the
    first in between, the second made a second order. If the matcher's
    batch filling the first was still open, the second's insert waited for
    it on the index while holding the balance row the batch locks next: a
    deadlock. So placements under one id take turns from before the look to
    their commit, and the second finds the first's order whatever became of
    it. The turn is taken before any row is locked; while it is held, no
    live order under the id can appear or close unseen (one seen live ends
    the placement, returned or refused), so the insert never waits on the
    index."""
    postgres = connection.vendor == "postgresql"
    if postgres and not order.client_order_id:
        # One statement, committed on its own (``_PLACE_SQL``).
        if _order_insert_pg(order, token_id=token_id, terms=terms):
            return order
        return None
    with transaction.atomic(durable=True):
        if order.client_order_id:
            unique_value_serialize(
                model=Order, user=order.user_id, client_order_id=order.client_order_id
            )
            existing = _client_order_existing(
                user=order.user,
                client_order_id=order.client_order_id,
                request=request,
                market=order.market,
            )
            if existing is not None:
                return existing
        record = _order_insert_pg if postgres else _order_insert
        if record(order, token_id=token_id, terms=terms):
            return order
        return None


def _order_insert(order: Order, *, token_id: int, terms: _Terms) -> bool:
    """Reserve, insert the order, its command and its ledger entries in the
    caller's transaction, if the market's terms are still ``terms``; whether
    it did."""
    if _market_terms(_market_fresh(order.market_id)) != terms:
        return False
    if not _reserved(user_id=order.user_id, token_id=token_id, amount=order.locked):
        return False
    order.save(force_insert=True)
    OrderCommand.objects.create(
        market_id=order.market_id,
        kind=Kind.PLACE,
        user_id=order.user_id,
        order=order,
    )
    _reservation_record(
        kind=LedgerTransaction.Kind.ORDER_PLACE,
        order=order,
        token_id=token_id,
        amount=order.locked,
    )
    return True


# The order's columns but its id, as ``_order_insert_pg`` inserts them.
_ORDER_FIELDS = [
    field for field in Order._meta.concrete_fields if not field.primary_key
]

# One statement, so one round trip and (outside a transaction) its own
# commit: reserve the funds if the market is open on the terms the request
# was checked against, then insert the order, its command and the
# reservation's ledger transaction and entries. Every part runs or none.
# (Only the model's column names are formatted in.)
_PLACE_SQL = """
WITH reserved AS (
    UPDATE trading_balance SET available = available - %(amount)s,
        locked = locked + %(amount)s, updated_at = %(now)s
    WHERE user_id = %(user)s AND token_id = %(token)s
        AND available >= %(amount)s
        AND EXISTS (
            SELECT FROM trading_market AS m
            JOIN tokens_token AS b ON b.id = m.base_id
            JOIN tokens_token AS q ON q.id = m.quote_id
            WHERE m.id = %(market)s AND m.base_id = %(base)s
                AND m.quote_id = %(quote)s AND m.status = %(status)s
                AND b.is_active = %(base_active)s
                AND q.is_active = %(quote_active)s
                AND q.decimals = %(decimals)s
                AND m.price_step = %(price_step)s
                AND m.amount_step = %(amount_step)s
                AND m.min_notional = %(min_notional)s)
    RETURNING 1
), placed AS (
    INSERT INTO trading_order ({columns})
    SELECT {values} FROM reserved
    RETURNING id
), queued AS (
    INSERT INTO trading_ordercommand (
        market_id, kind, user_id, order_id, reserved, created_at)
    SELECT %(market)s, %(kind)s, %(user)s, id, 0, %(now)s FROM placed
), recorded AS (
    INSERT INTO trading_ledgertransaction (kind, order_id, created_at)
    SELECT %(ledger_kind)s, id, %(now)s FROM placed
    RETURNING id
), entries AS (
    INSERT INTO trading_ledgerentry (
        transaction_id, token_id, account, user_id, amount)
    SELECT recorded.id, %(token)s, entry.account, %(user)s, entry.amount
    FROM recorded, (VALUES
        (%(available)s, %(released)s::numeric),
        (%(locked)s, %(amount)s::numeric)) AS entry(account, amount)
)
SELECT id FROM placed
""".format(  # noqa: S608
    columns=", ".join(field.column for field in _ORDER_FIELDS),
    values=", ".join(f"%(o_{field.column})s" for field in _ORDER_FIELDS),
)


def _order_insert_pg(order: Order, *, token_id: int, terms: _Terms) -> bool:
    """``_order_insert`` as one statement (see ``_PLACE_SQL``)."""
    now = timezone.now()
    order.created_at = order.updated_at = now
    db = connections[connection.alias]  # not the proxy, once per field
    params = {
        f"o_{field.column}": field.get_db_prep_save(getattr(order, field.attname), db)
        for field in _ORDER_FIELDS
    }
    params |= {
        "amount": order.locked,
        "released": -order.locked,
        "now": now,
        "user": order.user_id,
        "token": token_id,
        "market": order.market_id,
        **terms._asdict(),
        "kind": Kind.PLACE,
        "ledger_kind": LedgerTransaction.Kind.ORDER_PLACE,
        "available": LedgerEntry.Account.USER_AVAILABLE,
        "locked": LedgerEntry.Account.USER_LOCKED,
    }
    with connection.cursor() as cursor:
        cursor.execute(_PLACE_SQL, params)
        row = cursor.fetchone()
    if row is None:
        return False
    order.pk = row[0]
    order._state.adding = False
    order._state.db = connection.alias
    return True


# -- Cancels and amends ---------------------------------------------------------


def _own_live_order(*, user: AbstractBaseUser, order: Order) -> Order:
    """A fresh copy of the user's order, refused unless it is still live."""
    found = Order.objects.filter(pk=order.pk, user=user).first()
    if found is None:
        raise OrderNotFound()
    if not found.is_live:
        raise OrderNotOpen(f"Order #{found.pk} is already {found.status}.")
    return found


def order_cancel(*, user: AbstractBaseUser, order: Order) -> OrderCommand:
    """Ask the matcher to cancel an order of ``user``; returns the queued
    command (see ``command_wait``). Refused at once if the order is already
    closed; accepted on a halted market too, so that funds can always be
    taken back. Acknowledged does not mean cancelled: the order may fill
    before the matcher takes the cancel."""
    if connection.vendor == "postgresql":
        queued = _cancel_queue_pg(user=user, order_id=order.pk)
        if queued is not None:
            return queued
    found = _own_live_order(user=user, order=order)  # refused with the reason
    return OrderCommand.objects.create(
        market_id=found.market_id, kind=Kind.CANCEL, user=user, order=found
    )


def _cancel_queue_pg(*, user: AbstractBaseUser, order_id: int) -> OrderCommand | None:
    """Queue the cancel in one statement if the order is the user's and live."""
    now = timezone.now()
    with connection.cursor() as cursor:
        cursor.execute(
            "INSERT INTO trading_ordercommand ("
            " market_id, kind, user_id, order_id, reserved, created_at)"
            " SELECT market_id, %s, user_id, id, 0, %s FROM trading_order"
            " WHERE id = %s AND user_id = %s AND status = ANY(%s)"
            " RETURNING id, market_id",
            [Kind.CANCEL, now, order_id, user.pk, list(Order.LIVE)],
        )
        row = cursor.fetchone()
    if row is None:
        return None
    command = OrderCommand(
        pk=row[0],
        market_id=row[1],
        kind=Kind.CANCEL,
        user=user,
        order_id=order_id,
        reserved=ZERO,
        created_at=now,
    )
    command._state.adding = False
    command._state.db = connection.alias
    return command


def orders_cancel_all(
    *, user: AbstractBaseUser, market: Market | None = None
) -> list[OrderCommand]:
    """Ask to cancel every live order of ``user`` in ``market``, or in every
    market where the user has one; one command per market."""
    if market is not None:
        market_ids = [market.pk]
    else:
        live = Order.objects.filter(user=user, status__in=Order.LIVE)
        market_ids = sorted(set(live.values_list("market_id", flat=True)))
    with transaction.atomic(durable=True):
        return [
            OrderCommand.objects.create(
                market_id=market_id, kind=Kind.CANCEL_ALL, user=user
            )
            for market_id in market_ids
        ]


@exact
def order_amend(
    *,
    user: AbstractBaseUser,
    order: Order,
    price: Decimal | None = None,
    quantity: Decimal | None = None,
) -> OrderCommand:
    """Ask to change a limit order's price and/or total quantity (filled part
    included). A lower quantity keeps the order's place in the book; a new
    price or a higher quantity queues it again. A buy that needs more quote
    (or a sell more base) reserves the difference now; whatever the amend
    does not use is released when the matcher applies or refuses it."""
    if price is None and quantity is None:
        raise InvalidOrder("An amend changes the price, the quantity or both.")
    if price is not None:
        price = positive_amount_check(price, name="price")
    if quantity is not None:
        quantity = positive_amount_check(quantity, name="quantity")
    with transaction.atomic(durable=True):
        found = _own_live_order(user=user, order=order)
        # A stop-limit enters the book only once triggered: until then
        # (``waiting``, or still ``accepted`` while the matcher has not taken
        # it) the matcher would refuse the amend as if the order had closed.
        if found.type == OrderType.MARKET or (
            found.type == OrderType.STOP_LIMIT
            and found.status in (Status.ACCEPTED, Status.WAITING)
        ):
            raise OrderNotOpen(
                f"Order #{found.pk} cannot be amended: only a limit order in "
                "the book can."
            )
        market = _market_fresh(found.market_id)
        _market_open_check(market)
        new_price = found.price if price is None else price
        new_quantity = found.quantity if quantity is None else quantity
        if new_quantity <= found.filled_quantity:
            raise InvalidAmount(
                f"The quantity must stay above what is filled "
                f"({grouped(found.filled_quantity)})."
            )
        if new_price * new_quantity >= AMOUNT_LIMIT:
            raise InvalidAmount("The order's value is too large.")
        _step_check(new_price, name="price", step=market.price_step)
        _step_check(new_quantity, name="quantity", step=market.amount_step)
        if new_price * new_quantity < market.min_notional:
            raise BelowMinNotional(
                f"The order would be worth {grouped(new_price * new_quantity)} "
                f"{market.quote.symbol}; the minimum is "
                f"{grouped(market.min_notional)}."
            )
        remaining = new_quantity - found.filled_quantity
        needs = new_price * remaining if found.side == Side.BUY else remaining
        extra = max(needs - found.locked, ZERO)
        if extra:
            token = _reserved_token(market, found.side)
            _reserve(user_id=user.pk, token=token, amount=extra)
            _reservation_record(
                kind=LedgerTransaction.Kind.ORDER_AMEND,
                order=found,
                token_id=token.pk,
                amount=extra,
            )
        return OrderCommand.objects.create(
            market=market,
            kind=Kind.AMEND,
            user=user,
            order=found,
            price=price,
            quantity=quantity,
            reserved=extra,
        )


# -- Waiting for the matcher -------------------------------------------------------


# The matcher's refusals as the request side's exceptions, so that a refused
# order answers with the same code whether it was refused early or late.
REFUSALS: dict[str, type[TradingError]] = {
    Order.RejectReason.INVALID_ORDER: InvalidOrder,
    Order.RejectReason.INVALID_AMOUNT: InvalidAmount,
    Order.RejectReason.PRECISION_TOO_HIGH: PrecisionTooHigh,
    Order.RejectReason.BELOW_MIN_NOTIONAL: BelowMinNotional,
    Order.RejectReason.RESERVATION_MISMATCH: CommandFailed,
    Order.RejectReason.INSUFFICIENT_RESERVATION: OrderChanged,
    Order.RejectReason.POST_ONLY_WOULD_TAKE: PostOnlyWouldTake,
    Order.RejectReason.FILL_OR_KILL_NOT_FILLED: FillOrKillNotFilled,
    Order.RejectReason.ORDER_NOT_FOUND: OrderNotFound,
    Order.RejectReason.ORDER_NOT_OPEN: OrderNotOpen,
    Order.RejectReason.BALANCE_LIMIT: BalanceLimitExceeded,
    Order.RejectReason.MATCHER_ERROR: CommandFailed,
}
_MESSAGES = {
    Order.RejectReason.ORDER_NOT_OPEN: "The order was no longer open when the "
    "matcher took the request: it had filled or closed first.",
}


def refusal_for(code: str) -> TradingError:
    """The exception a matcher's refusal ``code`` answers as."""
    error = REFUSALS.get(code, CommandFailed)
    return error(_MESSAGES.get(code))


def order_refusal(order: Order) -> TradingError | None:
    """Why the matcher rejected ``order``, as an exception naming its amounts;
    None otherwise."""
    if order.status != Status.REJECTED:
        return None
    Reason, market, reason = Order.RejectReason, order.market, order.reject_reason
    message = None
    if reason == Reason.BELOW_MIN_NOTIONAL and order.type != OrderType.MARKET:
        # A limit and a stop-limit are checked at their price when accepted:
        # staff raised the minimum before they matched.
        message = (
            "The order is worth "
            f"{grouped(EXACT.multiply(order.price, order.quantity))} "
            f"{market.quote.symbol}, less than the market's minimum value of "
            f"{grouped(market.min_notional)} {market.quote.symbol}; it was not "
            "placed."
        )
    elif reason == Reason.BELOW_MIN_NOTIONAL and order.protection_price is not None:
        # The matcher swept the book only up to the cap: what it found there
        # (perhaps nothing) was worth less than the minimum.
        message = (
            "Too little is offered at or below your price limit of "
            f"{grouped(order.protection_price)} {market.quote.symbol}: less "
            f"than the market's minimum value of {grouped(market.min_notional)} "
            f"{market.quote.symbol}. The order was not placed; raise your price "
            "limit or wait for more sellers."
        )
    elif reason == Reason.BELOW_MIN_NOTIONAL:
        message = (
            "The book could fill this order for less than the market's minimum "
            f"value of {grouped(market.min_notional)} {market.quote.symbol}; it "
            "was not placed."
        )
    elif reason == Reason.FILL_OR_KILL_NOT_FILLED:
        size = (
            f"{grouped(order.quantity)} {market.base.symbol}"
            if order.quantity is not None
            else f"{grouped(order.quote_amount)} {market.quote.symbol}"
        )
        message = (
            f"The book cannot fill all {size} at once; the fill-or-kill order "
            "was not placed."
        )
    elif reason == Reason.POST_ONLY_WOULD_TAKE:
        message = (
            f"At {grouped(order.price)} the post-only order would trade at once; "
            "it was not placed."
        )
    error = REFUSALS.get(order.reject_reason, CommandFailed)
    return error(message) if message else refusal_for(order.reject_reason)


def command_refusal(command: OrderCommand) -> TradingError | None:
    """Why the matcher refused a cancel or amend; None if it applied it (or
    has not taken it yet)."""
    code = (
        CommandRefusal.objects.filter(command_id=command.pk)
        .values_list("code", flat=True)
        .first()
    )
    if code is None:
        return None
    if command.kind == Kind.AMEND:
        return _amend_refusal(command, code)
    return refusal_for(code)


def _amend_refusal(command: OrderCommand, code: str) -> TradingError:
    """``refusal_for`` in an amend's words: the order is still there as it
    was, where a placement's words say it was not placed or blame amounts
    that were valid when sent. The request checked the amend against the
    order and the market as they were; the matcher refuses it when the
    order changed or staff changed the market's rules meanwhile."""
    Reason = Order.RejectReason
    order = Order.objects.select_related("market__base", "market__quote").get(
        pk=command.order_id
    )
    market = order.market
    price = order.price if command.price is None else command.price
    quantity = order.quantity if command.quantity is None else command.quantity
    unchanged = f"the amend was refused and order #{order.pk} is unchanged"
    if (
        code == Reason.INVALID_AMOUNT
        and command.quantity is not None
        and command.quantity <= order.filled_quantity
    ):
        return OrderChanged(
            "While the amend waited, the order's fills reached "
            f"{grouped(order.filled_quantity)} {market.base.symbol}, past the "
            f"new quantity of {grouped(quantity)}: {unchanged}."
        )
    if code == Reason.INSUFFICIENT_RESERVATION:
        # A fill, self-trade prevention or an earlier amend changed the order
        # after this amend reserved against it: say how it stands, not why.
        return OrderChanged(
            f"Order #{order.pk} changed while the amend waited: it is now "
            f"{grouped(order.quantity)} {market.base.symbol} at "
            f"{grouped(order.price)} {market.quote.symbol}, "
            f"{grouped(order.filled_quantity)} filled, and what it has reserved "
            "no longer covers the amended order. The amend was refused and "
            "changed nothing: look at the order as it is now before amending it "
            "again."
        )
    if code == Reason.POST_ONLY_WOULD_TAKE:
        return PostOnlyWouldTake(
            f"At {grouped(price)} the post-only order would trade at once: "
            f"{unchanged}, at {grouped(order.price)}."
        )
    if code == Reason.BELOW_MIN_NOTIONAL:
        return BelowMinNotional(
            "The amended order would be worth "
            f"{grouped(EXACT.multiply(price, quantity))} "
            f"{market.quote.symbol}, less than the market's minimum of "
            f"{grouped(market.min_notional)}: {unchanged}."
        )
    if code == Reason.PRECISION_TOO_HIGH:
        return PrecisionTooHigh(
            f"The new price or quantity is off the market's steps (price "
            f"{grouped(market.price_step)}, quantity {grouped(market.amount_step)})"
            f": {unchanged}."
        )
    return refusal_for(code)


def _wait_seconds(timeout: float | None) -> float:
    return settings.ORDER_RESULT_WAIT_SECONDS if timeout is None else timeout


def order_wait(*, order: Order, timeout: float | None = None) -> Order:
    """The order as it stands once the matcher has taken it, or after
    ``timeout`` seconds (``ORDER_RESULT_WAIT_SECONDS`` by default) if it has
    not: then it is still ``accepted``."""
    orders = Order.objects.select_related("market__base", "market__quote")

    def taken() -> Order | None:
        fresh = orders.get(pk=order.pk)
        return None if fresh.status == Status.ACCEPTED else fresh

    found = _wait_until(taken, market_id=order.market_id, timeout=timeout)
    return found if found is not None else orders.get(pk=order.pk)


def command_wait(*, command: OrderCommand, timeout: float | None = None) -> bool:
    """Whether the matcher has taken ``command`` within ``timeout`` seconds
    (``ORDER_RESULT_WAIT_SECONDS`` by default). Then ``command_refusal``
    says whether it refused it."""
    queued = OrderCommand.objects.filter(pk=command.pk)
    return bool(
        _wait_until(
            lambda: None if queued.exists() else True,
            market_id=command.market_id,
            timeout=timeout,
        )
    )


def commands_wait(*, commands: Sequence[OrderCommand]) -> list[bool]:
    """``command_wait`` for each of ``commands``, all within one wait of
    ``ORDER_RESULT_WAIT_SECONDS``: waiting that long for each, a matcher that
    is behind or stopped held a request for many commands past gunicorn's
    timeout."""
    deadline = time.monotonic() + _wait_seconds(None)
    return [
        command_wait(command=command, timeout=max(0.0, deadline - time.monotonic()))
        for command in commands
    ]


def notify_channel(market_id: int) -> str:
    """The PostgreSQL channel a market's matcher notifies after each batch."""
    return f"trading_matched_{market_id}"


def _wait_until(
    check: Callable[[], T | None], *, market_id: int, timeout: float | None
) -> T | None:
    """``check()``'s first result that is not None, or None after the timeout.

    With ``ORDER_MATCH_INLINE`` (tests) the market's queue is drained in this
    process first. On PostgreSQL the request LISTENs to the matcher's
    notification, sent once per committed batch, and checks again on each;
    elsewhere (or inside a transaction, where a LISTEN would wait for its
    commit) it polls.
    """
    if settings.ORDER_MATCH_INLINE:
        from trading.matcher import drain

        drain(market_id=market_id, wait=True)
        return check()
    deadline = time.monotonic() + _wait_seconds(timeout)
    if connection.vendor == "postgresql" and not connection.in_atomic_block:
        return _wait_notified(
            check, channel=notify_channel(market_id), deadline=deadline
        )
    pause = 0.005
    while True:
        found = check()
        if found is not None or time.monotonic() >= deadline:
            return found
        time.sleep(min(pause, max(0.0, deadline - time.monotonic())))
        pause = min(pause * 2, 0.05)


def _wait_notified(
    check: Callable[[], T | None], *, channel: str, deadline: float
) -> T | None:
    connection.ensure_connection()
    raw = connection.connection
    with connection.cursor() as cursor:
        cursor.execute(f'LISTEN "{channel}"')
    try:
        while True:
            # Checked after LISTEN: a batch committed in between is seen.
            found = check()
            left = deadline - time.monotonic()
            if found is not None or left <= 0:
                return found
            # A notification that came during check() waits in psycopg's
            # backlog and ends this wait at once.
            for _ in raw.notifies(timeout=left, stop_after=1):
                pass
    finally:
        with connection.cursor() as cursor:
            cursor.execute(f'UNLISTEN "{channel}"')
