"""What surrounds the matching engine, as far as its tests need: the request
side that reserves funds before a command is queued, and the balances the
matcher writes from each result. After every command it checks that money is
conserved and that the book is consistent."""

from __future__ import annotations

import itertools
from collections import defaultdict
from dataclasses import replace
from decimal import Decimal

from trading.engine import (
    Amend,
    Cancel,
    CancelAll,
    Command,
    MarketEngine,
    MarketSpec,
    OrderUpdate,
    Place,
    Result,
    Side,
    Status,
    Trade,
)
from trading.money import ZERO, unit

BASE, QUOTE = 1, 2

# BTC-USDT as in trading/tests/conftest.py: every notional is a whole number
# of quote units (0.01 x 0.0001 = 1E-6).
BTC_USDT = MarketSpec(
    base_token=BASE,
    quote_token=QUOTE,
    base_unit=unit(8),
    quote_unit=unit(6),
    price_step=Decimal("0.01"),
    amount_step=Decimal("0.0001"),
    min_notional=Decimal("1"),
    maker_fee=Decimal("0.001"),
    taker_fee=Decimal("0.002"),
)


class NotEnough(Exception):
    """The request side refuses: the user cannot afford the reservation."""


def reservation(
    *,
    side: str,
    quantity: Decimal | None = None,
    price: Decimal | None = None,
    quote_amount: Decimal | None = None,
    protection_price: Decimal | None = None,
    **_: object,
) -> Decimal:
    """What the request side reserves for a placement (tests may pass
    nonsense; the engine must refuse it, so this never raises)."""

    def number(value: object) -> bool:
        return isinstance(value, Decimal) and value.is_finite()

    limit = price if price is not None else protection_price
    if side == Side.SELL:
        return quantity if number(quantity) else ZERO
    if quote_amount is not None:
        return quote_amount if number(quote_amount) else ZERO
    return limit * quantity if number(limit) and number(quantity) else ZERO


class Exchange:
    def __init__(self, spec: MarketSpec = BTC_USDT) -> None:
        self.spec = spec
        self.engine = MarketEngine(spec)
        self.shadow: MarketEngine | None = None  # gets every command too
        self.available: dict[tuple[int, int], Decimal] = defaultdict(Decimal)
        self.locked: dict[tuple[int, int], Decimal] = defaultdict(Decimal)
        self.fees: dict[int, Decimal] = defaultdict(Decimal)
        self.deposited: dict[int, Decimal] = defaultdict(Decimal)
        self.orders: dict[int, OrderUpdate] = {}  # as the database has them
        self.trades: list[Trade] = []
        self.sides: dict[int, Side] = {}
        self.last_order_id = 0
        self._sequences = itertools.count(1)
        self._order_ids = itertools.count(1)

    def deposit(self, user: int, token: int, amount: Decimal | str) -> None:
        self.available[(user, token)] += Decimal(amount)
        self.deposited[token] += Decimal(amount)

    def token(self, side: str) -> int:
        return self.spec.quote_token if side == Side.BUY else self.spec.base_token

    # -- The request side ----------------------------------------------------

    def place(
        self, user: int, side: str, type: str = "limit", *, reserve=None, **fields
    ) -> Result:
        """Place an order, reserving what it needs (or ``reserve``)."""
        reserved = reservation(side=side, **fields) if reserve is None else reserve
        command = Place(
            sequence=next(self._sequences),
            order_id=next(self._order_ids),
            user_id=user,
            side=side,
            type=type,
            reserved=reserved,
            **fields,
        )
        return self.apply(command, user=user, token=self.token(side), amount=reserved)

    def cancel(self, user: int, order_id: int) -> Result:
        return self.apply(Cancel(next(self._sequences), order_id, user))

    def cancel_all(self, user: int) -> Result:
        return self.apply(CancelAll(next(self._sequences), user))

    def amend(
        self,
        user: int,
        order_id: int,
        *,
        quantity: Decimal | None = None,
        price: Decimal | None = None,
        reserve: Decimal | None = None,
    ) -> Result:
        """Amend, reserving the extra a buy needs by the order's last known
        state (or ``reserve``)."""
        known = self.orders[order_id]
        side = self.sides[order_id]
        if reserve is None:
            new_price = known.price if price is None else price
            new_quantity = known.quantity if quantity is None else quantity
            remaining = new_quantity - known.filled
            needs = new_price * remaining if side == Side.BUY else remaining
            reserve = max(needs - known.locked, ZERO)
        command = Amend(
            next(self._sequences), order_id, user, side, quantity, price, reserve
        )
        return self.apply(command, user=user, token=self.token(side), amount=reserve)

    # -- The matcher's writes -------------------------------------------------

    def apply(
        self,
        command: Command,
        *,
        user: int | None = None,
        token: int | None = None,
        amount: Decimal = ZERO,
    ) -> Result:
        if amount > 0:  # nonsense (negative) is for the engine to refuse
            if self.available[(user, token)] < amount:
                raise NotEnough()
            self.available[(user, token)] -= amount
            self.locked[(user, token)] += amount
        if isinstance(command, Place):
            self.sides[command.order_id] = command.side
            self.last_order_id = command.order_id
        result = self.engine.apply(command)
        if self.shadow is not None:
            assert self.shadow.apply(command) == result, command
        for move in result.moves:
            assert move.amount > 0, move
            assert move.source.kind == "locked", move
            self.locked[(move.source.user_id, move.token)] -= move.amount
            if move.target.kind == "fees":
                self.fees[move.token] += move.amount
            else:
                self.available[(move.target.user_id, move.token)] += move.amount
        for update in result.orders:
            self.orders[update.order_id] = update
            if update.status not in (Status.OPEN, Status.WAITING):
                assert update.locked == 0, update
        self.trades += result.trades
        self.check()
        return result

    def rebuilt(self) -> MarketEngine:
        """A new engine built from copies of the open and waiting orders, as
        a restarted matcher builds it from the database."""
        engine = self.engine
        rows = [
            replace(order, in_book=False)
            for order in (*engine.book_orders(), *engine.waiting_orders())
        ]
        return MarketEngine.rebuild(
            self.spec,
            reversed(rows),  # any order: their priority decides
            last_price=engine.last_price,
            sequence=engine.sequence,
            book_sequence=engine.book_sequence,
        )

    # -- Invariants ------------------------------------------------------------

    def check(self) -> None:
        """Money is conserved, every order locks exactly what it still needs,
        and the book is ordered, uncrossed and adds up."""
        held: dict[int, Decimal] = defaultdict(Decimal)
        for (_, token), amount in (*self.available.items(), *self.locked.items()):
            held[token] += amount
        for token, deposited in self.deposited.items():
            assert held[token] + self.fees[token] == deposited, token
        assert all(amount >= 0 for amount in self.available.values())
        assert all(amount >= 0 for amount in self.locked.values())

        held_by: dict[tuple[int, int], Decimal] = defaultdict(Decimal)
        engine = self.engine
        for order in (*engine.book_orders(), *engine.waiting_orders()):
            remaining = order.quantity - order.filled
            assert remaining > 0, order
            needs = order.price * remaining if order.side == Side.BUY else remaining
            assert order.locked == needs, order
            held_by[(order.user_id, self.token(order.side))] += order.locked
            assert self.orders[order.id].status == order.status, order
        for key, amount in self.locked.items():
            assert amount == held_by[key], key

        for side in (Side.BUY, Side.SELL):
            depth = engine.depth(side)
            prices = [price for price, _ in depth]
            best_first = sorted(prices, reverse=side == Side.BUY)
            assert prices == best_first and len(set(prices)) == len(prices)
            totals: dict[Decimal, Decimal] = defaultdict(Decimal)
            last_seen: dict[Decimal, tuple[int, int]] = {}
            for order in engine.book_orders(side):
                assert order.status == Status.OPEN and order.in_book, order
                totals[order.price] += order.quantity - order.filled
                assert last_seen.get(order.price, (0, 0)) < order.priority, order
                last_seen[order.price] = order.priority
            assert depth == list(totals.items())
        bids, asks = engine.depth(Side.BUY, 1), engine.depth(Side.SELL, 1)
        if bids and asks:
            assert bids[0][0] < asks[0][0], (bids, asks)


def update_of(result: Result, order_id: int) -> OrderUpdate:
    """The state ``result`` reports for ``order_id``."""
    (update,) = [u for u in result.orders if u.order_id == order_id]
    return update
