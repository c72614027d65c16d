"""Django's cached database sessions, read from the database in SQL on a miss.

``SESSION_ENGINE = "accounts.sessions_cached"``, used when a shared cache
(``REDIS_URL``) is configured: a session is read from the cache, and on a miss
from the database through ``accounts.sessions``'s statement, as Django's
``cached_db`` store reads it through the ORM.
"""

from django.contrib.sessions.backends import cached_db

from accounts.sessions import SqlSessionReadMixin


class SessionStore(SqlSessionReadMixin, cached_db.SessionStore):
    pass
