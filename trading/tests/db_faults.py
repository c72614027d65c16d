"""Lost database connections, caused for real on the test's own PostgreSQL
database: the backend serving the test (and so its requests) is terminated
with ``pg_terminate_backend`` at a chosen moment."""

from __future__ import annotations

import contextlib
import re
from collections.abc import Callable, Iterator

import psycopg
from django.db import connection

ORDER_INSERT = re.compile(r'INSERT INTO "?trading_order"?\s*\(')
WITHDRAWAL_INSERT = re.compile(r'INSERT INTO "?trading_withdrawal"?\s*\(')


def _admin() -> psycopg.Connection:
    settings = connection.settings_dict
    return psycopg.connect(
        dbname=settings["NAME"],
        user=settings["USER"],
        password=settings["PASSWORD"] or None,
        host=settings["HOST"] or None,
        port=settings["PORT"] or None,
        autocommit=True,
    )


def backend_terminate(pid: int) -> None:
    """Terminate backend ``pid`` from another connection and wait until it
    has exited: the next statement sent to it fails."""
    with _admin() as admin:
        [[done]] = admin.execute("SELECT pg_terminate_backend(%s, 10000)", [pid])
    assert done, f"backend {pid} did not exit"


class BackendKill:
    """An execute wrapper on the test's connection that terminates its
    backend once, at one moment:

    - ``before``: just before the first statement ``match`` finds is sent;
    - ``after_commit``: once a statement ``match`` finds has run and its
      transaction is over (before the next statement outside a transaction),
      so that what it wrote is committed and what follows is lost.
    """

    def __init__(self, when: str, match: Callable[[str], bool]) -> None:
        assert when in ("before", "after_commit")
        self.when, self.match = when, match
        self.fired = False
        self._seen = False

    def __call__(self, execute, sql, params, many, context):
        wrapper = context["connection"]
        now = (self.when == "before" and self.match(sql)) or (
            self._seen and not wrapper.in_atomic_block
        )
        if now and not self.fired:
            self.fired = True
            backend_terminate(wrapper.connection.info.backend_pid)
        result = execute(sql, params, many, context)
        if self.when == "after_commit" and self.match(sql):
            self._seen = True
        return result


@contextlib.contextmanager
def backend_killed(when: str, match: Callable[[str], bool]) -> Iterator[BackendKill]:
    """Requests made inside lose their connection at ``when`` (BackendKill);
    the broken connection is closed at the end, so the test goes on with a
    new one."""
    kill = BackendKill(when, match)
    try:
        with connection.execute_wrapper(kill):
            yield kill
    finally:
        connection.close()
    assert kill.fired, f"no statement matched: the backend was never killed {when}"


@contextlib.contextmanager
def backend_dies_at_commit(table: str) -> Iterator[None]:
    """A row inserted into ``table`` makes its backend terminate itself at
    COMMIT (a deferred constraint trigger), before the commit is done: the
    client sent its COMMIT (or its autocommit statement) and never gets an
    answer. Nothing is committed, but the client cannot know that."""
    with _admin() as admin:
        admin.execute(
            "CREATE FUNCTION test_backend_dies() RETURNS trigger"
            " LANGUAGE plpgsql AS $$ BEGIN"
            " PERFORM pg_terminate_backend(pg_backend_pid());"
            # Interrupted at once: the backend exits here.
            " PERFORM pg_sleep(30); RETURN NULL; END $$"
        )
        admin.execute(
            f"CREATE CONSTRAINT TRIGGER test_dies_at_commit AFTER INSERT ON {table}"
            " DEFERRABLE INITIALLY DEFERRED FOR EACH ROW"
            " EXECUTE FUNCTION test_backend_dies()"
        )
    try:
        yield
    finally:
        connection.close()
        with _admin() as admin:
            admin.execute(f"DROP TRIGGER test_dies_at_commit ON {table}")
            admin.execute("DROP FUNCTION test_backend_dies()")


def first_statement(sql: str) -> bool:
    return True


def order_insert(sql: str) -> bool:
    return bool(ORDER_INSERT.search(sql))


def withdrawal_insert(sql: str) -> bool:
    return bool(WITHDRAWAL_INSERT.search(sql))


def order_first_write(sql: str) -> bool:
    """The first statement that writes for an order: its reservation."""
    writes = not sql.lstrip().upper().startswith(("SELECT", "SAVEPOINT", "RELEASE"))
    return writes and bool(re.search(r'\b"?trading_(balance|order)"?\b', sql))


@contextlib.contextmanager
def statement_fails_once(table: str) -> Iterator[None]:
    """The first statement inserting into ``table`` (from any connection)
    fails in the server, as a full disk or a broken constraint would: a
    trigger raises once, counted by a sequence (which no rollback undoes)."""
    with _admin() as admin:
        admin.execute(
            """
            CREATE SEQUENCE test_fail_once;
            CREATE FUNCTION test_fail_once() RETURNS trigger AS $$
            BEGIN
                IF nextval('test_fail_once') = 1 THEN
                    RAISE EXCEPTION 'test: the write failed';
                END IF;
                RETURN NULL;
            END $$ LANGUAGE plpgsql;
            """
        )
        admin.execute(
            f"CREATE TRIGGER test_fail_once AFTER INSERT ON {table}"
            " FOR EACH STATEMENT EXECUTE FUNCTION test_fail_once()"
        )
    try:
        yield
    finally:
        with _admin() as admin:
            admin.execute(f"DROP TRIGGER test_fail_once ON {table}")
            admin.execute(
                "DROP FUNCTION test_fail_once(); DROP SEQUENCE test_fail_once"
            )
