"""Fixtures of the trading tests; the ledger is checked after every test."""

import pytest

from trading.invariants import ledger_problems
from trading.tests.factories import fund, market_make, token_make, user_make


@pytest.fixture(autouse=True)
def ledger_consistent_afterwards(request):
    """After every test that uses the database, every invariant still holds."""
    marker = request.node.get_closest_marker("django_db")
    if marker is None and not {"db", "transactional_db"} & set(request.fixturenames):
        yield
        return
    transactional = "transactional_db" in request.fixturenames or (
        marker is not None
        and (marker.kwargs.get("transaction") or (marker.args and marker.args[0]))
    )
    request.getfixturevalue("transactional_db" if transactional else "db")
    yield
    assert ledger_problems() == []


@pytest.fixture
def btc():
    return token_make("BTC", decimals=8)


@pytest.fixture
def usdt():
    return token_make("USDT", decimals=6)


@pytest.fixture
def market(btc, usdt):
    """BTC-USDT: price step 0.01, amount step 0.0001, minimum 1 USDT,
    maker 0.1 %, taker 0.2 %."""
    return market_make(btc, usdt)


@pytest.fixture
def alice():
    return user_make("alice")


@pytest.fixture
def bob():
    return user_make("bob")


@pytest.fixture
def carol():
    return user_make("carol")


@pytest.fixture
def funded(alice, bob, carol, btc, usdt):
    """alice, bob and carol each hold 10 BTC and 10,000 USDT."""
    for user in (alice, bob, carol):
        fund(user, btc, "10")
        fund(user, usdt, "10000")


@pytest.fixture
def staff():
    """A staff member who may decide withdrawals (no second factor: only the
    admin asks for one)."""
    from django.contrib.auth import get_user_model

    return get_user_model().objects.create_superuser("root", password="x-secret-1")


@pytest.fixture
def redis_server(tmp_path):
    """A Redis of the test's own: the machine's is shared with other runs,
    whose matchers publish on the same channel names."""
    from core.tests.redis_server import redis_running

    with redis_running(tmp_path) as server:
        yield server


@pytest.fixture
def stream_server(settings, redis_server):
    """The ASGI process of the live stream (uvicorn), publishing and
    subscribing through ``redis_server``."""
    from trading.tests.streaming import StreamServer

    settings.REDIS_URL = redis_server.url
    server = StreamServer()
    server.start()
    yield server
    server.stop()
