"""Reads only the API needs; each runs a fixed number of queries."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

from django.contrib.auth.base_user import AbstractBaseUser
from django.db.models import Max, Min, Q, QuerySet, Sum
from django.utils import timezone

from trading.models import Market, Order, Trade, Withdrawal
from trading.money import EXACT, ZERO, change_percent
from trading.selectors import TICKER_WINDOW, price_at_window_start


@dataclass(frozen=True)
class Ticker:
    market: Market
    last_price: Decimal | None
    open_price: Decimal | None  # the price 24 hours ago
    high_price: Decimal | None
    low_price: Decimal | None
    change: Decimal | None
    change_percent: Decimal | None  # two decimals
    base_volume: Decimal
    quote_volume: Decimal
    best_bid: Decimal | None
    best_ask: Decimal | None


def ticker_for(*, market: Market, now: datetime | None = None) -> Ticker:
    """The market's last price, 24-hour statistics and best prices (4 queries).
    The change is from the price 24 hours ago (``price_at_window_start``), as
    on the markets list; none without a trade in the last 24 hours.

    Volumes are SQL sums: exact on PostgreSQL, floating point on SQLite.
    """
    since = (now or timezone.now()) - TICKER_WINDOW
    trades = Trade.objects.filter(market=market)
    last_price = trades.order_by("-pk").values_list("price", flat=True).first()
    open_price = (
        Market.objects.filter(pk=market.pk)
        .values_list(price_at_window_start(since=since), flat=True)
        .first()
    )
    window = trades.filter(created_at__gte=since)
    stats = window.aggregate(
        high=Max("price"),
        low=Min("price"),
        base_volume=Sum("quantity"),
        quote_volume=Sum("quote_amount"),
    )
    best = Order.objects.filter(market=market, status=Order.Status.OPEN).aggregate(
        bid=Max("price", filter=Q(side=Order.Side.BUY)),
        ask=Min("price", filter=Q(side=Order.Side.SELL)),
    )
    if stats["high"] is None:  # no trade in the window
        open_price = None
    change = percent = None
    if open_price is not None and last_price is not None:
        change = EXACT.subtract(last_price, open_price)
        percent = change_percent(first=open_price, last=last_price)
    return Ticker(
        market=market,
        last_price=last_price,
        open_price=open_price,
        high_price=stats["high"],
        low_price=stats["low"],
        change=change,
        change_percent=percent,
        base_volume=stats["base_volume"] or ZERO,
        quote_volume=stats["quote_volume"] or ZERO,
        best_bid=best["bid"],
        best_ask=best["ask"],
    )


def orders_for_user(
    *,
    user: AbstractBaseUser,
    status: str | None = None,
    market: Market | None = None,
    client_order_id: str | None = None,
) -> QuerySet[Order]:
    """The user's orders, newest first; ``status`` is ``open`` (accepted,
    waiting or open: still live) or ``closed``; ``client_order_id`` keeps
    the orders placed with it."""
    orders = Order.objects.filter(user=user)
    if client_order_id is not None:
        orders = orders.filter(client_order_id=client_order_id)
    if status == "open":
        orders = orders.filter(status__in=Order.LIVE)
    elif status == "closed":
        orders = orders.exclude(status__in=Order.LIVE)
    if market is not None:
        orders = orders.filter(market=market)
    return orders.select_related("market__base", "market__quote").order_by("-id")


@dataclass(frozen=True)
class Fill:
    """One trade seen from one of its two sides."""

    id: int
    order_id: int
    market: Market
    side: str
    liquidity: str  # maker or taker
    price: Decimal
    quantity: Decimal
    quote_amount: Decimal
    fee: Decimal
    fee_token: str
    created_at: datetime


def trades_for_user(
    *, user: AbstractBaseUser, market: Market | None = None
) -> QuerySet[Trade]:
    """The trades of the user's orders, newest first, ready for ``fill_of``."""
    own = Order.objects.filter(user=user).values("pk")
    trades = Trade.objects.filter(Q(maker_order__in=own) | Q(taker_order__in=own))
    if market is not None:
        trades = trades.filter(market=market)
    return trades.select_related(
        "market__base", "market__quote", "maker_order", "taker_order"
    ).order_by("-id")


def fill_of(trade: Trade, *, user: AbstractBaseUser) -> Fill:
    """``trade`` from ``user``'s side (self-trades never happen)."""
    is_taker = trade.taker_order.user_id == user.pk
    order = trade.taker_order if is_taker else trade.maker_order
    market = trade.market
    # Each side pays its fee in the token it receives.
    fee_token = market.base if order.side == Order.Side.BUY else market.quote
    return Fill(
        id=trade.pk,
        order_id=order.pk,
        market=market,
        side=order.side,
        liquidity="taker" if is_taker else "maker",
        price=trade.price,
        quantity=trade.quantity,
        quote_amount=trade.quote_amount,
        fee=trade.taker_fee if is_taker else trade.maker_fee,
        fee_token=fee_token.symbol,
        created_at=trade.created_at,
    )


def withdrawals_for_user(
    *, user: AbstractBaseUser, reference: str | None = None
) -> QuerySet[Withdrawal]:
    withdrawals = Withdrawal.objects.filter(user=user)
    if reference is not None:
        withdrawals = withdrawals.filter(reference=reference)
    return withdrawals.select_related("token").order_by("-id")
