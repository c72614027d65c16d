"""Reads of the trading app used by more than one caller.

Each selector runs a fixed number of queries, whatever the size of the result.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal

from django.contrib.auth.base_user import AbstractBaseUser
from django.db.models import (
    CharField,
    DecimalField,
    ExpressionWrapper,
    F,
    OuterRef,
    Q,
    QuerySet,
    Subquery,
    Sum,
    Value,
)
from django.db.models.functions import Coalesce
from django.utils import timezone

from trading.models import (
    AMOUNT,
    Balance,
    Deposit,
    Market,
    Order,
    SavedAddress,
    Trade,
    Withdrawal,
    WithdrawalAddressPolicy,
)
from trading.money import ROUNDING, change_percent, exact


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
    # Every remaining quantity is a multiple of the amount step, and so is
    # their sum; SQLite sums in floating point (0.09 as 0.0900000000000001),
    # which rounding to the step takes back out. PostgreSQL's sum is exact.
    step = market.amount_step.normalize()

    def level(row) -> PriceLevel:
        return PriceLevel(
            row["price"], row["quantity"].quantize(step, context=ROUNDING)
        )

    return OrderBook(
        bids=[level(row) for row in bids], asks=[level(row) for row in asks]
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
    """OHLCV candles of the last ``limit`` intervals up to ``now`` (the
    current one included), oldest first, built from the trades in one query.
    Intervals start at multiples of their length since the Unix epoch (UTC);
    the ones without trades are left out, so fewer than ``limit`` may come
    back.
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


TICKER_WINDOW = timedelta(hours=24)


def price_at_window_start(*, since: datetime) -> Coalesce:
    """The price at ``since`` of the market ``OuterRef("pk")``: its last trade
    at or before ``since`` or, for a market younger than that, its first trade
    after. The reference of the 24 h change: the first trade of the window
    would hide a move between the last trade before it and the first in it.
    Meaningful only when a trade falls in the window."""
    trades = Trade.objects.filter(market=OuterRef("pk")).values("price")
    # Both on the (market, created_at) index.
    before = trades.filter(created_at__lte=since).order_by("-created_at", "-pk")
    first = trades.filter(created_at__gte=since).order_by("created_at", "pk")
    return Coalesce(Subquery(before[:1]), Subquery(first[:1]))


@dataclass(frozen=True)
class MarketSummary:
    market: Market
    last_price: Decimal | None
    change_24h: Decimal | None  # percent, from the price 24 h ago
    quote_volume_24h: Decimal  # quote traded in the last 24 h


# How the markets list can be sorted: the ``sort`` query parameter, a key
# below or the same with a leading "-" for descending.
MARKET_SORTS = {
    "symbol": lambda summary: summary.market.symbol,
    "price": lambda summary: summary.last_price,
    "change": lambda summary: summary.change_24h,
    "volume": lambda summary: summary.quote_volume_24h,
}
MARKET_SORT_DEFAULT = "symbol"
# Amounts of the quote token, which do not compare across quote tokens
# (2,000 USDT is more than 0.1 BTC): these sort within each quote token, the
# quote tokens by symbol.
MARKET_SORTS_PER_QUOTE = frozenset({"price", "volume"})


def market_sort_parse(value: str | None) -> str:
    """``value`` if it names a sort of ``MARKET_SORTS``, else the default."""
    if value and value.removeprefix("-") in MARKET_SORTS:
        return value
    return MARKET_SORT_DEFAULT


def market_summaries(
    *,
    now: datetime | None = None,
    sort: str = MARKET_SORT_DEFAULT,
    token_id: int | None = None,
) -> list[MarketSummary]:
    """Open markets with last price, 24 h change (from the price 24 h ago, as
    the API's ticker) and quote volume (one query), sorted by ``sort`` (see
    ``MARKET_SORTS``; markets without a value last, then by symbol); only the
    markets of ``token_id`` when given. A market is open by its
    ``effective_status``: not halted, neither token delisted."""
    since = (now or timezone.now()) - TICKER_WINDOW
    trades = Trade.objects.filter(market=OuterRef("pk"))
    volume = (
        trades.filter(created_at__gte=since)
        .order_by()
        .values("market")
        .annotate(total=Sum("quote_amount"))
        .values("total")
    )
    rows = Market.objects.filter(Market.TAKING_ORDERS)
    if token_id is not None:
        rows = rows.filter(Q(base_id=token_id) | Q(quote_id=token_id))
    rows = (
        rows.select_related("base", "quote")
        .annotate(
            last_price=Subquery(trades.order_by("-pk").values("price")[:1]),
            open_price_24h=price_at_window_start(since=since),
            quote_volume_24h=Subquery(volume, output_field=DecimalField(**AMOUNT)),
        )
        .order_by("symbol")
    )
    summaries = []
    for market in rows:
        change = None
        # A volume means a trade in the window, and so an open price.
        if market.quote_volume_24h is not None and market.last_price is not None:
            change = change_percent(first=market.open_price_24h, last=market.last_price)
        summaries.append(
            MarketSummary(
                market=market,
                last_price=market.last_price,
                change_24h=change,
                quote_volume_24h=market.quote_volume_24h or Decimal(0),
            )
        )
    return _summaries_sorted(summaries, market_sort_parse(sort))


def _summaries_sorted(summaries: list[MarketSummary], sort: str) -> list[MarketSummary]:
    name = sort.removeprefix("-")
    key = MARKET_SORTS[name]
    descending = sort.startswith("-")
    known = [summary for summary in summaries if key(summary) is not None]
    unknown = [summary for summary in summaries if key(summary) is None]
    # Stable sorts: equal values keep the symbol order of the query.
    known.sort(key=key, reverse=descending)
    if name in MARKET_SORTS_PER_QUOTE:
        known.sort(key=lambda summary: summary.market.quote.symbol)
    return known + unknown


WALLET_HISTORY_PAGE = 25


def wallet_history(*, user: AbstractBaseUser) -> QuerySet:
    """The user's deposits and withdrawals in one list, newest first: rows of
    ``kind`` ("deposit" or "withdrawal"), ``id``, ``amount``, ``created_at``,
    ``symbol``, ``status``, ``to_address``, ``to_network``, ``to_memo`` and ``why`` (a
    deposit is "credited"). One query per slice, however long the history."""
    text = CharField()
    deposits = Deposit.objects.filter(user=user).values(
        "id",
        "amount",
        "created_at",
        kind=Value("deposit", output_field=text),
        symbol=F("token__symbol"),
        state=Value("credited", output_field=text),
        to_address=Value("", output_field=text),
        to_network=Value("", output_field=text),
        to_memo=Value("", output_field=text),
        why=Value("", output_field=text),
    )
    withdrawals = Withdrawal.objects.filter(user=user).values(
        "id",
        "amount",
        "created_at",
        kind=Value("withdrawal", output_field=text),
        symbol=F("token__symbol"),
        state=F("status"),
        to_address=F("address"),
        to_network=F("network"),
        to_memo=F("memo"),
        why=F("reason"),
    )
    return deposits.union(withdrawals, all=True).order_by("-created_at", "-kind", "-id")


def saved_addresses_for_user(*, user: AbstractBaseUser) -> QuerySet[SavedAddress]:
    return SavedAddress.objects.filter(user=user).select_related("token")


def withdrawal_address_policy_get(*, user: AbstractBaseUser) -> WithdrawalAddressPolicy:
    """The user's policy; an unsaved default (any address) when never set."""
    policy = WithdrawalAddressPolicy.objects.filter(user=user).first()
    return policy or WithdrawalAddressPolicy(user=user)
