"""The live market stream: what the matcher publishes, pushed to clients.

One ``Hub`` per process (per event loop) holds the process's only Redis
subscription, to the pattern ``trading.*`` of ``trading.events``, and fans
each message out to the connections interested in it: market messages to the
market's streams, a user's messages to that user's. Each connection has a
bounded queue; when it is full the connection has fallen behind, gets nothing
more, and its stream tells the client to resync and ends (a slow client costs
at most its queue). The hub also keeps each market's recent book level
updates, so that a client reconnecting with ``Last-Event-ID`` catches up
without a snapshot. It reads a market's figures once for all of the market's
connections, and sends each only when it changed since it last did: the
ticker and the current candles after a batch with trades, the ticker alone
after a change of the book (its best prices, at most once a second) and on a
timer (its 24-hour figures move with time alone).

A stream (``MarketStream``) speaks Server-Sent Events. Its first event is a
``snapshot``, taken after it subscribed (so nothing committed later can be
missed: every batch publishes after its commit); level updates the snapshot
already holds are dropped by their ``sequence``, trades by their id. Every
event's id is ``<book sequence>.<last trade id>``, and on a user's stream
``.<last fill id>`` after it (a trade's ``trades`` event goes out before its
``fills``, so the trade alone does not say which fills the client got):
given back as ``Last-Event-ID``, the stream sends what was missed (book
levels from the hub's history, trades and the user's fills from the
database) or, when it cannot, a fresh book or trades snapshot. The user's
open orders, balances and latest fills are in every snapshot, resumed or not. The
balances are read again at each of the user's ``balances`` and ``orders``
messages (an order's reservation is written by its request, which publishes
nothing) and sent when they changed. A gap in the book's sequence (Redis
lost messages) ends the stream with ``resync`` too.

A user's stream checks that its API key or session still signs them in
(``signed_in``, a read of a row or two) before it sends any of their own
events, and at every heartbeat: once the key is revoked or expired, the
session ended or the account disabled, nothing of the user's goes out any
more, and the stream ends with ``resync`` (``revoked``) at the latest one
heartbeat later, even when nothing happens (the heartbeat is the process's
own timer: nothing needs to be published). The events are documented in
``trading/api/description.md``.
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
import gc
import json
import logging
import math
import re
import weakref
from collections import defaultdict, deque
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from asgiref.sync import sync_to_async
from django.conf import settings
from django.db import close_old_connections, connections

from trading.events import channel_prefix

log = logging.getLogger("trading.live")

PATTERN = "trading.*"
# A comment line, so proxies and clients see a live link; a user's stream
# also checks then that its key or session still signs them in.
HEARTBEAT_SECONDS = 15.0
RETRY_MILLISECONDS = 1000  # EventSource waits this long before reconnecting
RECONNECT_SECONDS = 1.0  # the hub's wait between attempts to reach Redis
BOOK_HISTORY = 10_000  # level updates kept per market for resuming clients
SNAPSHOT_DEPTH = 1000  # price levels a side in a snapshot
RECENT_TRADES = 50
RECENT_FILLS = 20  # the user's in a snapshot, as many as the market page lists
FIGURES_DELAY_SECONDS = 0.2  # the ticker and candles follow trades this late
BOOK_TICKER_SECONDS = 1.0  # book changes read the ticker at most this often
# Trades leave the 24-hour window with time alone: a market with open streams
# has its ticker read again this often (``settings.STREAM_TICKER_SECONDS``
# overrides it). A minute late on a 24-hour window, at one read a minute per
# market and process; trades and book changes read it at once anyway.
TICKER_REFRESH_SECONDS = 60.0
CATCH_UP_TRADES = 1000  # missed trades sent on resume; more: a trades snapshot
READ_THREADS = 4  # database connections of a stream process, at most


@dataclass(frozen=True)
class Message:
    """One message for connections: ``data`` is ``body`` as JSON, rendered
    once for all of them."""

    kind: str  # trades, book, orders, balances, ticker, candles
    body: dict
    data: str


class Subscription:
    """One connection's bounded queue of messages, and what wakes its stream.

    A plain deque and one future: the hub wakes every stream of a market
    for each message, and an ``asyncio.Queue`` read under ``wait_for`` cost
    a task and a timer for every message and every connection.
    """

    def __init__(self, *, symbol: str, user_id: int | None, size: int) -> None:
        self.symbol = symbol
        self.user_id = user_id
        self.size = size
        self.messages: deque[Message] = deque()
        self.ended: str | None = None  # why the stream must resync
        self.beat = False  # the hub's heartbeat came: the link must show life
        self._waiter: asyncio.Future | None = None

    def put(self, message: Message) -> None:
        if self.ended:
            return
        if len(self.messages) >= self.size:
            self.end("behind")
            return
        self.messages.append(message)
        self._wake()

    def end(self, reason: str) -> None:
        if self.ended:
            return
        self.ended = reason
        self._wake()

    def heartbeat(self) -> None:
        self.beat = True
        self._wake()

    async def wait(self) -> None:
        """Until there is something for the stream: messages, its end, or a
        heartbeat."""
        if self.messages or self.ended or self.beat:
            return
        self._waiter = asyncio.get_running_loop().create_future()
        await self._waiter

    def _wake(self) -> None:
        waiter, self._waiter = self._waiter, None
        if waiter is not None and not waiter.done():
            waiter.set_result(None)


class Hub:
    """The process's Redis subscription and the connections it feeds."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.markets: dict[str, set[Subscription]] = defaultdict(set)
        self.users: dict[int, set[Subscription]] = defaultdict(set)
        self.history: dict[str, deque[dict]] = {}
        self.connected = asyncio.Event()
        self.task: asyncio.Task | None = None
        self.beating: asyncio.Task | None = None
        self.ticking: asyncio.Task | None = None
        self.refreshing: dict[str, asyncio.Task] = {}  # a market's reader
        self.figures_due: dict[str, float] = {}  # when its next read is due
        self.candles_due: set[str] = set()  # that read takes the candles too
        self.ticker_read: dict[str, float] = {}  # when its ticker was last read
        self.figures_sent: dict[str, dict] = {}  # the ticker and candles sent

    async def ready(self, timeout: float) -> bool:
        """Whether the subscription is up, starting it on first use."""
        if self.task is None:
            self.task = _background(self._run())
            self.beating = _background(self._beat())
            self.ticking = _background(self._tick())
        try:
            await asyncio.wait_for(self.connected.wait(), timeout)
        except TimeoutError:
            return False
        return True

    def subscribe(self, *, symbol: str, user_id: int | None) -> Subscription:
        subscription = Subscription(
            symbol=symbol, user_id=user_id, size=settings.STREAM_QUEUE_SIZE
        )
        if not self.connected.is_set():
            subscription.end("unavailable")
            return subscription
        self.markets[symbol].add(subscription)
        # Its snapshot may hold newer figures than those last sent (with
        # nothing sent since): the next read goes out whatever it holds.
        self.figures_sent.pop(symbol, None)
        if user_id is not None:
            self.users[user_id].add(subscription)
        return subscription

    def unsubscribe(self, subscription: Subscription) -> None:
        for registry, key in (
            (self.markets, subscription.symbol),
            (self.users, subscription.user_id),
        ):
            found = registry.get(key)
            if found is not None:
                found.discard(subscription)
                if not found:
                    del registry[key]
        if subscription.symbol not in self.markets:
            self.figures_sent.pop(subscription.symbol, None)
            self.ticker_read.pop(subscription.symbol, None)

    def book_since(self, symbol: str, sequence: int) -> list[dict] | None:
        """The level updates after ``sequence``, or None when the history
        does not reach back that far."""
        history = self.history.get(symbol)
        if not history or history[0]["sequence"] > sequence + 1:
            return None
        if history[-1]["sequence"] < sequence:
            return None  # a sequence from another database, or the future
        return [level for level in history if level["sequence"] > sequence]

    async def _run(self) -> None:
        import redis.asyncio as redis

        prefix = channel_prefix(self.url)  # this database's channels only
        while True:
            client = redis.Redis.from_url(
                self.url, socket_connect_timeout=settings.REDIS_TIMEOUT
            )
            pubsub = client.pubsub()
            try:
                await pubsub.psubscribe(prefix + PATTERN)
                async for message in pubsub.listen():
                    if message["type"] == "psubscribe":
                        self.connected.set()
                    elif message["type"] == "pmessage":
                        channel = message["channel"].decode()[len(prefix) :]
                        self._dispatch(channel, message["data"])
            except asyncio.CancelledError:
                raise
            except Exception as error:
                log.warning("stream subscription lost: %s", error)
            finally:
                self._lose_everything()
                await pubsub.aclose()
                await client.aclose()
            await asyncio.sleep(RECONNECT_SECONDS)

    async def _beat(self) -> None:
        """Every connection shows life to proxies and clients this often: one
        timer for the process, not one per connection."""
        while True:
            await asyncio.sleep(HEARTBEAT_SECONDS)
            for subscriptions in list(self.markets.values()):
                for subscription in subscriptions:
                    subscription.heartbeat()

    async def _tick(self) -> None:
        """Trades leave the 24-hour window with time alone, without a message
        saying so: every market with open streams has its ticker read again
        this often (once for the process, not per connection)."""
        while True:
            await asyncio.sleep(
                getattr(settings, "STREAM_TICKER_SECONDS", TICKER_REFRESH_SECONDS)
            )
            for symbol in list(self.markets):
                self._figures_refresh(symbol, wait=0.0)

    def _lose_everything(self) -> None:
        """Messages may be lost from here on: every stream must resync."""
        self.connected.clear()
        self.history.clear()
        for subscriptions in self.markets.values():
            for subscription in subscriptions:
                subscription.end("unavailable")

    def _dispatch(self, channel: str, data: bytes) -> None:
        parts = channel.split(".")
        user = parts[2] if len(parts) == 4 and parts[1] == "user" else ""
        if user.isascii() and user.isdigit():
            targets = self.users.get(int(user))
            symbol = None
        elif len(parts) == 3:
            symbol = parts[1]
            targets = self.markets.get(symbol)
        else:
            return
        kind = parts[-1]
        if symbol is None and not targets:
            return
        text = data.decode()
        body = json.loads(text)
        if kind == "book":
            self._remember(symbol, body["levels"])
        if kind == "trades" and targets:
            self._figures_refresh(symbol, wait=FIGURES_DELAY_SECONDS, candles=True)
        elif kind == "book" and targets:
            # The best prices may have moved: at most once a second, however
            # busy the book.
            next_read = self.ticker_read.get(symbol, -math.inf) + BOOK_TICKER_SECONDS
            wait = next_read - asyncio.get_running_loop().time()
            self._figures_refresh(symbol, wait=max(FIGURES_DELAY_SECONDS, wait))
        if targets:
            message = Message(kind, body, text)
            for subscription in targets:
                subscription.put(message)

    def _remember(self, symbol: str, levels: list[dict]) -> None:
        history = self.history.setdefault(symbol, deque(maxlen=BOOK_HISTORY))
        for level in levels:
            if history and level["sequence"] != history[-1]["sequence"] + 1:
                history.clear()  # a gap: only what follows it is contiguous
            history.append(level)

    def _figures_refresh(
        self, symbol: str, *, wait: float, candles: bool = False
    ) -> None:
        """Read the market's ticker (and its candles) within ``wait`` seconds,
        once for however many calls come before the read starts (and once
        more after it for those that come while it is under way)."""
        due = asyncio.get_running_loop().time() + wait
        if due < self.figures_due.get(symbol, math.inf):
            self.figures_due[symbol] = due
        if candles:
            self.candles_due.add(symbol)
        if symbol not in self.refreshing:
            self.refreshing[symbol] = _background(self._figures_send(symbol))

    async def _figures_send(self, symbol: str) -> None:
        loop = asyncio.get_running_loop()
        try:
            while symbol in self.figures_due:
                # After the batch's own events have gone out to every
                # connection; in short naps, as a trade brings the read forward.
                wait = self.figures_due[symbol] - loop.time()
                if wait > 0:
                    await asyncio.sleep(min(wait, FIGURES_DELAY_SECONDS))
                    continue
                del self.figures_due[symbol]
                with_candles = symbol in self.candles_due
                self.candles_due.discard(symbol)
                self.ticker_read[symbol] = loop.time()
                figures = await _read(market_figures)(
                    symbol=symbol, with_candles=with_candles
                )
                self._figures_put(symbol, figures)
        except Exception:
            log.exception("ticker not refreshed", extra={"market": symbol})
        finally:
            del self.refreshing[symbol]

    def _figures_put(self, symbol: str, figures: dict) -> None:
        """Each of ``figures`` that changed since it was last sent, to every
        stream of the market."""
        targets = self.markets.get(symbol)
        if not targets:
            return
        sent = self.figures_sent.setdefault(symbol, {})
        for kind, value in figures.items():
            if sent.get(kind) == value:
                continue
            sent[kind] = value
            body = {kind: value}
            message = Message(kind, body, _json(body))
            for subscription in targets:
                subscription.put(message)


def _background(coroutine) -> asyncio.Task:
    """A task outside the request that happened to start it: its reads
    (sync_to_async) must not run on that request's thread, gone after it."""
    return asyncio.create_task(coroutine, context=contextvars.Context())


_hubs: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, Hub] = (
    weakref.WeakKeyDictionary()
)


def hub() -> Hub:
    """This event loop's hub (one per process under uvicorn)."""
    loop = asyncio.get_running_loop()
    found = _hubs.get(loop)
    if found is None or found.url != settings.REDIS_URL:
        found = _hubs[loop] = Hub(settings.REDIS_URL)
    return found


def _json(body: object) -> str:
    return json.dumps(body, separators=(",", ":"))


# ASCII digits only: ASGI decodes headers as latin-1, and str.isdigit() takes
# '²' (0xb2), which int() refuses.
_EVENT_ID = re.compile(r"([0-9]{1,18})\.([0-9]{1,18})(?:\.([0-9]{1,18}))?")


@dataclass(frozen=True)
class Position:
    """Where a client stands, as its last event's id says."""

    sequence: int  # the book's
    trade: int  # the last trade it got
    fill: int | None  # its last fill: a user's stream only (None before)


def event_id_parse(value: str) -> Position | None:
    """``<book sequence>.<last trade id>``, followed on a user's stream by
    ``.<last fill id>``, as every event's id reads; None for anything else
    (no ``Last-Event-ID``)."""
    found = _EVENT_ID.fullmatch(value.strip())
    if found is None:
        return None
    fill = int(found[3]) if found[3] is not None else None
    return Position(int(found[1]), int(found[2]), fill)


# -- Reads (synchronous: run in a thread through sync_to_async) -----------------


_readers: ThreadPoolExecutor | None = None


def _read(read):
    """``read`` in the process's few reading threads, whose database
    connections serve every stream (thread_sensitive would tie each stream to
    a thread, and that thread's connection, for as long as it is open)."""
    global _readers
    if _readers is None:
        _readers = ThreadPoolExecutor(READ_THREADS, thread_name_prefix="stream-read")
    return sync_to_async(read, thread_sensitive=False, executor=_readers)


def readers_stop() -> None:
    """End the reading threads, closing their database connections (a
    process that stops, or a test that drops its database)."""
    global _readers
    readers, _readers = _readers, None
    if readers is not None:
        for _ in range(READ_THREADS):
            readers.submit(connections.close_all)
        readers.shutdown(wait=True)
        gc.collect()  # a connection of a thread that ended, if any is left


def _reading(read):
    @functools.wraps(read)
    def run(*args, **kwargs):
        close_old_connections()  # as a request would: a broken one is replaced
        return read(*args, **kwargs)

    return run


@_reading
def market_figures(*, symbol: str, with_candles: bool = True) -> dict:
    """The ticker and each interval's current candle (without them: the
    ticker alone), as the REST API has them."""
    from trading.api import serializers as api
    from trading.api.selectors import ticker_for
    from trading.selectors import CANDLE_INTERVALS, candles, market_get

    market = market_get(symbol=symbol)
    figures = {"ticker": api.TickerSerializer(ticker_for(market=market)).data}
    if with_candles:
        current = figures["candles"] = {}
        for interval in CANDLE_INTERVALS:
            rows = candles(market=market, interval=interval, limit=1)
            current[interval] = api.CandleSerializer(rows[-1]).data if rows else None
    return figures


@_reading
def snapshot_read(
    *,
    market,
    user,
    with_book: bool,
    trades_after: int | None,
    fills_after: int | None,
) -> tuple[dict, int, int, int]:
    """What a stream starts with: the snapshot event's body, the book
    sequence and last trade id it is at, and the user's last fill.

    A resuming client is at ``trades_after``, and at ``fills_after`` among
    the user's fills: those after it up to the last trade are missed, whether
    or not their trades were (a trade's ``trades`` event goes out before its
    ``fills``). More of either than can be caught up makes a trades snapshot.

    The sequence is read before the levels: a level changed in between is
    already in the snapshot and its update, an absolute total, repeats it.
    The user's latest fills are read after the trades: a fill newer than the
    last trade is in the snapshot, and not sent again after its trade.
    """
    from trading.api import serializers as api
    from trading.api.selectors import trades_for_user
    from trading.models import MatcherState, Trade
    from trading.selectors import order_book, orders_open, trades_recent

    body: dict = {"market": market.symbol}
    sequence = (
        MatcherState.objects.filter(market=market)
        .values_list("book_sequence", flat=True)
        .first()
    ) or 0
    if with_book:
        book = order_book(market=market, depth=SNAPSHOT_DEPTH)
        body["sequence"] = sequence
        body["book"] = {
            "bids": api.PriceLevelSerializer(book.bids, many=True).data,
            "asks": api.PriceLevelSerializer(book.asks, many=True).data,
        }
    fills = trades_for_user(user=user, market=market) if user is not None else None
    missed = missed_fills = None
    if trades_after is not None:
        missed = _caught_up(
            Trade.objects.filter(market=market, pk__gt=trades_after).order_by("pk")
        )
        if missed == [] and trades_after > _trade_latest(market):
            missed = None  # a trade id from another database, or the future
    if missed is not None and fills is not None:
        last_trade = missed[-1].pk if missed else trades_after
        missed_fills = _caught_up(
            fills.filter(pk__gt=fills_after, pk__lte=last_trade).order_by("pk")
        )
        if missed_fills is None:
            missed = None
    if missed is None:
        recent = trades_recent(market=market, limit=RECENT_TRADES)
        body["trades"] = api.TradeSerializer(recent, many=True).data
        last_trade = recent[0].pk if recent else 0
    else:
        body["missed_trades"] = [
            _trade_event(row) for row in api.TradeSerializer(missed, many=True).data
        ]
        last_trade = missed[-1].pk if missed else trades_after
    body.update(market_figures.__wrapped__(symbol=market.symbol))
    last_fill = 0
    if user is not None:
        body["orders"] = api.OrderSerializer(
            orders_open(user=user, market=market), many=True
        ).data
        body["balances"] = _balances(user)
        if missed is not None:
            body["missed_fills"] = _fills(missed_fills, user=user)
        body["fills"] = _fills(fills[:RECENT_FILLS], user=user)
        last_fill = body["fills"][0]["id"] if body["fills"] else 0
    return body, sequence, last_trade, last_fill


def _caught_up(rows) -> list | None:
    """``rows``, or None when there are more than a resume sends."""
    found = list(rows[: CATCH_UP_TRADES + 1])
    return None if len(found) > CATCH_UP_TRADES else found


def _trade_latest(market) -> int:
    from trading.models import Trade

    return (
        Trade.objects.filter(market=market)
        .order_by("-pk")
        .values_list("pk", flat=True)
        .first()
    ) or 0


def _trade_event(row: dict) -> dict:
    """A trade of the REST API as the ``trades`` event has it
    (``trading.events``): its ``created_at`` is the event's ``time``."""
    event = {name: value for name, value in row.items() if name != "created_at"}
    event["time"] = row["created_at"]
    return event


def _fills(trades, *, user) -> list[dict]:
    """The user's ``trades`` as the ``fills`` event has them."""
    from trading.api import serializers as api
    from trading.api.selectors import fill_of

    return api.FillSerializer(
        [fill_of(trade, user=user) for trade in trades], many=True
    ).data


def _balances(user) -> list[dict]:
    from trading.api import serializers as api
    from trading.selectors import balances_for_user

    return api.BalanceSerializer(balances_for_user(user=user), many=True).data


@_reading
def orders_read(*, market, user, order_ids: list[int], fills_after: int):
    """The user's changed orders of this market, their new fills, and their
    balances."""
    from trading.api import serializers as api
    from trading.api.selectors import orders_for_user, trades_for_user

    orders = orders_for_user(user=user).filter(market=market, pk__in=order_ids)
    fills = (
        trades_for_user(user=user, market=market)
        .filter(pk__gt=fills_after)
        .order_by("pk")
    )
    return (
        api.OrderSerializer(orders, many=True).data,
        _fills(fills, user=user),
        _balances(user),
    )


@_reading
def balances_read(*, user) -> list[dict]:
    return _balances(user)


# -- One connection -------------------------------------------------------------------


class MarketStream:
    """The events of one market, and of ``user`` when given, for one client:
    ``signed_in`` (synchronous, a read) says whether the key or session the
    stream was opened with still signs ``user`` in."""

    def __init__(
        self,
        *,
        market,
        user,
        last_event_id: str = "",
        signed_in: Callable[[], bool] | None = None,
    ) -> None:
        self.market = market
        self.user = user
        self.signed_in = _reading(signed_in) if signed_in else None
        self.resume = event_id_parse(last_event_id) if last_event_id else None
        self.sequence = 0
        self.last_trade = 0
        self.last_fill = 0
        self.balances: list[dict] | None = None  # as the client last got them

    def _event(self, kind: str, data: str) -> bytes:
        position = f"{self.sequence}.{self.last_trade}"
        if self.user is not None:
            position += f".{self.last_fill}"
        return f"id: {position}\nevent: {kind}\ndata: {data}\n\n".encode()

    def _end(self, reason: str) -> bytes:
        return self._event("resync", _json({"reason": reason}))

    async def events(self) -> AsyncIterator[bytes]:
        hub_ = hub()
        subscription = hub_.subscribe(
            symbol=self.market.symbol, user_id=self.user.pk if self.user else None
        )
        try:
            # Authentication and the session ran in a thread of the request
            # (one of its own under Django's handler, or the one streams'
            # requests share, crypto_exchange.asgi); a connection it opened
            # must not stay open for as long as the stream.
            await sync_to_async(connections.close_all)()
            yield f"retry: {RETRY_MILLISECONDS}\n\n".encode()
            if subscription.ended:
                yield self._end(subscription.ended)
                return
            # In a step of its own: nothing of the snapshot (a thousand price
            # levels a side, their serializers) stays with the connection.
            yield await self._start(hub_)
            # The hub wakes every connection of the market for each message:
            # this loop is the cost per connection and message, so it runs
            # here rather than one async generator deeper.
            while True:
                await subscription.wait()
                chunk, last = await self._pending(subscription)
                if chunk:
                    yield chunk
                if last:
                    return
        finally:
            hub_.unsubscribe(subscription)

    async def _start(self, hub_: Hub) -> bytes:
        """The snapshot, and what a resuming client missed."""
        # Taken in the same step as the subscription: with the queue, it
        # holds every level update from the client's sequence on.
        resume = self.resume
        history = None
        fills_after = None
        if resume:
            history = hub_.book_since(self.market.symbol, resume.sequence)
            # An id without the fill (an anonymous stream's, or one from
            # before it was added) had its fills up to its trade.
            fills_after = resume.trade if resume.fill is None else resume.fill
        body, sequence, last_trade, last_fill = await _read(snapshot_read)(
            market=self.market,
            user=self.user,
            with_book=history is None,
            trades_after=resume.trade if resume else None,
            fills_after=fills_after,
        )
        missed = body.pop("missed_trades", None)
        missed_fills = body.pop("missed_fills", None)
        self.balances = body.get("balances")
        # Each event's id is where the client stands once it has it: a
        # snapshot without the book leaves it at its own sequence, without
        # the trades at its own last trade, and before the fills it missed
        # at its own last fill, until the book updates, trades and fills
        # that follow.
        self.sequence = sequence if history is None else resume.sequence
        self.last_trade = resume.trade if missed else last_trade
        self.last_fill = fills_after if missed_fills else last_fill
        chunks = [self._event("snapshot", _json(body))]
        if history:
            self.sequence = history[-1]["sequence"]
            chunks.append(self._event("book", _json({"levels": history})))
        if missed:
            self.last_trade = last_trade
            chunks.append(self._event("trades", _json({"trades": missed})))
        if missed_fills:
            self.last_fill = max(last_fill, missed_fills[-1]["id"])
            chunks.append(self._event("fills", _json({"fills": missed_fills})))
        return b"".join(chunks)

    async def _pending(self, subscription: Subscription) -> tuple[bytes, bool]:
        """What the queued messages make, and whether the stream ends with it.
        Everything already queued goes out in one write: a batch's messages
        cost one send per connection, not one each."""
        chunks: list[bytes] = []
        messages = subscription.messages
        checked = False
        while messages and not subscription.ended:
            message = messages.popleft()
            kind = message.kind
            if kind == "book" and self._gap(message.body["levels"]):
                # Redis dropped messages: the client must start again.
                chunks.append(self._end("gap"))
                return b"".join(chunks), True
            if kind in self._FORWARDED:
                chunks += self._FORWARDED[kind](self, message)
                continue
            # The user's own: never once the key or session is gone.
            if not checked:
                checked = True
                if not await self._still_signed_in(subscription):
                    break
            if kind == "orders":
                chunks += await self._on_orders(message)
            elif kind == "balances":
                chunks += await self._on_balances(message)
        if subscription.beat and not checked and not subscription.ended:
            await self._still_signed_in(subscription)
        if subscription.ended:
            chunks.append(self._end(subscription.ended))
            return b"".join(chunks), True
        if subscription.beat:
            subscription.beat = False
            if not chunks:
                chunks.append(b": keep-alive\n\n")
        return b"".join(chunks), False

    async def _still_signed_in(self, subscription: Subscription) -> bool:
        """Whether the key or session still signs the user in; when not,
        the stream ends."""
        if self.signed_in is None or await _read(self.signed_in)():
            return True
        subscription.end("revoked")
        return False

    def _gap(self, levels: list[dict]) -> bool:
        fresh = [level for level in levels if level["sequence"] > self.sequence]
        return bool(fresh) and fresh[0]["sequence"] != self.sequence + 1

    def _on_book(self, message: Message) -> list[bytes]:
        levels = message.body["levels"]
        fresh = [level for level in levels if level["sequence"] > self.sequence]
        if not fresh:
            return []
        self.sequence = fresh[-1]["sequence"]
        data = message.data if len(fresh) == len(levels) else _json({"levels": fresh})
        return [self._event("book", data)]

    def _on_trades(self, message: Message) -> list[bytes]:
        trades = message.body["trades"]
        fresh = [trade for trade in trades if trade["id"] > self.last_trade]
        if not fresh:
            return []
        self.last_trade = fresh[-1]["id"]
        data = message.data if len(fresh) == len(trades) else _json({"trades": fresh})
        return [self._event("trades", data)]

    def _on_ticker(self, message: Message) -> list[bytes]:
        return [self._event("ticker", message.data)]

    def _on_candles(self, message: Message) -> list[bytes]:
        return [self._event("candles", message.data)]

    _FORWARDED = {
        "book": _on_book,
        "trades": _on_trades,
        "ticker": _on_ticker,
        "candles": _on_candles,
    }

    async def _on_orders(self, message: Message) -> list[bytes]:
        ids = [row["id"] for row in message.body["orders"]]
        orders, fills, balances = await _read(orders_read)(
            market=self.market,
            user=self.user,
            order_ids=ids,
            fills_after=self.last_fill,
        )
        chunks = []
        if fills:
            self.last_fill = fills[-1]["id"]
            chunks.append(self._event("fills", _json({"fills": fills})))
        if orders:
            chunks.append(self._event("orders", _json({"orders": orders})))
        # An order's reservation was written by its request, which publishes
        # nothing (the matcher publishes only the balances its batch changed):
        # the order's news says the balances may have changed too.
        return chunks + self._balances_changed(balances)

    async def _on_balances(self, message: Message) -> list[bytes]:
        # The published rows name tokens by id, the API's by symbol: read
        # them again (the same values, or newer).
        return self._balances_changed(await _read(balances_read)(user=self.user))

    def _balances_changed(self, balances: list[dict]) -> list[bytes]:
        """The ``balances`` event, unless the client has them already (a
        batch's orders and balances messages both lead here)."""
        if balances == self.balances:
            return []
        self.balances = balances
        return [self._event("balances", _json({"balances": balances}))]
