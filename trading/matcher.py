"""The matcher: one writer per market, its book in memory.

``python manage.py run_matcher`` runs ``Matcher``: for each market it may
own, it takes the market's exclusive lock (``MarketLocks``), rebuilds the
book from the open and waiting orders in priority order, then loops: take
up to ``BATCH_SIZE`` queued commands in id order, give each the next
sequence number, apply them to the engine (``trading.engine``), write all
their results in one transaction (``trading.batch``), publish what changed
(``trading.events``) once it is committed. On PostgreSQL, ``run_matcher``
matches each batch while the one before it is written (``step``), so that
the matcher's own work and its database's overlap.

Why it is correct
-----------------
Exactly one writer per market
    The lock is a PostgreSQL session advisory lock (or, on SQLite, an
    ``fcntl`` lock on a file beside the database): it dies with the process
    or its connection. A second matcher waits for it, saying so in its log,
    and takes over when the first dies. Each batch checks inside its
    transaction that this session still holds the lock.
Nothing accepted is lost, nothing applied twice
    A command's row is deleted in the transaction that writes its result; a
    crash before the commit leaves the rows and writes nothing, and the
    restarted matcher rebuilds the book from what was committed. A batch
    matched ahead is only in memory until its turn to be written; if the
    batch before it fails, it is thrown away with the engine and its
    commands are read again.
Acceptance order
    Ids are not commit order (an id taken earlier may commit later), so the
    matcher never keeps a cursor: it reads the oldest rows still queued each
    time, and a row that commits late is simply taken in a later batch. Its
    sequence, and so its time priority, is given when it is taken.
A command that cannot be applied
    The engine refuses what breaks a rule (the order ends ``rejected``, or the
    cancel or amend gets a refusal). Should applying or writing a batch raise,
    the transaction is rolled back, the book rebuilt, and the batch's
    commands retried one at a time; one that raises again is refused alone
    (``matcher_error``, its reservation released, published once committed
    as a batch's changes are) and the queue goes on. So is a command whose
    trades would take a balance to 10^18 or more (``balance_limit``: the
    batch's write checks it, as the engine does not know balances).
    Lost connections are not the commands' fault: the loop waits and starts
    over (locks, rebuild) instead. Nor is a batch PostgreSQL rolled back (a
    deadlock, a serialization failure): that market's book is rebuilt and its
    commands read again, the other markets go on.
"""

from __future__ import annotations

import contextlib
import fcntl
import gc
import logging
import os
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor

from django.db import InterfaceError, OperationalError, connection
from django.db.models import Max
from django.utils import timezone

from trading import events
from trading.batch import (
    Batch,
    Taken,
    balances_ensure,
    batch_write,
    command_fail,
    queue_read_pg,
)
from trading.engine import (
    Amend,
    Cancel,
    CancelAll,
    Command,
    MarketEngine,
    MarketSpec,
    OrderType,
    Place,
    Side,
    Status,
    Stp,
    TimeInForce,
)
from trading.engine import Order as BookOrder
from trading.exceptions import BalanceLimitExceeded
from trading.models import Market, MatcherState, Order, OrderCommand, Trade
from trading.money import exact, unit

log = logging.getLogger("trading.matcher")

BATCH_SIZE = 500
SPEC_REFRESH_SECONDS = 1.0  # staff may change fees and minimums at any time
CLAIM_SECONDS = 1.0  # how often markets not owned yet are tried
IDLE_SLEEP_MAX = 0.05
TRANSIENT = (OperationalError, InterfaceError)


def _rolled_back(error: BaseException) -> bool:
    """PostgreSQL aborted the transaction (SQLSTATE class 40, "transaction
    rollback": a deadlock, a serialization failure): the connection, and the
    market locks it holds, are fine."""
    sqlstate = getattr(error.__cause__, "sqlstate", None) or ""
    return isinstance(error, OperationalError) and sqlstate.startswith("40")


class LockLost(OperationalError):
    """This process no longer holds a market's lock (its connection was
    replaced): it must stop writing for that market."""


# -- One writer per market -------------------------------------------------------


class MarketLocks:
    """Exclusive per-market locks that die with the process."""

    def try_acquire(self, market_id: int, *, wait: bool = False) -> bool:
        """Take the lock; with ``wait``, wait for it (and return True)."""
        raise NotImplementedError

    def check(self, market_id: int) -> None:
        """Raise ``LockLost`` unless this process still holds the lock."""

    def release(self, market_id: int) -> None:
        raise NotImplementedError


class PostgresLocks(MarketLocks):
    """Session advisory locks on Django's connection: (class, market id)."""

    CLASS = 0x4D54434B  # "MTCK"

    def try_acquire(self, market_id: int, *, wait: bool = False) -> bool:
        with connection.cursor() as cursor:
            if wait:
                cursor.execute(
                    "SELECT pg_advisory_lock(%s, %s)", [self.CLASS, market_id]
                )
                return True
            cursor.execute(
                "SELECT pg_try_advisory_lock(%s, %s)", [self.CLASS, market_id]
            )
            return cursor.fetchone()[0]

    def check(self, market_id: int) -> None:
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT 1 FROM pg_locks WHERE locktype = 'advisory'"
                " AND pid = pg_backend_pid() AND classid = %s AND objid = %s"
                " AND objsubid = 2 AND granted",
                [self.CLASS, market_id],
            )
            if cursor.fetchone() is None:
                raise LockLost(f"The lock of market {market_id} was lost.")

    def release(self, market_id: int) -> None:
        if connection.connection is None:
            return  # closed: the server released it
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_unlock(%s, %s)", [self.CLASS, market_id])


class FileLocks(MarketLocks):
    """``flock`` on ``<database file>.matcher-<market id>.lock``: the kernel
    drops it when the process dies. For an in-memory database (tests), which
    no other process can open, a lock of this process."""

    _memory_locks: dict[int, threading.Lock] = {}

    def __init__(self, prefix: str | None = None) -> None:
        name = prefix or str(connection.settings_dict["NAME"])
        self.memory = name == ":memory:" or "mode=memory" in name
        self.prefix = name
        self.files: dict[int, int] = {}

    def try_acquire(self, market_id: int, *, wait: bool = False) -> bool:
        if self.memory:
            lock = self._memory_locks.setdefault(market_id, threading.Lock())
            return lock.acquire(blocking=wait)
        descriptor = os.open(
            f"{self.prefix}.matcher-{market_id}.lock", os.O_RDWR | os.O_CREAT, 0o600
        )
        try:
            fcntl.flock(descriptor, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
        except BlockingIOError:
            os.close(descriptor)
            return False
        self.files[market_id] = descriptor
        return True

    def release(self, market_id: int) -> None:
        if self.memory:
            self._memory_locks[market_id].release()
        elif (descriptor := self.files.pop(market_id, None)) is not None:
            os.close(descriptor)  # closing the file releases the lock


def market_locks() -> MarketLocks:
    return PostgresLocks() if connection.vendor == "postgresql" else FileLocks()


# -- One market -------------------------------------------------------------------


def market_spec(market: Market) -> MarketSpec:
    return MarketSpec(
        base_token=market.base_id,
        quote_token=market.quote_id,
        base_unit=unit(market.base.decimals),
        quote_unit=unit(market.quote.decimals),
        price_step=market.price_step,
        amount_step=market.amount_step,
        min_notional=market.min_notional,
        maker_fee=market.maker_fee,
        taker_fee=market.taker_fee,
    )


_HELD = (Order.Status.OPEN, Order.Status.WAITING)
_BOOK_FIELDS = (
    "id",
    "user_id",
    "side",
    "type",
    "quantity",
    "price",
    "priority_sequence",
    "priority_rank",
    "time_in_force",
    "post_only",
    "self_trade",
    "quote_amount",
    "protection_price",
    "stop_price",
    "filled_quantity",
    "executed_value",
    "fee",
    "locked",
    "status",
)


@exact
def engine_rebuild(market_id: int) -> MarketEngine:
    """The market's engine as the database has it: its open and waiting
    orders in priority order, and its matcher state."""
    market = Market.objects.select_related("base", "quote").get(pk=market_id)
    state, _ = MatcherState.objects.get_or_create(market=market)
    if state.last_price is None and state.sequence == 0:
        # The orders of the old path: their last trade's price.
        state.last_price = (
            Trade.objects.filter(market=market)
            .order_by("-pk")
            .values_list("price", flat=True)
            .first()
        )
    orders = market.orders.all()
    newest = orders.aggregate(newest=Max("priority_sequence"))["newest"] or 0
    rows = orders.filter(status__in=_HELD).values_list(*_BOOK_FIELDS)
    held = [
        BookOrder(
            id=id_,
            user_id=user_id,
            side=Side(side),
            type=OrderType(type_),
            quantity=quantity,
            price=price,
            priority=(sequence, rank),
            time_in_force=TimeInForce(time_in_force),
            post_only=post_only,
            stp=Stp(self_trade),
            quote_amount=quote_amount,
            protection_price=protection_price,
            stop_price=stop_price,
            filled=filled,
            executed_value=executed_value,
            fee=fee,
            locked=locked,
            status=Status(status),
        )
        for (
            id_,
            user_id,
            side,
            type_,
            quantity,
            price,
            sequence,
            rank,
            time_in_force,
            post_only,
            self_trade,
            quote_amount,
            protection_price,
            stop_price,
            filled,
            executed_value,
            fee,
            locked,
            status,
        ) in rows
    ]
    return MarketEngine.rebuild(
        market_spec(market),
        held,
        last_price=state.last_price,
        sequence=max(state.sequence, newest),
        book_sequence=state.book_sequence,
    )


_COMMAND_FIELDS = (
    "id",
    "kind",
    "user_id",
    "order_id",
    "price",
    "quantity",
    "reserved",
    "order__status",
    "order__side",
    "order__type",
    "order__quantity",
    "order__price",
    "order__quote_amount",
    "order__protection_price",
    "order__stop_price",
    "order__time_in_force",
    "order__post_only",
    "order__self_trade",
    "order__locked",
)


class MarketMatcher:
    """One market's engine and queue, in the process that holds its lock."""

    def __init__(
        self,
        market_id: int,
        *,
        locks: MarketLocks,
        batch_size: int = BATCH_SIZE,
        publish: bool = True,
        ahead: bool = False,
    ) -> None:
        self.market_id = market_id
        self.locks = locks
        self.batch_size = batch_size
        self.publish = publish
        self.engine: MarketEngine | None = None
        self.symbol = ""
        self.known_balances: set[tuple[int, int]] = set()
        self._spec_read_at = 0.0
        # Matching ahead: see ``step``.
        self._ahead = (
            ThreadPoolExecutor(1, thread_name_prefix=f"matcher-{market_id}")
            if ahead
            else None
        )
        self._next: Future | None = None
        self._taken: set[int] = set()  # matched ahead, not written yet
        self._taken_lock = threading.Lock()

    def rebuild(self) -> None:
        self.engine = engine_rebuild(self.market_id)
        self.symbol = Market.objects.values_list("symbol", flat=True).get(
            pk=self.market_id
        )
        self._spec_read_at = time.monotonic()
        log.debug(
            "matcher rebuilt the book",
            extra={
                "market": self.symbol,
                "sequence": self.engine.sequence,
                "orders": sum(1 for _ in self.engine.book_orders())
                + sum(1 for _ in self.engine.waiting_orders()),
            },
        )

    def queue_rows(self) -> list[tuple]:
        with self._taken_lock:
            taken = list(self._taken)  # copied before the query's snapshot
        if connection.vendor == "postgresql":
            return queue_read_pg(self.market_id, taken=taken, limit=self.batch_size)
        queued = OrderCommand.objects.filter(market_id=self.market_id)
        if taken:
            queued = queued.exclude(pk__in=taken)
        return list(
            queued.order_by("id").values_list(*_COMMAND_FIELDS)[: self.batch_size]
        )

    def step(self) -> int:
        """Take, apply and write one batch; how many commands it had.

        With ``ahead`` (``run_matcher`` on PostgreSQL), a thread of its own
        takes and matches the next batch while this one is written, so that
        the matcher's work and its database's overlap. This thread still
        writes every batch, in order, on the connection that holds the
        market's lock; a batch matched ahead is only in memory until then.
        Commands taken ahead are left out of the next read, and are forgotten
        only once their batch has committed. If a batch fails, the one
        matched after it is thrown away with the engine, and its commands
        are simply read again."""
        if self._ahead is not None:
            return self._step_ahead()
        rows = self.queue_rows()
        if not rows:
            return 0
        try:
            self._apply_and_write(rows)
        except TRANSIENT as error:
            self.engine = None
            if not _rolled_back(error):
                raise
            self._rolled_back_log(error, rows)
        except Exception:
            log.exception(
                "matcher batch failed; retrying its commands one by one",
                extra={"market": self.symbol, "commands": len(rows)},
            )
            self.engine = None
            self._isolate(rows)
        return len(rows)

    def _isolate(self, rows: list[tuple]) -> None:
        for row in rows:
            try:
                self._apply_and_write([row])
            except TRANSIENT as error:
                self.engine = None
                if not _rolled_back(error):
                    raise
                self._rolled_back_log(error, [row])
                return  # this one and the rest are read again
            except BalanceLimitExceeded:
                # Its own refusal: trying it again could never succeed.
                log.warning(
                    "matcher refused a command: a balance would reach 10^18",
                    extra={"market": self.symbol, "command": row[0]},
                )
                self.engine = None
                self._fail(row, reason=Order.RejectReason.BALANCE_LIMIT)
            except Exception:
                log.exception(
                    "matcher refused a command it could not apply",
                    extra={"market": self.symbol, "command": row[0]},
                )
                self.engine = None
                self._fail(row)

    def _rolled_back_log(self, error: BaseException, rows: list[tuple]) -> None:
        # Nothing of the batch was written: the engine goes (rebuilt from the
        # database at the next batch) and its commands are read again. The
        # other markets, and this one's lock, are untouched.
        log.warning(
            "matcher batch rolled back by the database; its commands are read again",
            exc_info=error,
            extra={"market": self.symbol, "commands": len(rows)},
        )

    def _fail(
        self, row: tuple, *, reason: str = Order.RejectReason.MATCHER_ERROR
    ) -> None:
        market = Market.objects.get(pk=self.market_id)
        side = row[_COMMAND_FIELDS.index("order__side")]  # None for cancel-all
        token = market.quote_id if side == Side.BUY else market.base_id
        failed = command_fail(
            taken=Taken(*row[:4]),
            market_id=self.market_id,
            reserved_token_id=token if side else None,
            reason=reason,
        )
        if self.publish:
            # Committed: live pages see the order rejected and its funds back.
            events.batch_publish(failed, symbol=market.symbol)

    def _step_ahead(self) -> int:
        future, self._next = self._next or self._ahead.submit(self._take), None
        rows, batch, error = future.result()
        if not rows:
            if error is not None:
                raise error  # the read itself failed, as it would here
            return 0
        if error is None:
            self._next = self._ahead.submit(self._take)
            try:
                self._write(batch)
            except BaseException as write_error:
                self.discard_ahead()
                error = write_error
        with self._taken_lock:
            self._taken.difference_update(row[0] for row in rows)
        if error is not None:
            # Every batch before this one is written; nothing after it is.
            self.engine = None
            if _rolled_back(error):
                self._rolled_back_log(error, rows)
                return len(rows)
            if isinstance(error, TRANSIENT):
                raise error
            log.error(
                "matcher batch failed; retrying its commands one by one",
                exc_info=error,
                extra={"market": self.symbol, "commands": len(rows)},
            )
            self._isolate(rows)
        return len(rows)

    def _take(self) -> tuple[list[tuple], Batch | None, BaseException | None]:
        """In the thread matching ahead: the next rows, their batch or what
        went wrong."""
        rows = []
        try:
            rows = self.queue_rows()
            with self._taken_lock:
                self._taken.update(row[0] for row in rows)
            return rows, rows and self._match(rows), None
        except BaseException as error:
            self.engine = None
            return rows, None, error

    def discard_ahead(self) -> None:
        """Throw away the batch matched ahead, if any, and the engine it was
        applied to: its commands are read again."""
        if self._next is None:
            return
        rows, _, _ = self._next.result()
        self._next, self.engine = None, None
        with self._taken_lock:
            self._taken.difference_update(row[0] for row in rows)

    def close(self) -> None:
        if self._ahead is not None:
            self.discard_ahead()
            self._ahead.submit(lambda: connection.close()).result()  # its own
            self._ahead.shutdown()

    def _apply_and_write(self, rows: list[tuple]) -> None:
        try:
            batch = self._match(rows)
        except BaseException:
            self.engine = None  # ahead of the database, or unknown
            raise
        self._write(batch)

    @exact
    def _match(self, rows: list[tuple]) -> Batch:
        """Apply ``rows`` to the engine: what they change, ready to write."""
        if self.engine is None:
            self.rebuild()
        elif time.monotonic() - self._spec_read_at > SPEC_REFRESH_SECONDS:
            market = Market.objects.select_related("base", "quote").get(
                pk=self.market_id
            )
            self.engine.spec = market_spec(market)
            self._spec_read_at = time.monotonic()
        engine = self.engine
        batch = Batch(market_id=self.market_id)
        for row in rows:
            taken = Taken(*row[:4])  # id, kind, user_id, order_id
            command = self._command(row, engine.sequence + 1)
            if command is None:
                batch.commands.append(taken.id)
                continue
            batch.add(taken, engine.apply(command))
        batch.sequence = engine.sequence
        batch.book_sequence = engine.book_sequence
        batch.last_price = engine.last_price
        balances_ensure(batch.balances, known=self.known_balances)
        return batch

    @exact
    def _write(self, batch: Batch) -> None:
        try:
            batch_write(
                batch,
                now=timezone.now(),
                lock_check=lambda: self.locks.check(self.market_id),
            )
        except BaseException:
            self.engine = None  # ahead of the database, or unknown
            raise
        if self.publish:
            events.batch_publish(batch, symbol=self.symbol)

    def _command(self, row: tuple, sequence: int) -> Command | None:
        (
            _,
            kind,
            user_id,
            order_id,
            price,
            quantity,
            reserved,
            status,
            side,
            type_,
            order_quantity,
            order_price,
            quote_amount,
            protection_price,
            stop_price,
            time_in_force,
            post_only,
            self_trade,
            locked,
        ) = row
        if kind == OrderCommand.Kind.PLACE:
            if status != Order.Status.ACCEPTED:
                # Cannot happen (a placement's row goes with its result);
                # should it, placing the order again would apply it twice.
                log.error(
                    "matcher skipped a placement already applied",
                    extra={"order": order_id},
                )
                return None
            return Place(
                sequence=sequence,
                order_id=order_id,
                user_id=user_id,
                side=Side(side),
                type=OrderType(type_),
                reserved=locked,
                quantity=order_quantity,
                price=order_price,
                quote_amount=quote_amount,
                protection_price=protection_price,
                stop_price=stop_price,
                time_in_force=TimeInForce(time_in_force),
                post_only=post_only,
                stp=Stp(self_trade),
            )
        if kind == OrderCommand.Kind.CANCEL:
            return Cancel(sequence, order_id, user_id)
        if kind == OrderCommand.Kind.CANCEL_ALL:
            return CancelAll(sequence, user_id)
        return Amend(sequence, order_id, user_id, Side(side), quantity, price, reserved)


def drain(*, market_id: int, batch_size: int = BATCH_SIZE, wait: bool = False) -> int:
    """Run the market's matcher in this process until its queue is empty;
    how many commands it applied. For tests and ``seed_demo``: while another
    matcher owns the market it is refused, or with ``wait`` waits for it
    (requests of tests draining at once)."""
    locks = market_locks()
    if not locks.try_acquire(market_id, wait=wait):
        raise RuntimeError(f"A matcher is running for market {market_id}.")
    try:
        matcher = MarketMatcher(
            market_id, locks=locks, batch_size=batch_size, publish=True
        )
        total = 0
        while count := matcher.step():
            total += count
        return total
    finally:
        locks.release(market_id)


def drain_all() -> int:
    return sum(
        drain(market_id=pk) for pk in Market.objects.values_list("pk", flat=True)
    )


# -- The process ----------------------------------------------------------------------


class Matcher:
    """The loop of ``run_matcher``: the markets named (all by default), each
    taken as soon as its lock is free, polled in turn."""

    def __init__(
        self,
        *,
        symbols: list[str] | None = None,
        batch_size: int = BATCH_SIZE,
        stopping: Callable[[], bool] = lambda: False,
    ) -> None:
        self.symbols = [symbol.upper() for symbol in symbols] if symbols else None
        self.batch_size = batch_size
        self.stopping = stopping
        self.owned: dict[int, MarketMatcher] = {}
        self.waiting: set[int] = set()
        self.locks: MarketLocks | None = None

    def _markets(self) -> dict[int, str]:
        markets = Market.objects.all()
        if self.symbols is not None:
            markets = markets.filter(symbol__in=self.symbols)
        found = dict(markets.values_list("pk", "symbol"))
        if self.symbols is not None and len(found) < len(self.symbols):
            missing = set(self.symbols) - set(found.values())
            log.warning("matcher found no market %s", ", ".join(sorted(missing)))
        return found

    def claim(self) -> None:
        """Take every free market lock of the markets to run."""
        if self.locks is None:
            self.locks = market_locks()
        owned = len(self.owned)
        for market_id, symbol in self._markets().items():
            if market_id in self.owned:
                continue
            if not self.locks.try_acquire(market_id):
                if market_id not in self.waiting:
                    log.info(
                        "matcher waits: another matcher owns the market",
                        extra={"market": symbol},
                    )
                    self.waiting.add(market_id)
                continue
            self.waiting.discard(market_id)
            matcher = MarketMatcher(
                market_id,
                locks=self.locks,
                batch_size=self.batch_size,
                ahead=connection.vendor == "postgresql",
            )
            try:
                matcher.rebuild()
            except TRANSIENT:
                raise
            except Exception:
                # Orders the engine cannot hold as they are (a bug, or rows
                # changed by hand): this market waits for a person, the
                # others go on. Tried again at the next claim.
                log.exception(
                    "matcher cannot rebuild the book", extra={"market": symbol}
                )
                self.locks.release(market_id)
                continue
            self.owned[market_id] = matcher
            log.info(
                "matcher owns the market",
                extra={"market": symbol, "sequence": matcher.engine.sequence},
            )
        if len(self.owned) > owned:
            # What the process holds by now (Django, the apps, the books just
            # built) lives as long as it does: out of the garbage collector's
            # sight, a full collection scans only what came since. Without
            # this, full collections stopped the matcher for 70-330 ms with a
            # few thousand orders in the book, and every order waiting for a
            # batch with it (bench/trading.py: the paced run's p99).
            gc.collect()
            gc.freeze()

    def release_all(self) -> None:
        for market_id, matcher in list(self.owned.items()):
            matcher.close()  # before the lock: nothing is written after it
            with contextlib.suppress(*TRANSIENT):
                self.locks.release(market_id)
            del self.owned[market_id]

    def run(self) -> None:
        idle, next_claim = 0.001, 0.0
        while not self.stopping():
            try:
                if time.monotonic() >= next_claim:
                    self.claim()
                    next_claim = time.monotonic() + CLAIM_SECONDS
                busy = False
                for matcher in list(self.owned.values()):
                    if self.stopping():
                        break
                    busy = matcher.step() > 0 or busy
            except TRANSIENT:
                # The connection, and with it the locks, may be gone: start
                # over with a new one.
                log.exception("matcher lost the database; starting over")
                for matcher in self.owned.values():
                    with contextlib.suppress(Exception):
                        matcher.close()
                self.owned.clear()
                self.waiting.clear()
                self.locks = None
                connection.close()
                time.sleep(1.0)
                next_claim = 0.0
                continue
            if busy:
                idle = 0.001
            else:
                time.sleep(idle)
                idle = min(idle * 2, IDLE_SLEEP_MAX)
        self.release_all()


def queue_ages() -> dict[str, float]:
    """Seconds since the oldest queued command of each market that has one."""
    from django.db.models import Min

    now = timezone.now()
    oldest = (
        OrderCommand.objects.values("market__symbol")
        .annotate(oldest=Min("created_at"))
        .order_by("market__symbol")
    )
    return {
        row["market__symbol"]: max(0.0, (now - row["oldest"]).total_seconds())
        for row in oldest
    }
