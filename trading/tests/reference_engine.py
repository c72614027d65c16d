"""A deliberately naive matching engine to check the real one against.

One market, everything in Python lists and dicts, no database, no locks, no
cleverness: every order re-scans and re-sorts the whole list of orders, and
fees are computed with fractions. It follows the rules written in the
docstring of ``trading.services``, checked in the same order, so both engines
must refuse the same requests with the same codes and agree on every trade,
order and balance.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal
from fractions import Fraction

from trading.exceptions import TradingError

ZERO = Decimal(0)


class Refused(Exception):
    def __init__(self, code: str) -> None:
        super().__init__(code)
        self.code = code


@dataclass
class RefOrder:
    id: int
    user: int
    side: str
    type: str
    price: Decimal | None
    quantity: Decimal
    time_in_force: str
    post_only: bool
    client_order_id: str | None
    filled: Decimal = ZERO
    executed_value: Decimal = ZERO
    fee: Decimal = ZERO
    locked: Decimal = ZERO
    status: str = "open"
    cancel_reason: str = ""

    @property
    def remaining(self) -> Decimal:
        return self.quantity - self.filled


@dataclass
class RefTrade:
    maker: int
    taker: int
    price: Decimal
    quantity: Decimal
    maker_fee: Decimal
    taker_fee: Decimal


class ReferenceEngine:
    def __init__(
        self,
        *,
        price_step: Decimal,
        amount_step: Decimal,
        min_notional: Decimal,
        maker_fee: Decimal,
        taker_fee: Decimal,
        base_decimals: int,
        quote_decimals: int,
    ) -> None:
        self.price_step = price_step
        self.amount_step = amount_step
        self.min_notional = min_notional
        self.maker_rate = maker_fee
        self.taker_rate = taker_fee
        self.units = {
            "base": Decimal(1) / Decimal(10**base_decimals),
            "quote": Decimal(1) / Decimal(10**quote_decimals),
        }
        self.available: dict[tuple[int, str], Decimal] = {}
        self.locked: dict[tuple[int, str], Decimal] = {}
        self.fees = {"base": ZERO, "quote": ZERO}
        self.orders: list[RefOrder] = []
        self.trades: list[RefTrade] = []

    # -- money ---------------------------------------------------------------

    def deposit(self, user: int, asset: str, amount: Decimal) -> None:
        self._add(self.available, user, asset, amount)

    def _add(self, book: dict, user: int, asset: str, amount: Decimal) -> None:
        book[(user, asset)] = book.get((user, asset), ZERO) + amount
        assert book[(user, asset)] >= 0, (user, asset, book[(user, asset)])

    def _fee(self, amount: Decimal, rate: Decimal, asset: str) -> Decimal:
        units = math.ceil(
            Fraction(amount) * Fraction(rate) / Fraction(self.units[asset])
        )
        return units * self.units[asset]

    # -- orders --------------------------------------------------------------

    def book(self, side: str) -> list[RefOrder]:
        """Open orders on one side, best first, oldest first at a price."""
        resting = [o for o in self.orders if o.status == "open" and o.side == side]
        if side == "buy":
            return sorted(resting, key=lambda o: (-o.price, o.id))
        return sorted(resting, key=lambda o: (o.price, o.id))

    def place(
        self,
        *,
        user: int,
        side: str,
        type: str,
        quantity: Decimal,
        price: Decimal | None = None,
        time_in_force: str = "GTC",
        post_only: bool = False,
        client_order_id: str | None = None,
    ) -> RefOrder:
        if type == "limit" and price is None:
            raise Refused("invalid_order")
        if type == "market":
            if price is not None or post_only:
                raise Refused("invalid_order")
            time_in_force = "FOK" if time_in_force == "FOK" else "IOC"
        elif post_only and time_in_force != "GTC":
            raise Refused("invalid_order")
        if quantity <= 0 or (price is not None and price <= 0):
            raise Refused("invalid_amount")
        if price is not None and price % self.price_step != 0:
            raise Refused("precision_too_high")
        if quantity % self.amount_step != 0:
            raise Refused("precision_too_high")
        if price is not None and price * quantity < self.min_notional:
            raise Refused("below_min_notional")

        if client_order_id is not None:
            same_id = [
                o
                for o in self.orders
                if o.user == user and o.client_order_id == client_order_id
            ]
            if same_id:
                latest = same_id[-1]
                asked = (side, type, quantity, price, time_in_force, post_only)
                if asked == (
                    latest.side,
                    latest.type,
                    latest.quantity,
                    latest.price,
                    latest.time_in_force,
                    latest.post_only,
                ):
                    return latest
                if latest.status == "open":
                    raise Refused("duplicate_client_order_id")

        opposite = "sell" if side == "buy" else "buy"
        crossing = [
            o
            for o in self.book(opposite)
            if price is None
            or (o.price <= price if side == "buy" else o.price >= price)
        ]
        if post_only and crossing:
            raise Refused("post_only_would_take")

        matches: list[tuple[RefOrder, Decimal]] = []
        left, self_trade = quantity, False
        for maker in crossing:
            if left == 0:
                break
            if maker.user == user:
                self_trade = True
                break
            take = min(left, maker.remaining)
            matches.append((maker, take))
            left -= take
        if time_in_force == "FOK" and left > 0:
            raise Refused("fill_or_kill_not_filled")
        cost = sum((maker.price * take for maker, take in matches), ZERO)
        if type == "market" and cost < self.min_notional:
            if not self_trade:
                raise Refused("below_min_notional")
            matches, cost = [], ZERO  # stopped by an own order: trades nothing

        if side == "sell":
            asset, reserve = "base", quantity
        elif type == "limit":
            asset, reserve = "quote", price * quantity
        else:
            asset, reserve = "quote", cost
        if self.available.get((user, asset), ZERO) < reserve:
            raise Refused("insufficient_balance")

        order = RefOrder(
            id=len(self.orders),
            user=user,
            side=side,
            type=type,
            price=price,
            quantity=quantity,
            time_in_force=time_in_force,
            post_only=post_only,
            client_order_id=client_order_id,
        )
        self.orders.append(order)
        self._add(self.available, user, asset, -reserve)
        self._add(self.locked, user, asset, reserve)
        order.locked = reserve

        for maker, take in matches:
            self._trade(maker=maker, taker=order, quantity=take)

        if order.remaining == 0:
            order.status, keep = "filled", ZERO
        elif self_trade:
            order.status, order.cancel_reason, keep = "cancelled", "self_trade", ZERO
        elif time_in_force != "GTC":
            order.status, order.cancel_reason, keep = "cancelled", "unfilled", ZERO
        else:
            keep = price * order.remaining if side == "buy" else order.remaining
        self._add(self.locked, user, asset, -(order.locked - keep))
        self._add(self.available, user, asset, order.locked - keep)
        order.locked = keep
        return order

    def _trade(self, *, maker: RefOrder, taker: RefOrder, quantity: Decimal) -> None:
        price = maker.price
        value = price * quantity
        buyer, seller = (taker, maker) if taker.side == "buy" else (maker, taker)
        buyer_rate = self.taker_rate if buyer is taker else self.maker_rate
        seller_rate = self.taker_rate if seller is taker else self.maker_rate
        buyer_fee = self._fee(quantity, buyer_rate, "base")
        seller_fee = self._fee(value, seller_rate, "quote")

        self._add(self.locked, seller.user, "base", -quantity)
        self._add(self.available, buyer.user, "base", quantity - buyer_fee)
        self._add(self.locked, buyer.user, "quote", -value)
        self._add(self.available, seller.user, "quote", value - seller_fee)
        self.fees["base"] += buyer_fee
        self.fees["quote"] += seller_fee

        buyer.filled += quantity
        seller.filled += quantity
        buyer.executed_value += value
        seller.executed_value += value
        buyer.fee += buyer_fee
        seller.fee += seller_fee
        buyer.locked -= value
        seller.locked -= quantity
        if maker.remaining == 0:
            maker.status = "filled"
        self.trades.append(
            RefTrade(
                maker=maker.id,
                taker=taker.id,
                price=price,
                quantity=quantity,
                maker_fee=buyer_fee if maker is buyer else seller_fee,
                taker_fee=buyer_fee if taker is buyer else seller_fee,
            )
        )

    def cancel(self, *, user: int, order_id: int) -> RefOrder:
        order = self.orders[order_id]
        if order.user != user:
            raise Refused("order_not_found")
        if order.status != "open":
            raise Refused("order_not_open")
        asset = "quote" if order.side == "buy" else "base"
        self._add(self.locked, user, asset, -order.locked)
        self._add(self.available, user, asset, order.locked)
        order.locked = ZERO
        order.status, order.cancel_reason = "cancelled", "user"
        return order

    def depth(self, side: str) -> list[tuple[Decimal, Decimal]]:
        """(price, remaining quantity) per price level, best first."""
        levels: dict[Decimal, Decimal] = {}
        for order in self.book(side):
            levels[order.price] = levels.get(order.price, ZERO) + order.remaining
        return list(levels.items())


def outcome(call: Callable) -> tuple:
    """("ok", result) or ("refused", code), for either engine."""
    try:
        return "ok", call()
    except Refused as refused:
        return "refused", refused.code
    except TradingError as error:
        return "refused", error.code


def reference_state(order: RefOrder) -> tuple:
    """What both engines must agree on about an order."""
    return (
        order.status,
        order.cancel_reason,
        order.filled,
        order.executed_value,
        order.fee,
        order.locked,
    )


def random_order(
    rng: random.Random, mid: Decimal, *, client_order_ids: bool = False
) -> dict:
    """A request as a client sends it, sometimes a wrong one; with
    ``client_order_ids``, a fifth of them under one of four client order ids
    (None otherwise)."""
    side = rng.choice(["buy", "sell"])
    if rng.random() < 0.15:
        kind, price = "market", None
        time_in_force = rng.choice(["GTC", "IOC", "FOK"])
    else:
        kind = "limit"
        price = mid + Decimal("0.5") * rng.randint(-6, 6)
        time_in_force = rng.choices(["GTC", "IOC", "FOK"], [70, 15, 15])[0]
        if rng.random() < 0.02:
            price += Decimal("0.25")  # off the price step
    quantity = Decimal(rng.randint(1, 300)) * Decimal("0.01")
    if rng.random() < 0.02:
        quantity += Decimal("0.005")  # off the amount step
    elif rng.random() < 0.01:
        quantity = -quantity
    post_only = kind == "limit" and rng.random() < 0.1
    if time_in_force != "GTC" and rng.random() < 0.9:
        post_only = False  # mostly valid: post-only is GTC only
    request = {
        "side": side,
        "type": kind,
        "quantity": quantity,
        "price": price,
        "time_in_force": time_in_force,
        "post_only": post_only or (kind == "market" and rng.random() < 0.01),
    }
    if client_order_ids:
        request["client_order_id"] = (
            f"c{rng.randrange(4)}" if rng.random() < 0.2 else None
        )
    return request
