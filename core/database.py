"""What a request may have changed when the database fails under it.

A lost connection (``OperationalError``, ``InterfaceError``) leaves the
client one question: did my request take effect? The answer is known only
when the failure came before anything that writes was sent:

- a read that fails changes nothing;
- a write sent inside a transaction changes nothing unless the transaction
  commits: a failure at a statement inside it (the connection lost, or any
  error outside a savepoint, which aborts a PostgreSQL transaction) means the
  COMMIT was never sent;
- a write sent outside a transaction (autocommit: ``order_place``'s one
  statement on PostgreSQL) commits by itself, and a COMMIT that fails may
  have been applied before the answer was lost. Either is "unknown".

``DatabaseWatchMiddleware`` (core.middleware) watches every statement of a
request through an execute wrapper (``watch_connection``) that hands each
statement to the watch of the request it belongs to, found in a context
variable: under WSGI the request's thread, under ASGI whichever thread runs
the request's synchronous parts (asgiref copies the context into it, and a
thread may serve several streams' requests in turn). A view narrows the
question to its one service call with ``service_call``, which also says how
the client finds out and retries safely (a ``client_order_id``, a
``reference``). Statements sent around Django's cursor (the raw driver)
are not seen: services write through ``connection.cursor()`` or the ORM.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterator
from contextvars import ContextVar

from django.db import InterfaceError, OperationalError, connection
from django.http import HttpRequest

UNAVAILABLE = (OperationalError, InterfaceError)

# Statements that change no data. Anything else (INSERT, UPDATE, DELETE, a
# WITH that may hold any of them, a COMMIT sent as SQL) counts as a write.
_READS = frozenset(
    {
        "SELECT",
        "SHOW",
        "SET",
        "EXPLAIN",
        "VALUES",
        "LISTEN",
        "UNLISTEN",
        "SAVEPOINT",
        "RELEASE",
        "ROLLBACK",
        "BEGIN",
        "PRAGMA",
    }
)
_FIRST_WORD = re.compile(r"[\s(]*(\w+)")

SAFE_METHODS = ("GET", "HEAD", "OPTIONS")


def _writes(sql: str) -> bool:
    found = _FIRST_WORD.match(sql)
    return found is None or found.group(1).upper() not in _READS


def _connection_lost(wrapper) -> bool:
    raw = wrapper.connection
    return raw is None or bool(getattr(raw, "closed", False))


class WriteWatch:
    """An execute wrapper that knows whether a write may have taken effect.

    ``recovery`` says how the client finds out and retries safely;
    ``resend`` that sending the same form again is safe (pages offer it).
    """

    def __init__(self) -> None:
        self.recovery = ""
        self.resend = False
        # Until the view runs, what is written (the session's last activity)
        # is not what the client asked for.
        self._counting = False
        self._reset()

    def _reset(self) -> None:
        self._changed = False  # committed, or its commit's answer was lost
        self._pending = False  # writes in a transaction not known to have ended

    def start(self) -> None:
        """The view runs: from now on, writes count."""
        self._counting = True
        self._reset()

    @contextlib.contextmanager
    def incidental(self) -> Iterator[None]:
        """Writes inside are bookkeeping, not what the client asked for (an
        API key's last use): each commits or fails on its own."""
        counting, self._counting = self._counting, False
        try:
            yield
        finally:
            self._counting = counting

    def __call__(self, execute, sql, params, many, context):
        if not self._counting:
            return execute(sql, params, many, context)
        wrapper = context["connection"]
        in_transaction = wrapper.in_atomic_block
        if self._pending and not in_transaction:
            # The transaction ended between two statements; assume it
            # committed (a rollback would only make this answer cautious).
            self._changed, self._pending = True, False
        writes = _writes(sql)
        if writes and in_transaction:
            self._pending = True
        try:
            result = execute(sql, params, many, context)
        except Exception:
            if in_transaction:
                if _connection_lost(wrapper) or not wrapper.savepoint_ids:
                    # The transaction is dead or aborted: it can only roll
                    # back, so none of its writes can be committed.
                    self._pending = False
            elif writes and _connection_lost(wrapper):
                self._changed = True
            raise
        if writes and not in_transaction:
            self._changed = True
        return result

    @property
    def may_have_written(self) -> bool:
        return self._changed or self._pending

    @contextlib.contextmanager
    def service(self, *, recovery: str, resend: bool) -> Iterator[None]:
        # The client's question is about this call alone.
        self._reset()
        self.recovery, self.resend = recovery, resend
        yield


_current: ContextVar[WriteWatch | None] = ContextVar("database_watch", default=None)


def _watched(execute, sql, params, many, context):
    watch = _current.get()
    if watch is None:
        return execute(sql, params, many, context)
    return watch(execute, sql, params, many, context)


def watch_connection() -> None:
    """Route the statements of this thread's connection through the current
    request's watch, if any (idempotent: the wrapper stays for the thread's
    later requests, and passes statements outside a request through)."""
    if _watched not in connection.execute_wrappers:
        connection.execute_wrappers.append(_watched)


@contextlib.contextmanager
def watching(watch: WriteWatch) -> Iterator[None]:
    """Statements sent from this context (and the threads asgiref runs its
    synchronous parts in) go through ``watch``."""
    token = _current.set(watch)
    try:
        yield
    finally:
        _current.reset(token)


def request_watch(request: HttpRequest) -> WriteWatch | None:
    # A DRF Request hands unknown attributes to Django's request.
    return getattr(request, "database_watch", None)


@contextlib.contextmanager
def service_call(
    request: HttpRequest, *, recovery: str = "", resend: bool = False
) -> Iterator[None]:
    """Around a view's one service call that writes: should the database
    fail from here on, the answer says whether the call may have taken effect
    and, with ``recovery``, how to find out and that retrying with the same
    ``client_order_id``/``reference`` is safe."""
    watch = request_watch(request)
    if watch is None:
        yield
        return
    with watch.service(recovery=recovery, resend=resend):
        yield


@contextlib.contextmanager
def incidental_writes(request: HttpRequest) -> Iterator[None]:
    """Around bookkeeping writes (WriteWatch.incidental)."""
    watch = request_watch(request)
    if watch is None:
        yield
        return
    with watch.incidental():
        yield


def outcome_unknown(request: HttpRequest) -> bool:
    """Whether a database failure during ``request`` leaves its effect
    unknown. Without a watch, only a read-only method is known to be safe."""
    watch = request_watch(request)
    if watch is None:
        return request.method not in SAFE_METHODS
    return watch.may_have_written


def unavailable_error(request: HttpRequest) -> tuple[str, str]:
    """``(code, message)`` for a database failure during ``request``."""
    if request.method in SAFE_METHODS:
        return (
            "unavailable",
            "The exchange's database cannot be reached right now. "
            "Please try again in a moment.",
        )
    if not outcome_unknown(request):
        return (
            "unavailable",
            "The exchange's database cannot be reached right now; nothing was "
            "changed. Please try again in a moment.",
        )
    watch = request_watch(request)
    recovery = (watch.recovery if watch else "") or (
        "Check whether it did before sending it again."
    )
    return (
        "outcome_unknown",
        "The connection to the exchange's database broke while this request "
        f"was being saved: it may or may not have taken effect. {recovery}",
    )
