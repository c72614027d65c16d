"""The matching engine: one market's book in memory, no database.

A matcher process owns each market: it takes accepted commands in acceptance
order, numbers them (``sequence``), passes them to ``MarketEngine.apply`` and
writes each ``Result`` to the database. This package is plain Python and
``Decimal`` (under ``trading.money.EXACT``); it never reads a clock.

Rules
-----
The rules of ``trading.services`` (amounts, fees, matching, market orders,
self-trade prevention, post-only/IOC/FOK) hold here, extended as follows.

Priority
    Price, then time; time is the ``priority`` ``(sequence, rank)`` of the
    command that queued the order (its placement, an amend that re-queued
    it, or the trade that triggered its stop). Trades happen at the resting
    (maker) order's price.
Funds
    Each command carries what the request side reserved for it. A placement
    must reserve exactly what the order needs (quantity for a sell, limit
    price x quantity for a limit or stop-limit buy, ``quote_amount`` or
    quantity x protection price for a market buy); each order's ``locked``
    then only goes down, and at the end of every command whatever an order
    holds beyond what it still needs is released (price improvement, an
    unspent market buy, a cancelled or refused order).
Fees
    Each side pays in the token it receives, the maker's rate for the
    resting order and the taker's for the incoming one, rounded up to the
    token's smallest unit.
Market orders
    Never rest (GTC means IOC). A sell or a buy by base ``quantity``; a buy by
    ``quantity`` needs a ``protection_price`` and never trades above it (a
    sell may give one too); a buy by ``quote_amount`` buys what the amount
    buys in whole amount steps and is filled once what is left buys no step
    more. ``min_notional`` applies to the value the order would trade; one
    that self-trade prevention stops before it trades that much trades
    nothing and is cancelled (``self_trade``), not refused.
Self-trade prevention
    Chosen per order (``Stp``), the incoming order's choice applies when the
    next resting order in priority is the same user's: cancel newest (the
    default: the incoming remainder is cancelled, reason ``self_trade``; fills
    before stand), cancel oldest (the resting order is cancelled and matching
    goes on), cancel both, decrement and cancel (the smaller is cancelled, the
    larger loses the smaller's quantity and keeps its place; no trade, no
    fee). Fill-or-kill fails if self-trade prevention cancels or shrinks it.
Post-only, IOC, FOK
    Post-only is for GTC limit orders; one that would cross is refused whole
    (an amend that would make it cross, too). An IOC remainder is cancelled
    (``unfilled``); a FOK order is refused whole unless it fills at once.
Stop-limit orders
    Wait outside the book, funds reserved, until the last trade price reaches
    the stop (buy: last >= stop; sell: last <= stop; at once if it already
    has). Any trade reaches them, not only a command's last: an order that
    trades through a stop and ends beyond it triggers it. They enter as limit
    orders after the command whose trade reached them, in the order the price
    reached them (``_trigger_stops``). A waiting
    stop can be cancelled, not amended. A triggered fill-or-kill stop that
    cannot fill is cancelled (``unfilled``).
Amend
    Quantity is the new total (above what is filled). Reducing it keeps the
    order's place; a new price or a larger quantity re-queues it with the
    amend's sequence, and it may trade at once. An amend that cannot be
    applied is refused alone, with a ``Reject`` code.
Cancel
    An order the engine no longer holds (filled, cancelled) is refused with
    ``order_not_open``: an acknowledged cancel does not mean cancelled.
Checks
    Of a placement: options, amounts, steps, limit ``min_notional``, the
    reservation, post-only, fill-or-kill, market ``min_notional``.
"""

from trading.engine.book import BookSide, Level, Order
from trading.engine.commands import (
    FEES,
    Account,
    Amend,
    Cancel,
    CancelAll,
    CancelReason,
    Command,
    LevelUpdate,
    Move,
    OrderType,
    OrderUpdate,
    Place,
    Reject,
    Result,
    Side,
    Status,
    Stp,
    TimeInForce,
    Trade,
    available,
    locked,
)
from trading.engine.matching import MarketEngine, MarketSpec

__all__ = [
    "FEES",
    "Account",
    "Amend",
    "BookSide",
    "Cancel",
    "CancelAll",
    "CancelReason",
    "Command",
    "Level",
    "LevelUpdate",
    "MarketEngine",
    "MarketSpec",
    "Move",
    "Order",
    "OrderType",
    "OrderUpdate",
    "Place",
    "Reject",
    "Result",
    "Side",
    "Status",
    "Stp",
    "TimeInForce",
    "Trade",
    "available",
    "locked",
]
