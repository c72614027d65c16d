"""Row locks of the trading app, taken in one global order.

Every money operation of ``trading.services`` locks what it needs in this
order, and only once per transaction, so two operations can wait for each
other but never deadlock:

1. the withdrawal row being approved, rejected or cancelled;
2. balance rows, all at once, in primary-key order.

Adding to what a user may hold only so much of (API keys, saved addresses)
locks the user's row alone (``accounts.locks.user_serialize``).

Orders take no lock: the request side reserves funds with one conditional
update of a balance row (``trading.orders``), and each market's matcher is
its only writer (``trading.matcher``), locking the balance rows of a batch
in primary-key order too, last, just before it commits. On SQLite there are
no row locks; a transaction takes the database's write lock when it begins.
"""

from __future__ import annotations

from collections.abc import Iterable

from django.utils import timezone

from trading.models import Balance, Withdrawal


def withdrawal_lock(*, withdrawal_id: int) -> Withdrawal:
    return (
        Withdrawal.objects.select_for_update(of=("self",))
        .select_related("token")
        .get(pk=withdrawal_id)
    )


def _balances_locked(
    user_ids: list[int], token_ids: list[int]
) -> dict[tuple[int, int], Balance]:
    rows = (
        Balance.objects.select_for_update()
        .filter(user_id__in=user_ids, token_id__in=token_ids)
        .order_by("pk")
    )
    return {(row.user_id, row.token_id): row for row in rows}


def balances_lock(
    *, user_ids: Iterable[int], token_ids: Iterable[int]
) -> dict[tuple[int, int], Balance]:
    """Lock the balance row of every (user, token) pair, creating missing rows.

    Returns the rows keyed by ``(user_id, token_id)``, locked in a single
    statement ordered by primary key. Rows missing from it (a first deposit of
    a token) are then inserted, ignoring conflicts, and locked. Inserting may
    wait for a concurrent insert of the same row while this transaction holds
    the rows it found; deposits and withdrawals lock one row, so that wait
    cannot be part of a cycle.
    """
    user_ids, token_ids = sorted(set(user_ids)), sorted(set(token_ids))
    locked = _balances_locked(user_ids, token_ids)
    if len(locked) == len(user_ids) * len(token_ids):
        return locked  # the usual case: one statement
    now = timezone.now()
    Balance.objects.bulk_create(
        [
            Balance(user_id=user_id, token_id=token_id, updated_at=now)
            for user_id in user_ids
            for token_id in token_ids
            if (user_id, token_id) not in locked
        ],
        ignore_conflicts=True,
    )
    return _balances_locked(user_ids, token_ids)
