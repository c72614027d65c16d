"""The exchange app's system checks (``manage.py check --deploy``): every
instance of the site must share one database."""

from __future__ import annotations

import warnings

import pytest
from django.conf import settings
from django.core import checks
from django.test import override_settings

from accounts.tests.test_checks import PRODUCTION_ENV

SQLITE = "django.db.backends.sqlite3"
POSTGRESQL = "django.db.backends.postgresql"


def _deploy_warnings(*, debug: bool, engine: str) -> dict[str, checks.CheckMessage]:
    database = {**settings.DATABASES["default"], "ENGINE": engine}
    with warnings.catch_warnings():
        # "Overriding setting DATABASES": no connection is opened here.
        warnings.simplefilter("ignore", UserWarning)
        with override_settings(DEBUG=debug, DATABASES={"default": database}):
            return {
                message.id: message
                for message in checks.run_checks(include_deployment_checks=True)
            }


def test_a_sqlite_database_without_debug_is_reported_as_one_per_instance():
    warning = _deploy_warnings(debug=False, engine=SQLITE)["exchange.W001"]

    assert warning.level == checks.WARNING
    assert "each instance of the site then has its own database" in warning.msg
    assert "DATABASE_URL" in warning.msg
    assert "DATABASE_URL=postgres://" in warning.hint


@pytest.mark.parametrize(
    ("debug", "engine"),
    [(True, SQLITE), (False, POSTGRESQL), (True, POSTGRESQL)],
    ids=["sqlite-debug", "postgresql", "postgresql-debug"],
)
def test_a_database_server_or_debug_on_is_not_reported(debug, engine):
    assert "exchange.W001" not in _deploy_warnings(debug=debug, engine=engine)


def test_the_database_is_checked_by_manage_py_check_deploy_without_database_url(
    run_python,
):
    # The check opens no connection: the server need not exist.
    server = {**PRODUCTION_ENV, "DATABASE_URL": "postgres://exchange@db:5432/exchange"}

    deploy = run_python(["manage.py", "check", "--deploy"], PRODUCTION_ENV)
    plain = run_python(["manage.py", "check"], PRODUCTION_ENV)
    with_server = run_python(["manage.py", "check", "--deploy"], server)
    debug = run_python(
        ["manage.py", "check", "--deploy"], {**PRODUCTION_ENV, "DEBUG": "true"}
    )

    assert deploy.returncode == 0, deploy.stderr
    assert "(exchange.W001) The database is a SQLite file" in deploy.stderr
    assert "exchange.W001" not in plain.stderr + plain.stdout
    assert with_server.returncode == 0, with_server.stderr
    assert "exchange.W001" not in with_server.stderr + with_server.stdout
    assert "exchange.W001" not in debug.stderr + debug.stdout
