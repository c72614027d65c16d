"""The matching engine of one market: commands in, results out.

The rules are in the package docstring (``trading.engine``). An incoming
order is handled in two steps: ``_plan`` walks the book without changing it
and lists what will happen (fills and self-trade steps), so that fill-or-kill
and the market ``min_notional`` can refuse the order whole before anything
moves; ``_execute`` then carries the plan out. Funds follow one rule: an
order's ``locked`` only ever goes down by trades, and at the end of each
command whatever an order holds beyond what it still ``needs()`` is released.
"""

from __future__ import annotations

from bisect import bisect_left, insort
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from decimal import Decimal, localcontext
from operator import attrgetter

from trading.engine.book import BookSide, Order
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
from trading.money import AMOUNT_LIMIT, EXACT, ZERO, fee_for

BUY, SELL = Side.BUY, Side.SELL
LIMIT, MARKET, STOP_LIMIT = OrderType.LIMIT, OrderType.MARKET, OrderType.STOP_LIMIT
GTC, IOC, FOK = TimeInForce.GTC, TimeInForce.IOC, TimeInForce.FOK
_SIDES, _TYPES = frozenset(Side), frozenset(OrderType)
_TIMES_IN_FORCE, _STP_MODES = frozenset(TimeInForce), frozenset(Stp)


@dataclass(frozen=True, slots=True)
class MarketSpec:
    """What the engine needs to know of a market, as the database has it."""

    base_token: int
    quote_token: int
    base_unit: Decimal  # the token's smallest amount: trading.money.unit(decimals)
    quote_unit: Decimal
    price_step: Decimal
    amount_step: Decimal
    min_notional: Decimal = ZERO
    maker_fee: Decimal = ZERO
    taker_fee: Decimal = ZERO


# What a plan does, step by step (see ``_Plan``).
_FILL = "fill"  # trade ``quantity`` with the maker
_CANCEL_MAKER = "cancel maker"  # self-trade: the resting order is cancelled
_SHRINK_MAKER = "shrink maker"  # decrement: the resting order loses ``quantity``
_SHRINK_TAKER = "shrink taker"  # decrement: the incoming order loses ``quantity``


@dataclass(slots=True)
class _Plan:
    """What an incoming order will do, found without changing anything."""

    left: Decimal | None  # base still to take; None for a buy by quote amount
    budget: Decimal | None  # quote still to spend, for a buy by quote amount
    amount_step: Decimal
    steps: list[tuple[str, Order, Decimal]] = field(default_factory=list)
    notional: Decimal = ZERO  # the quote value of the fills
    self_trade: bool = False  # the incoming order ends cancelled by STP
    shrunk: bool = False  # the incoming order was decremented by STP
    complete: bool = False  # the incoming order has nothing left to take

    def room(self, price: Decimal) -> Decimal:
        """How much base the order can still take at ``price``: whole amount
        steps of what its quote buys, for a buy by quote amount."""
        if self.budget is None:
            return self.left
        return (self.budget // (price * self.amount_step)) * self.amount_step

    def take(self, kind: str, maker: Order, quantity: Decimal) -> None:
        self.steps.append((kind, maker, quantity))
        if self.budget is None:
            self.left -= quantity
        else:
            self.budget -= quantity * maker.price
        if kind == _FILL:
            self.notional += quantity * maker.price


def _is_amount(value: object) -> bool:
    """A positive, finite Decimal below the largest amount a field holds."""
    if not isinstance(value, Decimal) or not value.is_finite():
        return False
    return ZERO < value < AMOUNT_LIMIT


def _is_reservation(value: object) -> bool:
    return isinstance(value, Decimal) and value.is_finite() and value >= ZERO


class MarketEngine:
    """The book of one market and everything that changes it.

    ``apply`` takes commands in sequence order and returns what each did.
    The engine holds only open and waiting orders: an order it does not hold
    is, for a cancel or an amend, ``order_not_open`` (the request side has
    checked that the order exists and is the user's). Orders read through
    ``order``, ``book_orders`` and ``waiting_orders`` are the engine's own:
    look, do not change.
    """

    def __init__(
        self,
        spec: MarketSpec,
        *,
        last_price: Decimal | None = None,
        sequence: int = 0,
        book_sequence: int = 0,
    ) -> None:
        self.spec = spec  # may be replaced between commands (staff edits)
        self.last_price = last_price  # of the last trade: stops trigger on it
        self.sequence = sequence  # of the last command applied
        self.book_sequence = book_sequence  # of the last level update
        self._bids, self._asks = BookSide(BUY), BookSide(SELL)
        self._orders: dict[int, Order] = {}  # open and waiting
        self._by_user: dict[int, dict[int, Order]] = {}
        # Waiting stops as (key, priority, order id), in trigger order: the
        # key is the stop price for a buy, minus the stop price for a sell.
        self._buy_stops: list[tuple[Decimal, tuple[int, int], int]] = []
        self._sell_stops: list[tuple[Decimal, tuple[int, int], int]] = []
        self._reached: list[int] = []  # stops this command's trades reached
        self._result = Result(sequence)
        self._touched: dict[int, Order] = {}
        self._rank = 0

    @classmethod
    def rebuild(
        cls,
        spec: MarketSpec,
        orders: Iterable[Order],
        *,
        last_price: Decimal | None = None,
        sequence: int = 0,
        book_sequence: int = 0,
    ) -> MarketEngine:
        """An engine holding ``orders`` (open and waiting ones, as stored),
        queued in priority order. Raises ``ValueError`` for an order that
        could not be held as it is, or a crossed book."""
        engine = cls(
            spec, last_price=last_price, sequence=sequence, book_sequence=book_sequence
        )
        with localcontext(EXACT):
            for order in sorted(orders, key=attrgetter("priority")):
                if order.id in engine._orders or order.locked != order.needs():
                    raise ValueError(f"Order {order.id} is a duplicate or locks wrong.")
                if order.status == Status.WAITING and order.type == STOP_LIMIT:
                    engine._wait(order)
                elif (
                    order.status == Status.OPEN
                    and order.type != MARKET
                    and order.time_in_force == GTC
                    and order.remaining > 0
                ):
                    engine._rest(order)
                else:
                    raise ValueError(f"Order {order.id} cannot be in the book.")
            if engine._bids.levels and engine._asks.crosses(
                engine._bids.levels[0].price
            ):
                raise ValueError("The book is crossed.")
        engine._bids.changed.clear()
        engine._asks.changed.clear()
        return engine

    # -- Reading ------------------------------------------------------------

    def order(self, order_id: int) -> Order | None:
        """The open or waiting order ``order_id``, if the engine holds it."""
        return self._orders.get(order_id)

    def book_orders(self, side: Side | None = None) -> Iterator[Order]:
        """Resting orders in priority order, bids first."""
        for book in (self._bids, self._asks):
            if side is None or side == book.side:
                yield from book.orders()

    def waiting_orders(self) -> Iterator[Order]:
        """Stop orders not triggered yet: buys, then sells, in trigger order."""
        for _, _, order_id in (*self._buy_stops, *self._sell_stops):
            yield self._orders[order_id]

    def depth(
        self, side: Side, levels: int | None = None
    ) -> list[tuple[Decimal, Decimal]]:
        """(price, total remaining quantity) per level, best first."""
        return (self._bids if side == BUY else self._asks).depth(levels)

    # -- Commands -----------------------------------------------------------

    def apply(self, command: Command) -> Result:
        """Apply one command and return what it did.

        A refused command is reported in ``Result.rejected`` and changes
        nothing but releasing what was reserved for it. An exception is a bug
        (or commands out of order, ``ValueError``): the engine's state is then
        unknown, and the matcher must rebuild it from the database.
        """
        if command.sequence <= self.sequence:
            raise ValueError(f"Command {command.sequence} comes after {self.sequence}.")
        with localcontext(EXACT):
            self.sequence = command.sequence
            self._result, self._touched, self._rank = Result(command.sequence), {}, 0
            match command:
                case Place():
                    self._place(command)
                case Cancel():
                    self._cancel(command)
                case CancelAll():
                    self._cancel_all(command)
                case Amend():
                    self._amend(command)
                case _:
                    raise TypeError(f"Not a command: {command!r}")
            self._finish()
        return self._result

    def _place(self, command: Place) -> None:
        if command.order_id in self._orders:
            raise ValueError(f"Order {command.order_id} was placed already.")
        market = command.type == MARKET
        time_in_force = command.time_in_force
        if market and time_in_force != FOK:
            time_in_force = IOC  # a market order never rests
        order = Order(
            id=command.order_id,
            user_id=command.user_id,
            side=command.side,
            type=command.type,
            quantity=command.quantity,
            price=command.price,
            priority=(command.sequence, 0),
            time_in_force=time_in_force,
            post_only=command.post_only,
            stp=command.stp,
            quote_amount=command.quote_amount,
            protection_price=command.protection_price,
            stop_price=command.stop_price,
            locked=command.reserved if _is_reservation(command.reserved) else ZERO,
        )
        self._touch(order)
        refusal = self._place_refusal(command, order)
        if refusal is None and order.type == STOP_LIMIT:
            self._wait(order)
        elif refusal is None:
            refusal = self._enter(order)
        if refusal is not None:
            order.status, order.reason = Status.REJECTED, refusal
            self._result.rejected = refusal
        self._trigger_stops()

    def _place_refusal(self, command: Place, order: Order) -> Reject | None:
        """The checks that need no book, in the order of the services
        docstring: options, amounts, steps, limit ``min_notional``; then
        whether ``reserved`` is what the order needs."""
        c, spec = command, self.spec
        by_quote = c.quote_amount is not None
        if not (
            c.side in _SIDES
            and c.type in _TYPES
            and c.time_in_force in _TIMES_IN_FORCE
            and c.stp in _STP_MODES
        ):
            return Reject.INVALID_ORDER
        if c.type == MARKET:
            if (
                c.price is not None
                or c.stop_price is not None
                or c.post_only
                or (by_quote and (c.side == SELL or c.protection_price is not None))
                or (by_quote and c.quantity is not None)
                or (not by_quote and c.side == BUY and c.protection_price is None)
            ):
                return Reject.INVALID_ORDER
        elif (
            c.price is None
            or by_quote
            or c.protection_price is not None
            or (c.type == STOP_LIMIT) != (c.stop_price is not None)
            or (c.post_only and (c.time_in_force != GTC or c.type == STOP_LIMIT))
        ):
            return Reject.INVALID_ORDER
        prices = [
            p for p in (c.price, c.protection_price, c.stop_price) if p is not None
        ]
        size = c.quote_amount if by_quote else c.quantity
        if not (
            _is_amount(size)
            and all(map(_is_amount, prices))
            and _is_reservation(c.reserved)
        ):
            return Reject.INVALID_AMOUNT
        if not by_quote and order.limit and order.limit * c.quantity >= AMOUNT_LIMIT:
            return Reject.INVALID_AMOUNT
        if any(price % spec.price_step for price in prices) or size % (
            spec.quote_unit if by_quote else spec.amount_step
        ):
            return Reject.PRECISION_TOO_HIGH
        if c.price is not None and c.price * c.quantity < spec.min_notional:
            return Reject.BELOW_MIN_NOTIONAL
        if c.reserved != order.needs():
            return Reject.RESERVATION_MISMATCH
        return None

    def _cancel(self, command: Cancel) -> None:
        order = self._orders.get(command.order_id)
        if order is None:
            self._result.rejected = Reject.ORDER_NOT_OPEN
        elif order.user_id != command.user_id:
            self._result.rejected = Reject.ORDER_NOT_FOUND
        else:
            self._close(order, Status.CANCELLED, CancelReason.USER)

    def _cancel_all(self, command: CancelAll) -> None:
        # In priority order, so that a rebuilt engine reports the same.
        mine = self._by_user.get(command.user_id, {}).values()
        for order in sorted(mine, key=attrgetter("priority")):
            self._close(order, Status.CANCELLED, CancelReason.USER)

    def _amend(self, command: Amend) -> None:
        """Reducing the quantity keeps the order's place; a new price or a
        larger quantity queues it again, as a new order would be (it may
        trade at once)."""
        order = self._orders.get(command.order_id)
        refusal = self._amend_refusal(command, order)
        if refusal is not None:
            self._result.rejected = refusal
            if _is_reservation(command.reserved):
                self._release(
                    self._token(command.side),
                    command.reserved,
                    command.user_id,
                    command.order_id,
                )
            return
        price = order.price if command.price is None else command.price
        quantity = order.quantity if command.quantity is None else command.quantity
        order.locked += command.reserved
        self._touch(order)
        if price != order.price or quantity > order.quantity:
            self._book_side(order).remove(order)
            order.price, order.quantity = price, quantity
            order.priority = (command.sequence, 0)
            # Never refused: a GTC limit order, post-only checked above.
            self._enter(order)
            self._trigger_stops()
        elif quantity < order.quantity:
            self._shrink(order, order.quantity - quantity)

    def _amend_refusal(self, command: Amend, order: Order | None) -> Reject | None:
        c, spec = command, self.spec
        if not _is_reservation(c.reserved):
            return Reject.INVALID_AMOUNT
        if order is not None and (order.user_id != c.user_id or order.side != c.side):
            return Reject.ORDER_NOT_FOUND
        if order is None or order.status != Status.OPEN:
            return Reject.ORDER_NOT_OPEN  # gone, or a stop still waiting
        if c.price is None and c.quantity is None:
            return Reject.INVALID_ORDER
        price = order.price if c.price is None else c.price
        quantity = order.quantity if c.quantity is None else c.quantity
        if not (_is_amount(price) and _is_amount(quantity)) or quantity <= order.filled:
            return Reject.INVALID_AMOUNT
        if price % spec.price_step or quantity % spec.amount_step:
            return Reject.PRECISION_TOO_HIGH
        if price * quantity < spec.min_notional:
            return Reject.BELOW_MIN_NOTIONAL
        remaining = quantity - order.filled
        needs = price * remaining if order.side == BUY else remaining
        if needs > order.locked + c.reserved:
            return Reject.INSUFFICIENT_RESERVATION
        requeued = price != order.price or quantity > order.quantity
        if requeued and order.post_only and self._opposite(order).crosses(price):
            return Reject.POST_ONLY_WOULD_TAKE
        return None

    # -- Matching -----------------------------------------------------------

    def _enter(self, order: Order) -> Reject | None:
        """Match an incoming order, then fill, rest or cancel it. Returns why
        it is refused whole, if it is; then nothing has changed."""
        opposite = self._opposite(order)
        if order.post_only and opposite.crosses(order.price):
            return Reject.POST_ONLY_WOULD_TAKE
        plan = self._plan(order, opposite)
        if order.time_in_force == FOK and not (plan.complete and not plan.shrunk):
            return Reject.FILL_OR_KILL_NOT_FILLED
        if order.type == MARKET and plan.notional < self.spec.min_notional:
            if not plan.self_trade:
                return Reject.BELOW_MIN_NOTIONAL
            # Stopped by the user's own order before it trades the minimum
            # value: it trades nothing (the minimum holds) and is cancelled
            # for the self-trade, not refused as too small for the book. Its
            # mode still applies to the resting order, as past the minimum.
            plan.steps = [step for step in plan.steps if step[0] != _FILL]
        self._execute(order, plan)
        if plan.complete:
            self._close(order, Status.FILLED)
        elif plan.self_trade:
            self._close(order, Status.CANCELLED, CancelReason.SELF_TRADE)
        elif order.time_in_force == GTC:
            self._rest(order)
        else:
            self._close(order, Status.CANCELLED, CancelReason.UNFILLED)
        return None

    def _plan(self, taker: Order, opposite: BookSide) -> _Plan:
        """Walk the book as matching will: best price first, oldest first at
        a price, within the order's limit (or protection) price, until it has
        nothing left to take or self-trade prevention stops it."""
        if taker.quote_amount is None:
            plan = _Plan(taker.remaining, None, self.spec.amount_step)
        else:
            budget = taker.quote_amount - taker.executed_value
            plan = _Plan(None, budget, self.spec.amount_step)
        price = None
        for maker in opposite.crossing(taker.limit):
            price = maker.price
            room = plan.room(price)
            if not room:
                break
            quantity = min(room, maker.remaining)
            if maker.user_id != taker.user_id:
                plan.take(_FILL, maker, quantity)
                continue
            if taker.stp == Stp.CANCEL_OLDEST:
                plan.steps.append((_CANCEL_MAKER, maker, ZERO))
                continue
            if taker.stp == Stp.DECREMENT_AND_CANCEL:
                # The smaller is cancelled, the larger loses the smaller's size.
                if quantity == maker.remaining:
                    plan.steps.append((_CANCEL_MAKER, maker, ZERO))
                else:
                    plan.steps.append((_SHRINK_MAKER, maker, quantity))
                if quantity < room:
                    plan.take(_SHRINK_TAKER, maker, quantity)
                    plan.shrunk = True
                    continue
            elif taker.stp == Stp.CANCEL_BOTH:
                plan.steps.append((_CANCEL_MAKER, maker, ZERO))
            plan.self_trade = True
            break
        plan.complete = (
            not plan.self_trade and plan.notional > 0 and not plan.room(price)
        )
        return plan

    def _execute(self, taker: Order, plan: _Plan) -> None:
        for kind, maker, quantity in plan.steps:
            if kind == _FILL:
                self._trade(maker, taker, quantity)
            elif kind == _CANCEL_MAKER:
                self._close(maker, Status.CANCELLED, CancelReason.SELF_TRADE)
            elif kind == _SHRINK_MAKER:
                self._shrink(maker, quantity)
            elif taker.quote_amount is not None:  # _SHRINK_TAKER
                taker.quote_amount -= quantity * maker.price
            else:
                taker.quantity -= quantity

    def _trade(self, maker: Order, taker: Order, quantity: Decimal) -> None:
        """Exchange ``quantity`` base at the maker's price. Each side pays its
        fee in the token it receives, at the maker or taker rate, rounded up
        to the token's unit."""
        spec, price = self.spec, maker.price
        value = price * quantity
        if taker.side == BUY:
            buyer, seller = taker, maker
            buyer_rate, seller_rate = spec.taker_fee, spec.maker_fee
        else:
            buyer, seller = maker, taker
            buyer_rate, seller_rate = spec.maker_fee, spec.taker_fee
        buyer_fee = fee_for(quantity, rate=buyer_rate, token_unit=spec.base_unit)
        seller_fee = fee_for(value, rate=seller_rate, token_unit=spec.quote_unit)
        base, quote = spec.base_token, spec.quote_token
        to_buyer, to_seller = available(buyer.user_id), available(seller.user_id)
        self._move(base, quantity - buyer_fee, seller, to_buyer, buyer.id)
        self._move(base, buyer_fee, seller, FEES, None)
        self._move(quote, value - seller_fee, buyer, to_seller, seller.id)
        self._move(quote, seller_fee, buyer, FEES, None)
        for order, fee in ((buyer, buyer_fee), (seller, seller_fee)):
            order.filled += quantity
            order.executed_value += value
            order.fee += fee
        buyer.locked -= value
        seller.locked -= quantity
        self._book_side(maker).shrink(maker, quantity)
        self._touch(maker)
        if maker.remaining == 0:
            self._close(maker, Status.FILLED)
        self.last_price = price
        self._reach(price)
        maker_fee, taker_fee = (
            (buyer_fee, seller_fee) if maker is buyer else (seller_fee, buyer_fee)
        )
        self._result.trades.append(
            Trade(
                maker.id,
                taker.id,
                maker.user_id,
                taker.user_id,
                taker.side,
                price,
                quantity,
                value,
                maker_fee,
                taker_fee,
            )
        )

    # -- Stop orders --------------------------------------------------------

    def _stops(self, order: Order) -> list[tuple[Decimal, tuple[int, int], int]]:
        return self._buy_stops if order.side == BUY else self._sell_stops

    def _stop_entry(self, order: Order) -> tuple[Decimal, tuple[int, int], int]:
        key = order.stop_price if order.side == BUY else -order.stop_price
        return (key, order.priority, order.id)

    def _wait(self, order: Order) -> None:
        order.status = Status.WAITING
        insort(self._stops(order), self._stop_entry(order))
        self._index(order)

    def _reach(self, price: Decimal) -> None:
        """Queue the waiting stops a trade at ``price`` reaches (a buy stop at
        price >= stop, a sell stop at price <= stop): buys lowest stop first,
        sells highest first, equal stops (or a buy and a sell at once, before
        any trade) oldest first."""
        while True:
            ready = []
            if self._buy_stops and self._buy_stops[0][0] <= price:
                ready.append(self._buy_stops)
            if self._sell_stops and -self._sell_stops[0][0] >= price:
                ready.append(self._sell_stops)
            if not ready:
                return
            _, _, order_id = min(ready, key=lambda stops: stops[0][1]).pop(0)
            self._reached.append(order_id)

    def _trigger_stops(self) -> None:
        """Enter the stops the command's trades reached, in the order they
        reached them (a stop placed past the last price is reached at once).
        Each enters as a limit order queued after the command's own order;
        its trades may reach more, which queue behind it."""
        if self.last_price is not None:
            self._reach(self.last_price)
        while self._reached:
            order = self._orders[self._reached.pop(0)]
            self._rank += 1
            order.status, order.priority = Status.OPEN, (self.sequence, self._rank)
            self._touch(order)
            if self._enter(order) is not None:  # a fill-or-kill it cannot fill
                self._close(order, Status.CANCELLED, CancelReason.UNFILLED)

    # -- Bookkeeping --------------------------------------------------------

    def _book_side(self, order: Order) -> BookSide:
        return self._bids if order.side == BUY else self._asks

    def _opposite(self, order: Order) -> BookSide:
        return self._asks if order.side == BUY else self._bids

    def _token(self, side: Side) -> int:
        """What an order on ``side`` locks: quote for a buy, base for a sell."""
        return self.spec.quote_token if side == BUY else self.spec.base_token

    def _index(self, order: Order) -> None:
        self._orders[order.id] = order
        self._by_user.setdefault(order.user_id, {})[order.id] = order

    def _rest(self, order: Order) -> None:
        self._book_side(order).add(order)
        self._index(order)

    def _shrink(self, order: Order, quantity: Decimal) -> None:
        """A resting order loses ``quantity`` and keeps its place."""
        self._book_side(order).shrink(order, quantity)
        order.quantity -= quantity
        self._touch(order)

    def _close(self, order: Order, status: Status, reason: str = "") -> None:
        if order.in_book:
            self._book_side(order).remove(order)
        elif order.status == Status.WAITING:
            stops = self._stops(order)
            del stops[bisect_left(stops, self._stop_entry(order))]
        order.status, order.reason = status, reason
        if self._orders.pop(order.id, None) is not None:
            mine = self._by_user[order.user_id]
            del mine[order.id]
            if not mine:
                del self._by_user[order.user_id]
        self._touch(order)

    def _touch(self, order: Order) -> None:
        self._touched[order.id] = order

    def _move(
        self,
        token: int,
        amount: Decimal,
        order: Order,
        to: Account,
        to_order_id: int | None,
    ) -> None:
        """Move ``amount`` of ``token`` out of what ``order`` has locked, to
        account ``to``, for ``to_order_id`` (see ``Move``)."""
        if amount:
            self._result.moves.append(
                Move(token, amount, locked(order.user_id), to, order.id, to_order_id)
            )

    def _release(
        self, token: int, amount: Decimal, user_id: int, order_id: int
    ) -> None:
        """Give back ``amount`` that order ``order_id`` locks and no longer needs."""
        if amount:
            self._result.moves.append(
                Move(
                    token,
                    amount,
                    locked(user_id),
                    available(user_id),
                    order_id,
                    order_id,
                )
            )

    def _finish(self) -> None:
        """Release what each touched order holds beyond its needs, and report
        the orders and the book levels the command changed."""
        result = self._result
        for order in self._touched.values():
            surplus = order.locked - order.needs()
            if surplus < 0:
                raise RuntimeError(f"Order {order.id} locks less than it needs.")
            if surplus:
                token, user_id = self._token(order.side), order.user_id
                self._release(token, surplus, user_id, order.id)
                order.locked -= surplus
            result.orders.append(
                OrderUpdate(
                    order.id,
                    order.user_id,
                    order.status,
                    order.reason,
                    order.price,
                    order.quantity,
                    order.quote_amount,
                    order.filled,
                    order.executed_value,
                    order.fee,
                    order.locked,
                    order.priority,
                )
            )
        for book in (self._bids, self._asks):
            for price in book.changed:
                self.book_sequence += 1
                result.levels.append(
                    LevelUpdate(
                        self.book_sequence, book.side, price, book.level_quantity(price)
                    )
                )
            book.changed.clear()
