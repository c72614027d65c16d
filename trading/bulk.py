"""One statement to write several rows of a model with values computed here.

Django's ``bulk_update`` builds a ``CASE WHEN pk = ... THEN ...`` expression
per field with a branch per row and resolves and compiles each of them; under
a market's lock that Python time is what limits a market's throughput (see
docs/PERFORMANCE.md, "Trading on PostgreSQL"). ``rows_update`` sends the same
change as ``WITH v AS (VALUES ...) UPDATE ... FROM v``, which PostgreSQL and
SQLite (3.33+) both run.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import cache

from django.db import connection
from django.db.models import Model


@cache
def _statement(model: type[Model], fields: tuple[str, ...], rows: int) -> str:
    meta = model._meta
    quote = connection.ops.quote_name
    columns = [meta.get_field(name).column for name in fields]
    if connection.vendor == "postgresql":
        # VALUES has no column types of its own: PostgreSQL needs casts, SQLite
        # applies the column's affinity on assignment.
        casts = [f"::{meta.get_field(name).db_type(connection)}" for name in fields]
    else:
        casts = [""] * len(fields)
    row = "(%s, " + ", ".join(f"%s{cast}" for cast in casts) + ")"
    names = ", ".join(quote(column) for column in columns)
    # Identifiers come from the model's metadata; values are parameters. The
    # VALUES list is named in a WITH clause: SQLite cannot alias its columns
    # in FROM.
    table = quote(meta.db_table)
    values = ", ".join([row] * rows)
    assignments = ", ".join(f"{quote(c)} = v.{quote(c)}" for c in columns)
    return (
        f"WITH v(pk_, {names}) AS (VALUES {values}) "  # noqa: S608
        f"UPDATE {table} SET {assignments} "
        f"FROM v WHERE {table}.{quote(meta.pk.column)} = v.pk_"
    )


def rows_update(objs: Sequence[Model], fields: Sequence[str]) -> None:
    """Write ``fields`` of every object in ``objs`` (all of one model)."""
    if not objs:
        return
    model = type(objs[0])
    meta = model._meta
    prepared = [meta.get_field(name) for name in fields]
    params: list[object] = []
    for obj in objs:
        params.append(obj.pk)
        params.extend(
            field.get_db_prep_save(getattr(obj, field.attname), connection)
            for field in prepared
        )
    with connection.cursor() as cursor:
        cursor.execute(_statement(model, tuple(fields), len(objs)), params)
