"""Reads of the trading app used by more than one caller.

Each selector runs a fixed number of queries, whatever the size of the result.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal

from django.contrib.auth.base_user import AbstractBaseUser
from django.db.models import (
    DecimalField,
    ExpressionWrapper,
    F,
    OuterRef,
    QuerySet,
    Subquery,
    Sum,
)
from django.utils import timezone

from trading.models import (
    AMOUNT,
    Balance,
    Market,
    Order,
    SavedAddress,
    Trade,
    WithdrawalAddressPolicy,
)
from trading.money import exact


@dataclass(frozen=True)
class PriceLevel:
    price: Decimal
    quantity: Decimal


@dataclass(frozen=True)
class OrderBook:
    bids: list[PriceLevel]  # best (highest) first
    asks: list[PriceLevel]  # best (lowest) first


@dataclass(frozen=True)
class Candle:
    start: datetime
    open: Decimal
    high: Decimal
    low: Decimal
    close: Decimal
    volume: Decimal  # base traded


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
CANDLE_INTERVALS = {
    "1m": timedelta(minutes=1),
    "5m": timedelta(minutes=5),
    "1h": timedelta(hours=1),
    "1d": timedelta(days=1),
}


def market_get(*, symbol: str) -> Market:
    """The market named like ``BTC-USDT``; raises ``Market.DoesNotExist``."""
    return Market.objects.select_related("base", "quote").get(symbol=symbol.upper())


def order_book(*, market: Market, depth: int = 50) -> OrderBook:
    """The open orders' remaining quantity summed per price, ``depth`` levels a
    side (two queries)."""
    remaining = ExpressionWrapper(
        F("quantity") - F("filled_quantity"), output_field=DecimalField(**AMOUNT)
    )
    levels = (
        Order.objects.filter(market=market, status=Order.Status.OPEN)
        .values("price")
        .annotate(quantity=Sum(remaining))
    )
    bids = levels.filter(side=Order.Side.BUY).order_by("-price")[:depth]
    asks = levels.filter(side=Order.Side.SELL).order_by("price")[:depth]
    return OrderBook(
        bids=[PriceLevel(row["price"], row["quantity"]) for row in bids],
        asks=[PriceLevel(row["price"], row["quantity"]) for row in asks],
    )


def trades_recent(*, market: Market, limit: int = 50) -> list[Trade]:
    """The market's latest trades, newest first (one query)."""
    return list(Trade.objects.filter(market=market).order_by("-pk")[:limit])


def orders_open(
    *, user: AbstractBaseUser, market: Market | None = None
) -> QuerySet[Order]:
    """The user's live orders (accepted, waiting for their stop, open),
    newest first, with their markets."""
    orders = Order.objects.filter(user=user, status__in=Order.LIVE)
    if market is not None:
        orders = orders.filter(market=market)
    return orders.select_related("market__base", "market__quote").order_by("-pk")


def balances_for_user(*, user: AbstractBaseUser) -> list[Balance]:
    """The user's balances with their tokens, by token symbol (one query)."""
    return list(
        Balance.objects.filter(user=user)
        .select_related("token")
        .order_by("token__symbol")
    )


@exact
def candles(
    *,
    market: Market,
    interval: str = "1m",
    limit: int = 100,
    now: datetime | None = None,
) -> list[Candle]:
    """OHLCV candles of the last ``limit`` intervals that had trades, oldest
    first, built from the trades in one query. Intervals start at multiples
    of their length since the Unix epoch (UTC); empty intervals are left out.
    """
    length = CANDLE_INTERVALS[interval]
    now = now or timezone.now()
    seconds = int(length.total_seconds())
    window_start = _EPOCH + timedelta(
        seconds=(int((now - _EPOCH).total_seconds()) // seconds - limit + 1) * seconds
    )
    rows = (
        Trade.objects.filter(market=market, created_at__gte=window_start)
        .order_by("pk")
        .values_list("created_at", "price", "quantity")
    )
    buckets: dict[datetime, list[Decimal]] = {}
    for created_at, price, quantity in rows:
        offset = int((created_at - _EPOCH).total_seconds()) // seconds * seconds
        start = _EPOCH + timedelta(seconds=offset)
        bucket = buckets.get(start)
        if bucket is None:
            buckets[start] = [price, price, price, price, quantity]
        else:
            bucket[1] = max(bucket[1], price)
            bucket[2] = min(bucket[2], price)
            bucket[3] = price
            bucket[4] += quantity
    return [Candle(start, *values) for start, values in sorted(buckets.items())]


@dataclass(frozen=True)
class MarketSummary:
    market: Market
    last_price: Decimal | None
    change_24h: Decimal | None  # percent, from the first trade of the last 24 h
    volume_24h: Decimal  # base traded in the last 24 h


def market_summaries(*, now: datetime | None = None) -> list[MarketSummary]:
    """Open markets with last price, 24 h change and volume (one query)."""
    since = (now or timezone.now()) - timedelta(hours=24)
    trades = Trade.objects.filter(market=OuterRef("pk"))
    recent = trades.filter(created_at__gte=since)
    volume = (
        recent.order_by()
        .values("market")
        .annotate(total=Sum("quantity"))
        .values("total")
    )
    rows = (
        Market.objects.filter(status=Market.Status.OPEN)
        .select_related("base", "quote")
        .annotate(
            last_price=Subquery(trades.order_by("-pk").values("price")[:1]),
            first_price_24h=Subquery(recent.order_by("pk").values("price")[:1]),
            volume_24h=Subquery(volume, output_field=DecimalField(**AMOUNT)),
        )
        .order_by("symbol")
    )
    summaries = []
    for market in rows:
        change = None
        if market.first_price_24h and market.last_price is not None:
            change = (market.last_price / market.first_price_24h - 1) * 100
        summaries.append(
            MarketSummary(
                market=market,
                last_price=market.last_price,
                change_24h=change,
                volume_24h=market.volume_24h or Decimal(0),
            )
        )
    return summaries


def saved_addresses_for_user(*, user: AbstractBaseUser) -> QuerySet[SavedAddress]:
    return SavedAddress.objects.filter(user=user).select_related("token")


def withdrawal_address_policy_get(*, user: AbstractBaseUser) -> WithdrawalAddressPolicy:
    """The user's policy; an unsaved default (any address) when never set."""
    policy = WithdrawalAddressPolicy.objects.filter(user=user).first()
    return policy or WithdrawalAddressPolicy(user=user)
