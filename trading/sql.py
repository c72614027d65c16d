"""The order path's statements, compiled once instead of once per call.

``order_place`` and ``order_cancel`` hold their market's lock from the
statement that takes it to the commit, so one market serves at most one
operation per lock hold, and every millisecond spent in Python under the lock
is a millisecond no other order of that market can use. Through the ORM each
statement costs about 0.7 ms of CPU to build (resolving the filters, compiling
the SQL, then building instances); the same statement as a ready string costs
about 0.15 ms. This module holds those strings, built on first use from the
models' metadata (tables, columns, quoting and the database's converters
come from Django, nothing is hand-listed), cached per statement shape, and
run through Django's connection, so transactions, ``execute_wrapper`` and
both databases (PostgreSQL and SQLite) work as with the ORM.

Values are always parameters. Rows come back as model instances through
``Model.from_db`` after the same converters the ORM applies (on SQLite,
decimals, datetimes and booleans need them), so callers cannot tell them from
a queryset's. ``save()`` and signals are bypassed: the trading models have
none beyond ``auto_now``/``auto_now_add``, which ``pre_save`` applies here as
the ORM does. See docs/PERFORMANCE.md, "Trading on PostgreSQL", for what it
buys.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from functools import cache
from typing import Any, TypeVar

from django.conf import settings
from django.db import DEFAULT_DB_ALIAS, connection, connections
from django.db.models import Model

M = TypeVar("M", bound=Model)


def _db() -> Any:
    """The default connection of this thread. ``django.db.connection`` looks
    it up again on every attribute read (a context-local lookup), which the
    hundred or so reads of an order add up to a measurable share of the time."""
    return connections[DEFAULT_DB_ALIAS]


def _quote(name: str) -> str:
    return connection.ops.quote_name(name)


def _field(model: type[Model], name: str) -> Any:
    meta = model._meta
    return meta.pk if name == "pk" else meta.get_field(name)


def _column(model: type[Model], name: str) -> str:
    """``"table"."column"`` of a field, by field name (or ``pk``)."""
    return f"{_quote(model._meta.db_table)}.{_quote(_field(model, name).column)}"


@dataclass(frozen=True)
class _Reader:
    """Turns result rows into instances of ``models`` (one per joined table,
    in ``SELECT`` order, every concrete column of each)."""

    models: tuple[type[Model], ...]
    # (position in the row, converters, the column expression they expect)
    converters: tuple[tuple[int, tuple[Callable, ...], Any], ...]

    def instances(self, row: Sequence[Any], db: Any) -> list[Model]:
        if self.converters:
            row = list(row)
            for index, functions, column in self.converters:
                value = row[index]
                for function in functions:
                    value = function(value, column, db)
                row[index] = value
        found, start = [], 0
        for model in self.models:
            size = len(model._meta.concrete_fields)
            found.append(model.from_db(db.alias, None, row[start : start + size]))
            start += size
        return found


@cache
def _reader(models: tuple[type[Model], ...], vendor: str) -> _Reader:
    converters, index = [], 0
    for model in models:
        for field in model._meta.concrete_fields:
            column = field.get_col(model._meta.db_table)
            functions = connection.ops.get_db_converters(
                column
            ) + column.get_db_converters(connection)
            if functions:
                converters.append((index, tuple(functions), column))
            index += 1
    return _Reader(models=models, converters=tuple(converters))


def _select_list(model: type[Model]) -> str:
    table = _quote(model._meta.db_table)
    return ", ".join(
        f"{table}.{_quote(field.column)}" for field in model._meta.concrete_fields
    )


_NEVER_BY_COUNT = 2**31  # executions before psycopg prepares on its own


@cache
def _preparing_cursor_class() -> type:
    from django.db.backends.postgresql.base import ServerBindingCursor

    class PreparingCursor(ServerBindingCursor):
        """Binds parameters on the server and prepares every statement, so
        PostgreSQL parses and plans each of these few shapes once per
        connection instead of on every call."""

        def execute(self, query, params=None, *, prepare=None, binary=None):
            return super().execute(query, params, prepare=True, binary=binary)

    return PreparingCursor


def _cursor() -> Any:
    """A cursor of Django's connection (its wrappers, error translation and
    query logging apply); on PostgreSQL a preparing one unless
    ``DATABASE_PREPARED_STATEMENTS`` is off.

    Django itself never prepares (its cursors bind parameters on the client),
    because PgBouncer in transaction mode did not support prepared statements
    before version 1.21 (``max_prepared_statements``); see docs/DEPLOYMENT.md.
    """
    db = _db()
    if db.vendor != "postgresql" or not settings.DATABASE_PREPARED_STATEMENTS:
        return db.cursor()
    db.ensure_connection()
    if db.connection.prepare_threshold is None:
        # Django sets None, which refuses even an explicit prepare=True. Only
        # these cursors ever prepare: Django's own bind on the client, which
        # psycopg never prepares, whatever the threshold.
        db.connection.prepare_threshold = _NEVER_BY_COUNT
    raw = _preparing_cursor_class()(db.connection)
    if db.queries_logged:
        return db.make_debug_cursor(raw)
    return db.make_cursor(raw)


@contextmanager
def pipeline() -> Iterator[None]:
    """Send the statements run inside without waiting for each one's answer.

    On PostgreSQL this is psycopg's pipeline mode: statements are queued and
    sent together, and a result is waited for only when it is read (a read
    inside waits for everything queued before it). Under a market's lock a
    round trip is time no other order of that market can use, so the
    services queue the lock with the book's first page, and all of an
    order's writes, each as one round trip. Errors surface, as Django's
    exceptions, when the block ends or a result is read. Elsewhere (SQLite)
    statements simply run one after the other.
    """
    db = _db()
    if db.vendor != "postgresql":
        yield
        return
    db.ensure_connection()
    if db.connection.pgconn.pipeline_status:  # in one already: no extra sync
        yield
        return
    with db.wrap_database_errors, db.connection.pipeline():
        yield


def _fetch_later(
    sql: str, params: Sequence[Any], *models: type[Model]
) -> Callable[[], list[list[Model]]]:
    """Run a query now and read its rows when the result is called (in a
    ``pipeline()``, the query is sent with the next ones)."""
    db = _db()
    reader = _reader(models, db.vendor)
    cursor = _cursor()
    try:
        cursor.execute(sql, params)
        # Elsewhere no pipeline to wait for; and SQLite refuses a savepoint
        # while a statement has rows left to read.
        eager = cursor.fetchall() if db.vendor != "postgresql" else None
    except BaseException:
        cursor.close()
        raise
    if eager is not None:
        cursor.close()

    def rows() -> list[list[Model]]:
        if eager is not None:
            found = eager
        else:
            try:
                with db.wrap_database_errors:
                    found = cursor.fetchall()
            finally:
                cursor.close()
        if not models:  # plain values, e.g. the keys of inserted rows
            return found
        return [reader.instances(row, db) for row in found]

    return rows


def _for_update(of: type[Model], *, strength: str = "NO KEY UPDATE") -> str:
    """The row-lock clause for ``of``'s rows (not those of joined tables), or
    nothing where the database has no row locks (SQLite runs one writer at a
    time).

    A market is locked in ``NO KEY UPDATE`` strength: it conflicts with every
    other lock for update of the row, but not with the ``KEY SHARE`` lock a
    foreign-key check takes. The
    services insert an order's row (a foreign key to its market) before they
    wait for the market; Django's foreign keys are checked at commit, so that
    takes no lock now, and with this strength it could not deadlock even if
    they were checked at once.
    """
    if not connection.features.has_select_for_update:
        return ""
    if not connection.features.has_select_for_no_key_update:
        strength = "UPDATE"
    return f" FOR {strength} OF {_quote(of._meta.db_table)}"


def _placeholders(count: int) -> str:
    return ", ".join(["%s"] * count)


# -- Reads ----------------------------------------------------------------------


@dataclass(frozen=True)
class AnyOf:
    """A ``field__in`` value of ``rows_select``: these values, or any value
    of one column of the rows of another query (``sql``, with ``params``)."""

    values: tuple[Any, ...]
    sql: str
    params: tuple[Any, ...]


@dataclass(frozen=True)
class Choice:
    """A ``rows_select`` value written into the statement instead of sent as
    a parameter: one of the field's choices (nothing else is accepted).

    PostgreSQL plans a prepared statement once for all parameters only when
    that plan does not depend on their values; the book's partial indexes
    (``status = 'open' AND side = ...``) can serve a plan only if those values
    are part of the statement. With them as parameters it re-plans the book's
    query on every execution.
    """

    value: str


def statement_of(
    model: type[Model],
    *,
    where: dict[str, Any],
    order_by: tuple[str, ...] = (),
    limit: int | None = None,
    offset: int = 0,
    lock: bool = False,
    column: str | None = None,
) -> tuple[str, tuple[Any, ...]]:
    """The statement ``rows_select`` sends, as SQL and parameters (every
    column, or only ``column``)."""
    shape, params = _where(model, where)
    sql = _select_sql(
        model,
        vendor=_db().vendor,
        where=shape,
        order_by=order_by,
        limit=limit is not None,
        lock=lock,
        column=column,
    )
    if limit is not None:
        params += [limit, offset]
    return sql, tuple(params)


def column_of(
    model: type[Model],
    name: str,
    *,
    where: dict[str, Any],
    order_by: tuple[str, ...] = (),
    limit: int | None = None,
) -> tuple[str, tuple[Any, ...]]:
    """The query of ``rows_select`` for one column ``name`` only, as SQL and
    parameters, to use in an ``AnyOf``."""
    return statement_of(model, where=where, order_by=order_by, limit=limit, column=name)


def _where(model: type[Model], where: dict[str, Any]) -> tuple[tuple, list[Any]]:
    operators = {"": "=", "lte": "<=", "gte": ">=", "in": "in"}
    db = _db()
    shape, params = [], []
    for key, value in where.items():
        name, _, lookup = key.partition("__")
        field = _field(model, name)
        if isinstance(value, Choice):
            if value.value not in {choice for choice, _ in field.choices or ()}:
                raise ValueError(f"{value.value!r} is not a choice of {name}.")
            # A choice is a short word of the model's (no quote can be in it).
            shape.append((name, f"literal:{value.value}"))
        elif isinstance(value, AnyOf):
            shape.append((name, f"anyof:{len(value.values)}:{value.sql}"))
            params.extend(field.get_db_prep_value(item, db) for item in value.values)
            params.extend(value.params)
        elif lookup == "in":
            shape.append((name, f"in:{len(value)}"))
            params.extend(field.get_db_prep_value(item, db) for item in value)
        else:
            shape.append((name, operators[lookup]))
            params.append(field.get_db_prep_value(value, db))
    return tuple(shape), params


@cache
def _select_sql(
    model: type[Model],
    *,
    vendor: str,
    where: tuple[tuple[str, str], ...],
    order_by: tuple[str, ...] = (),
    limit: bool = False,
    lock: bool = False,
    column: str | None = None,
) -> str:
    """``SELECT`` every column of ``model`` (or only ``column``) where each
    ``(field, operator)`` compares with a parameter (``in:N`` for a list of N,
    ``anyof:N:SQL`` for N of them or the rows of a query)."""
    conditions = []
    for name, operator in where:
        if operator.startswith("in:"):
            count = int(operator.removeprefix("in:"))
            conditions.append(f"{_column(model, name)} IN ({_placeholders(count)})")
        elif operator.startswith("literal:"):
            literal = operator.removeprefix("literal:").replace("'", "''")
            conditions.append(f"{_column(model, name)} = '{literal}'")
        elif operator.startswith("anyof:"):
            count, query = operator.removeprefix("anyof:").split(":", 1)
            # SQLite takes ORDER BY and LIMIT in an IN list only one level down.
            target = _column(model, name)
            values = _placeholders(int(count))
            subquery = f"SELECT * FROM ({query}) AS s_"  # noqa: S608
            conditions.append(f"({target} IN ({values}) OR {target} IN ({subquery}))")
        else:
            conditions.append(f"{_column(model, name)} {operator} %s")
    ordering = ", ".join(
        f"{_column(model, name.lstrip('-'))}{' DESC' if name[0] == '-' else ''}"
        for name in order_by
    )
    selected = _select_list(model) if column is None else _column(model, column)
    return (
        f"SELECT {selected} FROM {_quote(model._meta.db_table)} "  # noqa: S608
        f"WHERE {' AND '.join(conditions)}"
        + (f" ORDER BY {ordering}" if ordering else "")
        + (" LIMIT %s OFFSET %s" if limit else "")
        + (_for_update(of=model, strength="UPDATE") if lock else "")
    )


def rows_select(
    model: type[M],
    *,
    where: dict[str, Any],
    order_by: tuple[str, ...] = (),
    limit: int | None = None,
    offset: int = 0,
    lock: bool = False,
) -> list[M]:
    """Rows of ``model`` matching every condition of ``where``.

    Keys are ``field`` (equal), ``field__lte``, ``field__gte`` or ``field__in``
    (a list, never empty, or an ``AnyOf``); values are Python values, prepared
    for the database by the field as the ORM would, or a ``Choice`` written
    into the statement.
    """
    return rows_select_later(
        model,
        where=where,
        order_by=order_by,
        limit=limit,
        offset=offset,
        lock=lock,
    )()


def rows_select_later(
    model: type[M],
    *,
    where: dict[str, Any],
    order_by: tuple[str, ...] = (),
    limit: int | None = None,
    offset: int = 0,
    lock: bool = False,
) -> Callable[[], list[M]]:
    """``rows_select`` sent now, its rows read when the result is called."""
    sql, params = statement_of(
        model, where=where, order_by=order_by, limit=limit, offset=offset, lock=lock
    )
    rows = _fetch_later(sql, params, model)
    return lambda: [found for (found,) in rows()]


@cache
def _joined_sql(
    model: type[Model], relations: tuple[str, ...], *, vendor: str, lock: bool
) -> str:
    table = _quote(model._meta.db_table)
    select = [_select_list(model)]
    joins = []
    for name in relations:
        field = model._meta.get_field(name)
        related = field.related_model
        alias = _quote(f"{name}_")
        select.append(
            ", ".join(
                f"{alias}.{_quote(column.column)}"
                for column in related._meta.concrete_fields
            )
        )
        joins.append(
            f"JOIN {_quote(related._meta.db_table)} {alias} ON "
            f"{alias}.{_quote(related._meta.pk.column)} = "
            f"{table}.{_quote(field.column)}"
        )
    return (
        f"SELECT {', '.join(select)} FROM {table} {' '.join(joins)} "  # noqa: S608
        f"WHERE {table}.{_quote(model._meta.pk.column)} = %s"
        + (_for_update(of=model) if lock else "")
    )


def row_with_related_later(
    model: type[M], pk: Any, *, related: tuple[str, ...], lock: bool = False
) -> Callable[[], M | None]:
    """The row ``pk`` of ``model`` with its foreign keys ``related`` loaded (as
    ``select_related`` does), read when the result is called; only
    ``model``'s row is locked with ``lock``."""
    sql = _joined_sql(model, related, vendor=connection.vendor, lock=lock)
    models = (model, *(model._meta.get_field(name).related_model for name in related))
    rows = _fetch_later(sql, [pk], *models)

    def result() -> M | None:
        found = rows()
        if not found:
            return None
        obj, *others = found[0]
        for name, other in zip(related, others, strict=True):
            model._meta.get_field(name).set_cached_value(obj, other)
        return obj

    return result


# -- Writes ---------------------------------------------------------------------


@cache
def _insert_sql(
    model: type[Model],
    *,
    vendor: str,
    rows: int,
    returning: bool,
    ignore_conflicts: bool,
) -> str:
    meta = model._meta
    fields = [field for field in meta.concrete_fields if field is not meta.pk]
    columns = ", ".join(_quote(field.column) for field in fields)
    values = ", ".join([f"({_placeholders(len(fields))})"] * rows)
    return (
        f"INSERT INTO {_quote(meta.db_table)} ({columns}) VALUES {values}"  # noqa: S608
        + (" ON CONFLICT DO NOTHING" if ignore_conflicts else "")
        + (f" RETURNING {_quote(meta.pk.column)}" if returning else "")
    )


def rows_insert(
    objs: Sequence[Model], *, ignore_conflicts: bool = False, returning: bool = True
) -> None:
    rows_insert_later(objs, ignore_conflicts=ignore_conflicts, returning=returning)()


def rows_insert_later(
    objs: Sequence[Model], *, ignore_conflicts: bool = False, returning: bool = True
) -> Callable[[], None]:
    """Insert every object of ``objs`` (all of one model, primary keys unset)
    in one statement, and give each its primary key.

    With ``ignore_conflicts`` rows that would break a unique constraint are
    skipped and no object gets a primary key (the database does not say which
    rows it inserted). ``returning=False`` does not ask for the keys either,
    so the statement can be queued in a ``pipeline()``. The insert is sent
    at once; the keys are read, in a pipeline waited for, when the result is
    called.
    """
    if not objs:
        return lambda: None
    meta, db = type(objs[0])._meta, _db()
    fields = [field for field in meta.concrete_fields if field is not meta.pk]
    params: list[Any] = []
    for obj in objs:
        # Foreign keys to objects saved since they were assigned (a trade's
        # taker order) take the saved primary key, as in bulk_create().
        obj._prepare_related_fields_for_save(operation_name="rows_insert")
        params.extend(
            field.get_db_prep_save(field.pre_save(obj, True), db) for field in fields
        )
    sql = _insert_sql(
        type(objs[0]),
        vendor=db.vendor,
        rows=len(objs),
        returning=returning and not ignore_conflicts,
        ignore_conflicts=ignore_conflicts,
    )
    if ignore_conflicts or not returning:
        with _cursor() as cursor:
            cursor.execute(sql, params)
        return lambda: None
    # Rows come back in the order of VALUES, as Django's bulk_create relies
    # on too.
    keys = _fetch_later(sql, params)

    def keys_set() -> None:
        for obj, (key,) in zip(objs, keys(), strict=True):
            obj.pk = key
            obj._state.adding = False
            obj._state.db = db.alias

    return keys_set


@cache
def _values_insert_sql(
    model: type[Model], attnames: tuple[str, ...], *, vendor: str, rows: int
) -> str:
    fields = {field.attname: field for field in model._meta.concrete_fields}
    columns = ", ".join(_quote(fields[name].column) for name in attnames)
    values = ", ".join([f"({_placeholders(len(attnames))})"] * rows)
    return f"INSERT INTO {_quote(model._meta.db_table)} ({columns}) VALUES {values}"  # noqa: S608


def values_insert(
    model: type[Model], attnames: tuple[str, ...], rows: Sequence[Sequence[Any]]
) -> None:
    """Insert ``rows`` of plain values for the fields ``attnames`` (attribute
    names: ``token_id``, not ``token``), without model instances and without
    reading anything back. For many small rows a model instance each costs
    more than the statement (``__init__`` and its signals, ``pre_save``)."""
    if not rows:
        return
    db = _db()
    fields = {field.attname: field for field in model._meta.concrete_fields}
    prepared = [fields[name] for name in attnames]
    params: list[Any] = []
    for row in rows:
        params.extend(
            field.get_db_prep_save(value, db)
            for field, value in zip(prepared, row, strict=True)
        )
    sql = _values_insert_sql(model, tuple(attnames), vendor=db.vendor, rows=len(rows))
    with _cursor() as cursor:
        cursor.execute(sql, params)


@cache
def _update_sql(
    model: type[Model], fields: tuple[str, ...], *, vendor: str, rows: int
) -> str:
    meta = model._meta
    columns = [meta.get_field(name).column for name in fields]
    if vendor == "postgresql":
        # VALUES has no column types of its own: PostgreSQL needs casts, SQLite
        # applies the column's affinity on assignment.
        casts = [f"::{meta.get_field(name).db_type(connection)}" for name in fields]
    else:
        casts = [""] * len(fields)
    row = "(%s, " + ", ".join(f"%s{cast}" for cast in casts) + ")"
    names = ", ".join(_quote(column) for column in columns)
    # The VALUES list is named in a WITH clause: SQLite cannot alias its
    # columns in FROM.
    table = _quote(meta.db_table)
    values = ", ".join([row] * rows)
    assignments = ", ".join(f"{_quote(c)} = v.{_quote(c)}" for c in columns)
    return (
        f"WITH v(pk_, {names}) AS (VALUES {values}) "  # noqa: S608
        f"UPDATE {table} SET {assignments} "
        f"FROM v WHERE {table}.{_quote(meta.pk.column)} = v.pk_"
    )


def rows_update(objs: Sequence[Model], fields: Sequence[str]) -> None:
    """Write ``fields`` of every object in ``objs`` (all of one model) in one
    statement, ``WITH v AS (VALUES ...) UPDATE ... FROM v``, which PostgreSQL
    and SQLite (3.33+) both run. Django's ``bulk_update`` builds a
    ``CASE WHEN pk = ...`` expression per field with a branch per row instead.
    An ``auto_now`` field among ``fields`` gets the current time, as ``save()``
    would give it."""
    if not objs:
        return
    meta, db = type(objs[0])._meta, _db()
    prepared = [meta.get_field(name) for name in fields]
    params: list[Any] = []
    for obj in objs:
        params.append(obj.pk)
        params.extend(
            field.get_db_prep_save(field.pre_save(obj, False), db) for field in prepared
        )
    sql = _update_sql(type(objs[0]), tuple(fields), vendor=db.vendor, rows=len(objs))
    with _cursor() as cursor:
        cursor.execute(sql, params)


def rows_delete(objs: Sequence[Model]) -> None:
    """Delete the rows of ``objs`` (all of one model) by primary key, without
    Django's collector: for rows nothing references yet."""
    if not objs:
        return
    meta = type(objs[0])._meta
    sql = (
        f"DELETE FROM {_quote(meta.db_table)} "  # noqa: S608
        f"WHERE {_quote(meta.pk.column)} IN ({_placeholders(len(objs))})"
    )
    with _cursor() as cursor:
        cursor.execute(sql, [obj.pk for obj in objs])
