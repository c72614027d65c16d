"""What the matcher gives the engine (commands) and gets back (results).

Commands are accepted requests in acceptance order: each carries the
``sequence`` the matcher assigned when it took it, and a placement or an
amend carries the funds the request side already moved from the user's
available balance to locked for it (``reserved``). Results say everything the
matcher must write: order states, trades, fund movements and book levels.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal
from enum import StrEnum
from typing import NamedTuple

from trading.money import ZERO


class Side(StrEnum):
    BUY = "buy"
    SELL = "sell"


class OrderType(StrEnum):
    LIMIT = "limit"
    MARKET = "market"
    STOP_LIMIT = "stop_limit"


class TimeInForce(StrEnum):
    GTC = "GTC"
    IOC = "IOC"
    FOK = "FOK"


class Stp(StrEnum):
    """Self-trade prevention: what happens when an incoming order meets a
    resting order of the same user. The incoming order's mode decides."""

    CANCEL_NEWEST = "cancel_newest"  # the incoming remainder is cancelled
    CANCEL_OLDEST = "cancel_oldest"  # the resting order is cancelled
    CANCEL_BOTH = "cancel_both"
    DECREMENT_AND_CANCEL = "decrement_and_cancel"  # smaller cancelled, larger cut


class Status(StrEnum):
    WAITING = "waiting"  # a stop order not triggered yet, outside the book
    OPEN = "open"  # resting in the book (possibly partly filled)
    FILLED = "filled"
    CANCELLED = "cancelled"
    REJECTED = "rejected"  # never accepted; its reservation is released


class CancelReason(StrEnum):
    USER = "user"
    UNFILLED = "unfilled"  # the remainder of an immediate (IOC/FOK/market) order
    SELF_TRADE = "self_trade"


class Reject(StrEnum):
    """Why a command was refused; a refused command changes nothing else."""

    INVALID_ORDER = "invalid_order"  # options that do not go together
    INVALID_AMOUNT = "invalid_amount"  # missing, not a Decimal, zero, negative
    PRECISION_TOO_HIGH = "precision_too_high"  # off the price or amount step
    BELOW_MIN_NOTIONAL = "below_min_notional"
    RESERVATION_MISMATCH = "reservation_mismatch"  # place: not what it needs
    INSUFFICIENT_RESERVATION = "insufficient_reservation"  # amend: too little
    POST_ONLY_WOULD_TAKE = "post_only_would_take"
    FILL_OR_KILL_NOT_FILLED = "fill_or_kill_not_filled"
    ORDER_NOT_FOUND = "order_not_found"  # another user's order
    ORDER_NOT_OPEN = "order_not_open"  # filled, cancelled, or a waiting stop


# -- Commands ---------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Place:
    """A new order.

    ``quantity`` is in base; a market buy gives either ``quote_amount`` (the
    quote to spend) or ``quantity`` with ``protection_price``. ``price`` is
    the limit price of a limit or stop-limit order. ``reserved`` must be what
    the order needs: quantity for a sell, price x quantity for a limit or
    stop-limit buy, ``quote_amount`` or quantity x protection price for a
    market buy.
    """

    sequence: int
    order_id: int
    user_id: int
    side: Side
    type: OrderType
    reserved: Decimal
    quantity: Decimal | None = None
    price: Decimal | None = None
    quote_amount: Decimal | None = None
    protection_price: Decimal | None = None
    stop_price: Decimal | None = None
    time_in_force: TimeInForce = TimeInForce.GTC
    post_only: bool = False
    stp: Stp = Stp.CANCEL_NEWEST


@dataclass(frozen=True, slots=True)
class Cancel:
    sequence: int
    order_id: int
    user_id: int


@dataclass(frozen=True, slots=True)
class CancelAll:
    """Cancel every open or waiting order of the user in this market."""

    sequence: int
    user_id: int


@dataclass(frozen=True, slots=True)
class Amend:
    """Change a resting order's price and/or total ``quantity`` (filled part
    included). ``reserved`` is the extra the request side locked for it (a buy
    at a higher price or a larger quantity), in the token ``side`` locks;
    whatever is not needed is released, all of it if the amend is refused."""

    sequence: int
    order_id: int
    user_id: int
    side: Side
    quantity: Decimal | None = None
    price: Decimal | None = None
    reserved: Decimal = ZERO


Command = Place | Cancel | CancelAll | Amend


# -- Results ----------------------------------------------------------------


class Account(NamedTuple):
    kind: str  # "available", "locked" or "fees"
    user_id: int | None = None


FEES = Account("fees")


def available(user_id: int) -> Account:
    return Account("available", user_id)


def locked(user_id: int) -> Account:
    return Account("locked", user_id)


class Move(NamedTuple):
    """``amount`` (> 0) of ``token`` from one account to another. Each move
    sums to zero, so every token's movements do.

    ``order_id`` is the order whose locked funds move; ``target_order_id`` the
    order of the target account's user that they move for: the same order
    when funds it no longer needs go back, the buyer's order for the base a
    trade gives it, ``None`` for a fee."""

    token: int
    amount: Decimal
    source: Account
    target: Account
    order_id: int
    target_order_id: int | None


class Trade(NamedTuple):
    maker_order_id: int
    taker_order_id: int
    maker_user_id: int
    taker_user_id: int
    taker_side: Side
    price: Decimal  # the maker's
    quantity: Decimal
    quote_amount: Decimal
    maker_fee: Decimal  # in the token the maker received
    taker_fee: Decimal


class OrderUpdate(NamedTuple):
    """An order as it stands after the command (only orders it touched)."""

    order_id: int
    user_id: int
    status: Status
    reason: str  # a CancelReason, a Reject code, or ""
    price: Decimal | None
    quantity: Decimal | None  # None for a market buy by quote amount
    quote_amount: Decimal | None
    filled: Decimal
    executed_value: Decimal
    fee: Decimal
    locked: Decimal
    priority: tuple[int, int]


class LevelUpdate(NamedTuple):
    """A book level's new total; zero means the level is gone.
    ``book_sequence`` counts the market's level updates, without gaps."""

    book_sequence: int
    side: Side
    price: Decimal
    quantity: Decimal


@dataclass(slots=True)
class Result:
    """What one command did. ``orders`` holds each order it touched once, as
    it stands afterwards, a placement's own order first; ``moves`` come in
    the order they happened (trades, then releases)."""

    sequence: int
    rejected: Reject | None = None
    orders: list[OrderUpdate] = field(default_factory=list)
    trades: list[Trade] = field(default_factory=list)
    moves: list[Move] = field(default_factory=list)
    levels: list[LevelUpdate] = field(default_factory=list)
