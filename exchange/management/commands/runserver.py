"""``runserver``, which first creates the tables of a new SQLite database.

So a new checkout runs with ``python manage.py runserver`` alone, as the
storage guide's local option says: on the embedded default (``DEBUG``, SQLite)
a database without Django's migrations table is migrated before the server
starts. A database that has one is left alone, however far behind it is:
Django lists its unapplied migrations, as always. Otherwise this is
whitenoise's ``runserver``, itself Django's with static files left to
whitenoise (``crypto_exchange/settings.py`` lists this app before it).
"""

from __future__ import annotations

import os

from django.conf import settings
from django.core.management import call_command
from django.db import DEFAULT_DB_ALIAS, connections
from django.db.migrations.recorder import MigrationRecorder
from whitenoise.runserver_nostatic.management.commands.runserver import (
    Command as WhitenoiseRunserver,
)


def new_development_database() -> bool:
    connection = connections[DEFAULT_DB_ALIAS]
    return (
        settings.DEBUG
        and connection.vendor == "sqlite"
        and not MigrationRecorder(connection).has_table()
    )


class Command(WhitenoiseRunserver):
    def handle(self, *args, **options) -> None:
        # The autoreloader runs this command again in its child (RUN_MAIN),
        # which then finds the tables made.
        if os.environ.get("RUN_MAIN") != "true" and new_development_database():
            self.stdout.write("A new database: creating its tables first (migrate).")
            call_command("migrate", interactive=False, verbosity=options["verbosity"])
        super().handle(*args, **options)
