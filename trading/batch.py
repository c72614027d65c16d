"""The matcher's batches: the queue read (``queue_read_pg`` on PostgreSQL,
the ORM elsewhere), and one batch of results written in one transaction.

``Batch`` gathers what the engine's results change (order rows, trades,
ledger transactions and entries, balance deltas summed per row, refusals of
cancels and amends, the queue rows to delete, the market's matcher state);
``batch_write`` writes it, in this order:

1. the order rows, the trades, the ledger, the refusals, the queue rows
   deleted and the matcher state, with (on PostgreSQL) a NOTIFY, delivered
   with the commit, that wakes the requests waiting for this market;
2. the balance rows, locked explicitly in primary-key order and updated
   last, just before the commit: matchers of markets that share a token
   lock rows in the same order and hold them as briefly as possible, and
   the request side's reservations wait for them only that long. A batch
   that would take a balance (available + locked) to ``AMOUNT_LIMIT`` or
   more raises ``BalanceLimitExceeded`` before writing them, on every
   database (PostgreSQL's columns refuse such a value, SQLite's keep it):
   the rule of the deposit credit.

On PostgreSQL the large statements are plain SQL of the form
``INSERT ... SELECT FROM unnest(arrays)`` / ``UPDATE ... FROM unnest(...)``:
one statement per table whatever the batch size, as fast as COPY
(docs of the prototype in the design notes). Ids of the rows inserted are
taken from their sequences first, in one round trip, so that rows refer to
each other without reading anything back. Elsewhere (SQLite, in development)
the same rows go through ``executemany`` and ``bulk_create``.

Balance rows that do not exist yet (a user receiving a token for the first
time) are created by ``balances_ensure`` before the batch's transaction, in
a short one of their own, so the batch never waits on an insert.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal

from django.db import connection, transaction

from trading.engine import OrderUpdate, Result, Status, Trade
from trading.exceptions import BalanceLimitExceeded
from trading.models import (
    Balance,
    CommandRefusal,
    LedgerEntry,
    LedgerTransaction,
    MatcherState,
    Order,
    OrderCommand,
)
from trading.money import AMOUNT_LIMIT, ZERO

Account = LedgerEntry.Account
_ACCOUNTS = {
    "available": Account.USER_AVAILABLE,
    "locked": Account.USER_LOCKED,
    "fees": Account.FEES,
}
_LEDGER_KIND = {
    OrderCommand.Kind.PLACE: LedgerTransaction.Kind.ORDER_MATCH,
    OrderCommand.Kind.AMEND: LedgerTransaction.Kind.ORDER_MATCH,
    OrderCommand.Kind.CANCEL: LedgerTransaction.Kind.ORDER_CANCEL,
    OrderCommand.Kind.CANCEL_ALL: LedgerTransaction.Kind.ORDER_CANCEL,
}


@dataclass(frozen=True, slots=True)
class Taken:
    """A queue row as the matcher took it."""

    id: int
    kind: str
    user_id: int
    order_id: int | None


@dataclass(slots=True)
class LedgerRecord:
    kind: str
    order_id: int | None
    # (token_id, account, user_id or None, signed amount, the user's order or
    # None): a match holds the taker's and its makers' entries.
    entries: list[tuple[int, str, int | None, Decimal, int | None]] = field(
        default_factory=list
    )


@dataclass(slots=True)
class Batch:
    """What a run of commands changed, ready to write."""

    market_id: int
    sequence: int = 0
    book_sequence: int = 0
    last_price: Decimal | None = None
    commands: list[int] = field(default_factory=list)  # queue rows to delete
    orders: dict[int, object] = field(default_factory=dict)  # id -> OrderUpdate
    trades: list[Trade] = field(default_factory=list)
    ledger: list[LedgerRecord] = field(default_factory=list)
    balances: dict[tuple[int, int], list[Decimal]] = field(
        default_factory=lambda: defaultdict(lambda: [ZERO, ZERO])
    )  # (user, token) -> [available delta, locked delta]
    refusals: list[CommandRefusal] = field(default_factory=list)
    levels: list = field(default_factory=list)  # LevelUpdate, in order
    # Filled in by batch_write, for the events.
    trade_ids: list[int] = field(default_factory=list)
    trade_times: list[datetime] = field(default_factory=list)  # their created_at
    balance_rows: list[tuple[int, int, Decimal, Decimal]] = field(default_factory=list)

    def add(self, taken: Taken, result: Result) -> None:
        """Add what ``result``, the engine's answer to ``taken``, changed."""
        self.commands.append(taken.id)
        self.sequence = result.sequence
        for update in result.orders:
            self.orders[update.order_id] = update
        self.trades += result.trades
        self.levels += result.levels
        if result.moves:
            record = LedgerRecord(_LEDGER_KIND[taken.kind], taken.order_id)
            for move in result.moves:
                for account, amount, order_id in (
                    (move.source, -move.amount, move.order_id),
                    (move.target, move.amount, move.target_order_id),
                ):
                    kind = _ACCOUNTS[account.kind]
                    record.entries.append(
                        (move.token, kind, account.user_id, amount, order_id)
                    )
                    if account.user_id is not None:
                        delta = self.balances[(account.user_id, move.token)]
                        delta[0 if account.kind == "available" else 1] += amount
            self.ledger.append(record)
        if result.rejected is not None and taken.kind in (
            OrderCommand.Kind.CANCEL,
            OrderCommand.Kind.AMEND,
        ):
            self.refusals.append(
                CommandRefusal(
                    command_id=taken.id,
                    kind=taken.kind,
                    user_id=taken.user_id,
                    order_id=taken.order_id,
                    code=result.rejected,
                )
            )

    def order_rows(self) -> list[tuple]:
        """(id, status, cancel_reason, reject_reason, price, quantity,
        quote_amount, filled, executed_value, fee, locked, priority sequence,
        priority rank) of each order, as it stands after the batch."""
        rows = []
        for update in self.orders.values():
            rejected = update.status == Status.REJECTED
            rows.append(
                (
                    update.order_id,
                    str(update.status),
                    "" if rejected else str(update.reason),
                    str(update.reason) if rejected else "",
                    update.price,
                    update.quantity,
                    update.quote_amount,
                    update.filled,
                    update.executed_value,
                    update.fee,
                    update.locked,
                    update.priority[0],
                    update.priority[1],
                )
            )
        return rows


# -- Balance rows -------------------------------------------------------------


def balances_ensure(keys: Iterable[tuple[int, int]], *, known: set) -> None:
    """Create the missing balance rows of ``keys`` ((user, token) pairs), in
    a transaction of their own; ``known`` remembers the rows seen (balance
    rows are never deleted), so this costs nothing in the usual case."""
    missing = sorted(set(keys) - known)
    if not missing:
        return
    with transaction.atomic(durable=True):
        Balance.objects.bulk_create(
            [
                Balance(user_id=user_id, token_id=token_id)
                for user_id, token_id in missing
            ],
            ignore_conflicts=True,
        )
    known.update(missing)


def _limit_check(
    batch: Batch, key: tuple[int, int], available: Decimal, locked: Decimal
) -> None:
    """Raise ``BalanceLimitExceeded`` if the batch takes the balance ``key``,
    which holds ``available`` and ``locked``, to ``AMOUNT_LIMIT`` or more.
    Only a balance that grows is refused: moving funds between available
    and locked (a cancel) never is."""
    gained = sum(batch.balances[key])
    if gained > 0 and available + locked + gained >= AMOUNT_LIMIT:
        raise BalanceLimitExceeded


# -- The write ------------------------------------------------------------------


def batch_write(batch: Batch, *, now: datetime, lock_check=None) -> None:
    """Write ``batch`` in one transaction. ``lock_check`` runs first inside
    it and raises if this process no longer owns the market."""
    postgres = connection.vendor == "postgresql"
    with transaction.atomic(durable=True):
        if lock_check is not None:
            lock_check()
        with connection.cursor() as cursor:
            if postgres:
                _orders_update_pg(cursor, batch, now)
                trade_ids, transaction_ids = _ids_pg(
                    cursor, trades=len(batch.trades), transactions=len(batch.ledger)
                )
                _trades_insert_pg(cursor, batch, trade_ids, now)
                _ledger_insert_pg(cursor, batch, transaction_ids, now)
            else:
                _orders_update(cursor, batch, now)
                _trades_insert(batch, now)
                _ledger_insert(batch, now)
            if batch.refusals:
                CommandRefusal.objects.bulk_create(batch.refusals)
            if postgres:
                _queue_done_pg(cursor, batch, now)
                _balances_update_pg(cursor, batch, now)
            else:
                OrderCommand.objects.filter(pk__in=batch.commands).delete()
                MatcherState.objects.filter(pk=batch.market_id).update(
                    sequence=batch.sequence,
                    book_sequence=batch.book_sequence,
                    last_price=batch.last_price,
                    updated_at=now,
                )
                _balances_update(batch, now)


def _columns(rows: list[tuple], width: int) -> list[list]:
    """Rows as one list per column, for ``unnest``."""
    return (
        [list(column) for column in zip(*rows, strict=True)] if rows else [[]] * width
    )


# -- PostgreSQL -------------------------------------------------------------------

# The queue as ``matcher._COMMAND_FIELDS`` lists it: each command with its
# order's fields (none for a cancel-all), in id order, but the ones taken
# already. Plain SQL because the ORM compiled this query anew for every
# batch: 0.7 ms of CPU, half of what a one-command batch cost the matcher.
# With the ORM's query the paced p99 of bench/trading.py failed (101 and
# 141 ms in two runs); with this one it passed the same day (47 to 84 ms).
_QUEUE_SQL = """
SELECT c.id, c.kind, c.user_id, c.order_id, c.price, c.quantity, c.reserved,
    o.status, o.side, o.type, o.quantity, o.price, o.quote_amount,
    o.protection_price, o.stop_price, o.time_in_force, o.post_only,
    o.self_trade, o.locked
FROM trading_ordercommand AS c
LEFT JOIN trading_order AS o ON o.id = c.order_id
WHERE c.market_id = %s AND c.id <> ALL(%b::bigint[])
ORDER BY c.id
LIMIT %s
"""


def queue_read_pg(market_id: int, *, taken: list[int], limit: int) -> list[tuple]:
    with connection.cursor() as cursor:
        cursor.execute(_QUEUE_SQL, [market_id, taken, limit])
        return cursor.fetchall()


def _ids_pg(cursor, *, trades: int, transactions: int) -> tuple[list, list]:
    """Ids for the batch's trades and ledger transactions, from their
    sequences, in one round trip."""
    if not (trades or transactions):
        return [], []
    cursor.execute(
        """
        SELECT ARRAY(SELECT nextval(pg_get_serial_sequence('trading_trade', 'id'))
                FROM generate_series(1, %s)),
            ARRAY(SELECT nextval(
                    pg_get_serial_sequence('trading_ledgertransaction', 'id'))
                FROM generate_series(1, %s))
        """,
        [trades, transactions],
    )
    return cursor.fetchone()


def _orders_update_pg(cursor, batch: Batch, now: datetime) -> None:
    rows = batch.order_rows()
    if not rows:
        return
    cursor.execute(
        """
        UPDATE trading_order AS o SET
            status = u.status, cancel_reason = u.cancel_reason,
            reject_reason = u.reject_reason, price = u.price,
            quantity = u.quantity, quote_amount = u.quote_amount,
            filled_quantity = u.filled, executed_value = u.executed_value,
            fee = u.fee, locked = u.locked,
            priority_sequence = u.priority_sequence,
            priority_rank = u.priority_rank, updated_at = %s
        FROM unnest(
            %b::bigint[], %b::varchar[], %b::varchar[], %b::varchar[],
            %b::numeric[], %b::numeric[], %b::numeric[], %b::numeric[],
            %b::numeric[], %b::numeric[], %b::numeric[], %b::bigint[], %b::int[]
        ) AS u(id, status, cancel_reason, reject_reason, price, quantity,
               quote_amount, filled, executed_value, fee, locked,
               priority_sequence, priority_rank)
        WHERE o.id = u.id
        """,
        [now, *_columns(rows, 13)],
    )
    if cursor.rowcount != len(rows):
        raise RuntimeError(f"{len(rows) - cursor.rowcount} order rows are missing.")


def _trade_rows(batch: Batch) -> list[tuple]:
    return [
        (
            t.maker_order_id,
            t.taker_order_id,
            str(t.taker_side),
            t.price,
            t.quantity,
            t.quote_amount,
            t.maker_fee,
            t.taker_fee,
        )
        for t in batch.trades
    ]


def _trades_insert_pg(cursor, batch: Batch, ids: list[int], now: datetime) -> None:
    rows = _trade_rows(batch)
    if not rows:
        return
    batch.trade_ids = ids
    batch.trade_times = [now] * len(rows)
    cursor.execute(
        """
        INSERT INTO trading_trade (
            id, market_id, maker_order_id, taker_order_id, taker_side, price,
            quantity, quote_amount, maker_fee, taker_fee, created_at)
        SELECT u.id, %s, u.maker, u.taker, u.side, u.price, u.quantity,
               u.quote_amount, u.maker_fee, u.taker_fee, %s
        FROM unnest(
            %b::bigint[], %b::bigint[], %b::bigint[], %b::varchar[],
            %b::numeric[], %b::numeric[], %b::numeric[], %b::numeric[],
            %b::numeric[]
        ) AS u(id, maker, taker, side, price, quantity, quote_amount,
               maker_fee, taker_fee)
        """,
        [batch.market_id, now, batch.trade_ids, *_columns(rows, 8)],
    )


def _ledger_insert_pg(cursor, batch: Batch, ids: list[int], now: datetime) -> None:
    """The ledger transactions and their entries, in one statement (the
    entries' foreign keys are checked at its end, when both are in)."""
    if not batch.ledger:
        return
    entries = [
        (transaction_id, *entry)
        for transaction_id, record in zip(ids, batch.ledger, strict=True)
        for entry in record.entries
    ]
    cursor.execute(
        """
        WITH recorded AS (
            INSERT INTO trading_ledgertransaction (id, kind, order_id, created_at)
            SELECT u.id, u.kind, u.order_id, %s
            FROM unnest(%b::bigint[], %b::varchar[], %b::bigint[])
                AS u(id, kind, order_id)
        )
        INSERT INTO trading_ledgerentry (
            transaction_id, token_id, account, user_id, amount, order_id)
        SELECT * FROM unnest(
            %b::bigint[], %b::bigint[], %b::varchar[], %b::bigint[],
            %b::numeric[], %b::bigint[])
        """,
        [
            now,
            ids,
            [record.kind for record in batch.ledger],
            [record.order_id for record in batch.ledger],
            *_columns(entries, 6),
        ],
    )


def _queue_done_pg(cursor, batch: Batch, now: datetime) -> None:
    """The batch's queue rows deleted, the market's matcher state moved on
    and the waiting requests told (a NOTIFY, delivered at the commit), in
    one round trip."""
    from trading.orders import notify_channel

    cursor.execute(
        """
        WITH taken AS (
            DELETE FROM trading_ordercommand WHERE id = ANY(%b::bigint[])
        ), state AS (
            UPDATE trading_matcherstate SET sequence = %s, book_sequence = %s,
                last_price = %s, updated_at = %s
            WHERE market_id = %s
        )
        SELECT pg_notify(%s, %s)
        """,
        [
            batch.commands,
            batch.sequence,
            batch.book_sequence,
            batch.last_price,
            now,
            batch.market_id,
            notify_channel(batch.market_id),
            str(batch.sequence),
        ],
    )


def _balances_update_pg(cursor, batch: Batch, now: datetime) -> None:
    keys = sorted(key for key, delta in batch.balances.items() if any(delta))
    if not keys:
        return
    users, tokens = [user for user, _ in keys], [token for _, token in keys]
    cursor.execute(
        """
        SELECT b.user_id, b.token_id, b.available, b.locked
        FROM trading_balance AS b
        JOIN unnest(%b::bigint[], %b::bigint[]) AS u(user_id, token_id)
            ON b.user_id = u.user_id AND b.token_id = u.token_id
        ORDER BY b.id FOR NO KEY UPDATE OF b
        """,
        [users, tokens],
    )
    for user_id, token_id, available, locked in cursor.fetchall():
        _limit_check(batch, (user_id, token_id), available, locked)
    cursor.execute(
        """
        UPDATE trading_balance AS b SET
            available = b.available + u.available,
            locked = b.locked + u.locked, updated_at = %s
        FROM unnest(%b::bigint[], %b::bigint[], %b::numeric[], %b::numeric[])
            AS u(user_id, token_id, available, locked)
        WHERE b.user_id = u.user_id AND b.token_id = u.token_id
        RETURNING b.user_id, b.token_id, b.available, b.locked
        """,
        [
            now,
            users,
            tokens,
            [batch.balances[key][0] for key in keys],
            [batch.balances[key][1] for key in keys],
        ],
    )
    batch.balance_rows = cursor.fetchall()
    if len(batch.balance_rows) != len(keys):
        raise RuntimeError("A balance row the batch changes is missing.")


# -- Elsewhere (SQLite) ----------------------------------------------------------


def _orders_update(cursor, batch: Batch, now: datetime) -> None:
    rows = batch.order_rows()
    if not rows:
        return
    stamp = connection.ops.adapt_datetimefield_value(now)
    cursor.executemany(
        "UPDATE trading_order SET status = %s, cancel_reason = %s,"
        " reject_reason = %s, price = %s, quantity = %s, quote_amount = %s,"
        " filled_quantity = %s, executed_value = %s, fee = %s, locked = %s,"
        " priority_sequence = %s, priority_rank = %s, updated_at = %s"
        " WHERE id = %s",
        [(*row[1:], stamp, row[0]) for row in rows],
    )


def _trades_insert(batch: Batch, now: datetime) -> None:
    from trading.models import Trade as TradeRow

    rows = [
        TradeRow(
            market_id=batch.market_id,
            maker_order_id=maker,
            taker_order_id=taker,
            taker_side=side,
            price=price,
            quantity=quantity,
            quote_amount=quote_amount,
            maker_fee=maker_fee,
            taker_fee=taker_fee,
            created_at=now,
        )
        for maker, taker, side, price, quantity, quote_amount, maker_fee, taker_fee in (
            _trade_rows(batch)
        )
    ]
    created = TradeRow.objects.bulk_create(rows)
    batch.trade_ids = [row.pk for row in created]
    batch.trade_times = [row.created_at for row in created]  # auto_now_add's


def _ledger_insert(batch: Batch, now: datetime) -> None:
    if not batch.ledger:
        return
    records = LedgerTransaction.objects.bulk_create(
        [
            LedgerTransaction(kind=record.kind, order_id=record.order_id)
            for record in batch.ledger
        ]
    )
    LedgerEntry.objects.bulk_create(
        [
            LedgerEntry(
                transaction=saved,
                token_id=token_id,
                account=account,
                user_id=user_id,
                amount=amount,
                order_id=order_id,
            )
            for saved, record in zip(records, batch.ledger, strict=True)
            for token_id, account, user_id, amount, order_id in record.entries
        ]
    )


def _balances_update(batch: Batch, now: datetime) -> None:
    # SQLite sums decimals as floats: new values are computed here. The
    # transaction holds the database's write lock since its first write.
    keys = {key for key, delta in batch.balances.items() if any(delta)}
    if not keys:
        return
    rows = Balance.objects.filter(
        user_id__in={user for user, _ in keys},
        token_id__in={token for _, token in keys},
    )
    found = {(row.user_id, row.token_id): row for row in rows}
    if not keys <= set(found):
        raise RuntimeError("A balance row the batch changes is missing.")
    changed = []
    for key in sorted(keys):
        row = found[key]
        _limit_check(batch, key, row.available, row.locked)
        row.available += batch.balances[key][0]
        row.locked += batch.balances[key][1]
        if row.available < 0 or row.locked < 0:
            raise RuntimeError(f"Balance {row.pk} would go negative.")
        row.updated_at = now
        changed.append(row)
        batch.balance_rows.append((*key, row.available, row.locked))
    Balance.objects.bulk_update(changed, ["available", "locked", "updated_at"])


# -- A command that cannot be applied -------------------------------------------------


def command_fail(
    *,
    taken: Taken,
    market_id: int,
    reserved_token_id: int | None,
    reason: str = Order.RejectReason.MATCHER_ERROR,
) -> Batch:
    """Refuse ``taken`` alone, without the engine (it raised on it): a
    placement ends rejected (``reason``: ``matcher_error``, or
    ``balance_limit``) and releases what it reserved; an amend releases its
    extra reservation; a cancel or an amend gets a refusal with ``reason``.
    The queue row goes in the same transaction.

    Returns what changed as a batch would have it (the rejected order, the
    balance row), for the events, to publish once this has committed."""
    Kind = OrderCommand.Kind
    failed = Batch(market_id=market_id)
    with transaction.atomic(durable=True):
        release, record_order = ZERO, taken.order_id
        if taken.kind == Kind.PLACE:
            order = Order.objects.get(pk=taken.order_id)
            if order.status == Order.Status.ACCEPTED:
                release = order.locked
                Order.objects.filter(pk=order.pk).update(
                    status=Order.Status.REJECTED,
                    reject_reason=reason,
                    locked=ZERO,
                )
                failed.orders[order.pk] = OrderUpdate(
                    order_id=order.pk,
                    user_id=order.user_id,
                    status=Status.REJECTED,
                    reason=str(reason),
                    price=order.price,
                    quantity=order.quantity,
                    quote_amount=order.quote_amount,
                    filled=order.filled_quantity,
                    executed_value=order.executed_value,
                    fee=order.fee,
                    locked=ZERO,
                    priority=(order.priority_sequence, order.priority_rank),
                )
        else:
            command = OrderCommand.objects.filter(pk=taken.id).first()
            release = command.reserved if command is not None else ZERO
            CommandRefusal.objects.create(
                command_id=taken.id,
                kind=taken.kind,
                user_id=taken.user_id,
                order_id=taken.order_id,
                code=reason,
            )
        if release:
            record = LedgerTransaction.objects.create(
                kind=LedgerTransaction.Kind.ORDER_MATCH, order_id=record_order
            )
            LedgerEntry.objects.bulk_create(
                [
                    LedgerEntry(
                        transaction=record,
                        token_id=reserved_token_id,
                        account=account,
                        user_id=taken.user_id,
                        amount=amount,
                    )
                    for account, amount in (
                        (Account.USER_LOCKED, -release),
                        (Account.USER_AVAILABLE, release),
                    )
                ]
            )
            row = Balance.objects.select_for_update().get(
                user_id=taken.user_id, token_id=reserved_token_id
            )
            row.locked -= release
            row.available += release
            row.save(update_fields=["available", "locked", "updated_at"])
            failed.balance_rows.append(
                (taken.user_id, reserved_token_id, row.available, row.locked)
            )
        OrderCommand.objects.filter(pk=taken.id).delete()
        if connection.vendor == "postgresql":
            # The request waiting for this command is told at the commit, as
            # a batch tells it (_queue_done_pg); otherwise it would wait out
            # its whole timeout before reading the refusal.
            from trading.orders import notify_channel

            with connection.cursor() as cursor:
                cursor.execute(
                    "SELECT pg_notify(%s, %s)",
                    [notify_channel(market_id), f"refused {taken.id}"],
                )
    return failed
