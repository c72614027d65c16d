"""One model row read with SQL written once, built exactly as the ORM builds it.

Every signed-in request reads two rows before any view runs: its session
(``SessionMiddleware``) and its user (``AuthenticationMiddleware``). Through
the ORM each read compiles a new query every time: 0.24 ms of CPU per read on
the benchmark machine (``bench/pages.py`` measures both ways), which makes the
two reads cost more than Django's whole minimal view, while the same row read
here, statement through ``connection.cursor()`` and instance included, takes
0.04 ms. ``accounts.sessions`` and ``accounts.backends`` read through a
``RowReader``.

The statement is built once per connection from the model's metadata: the
table and every concrete column, quoted by the connection; values always go
as parameters. Values are prepared as the ORM prepares a lookup's
(``get_db_prep_value``), and the row goes through the same converters as in a
query (the backend's, then the field's: SQLite's text datetimes become aware,
its integers booleans) before ``Model.from_db``, so the instance is the one
``Model.objects.get(...)`` would return.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any
from weakref import WeakKeyDictionary

from django.db import connections, router
from django.db.backends.base.base import BaseDatabaseWrapper
from django.db.models import Model
from django.db.models.expressions import Col

# Comparisons a condition may use, so that no other text reaches the SQL.
_OPERATORS = frozenset({"=", ">"})

_Converter = Callable[[Any, Col, BaseDatabaseWrapper], Any]
_Prepared = tuple[str, list[tuple[int, Col, list[_Converter]]]]


class RowReader:
    """``SELECT`` every concrete column of ``model``'s table for one row.

    ``conditions`` are ``(field name, operator)`` pairs, joined with ``AND``;
    ``get()`` takes their values in the same order.
    """

    def __init__(self, model: type[Model], *conditions: tuple[str, str]) -> None:
        if not conditions or any(op not in _OPERATORS for _, op in conditions):
            raise ValueError(f"conditions must use {sorted(_OPERATORS)}")
        self.model = model
        self.conditions = [(model._meta.get_field(name), op) for name, op in conditions]
        self.fields = list(model._meta.concrete_fields)
        self.attnames = [field.attname for field in self.fields]
        # Per connection (one per thread and alias, kept for the thread's
        # life): the statement and the converters of its columns.
        self._prepared: WeakKeyDictionary[BaseDatabaseWrapper, _Prepared] = (
            WeakKeyDictionary()
        )

    def sql(self, connection: BaseDatabaseWrapper) -> str:
        quote = connection.ops.quote_name
        columns = ", ".join(quote(field.column) for field in self.fields)
        where = " AND ".join(
            f"{quote(field.column)} {op} %s" for field, op in self.conditions
        )
        return (
            f"SELECT {columns} FROM {quote(self.model._meta.db_table)} "  # noqa: S608
            f"WHERE {where}"
        )

    def get(self, *values: Any) -> Model | None:
        """The row whose fields match ``values``, or None; on the database the
        router reads ``model`` from, as ``Model.objects.get`` does."""
        alias = router.db_for_read(self.model)
        connection = connections[alias]
        try:
            sql, converters = self._prepared[connection]
        except KeyError:
            sql, converters = self._prepared[connection] = self._prepare(connection)
        params = [
            field.get_db_prep_value(value, connection, prepared=False)
            for (field, _), value in zip(self.conditions, values, strict=True)
        ]
        with connection.cursor() as cursor:
            cursor.execute(sql, params)
            row = cursor.fetchone()
        if row is None:
            return None
        if converters:
            row = list(row)
            for index, column, functions in converters:
                for function in functions:
                    row[index] = function(row[index], column, connection)
        return self.model.from_db(alias, self.attnames, row)

    def _prepare(self, connection: BaseDatabaseWrapper) -> _Prepared:
        # What the SQL compiler does for each selected column.
        converters = []
        for index, field in enumerate(self.fields):
            column = field.get_col(self.model._meta.db_table)
            functions = connection.ops.get_db_converters(
                column
            ) + column.get_db_converters(connection)
            if functions:
                converters.append((index, column, functions))
        return self.sql(connection), converters
