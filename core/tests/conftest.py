"""API clients for the tests of what every request goes through (users and
the market are the root conftest's)."""

from __future__ import annotations

import pytest

from tests import factories


@pytest.fixture
def key_client():
    """``tests.factories.key_client``: an API client signed in with a new
    key of ``user`` with ``scopes``."""
    return factories.key_client
