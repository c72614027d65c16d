"""What a committed batch changed, published on Redis for live pages; and
the balances a deposit or a withdrawal changed (``balances_publish``).

Published only after the transaction commits, and only with
``REDIS_URL``; a failure to publish never undoes anything (the database is the
truth). Redis gets one try of ``REDIS_TIMEOUT`` at most, and after one that
fails because Redis cannot serve it is left alone for ``RETRY_AFTER`` seconds,
as ``core.cache`` does: a paused or unreachable Redis costs the matcher (or
a web process) one timeout every few seconds, not one per batch. The events
of the batches (and deposits and withdrawals) committed meanwhile are
dropped, not kept for later: the log says once that publishing stopped
(``event="events not published: Redis unreachable"``) and, when Redis
answers again, how many batches' events were dropped
(``event="events published again"``, ``batches_unpublished``). A live stream
finds out at the market's next book update, whose ``sequence`` skips the lost
ones, and starts again from a snapshot (``trading.live``); until then it shows
what it had. Channels, each message a JSON object with amounts as strings:

``trading.<SYMBOL>.trades``
    ``{"trades": [{"id", "price", "quantity", "quote_amount",
    "taker_side", "time"}, ...]}``: ``time`` is the trade's ``created_at``
    (ISO 8601, UTC, as the REST API writes it).
``trading.<SYMBOL>.book``
    ``{"levels": [{"sequence", "side", "price", "quantity"}, ...]}``: each
    level's new total (``"0"``: gone); ``sequence`` numbers the market's
    level updates without gaps, so a client sees when it missed one.
``trading.user.<ID>.orders``
    ``{"orders": [{"id", "status", "reason", "filled_quantity",
    "executed_value", "fee", "locked"}, ...]}``
``trading.user.<ID>.balances``
    ``{"balances": [{"token_id", "available", "locked"}, ...]}``: the rows
    a batch, a deposit or a withdrawal (its request, cancel or decision)
    changed. An order's reservation, written by its request
    (``trading.orders``), is not published here: the live stream reads the
    user's balances again at each ``orders`` message, which follows it.

Redis shares its channels between its numbered databases, so each name
starts with the database number of ``REDIS_URL`` (``3:trading.BTC-USDT.book``
for ``redis://host:6379/3``): exchanges that share a Redis server on
different databases see only their own events, as with their cache keys.
"""

from __future__ import annotations

import json
import logging
import time
from collections import defaultdict
from collections.abc import Iterable
from datetime import UTC, datetime
from decimal import Decimal
from functools import cache

from django.conf import settings

from core.cache import DEFAULT_RETRY_AFTER, UNREACHABLE, Outage
from trading.money import plain

log = logging.getLogger("trading.events")


def iso_time(moment: datetime) -> str:
    """``moment`` in UTC as DRF's DateTimeField writes it (``...Z``)."""
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


# Seconds Redis is left alone after it failed to take a batch's events.
RETRY_AFTER = DEFAULT_RETRY_AFTER


@cache
def _client(url: str, timeout: float):
    import redis
    from redis.backoff import NoBackoff
    from redis.retry import Retry

    # One try: a retry after a timeout would hold the matcher once more.
    return redis.Redis.from_url(
        url,
        socket_timeout=timeout,
        socket_connect_timeout=timeout,
        retry=Retry(NoBackoff(), 0),
    )


class _Unpublished(Outage):
    """Redis as this process's publishing sees it, and the batches whose
    events were not published since it stopped answering."""

    def __init__(self) -> None:
        super().__init__()
        self.batches = 0


@cache
def _outage(url: str) -> _Unpublished:
    return _Unpublished()


@cache
def channel_prefix(url: str) -> str:
    """What starts every channel name on the Redis of ``url``: its database
    number and a colon."""
    import redis

    return f"{redis.ConnectionPool.from_url(url).connection_kwargs.get('db', 0)}:"


def batch_publish(batch, *, symbol: str) -> None:
    """Publish what ``batch`` (a ``trading.batch.Batch``, committed) changed."""
    if not settings.REDIS_URL:
        return
    messages: list[tuple[str, dict]] = []
    if batch.trades:
        messages.append(
            (
                f"trading.{symbol}.trades",
                {
                    "trades": [
                        {
                            "id": trade_id,
                            "price": plain(trade.price),
                            "quantity": plain(trade.quantity),
                            "quote_amount": plain(trade.quote_amount),
                            "taker_side": str(trade.taker_side),
                            "time": iso_time(time),
                        }
                        for trade_id, trade, time in zip(
                            batch.trade_ids,
                            batch.trades,
                            batch.trade_times,
                            strict=True,
                        )
                    ]
                },
            )
        )
    if batch.levels:
        messages.append(
            (
                f"trading.{symbol}.book",
                {
                    "levels": [
                        {
                            "sequence": level.book_sequence,
                            "side": str(level.side),
                            "price": plain(level.price),
                            "quantity": plain(level.quantity),
                        }
                        for level in batch.levels
                    ]
                },
            )
        )
    orders: dict[int, list] = defaultdict(list)
    for update in batch.orders.values():
        orders[update.user_id].append(
            {
                "id": update.order_id,
                "status": str(update.status),
                "reason": str(update.reason),
                "filled_quantity": plain(update.filled),
                "executed_value": plain(update.executed_value),
                "fee": plain(update.fee),
                "locked": plain(update.locked),
            }
        )
    messages += [
        (f"trading.user.{user_id}.orders", {"orders": rows})
        for user_id, rows in orders.items()
    ]
    messages += _balance_messages(batch.balance_rows)
    _send(messages, context={"market": symbol})


def balances_publish(*, rows: Iterable[tuple[int, int, Decimal, Decimal]]) -> None:
    """Publish balance rows (user id, token id, available, locked) that a
    committed deposit or withdrawal changed: call it from
    ``transaction.on_commit``."""
    if not settings.REDIS_URL:
        return
    _send(_balance_messages(rows), context={})


def _balance_messages(rows) -> list[tuple[str, dict]]:
    balances: dict[int, list] = defaultdict(list)
    for user_id, token_id, available, locked in rows:
        balances[user_id].append(
            {
                "token_id": token_id,
                "available": plain(available),
                "locked": plain(locked),
            }
        )
    return [
        (f"trading.user.{user_id}.balances", {"balances": rows})
        for user_id, rows in balances.items()
    ]


def _send(messages: list[tuple[str, dict]], *, context: dict) -> None:
    """Publish ``messages`` (channel, body) in one round trip; never raises.
    ``context`` goes into the log records."""
    if not messages:
        return
    outage = _outage(settings.REDIS_URL)
    if outage.down and time.monotonic() < outage.retry_at:
        with outage.lock:
            outage.batches += 1
        return
    try:
        prefix = channel_prefix(settings.REDIS_URL)
        client = _client(settings.REDIS_URL, settings.REDIS_TIMEOUT)
        pipeline = client.pipeline(transaction=False)
        for channel, body in messages:
            pipeline.publish(prefix + channel, json.dumps(body))
        pipeline.execute()
    except UNREACHABLE as error:
        with outage.lock:
            outage.batches += 1
        if outage.begin(retry_after=RETRY_AFTER):
            log.warning(
                "events not published: Redis unreachable",
                extra={
                    **context,
                    "reason": f"{type(error).__name__}: {error}",
                    "retry_after": RETRY_AFTER,
                },
            )
        return
    except Exception:
        log.exception("events not published", extra=context)
        return
    if outage.down:
        _published_again(outage)


def _published_again(outage: _Unpublished) -> None:
    with outage.lock:
        if not outage.down:
            return
        seconds, lost, outage.batches = outage.end(), outage.batches, 0
    log.warning(
        "events published again",
        extra={"seconds_down": round(seconds, 1), "batches_unpublished": lost},
    )
