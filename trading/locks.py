"""Row locks of the trading app, taken in one global order.

Every money operation locks what it needs in this order, and only once per
transaction, so two operations can wait for each other but never deadlock:

1. the market row (serialises everything that reads or changes its book);
2. the withdrawal row being approved, rejected or cancelled;
3. balance rows, all at once, in primary-key order.

Order rows are never locked: every write to an order holds its market's lock,
except the insert of a new order's own row (and its ledger transaction), which
``order_place`` makes before it waits for the lock and which no one else sees
before it commits. The market row is locked ``FOR NO KEY UPDATE`` (see
``trading.sql``). On SQLite there are no row locks; it runs one writer at a
time.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from trading import sql
from trading.models import Balance, Market, Withdrawal


def market_lock(*, market_id: int) -> Market:
    """Lock and return a fresh copy of the market row (tokens loaded, unlocked)."""
    return market_lock_later(market_id=market_id)()


def market_lock_later(*, market_id: int) -> Callable[[], Market]:
    """``market_lock``, its row read when the result is called: in a
    ``sql.pipeline()`` the next statements are sent with it and run once the
    lock is granted."""
    row = sql.row_with_related_later(
        Market, market_id, related=("base", "quote"), lock=True
    )

    def market() -> Market:
        found = row()
        if found is None:
            raise Market.DoesNotExist(f"Market {market_id} does not exist.")
        return found

    return market


def withdrawal_lock(*, withdrawal_id: int) -> Withdrawal:
    return (
        Withdrawal.objects.select_for_update(of=("self",))
        .select_related("token")
        .get(pk=withdrawal_id)
    )


def balances_ensure(*, user_id: int, token_ids: Iterable[int]) -> None:
    """Create the user's missing balance rows for these tokens, locking nothing.

    Called by ``order_place`` before it takes the market's lock, for both
    tokens of the market, when the user's rows were not all there (its first
    order in the market): every user with an order in a market then has both
    rows, so matching finds every row it needs and locks them in one statement.
    It waits only for a concurrent insert of the same row, and holds no lock
    while it does, so it cannot be part of a deadlock.
    """
    sql.rows_insert(
        [Balance(user_id=user_id, token_id=token_id) for token_id in sorted(token_ids)],
        ignore_conflicts=True,
    )


def balances_lock_later(
    *,
    user_ids: Iterable[int],
    token_ids: Iterable[int],
    owners: tuple[str, tuple] | None = None,
) -> Callable[[], dict[tuple[int, int], Balance]]:
    """Lock the existing rows of every (user, token) pair in one statement in
    primary-key order, read when the result is called; missing rows are
    neither created nor waited for.

    ``owners`` (a query of user ids, from ``sql.column_of``) adds the rows of
    those users: ``order_place`` sends, with the market's lock, the lock of
    the rows of the user and of the owners of the book's first page, before
    it knows which of them it will trade with.
    """
    users = tuple(sorted(set(user_ids)))
    where: dict[str, object] = {"token__in": sorted(set(token_ids))}
    where["user__in"] = sql.AnyOf(users, *owners) if owners else users
    rows = sql.rows_select_later(Balance, where=where, order_by=("pk",), lock=True)
    return lambda: {(row.user_id, row.token_id): row for row in rows()}


def balances_lock(
    *, user_ids: Iterable[int], token_ids: Iterable[int]
) -> dict[tuple[int, int], Balance]:
    """Lock the balance row of every (user, token) pair, creating missing rows.

    Returns the rows keyed by ``(user_id, token_id)``, locked in a single
    statement ordered by primary key. Rows missing from it (a first deposit of
    a token) are then inserted in key order, ignoring conflicts, and locked.
    Inserting may wait for a concurrent insert of the same row while this
    transaction holds the rows it found; only deposits and withdrawals, which
    lock one row, meet a missing one, since ``balances_ensure`` creates both
    rows of a market before an order is placed.
    """
    user_ids, token_ids = sorted(set(user_ids)), sorted(set(token_ids))
    locked = balances_lock_later(user_ids=user_ids, token_ids=token_ids)()
    if len(locked) == len(user_ids) * len(token_ids):
        return locked  # the usual case: one statement
    sql.rows_insert(
        [
            Balance(user_id=user_id, token_id=token_id)
            for user_id in user_ids
            for token_id in token_ids
            if (user_id, token_id) not in locked
        ],
        ignore_conflicts=True,
    )
    return balances_lock_later(user_ids=user_ids, token_ids=token_ids)()
