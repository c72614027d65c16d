"""Row locks of the trading app, taken in one global order.

Every money operation locks what it needs in this order, and only once per
transaction, so two operations can wait for each other but never deadlock:

1. the market row (serialises everything that reads or changes its book);
2. the withdrawal row being decided;
3. balance rows, all at once, in primary-key order.

Order rows are never locked: every write to an order holds its market's lock.
On SQLite ``select_for_update`` does nothing; SQLite runs one writer at a time.
"""

from __future__ import annotations

from collections.abc import Iterable

from trading.models import Balance, Market, Withdrawal


def market_lock(*, market_id: int) -> Market:
    """Lock and return a fresh copy of the market row (tokens loaded, unlocked)."""
    return (
        Market.objects.select_for_update(of=("self",))
        .select_related("base", "quote")
        .get(pk=market_id)
    )


def withdrawal_lock(*, withdrawal_id: int) -> Withdrawal:
    return (
        Withdrawal.objects.select_for_update(of=("self",))
        .select_related("token")
        .get(pk=withdrawal_id)
    )


def balances_ensure(*, user_id: int, token_ids: Iterable[int]) -> None:
    """Create the user's missing balance rows for these tokens, locking nothing.

    Called by ``order_place`` before it takes the market's lock, for both
    tokens of the market: every user with an order in a market then has both
    rows, so matching finds every row it needs and locks them in one statement.
    It waits only for a concurrent insert of the same row, and holds no lock
    while it does, so it cannot be part of a deadlock.
    """
    Balance.objects.bulk_create(
        [Balance(user_id=user_id, token_id=token_id) for token_id in sorted(token_ids)],
        ignore_conflicts=True,
    )


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
    wanted = Balance.objects.filter(user_id__in=user_ids, token_id__in=token_ids)
    rows = wanted.select_for_update().order_by("pk")
    locked = {(row.user_id, row.token_id): row for row in rows}
    if len(locked) == len(user_ids) * len(token_ids):
        return locked  # the usual case: one statement
    Balance.objects.bulk_create(
        [
            Balance(user_id=user_id, token_id=token_id)
            for user_id in user_ids
            for token_id in token_ids
            if (user_id, token_id) not in locked
        ],
        ignore_conflicts=True,
    )
    rows = wanted.select_for_update().order_by("pk")
    return {(row.user_id, row.token_id): row for row in rows}
