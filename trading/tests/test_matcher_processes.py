"""The matcher as real processes (``manage.py run_matcher``) on PostgreSQL.

Clients place and cancel orders from threads of the test, each with its own
connection, as web workers would; the matchers are separate processes on the
test's database, killed and restarted for real.
"""

from __future__ import annotations

import os
import random
import re
import signal
import subprocess
import sys
import threading
import time
from decimal import Decimal as D
from pathlib import Path

import pytest
from django.db import connection, connections

from tests.factories import fund, market_make, token_make, user_make
from trading.exceptions import TradingError
from trading.invariants import ledger_problems
from trading.matcher import engine_rebuild
from trading.models import (
    Balance,
    LedgerTransaction,
    MatcherState,
    Order,
    OrderCommand,
    Trade,
)
from trading.orders import order_cancel, order_place

pytestmark = [pytest.mark.postgres, pytest.mark.django_db(transaction=True)]

ROOT = Path(__file__).resolve().parents[2]


class MatcherProcess:
    """``manage.py run_matcher --market SYMBOL`` on the test's database, its
    log lines collected as they come."""

    def __init__(self, symbol: str) -> None:
        settings = connection.settings_dict
        url = (
            f"postgres://{settings['USER']}@{settings['HOST'] or '127.0.0.1'}:"
            f"{settings['PORT'] or 5432}/{settings['NAME']}"
        )
        env = {
            "PATH": os.environ.get("PATH", ""),
            "HOME": os.environ.get("HOME", str(ROOT)),
            "PYTHONPATH": str(ROOT),
            "ENV_FILE": "/dev/null",
            "DATABASE_URL": url,
            "LOG_LEVEL": "INFO",
        }
        self.lines: list[str] = []
        self.process = subprocess.Popen(
            [sys.executable, "manage.py", "run_matcher", "--market", symbol],
            cwd=ROOT,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        for line in self.process.stdout:
            self.lines.append(line)

    def logged(self, event: str) -> bool:
        return any(f'event="{event}"' in line for line in self.lines)

    def wait_for(self, event: str, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while not self.logged(event):
            assert self.process.poll() is None, "".join(self.lines)
            assert time.monotonic() < deadline, f"no {event!r}: {''.join(self.lines)}"
            time.sleep(0.05)

    def kill(self) -> None:
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(timeout=10)

    def stop(self) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        return self.process.wait(timeout=30)

    def backend_pid(self) -> int | None:
        """The PostgreSQL backend of the matcher: the session holding the
        market's advisory lock."""
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT pid FROM pg_locks WHERE locktype = 'advisory' AND granted"
                " AND database = (SELECT oid FROM pg_database"
                " WHERE datname = current_database())"
            )
            row = cursor.fetchone()
        return row[0] if row else None


class Clients:
    """Threads placing and cancelling orders without waiting for results,
    until stopped; every order accepted is remembered."""

    def __init__(self, market, users, *, seed: int) -> None:
        self.market, self.users = market, users
        self.accepted: list[int] = []
        self.cancels = 0
        self.errors: list[BaseException] = []
        self.stopped = threading.Event()
        self.threads = [
            threading.Thread(target=self._run, args=(user, seed + n))
            for n, user in enumerate(users)
        ]

    def _run(self, user, seed: int) -> None:
        rng = random.Random(seed)  # noqa: S311 - reproducible, not secret
        mine: list[int] = []
        try:
            while not self.stopped.is_set():
                try:
                    if mine and rng.random() < 0.2:
                        order_cancel(
                            user=user,
                            order=Order(pk=mine.pop(rng.randrange(len(mine)))),
                        )
                        self.cancels += 1
                        continue
                    side = rng.choice(["buy", "sell"])
                    market_order = rng.random() < 0.2
                    order = order_place(
                        user=user,
                        market=self.market,
                        side=side,
                        type="market" if market_order else "limit",
                        quantity=D(rng.randint(1, 50)) / 100,
                        price=None if market_order else D(rng.randint(95, 105)),
                        protection_price=D(120)
                        if market_order and side == "buy"
                        else None,
                        time_in_force=rng.choice(["GTC", "GTC", "IOC"]),
                    )
                    self.accepted.append(order.pk)
                    if not market_order:
                        mine.append(order.pk)
                except TradingError:
                    pass  # refused: not enough funds, or the order closed first
        except BaseException as error:
            self.errors.append(error)
        finally:
            connections.close_all()

    def __enter__(self) -> Clients:
        for thread in self.threads:
            thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stopped.set()
        for thread in self.threads:
            thread.join(timeout=60)
        assert self.errors == []


def queue_drained(timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while OrderCommand.objects.exists():
        assert time.monotonic() < deadline, "the matcher left commands queued"
        time.sleep(0.1)


def book_of_the_database(market) -> list[tuple]:
    return sorted(
        Order.objects.filter(market=market, status__in=["open", "waiting"]).values_list(
            "pk",
            "side",
            "price",
            "quantity",
            "filled_quantity",
            "locked",
            "priority_sequence",
            "priority_rank",
        )
    )


def book_rebuilt(market) -> list[tuple]:
    engine = engine_rebuild(market.pk)
    return sorted(
        (o.id, o.side, o.price, o.quantity, o.filled, o.locked, *o.priority)
        for o in (*engine.book_orders(), *engine.waiting_orders())
    )


@pytest.fixture
def trading_floor():
    usdt = token_make("USDT", decimals=6)
    market = market_make(token_make("BTC", decimals=8), usdt)
    users = [user_make(f"client{n}") for n in range(4)]
    for user in users:
        fund(user, market.base, "1000")
        fund(user, usdt, "100000")
    return market, users


@pytest.mark.reliability("matcher-killed")
def test_a_matcher_killed_in_the_middle_of_a_batch_loses_and_repeats_nothing(
    trading_floor,
):
    market, users = trading_floor
    matcher = MatcherProcess(market.symbol)
    try:
        matcher.wait_for("matcher owns the market")
        with Clients(market, users, seed=1) as clients:
            time.sleep(1.5)  # the matcher writes batches under load
            # Hold one balance row every batch needs: the matcher's next
            # batch has written its orders, trades and ledger, deleted its
            # queue rows, and waits for this row inside its transaction.
            blocker = connections.create_connection("default")
            blocker.set_autocommit(False)
            with blocker.cursor() as cursor:
                cursor.execute(
                    "SELECT 1 FROM trading_balance WHERE user_id = %s FOR UPDATE",
                    [users[0].pk],
                )
            pid = matcher.backend_pid()
            deadline = time.monotonic() + 20
            while True:
                with connection.cursor() as cursor:
                    cursor.execute(
                        "SELECT wait_event_type, xact_start IS NOT NULL"
                        " FROM pg_stat_activity WHERE pid = %s",
                        [pid],
                    )
                    waiting = cursor.fetchone()
                if waiting == ("Lock", True):
                    break
                assert time.monotonic() < deadline, "no batch waited for the row"
                time.sleep(0.01)
            queued_before = OrderCommand.objects.count()
            matcher.kill()
            blocker.rollback()  # the dead session's transaction now aborts
            blocker.close()
            assert queued_before > 0

            restarted = MatcherProcess(market.symbol)
            matcher = restarted
            restarted.wait_for("matcher owns the market")
            time.sleep(1.5)  # and it goes on under load
        queue_drained()
    finally:
        assert matcher.stop() == 0, "".join(matcher.lines)

    accepted = clients.accepted
    assert len(accepted) > 200 and clients.cancels > 20
    # Nothing accepted is lost: every order was matched exactly once.
    orders = Order.objects.filter(market=market)
    assert set(accepted) <= set(orders.values_list("pk", flat=True))
    assert not orders.filter(status=Order.Status.ACCEPTED).exists()
    matched = LedgerTransaction.objects.filter(
        kind=LedgerTransaction.Kind.ORDER_MATCH, order__market=market
    )
    per_order = matched.values_list("order_id", flat=True)
    assert len(per_order) == len(set(per_order)), "a placement applied twice"
    assert Trade.objects.filter(market=market).count() > 50
    # The book a matcher rebuilds is the open orders, and the ledger holds.
    assert book_rebuilt(market) == book_of_the_database(market)
    state = MatcherState.objects.get(market=market)
    assert state.sequence >= max(
        orders.exclude(priority_sequence=None).values_list(
            "priority_sequence", flat=True
        )
    )
    assert ledger_problems() == []
    assert Balance.objects.filter(locked__lt=0).count() == 0


@pytest.mark.reliability("matcher-killed")
def test_a_second_matcher_waits_and_takes_over_when_the_first_dies(trading_floor):
    market, users = trading_floor
    alice, bob = users[:2]
    first = MatcherProcess(market.symbol)
    second = None
    try:
        first.wait_for("matcher owns the market")
        second = MatcherProcess(market.symbol)
        second.wait_for("matcher waits: another matcher owns the market")
        order = order_place(
            user=alice,
            market=market,
            side="sell",
            type="limit",
            quantity=D(1),
            price=D(100),
        )
        queue_drained(timeout=20)
        order.refresh_from_db()
        assert order.status == Order.Status.OPEN
        assert not second.logged("matcher owns the market")

        first.kill()
        second.wait_for("matcher owns the market")
        taker = order_place(
            user=bob,
            market=market,
            side="buy",
            type="limit",
            quantity=D(1),
            price=D(100),
        )
        queue_drained(timeout=20)
        taker.refresh_from_db()
        order.refresh_from_db()
        assert (taker.status, order.status) == ("filled", "filled")
    finally:
        for process in (first, second):
            if process is not None and process.process.poll() is None:
                assert process.stop() == 0, "".join(process.lines)
    assert ledger_problems() == []
    assert re.search(r"matcher stopped", "".join(second.lines))
