"""Fixtures of the trading tests; the ledger is checked after every test."""

import pytest

from trading.invariants import ledger_problems


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
def stream_server(settings, redis_server):
    """The ASGI process of the live stream (uvicorn), publishing and
    subscribing through ``redis_server``."""
    from trading.tests.streaming import StreamServer

    settings.REDIS_URL = redis_server.url
    server = StreamServer()
    server.start()
    yield server
    server.stop()


@pytest.fixture
def engine_bug(monkeypatch):
    """``engine_bug(order)``: the engine raises on ``order``'s commands, as a
    bug in a matching rule would (the one fault here not caused for real)."""
    from trading.engine import MarketEngine

    apply = MarketEngine.apply

    def fail_on(order) -> None:
        def apply_or_fail(self, command):
            if getattr(command, "order_id", None) == order.pk:
                raise ZeroDivisionError("a bug")
            return apply(self, command)

        monkeypatch.setattr(MarketEngine, "apply", apply_or_fail)

    return fail_on
