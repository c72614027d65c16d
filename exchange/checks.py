"""System checks about how the instances of the site share their state
(``manage.py check --deploy``)."""

from __future__ import annotations

from django.conf import settings
from django.core import checks


@checks.register(deploy=True)
def database_file_per_instance(app_configs, **kwargs) -> list[checks.CheckMessage]:
    """Without DATABASE_URL the site opens the SQLite file beside manage.py:
    each container, or each machine, behind a load balancer then has a
    database of its own, and a user's account, balances and orders exist only
    on the instance that wrote them."""
    engine = settings.DATABASES["default"]["ENGINE"]
    if settings.DEBUG or engine != "django.db.backends.sqlite3":
        return []
    return [
        checks.Warning(
            "The database is a SQLite file on this machine (DATABASE_URL is not "
            "set to a database server): each instance of the site then has its "
            "own database, so with several instances behind a load balancer "
            "users, balances and orders differ from one request to the next.",
            hint=(
                "Set DATABASE_URL to a PostgreSQL URL, e.g. "
                "DATABASE_URL=postgres://exchange:password@db.example.com:5432/"
                "exchange."
            ),
            id="exchange.W001",
        )
    ]
