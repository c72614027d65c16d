"""A lock on a unique value no row holds yet."""

from __future__ import annotations

import hashlib

from django.db import connection
from django.db.models import Model

# The first key of the PostgreSQL advisory locks taken here ("UNIQ"); the
# matcher's have another (trading.matcher.PostgresLocks.CLASS).
UNIQUE_VALUE_LOCK_CLASS = 0x554E4951


def unique_value_serialize(*, model: type[Model], **values: object) -> None:
    """Until the transaction ends, make others claiming the same ``values``
    for ``model`` (``symbol="BTC"``) wait here.

    Checking that a unique value is free and inserting it are two
    statements: two staff adding the same token at once both find the symbol
    free, and the second insert fails on the constraint (a server error).
    Taken before the check, this makes the second check wait for the first
    transaction to end, and then see its row (on PostgreSQL each statement
    sees what committed before it): the second staff member gets the form's
    usual "already exists" error. Different values hash to different locks,
    so only claims of one value wait (a rare collision only makes two claims
    wait for each other).

    On SQLite a transaction takes the database's write lock when it begins
    (``transaction_mode`` IMMEDIATE), which serializes these already.
    """
    if connection.vendor != "postgresql":
        return
    claim = repr((model._meta.label, sorted(values.items())))
    digest = hashlib.blake2b(claim.encode(), digest_size=4).digest()
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT pg_advisory_xact_lock(%s, %s)",
            [UNIQUE_VALUE_LOCK_CLASS, int.from_bytes(digest, "big", signed=True)],
        )
