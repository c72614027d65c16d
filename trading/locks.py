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


def balances_lock(
    *, user_ids: Iterable[int], token_ids: Iterable[int]
) -> dict[tuple[int, int], Balance]:
    """Lock the balance row of every (user, token) pair, creating missing rows.

    Returns the rows keyed by ``(user_id, token_id)``. Missing rows are
    inserted first, in key order and ignoring conflicts: a concurrent insert of
    the same row makes this one wait for it, and inserting in one order keeps
    those waits from forming a cycle. Then all rows are locked in a single
    statement ordered by primary key.
    """
    user_ids, token_ids = sorted(set(user_ids)), sorted(set(token_ids))
    wanted = Balance.objects.filter(user_id__in=user_ids, token_id__in=token_ids)
    existing = set(wanted.values_list("user_id", "token_id"))
    missing = [
        Balance(user_id=user_id, token_id=token_id)
        for user_id in user_ids
        for token_id in token_ids
        if (user_id, token_id) not in existing
    ]
    if missing:
        Balance.objects.bulk_create(missing, ignore_conflicts=True)
    rows = wanted.select_for_update().order_by("pk")
    return {(row.user_id, row.token_id): row for row in rows}
