"""Fixtures of the loopback topology's tests."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def topology_static_root(tmp_path_factory) -> Path:
    """Collected static files shared by the topologies of this run: the first
    topology collects them (half a minute, whitenoise compresses every file),
    the others reuse them."""
    return tmp_path_factory.mktemp("topology-static")


@pytest.fixture(scope="session")
def postgres_url() -> str:
    """The suite's PostgreSQL server; a topology makes a database of its own."""
    from django.conf import settings

    params = settings.DATABASES["default"]
    password = f":{params['PASSWORD']}" if params["PASSWORD"] else ""
    host, port = params["HOST"], params["PORT"] or 5432
    return f"postgres://{params['USER']}{password}@{host}:{port}/postgres"
