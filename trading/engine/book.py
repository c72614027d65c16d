"""The order book of one market: the engine's orders, and price levels.

Each side keeps its levels in priority order (best price first) in a list
kept sorted with ``bisect``, plus a dict from price to level; each level is a
FIFO queue of orders, so time priority is simply arrival in the queue. Nothing
is re-sorted per order.
"""

from __future__ import annotations

from bisect import bisect_left
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass
from decimal import Decimal

from trading.engine.commands import OrderType, Side, Status, Stp, TimeInForce
from trading.money import ZERO


@dataclass(slots=True, eq=False)
class Order:
    """An order the engine holds or has just closed.

    ``priority`` is ``(sequence, rank)``: the sequence of the command that
    put the order at its place in the queue (its placement, the amend that
    re-queued it, or the command whose trade triggered its stop) and, for
    stop orders triggered by one command, their rank (1, 2, ...; the
    command's own order is 0). The book is rebuilt in that order.
    """

    id: int
    user_id: int
    side: Side
    type: OrderType
    quantity: Decimal | None  # base; None for a market buy by quote amount
    price: Decimal | None  # limit price
    priority: tuple[int, int]
    time_in_force: TimeInForce = TimeInForce.GTC
    post_only: bool = False
    stp: Stp = Stp.CANCEL_NEWEST
    quote_amount: Decimal | None = None
    protection_price: Decimal | None = None
    stop_price: Decimal | None = None
    filled: Decimal = ZERO
    executed_value: Decimal = ZERO
    fee: Decimal = ZERO
    locked: Decimal = ZERO
    status: Status = Status.OPEN
    reason: str = ""
    in_book: bool = False

    @property
    def remaining(self) -> Decimal:
        return self.quantity - self.filled

    @property
    def limit(self) -> Decimal | None:
        """The worst price it may trade at (None: any)."""
        return self.price if self.price is not None else self.protection_price

    def needs(self) -> Decimal:
        """What the order must still have locked: nothing once closed; the
        remaining base for a sell; for a buy, the quote left to spend, or its
        limit (or protection) price times the remaining quantity."""
        if self.status not in (Status.OPEN, Status.WAITING):
            return ZERO
        if self.side == Side.SELL:
            return self.quantity - self.filled
        if self.quote_amount is not None:
            return self.quote_amount - self.executed_value
        return self.limit * (self.quantity - self.filled)


class Level:
    __slots__ = ("orders", "price", "quantity")

    def __init__(self, price: Decimal) -> None:
        self.price = price
        self.orders: deque[Order] = deque()
        self.quantity = ZERO  # the orders' remaining quantity


class BookSide:
    """The resting orders of one side. Every change of a level's total is
    noted in ``changed`` (prices, in order) for the engine to report."""

    __slots__ = ("_by_price", "_keys", "changed", "levels", "side")

    def __init__(self, side: Side) -> None:
        self.side = side
        self.levels: list[Level] = []  # best first
        self._keys: list[Decimal] = []  # sort keys of ``levels``: -price for bids
        self._by_price: dict[Decimal, Level] = {}
        self.changed: dict[Decimal, None] = {}

    def _key(self, price: Decimal) -> Decimal:
        return -price if self.side == Side.BUY else price

    def add(self, order: Order) -> None:
        """Queue ``order`` last at its price."""
        price = order.price
        level = self._by_price.get(price)
        if level is None:
            level = self._by_price[price] = Level(price)
            key = self._key(price)
            index = bisect_left(self._keys, key)
            self._keys.insert(index, key)
            self.levels.insert(index, level)
        level.orders.append(order)
        level.quantity += order.remaining
        order.in_book = True
        self.changed[price] = None

    def remove(self, order: Order) -> None:
        level = self._by_price[order.price]
        level.orders.remove(order)  # most often the first: a filled maker
        level.quantity -= order.remaining
        order.in_book = False
        self.changed[order.price] = None
        if not level.orders:
            index = bisect_left(self._keys, self._key(order.price))
            del self._keys[index], self.levels[index], self._by_price[order.price]

    def shrink(self, order: Order, quantity: Decimal) -> None:
        """Note that ``order`` (in place, keeping its priority) will have
        ``quantity`` less remaining; the caller changes the order."""
        self._by_price[order.price].quantity -= quantity
        self.changed[order.price] = None

    def beyond(self, price: Decimal, limit: Decimal | None) -> bool:
        """Whether a resting ``price`` is worse than an incoming ``limit``."""
        if limit is None:
            return False
        return price > limit if self.side == Side.SELL else price < limit

    def crosses(self, limit: Decimal | None) -> bool:
        """Whether an incoming order with ``limit`` would meet a resting one."""
        return bool(self.levels) and not self.beyond(self.levels[0].price, limit)

    def crossing(self, limit: Decimal | None) -> Iterator[Order]:
        """The orders an incoming order with ``limit`` may meet, in priority."""
        for level in self.levels:
            if self.beyond(level.price, limit):
                return
            yield from level.orders

    def level_quantity(self, price: Decimal) -> Decimal:
        level = self._by_price.get(price)
        return ZERO if level is None else level.quantity

    def orders(self) -> Iterator[Order]:
        for level in self.levels:
            yield from level.orders

    def depth(self, levels: int | None = None) -> list[tuple[Decimal, Decimal]]:
        """(price, total remaining) per level, best first."""
        return [(level.price, level.quantity) for level in self.levels[:levels]]
