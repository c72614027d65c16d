"""Django's database sessions, with the session of every request read in SQL.

``SESSION_ENGINE = "accounts.sessions"`` (``accounts.sessions_cached`` in front
of a shared cache). ``SessionMiddleware`` loads the session of every request
that has a session cookie; Django's store reads the row with
``Session.objects.get(session_key=..., expire_date__gt=now)``: on the benchmark
machine 0.24 ms of CPU, most of it compiling the query, against 0.04 ms for
the same row read with a statement built once (``accounts.rows``), which this
store does; the rest (decoding and its checks, writes, deletion, expiry) is
Django's.

The class keeps Django's name, ``SessionStore``: the name salts the signature
of the stored data, so sessions written by either store are read by both.
"""

from __future__ import annotations

import logging
from functools import cache
from typing import Any

from django.conf import settings
from django.contrib.auth import BACKEND_SESSION_KEY
from django.contrib.sessions.backends import db
from django.core.exceptions import SuspiciousOperation
from django.db.models import Model
from django.utils import timezone

from accounts.backends import DJANGO_MODEL_BACKEND, SQL_MODEL_BACKEND
from accounts.rows import RowReader


@cache
def _session_reader(model: type[Model]) -> RowReader:
    return RowReader(model, ("session_key", "="), ("expire_date", ">"))


def _backend_renamed(session: dict[str, Any]) -> dict[str, Any]:
    """Sessions signed in before ``SqlModelBackend`` replaced Django's
    ``ModelBackend`` name the old one, which Django would refuse (it signs out a
    session whose backend is not in ``AUTHENTICATION_BACKENDS``). Both load
    the same row the same way, so such a session is read as the new one's; the
    password-hash check still applies. The old name stays in the stored data
    until the session is next saved; sessions live two weeks at most
    (``SESSION_COOKIE_AGE``) after their last save.
    """
    if (
        session.get(BACKEND_SESSION_KEY) == DJANGO_MODEL_BACKEND
        and DJANGO_MODEL_BACKEND not in settings.AUTHENTICATION_BACKENDS
        and SQL_MODEL_BACKEND in settings.AUTHENTICATION_BACKENDS
    ):
        session[BACKEND_SESSION_KEY] = SQL_MODEL_BACKEND
    return session


class SqlSessionReadMixin:
    """Reads the session row as Django's ``_get_session_from_db`` does: only
    an unexpired row; a missing one forgets the key, so that a new session
    gets a new key; a ``SuspiciousOperation`` is logged and does the same."""

    def _get_session_from_db(self) -> Model | None:
        try:
            session = _session_reader(self.model).get(self.session_key, timezone.now())
        except SuspiciousOperation as error:
            logger = logging.getLogger(f"django.security.{type(error).__name__}")
            logger.warning(str(error))
            session = None
        if session is None:
            self._session_key = None
        return session

    def load(self) -> dict[str, Any]:
        return _backend_renamed(super().load())


class SessionStore(SqlSessionReadMixin, db.SessionStore):
    pass
