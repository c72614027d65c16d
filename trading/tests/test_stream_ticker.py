"""The stream's ticker keeps up with what moves it without a trade: a change
of the book (its best prices) and time (trades leave the 24-hour window),
through the real stream server, Redis and matcher."""

import time
from datetime import timedelta

import pytest
from django.utils import timezone

from tests.factories import buy, sell
from trading import live
from trading.models import Trade
from trading.tests.streaming import SseClient

pytestmark = pytest.mark.django_db(transaction=True)

PATH = "/api/v1/markets/BTC-USDT/stream/"


def events_for(client: SseClient, seconds: float) -> list:
    """Every event the stream sends in the next ``seconds`` (the heartbeat
    must be short for the deadline to be seen)."""
    deadline = time.monotonic() + seconds
    seen = []
    try:
        while (event := client.next(deadline=deadline)) is not None:
            seen.append(event)
    except TimeoutError:
        return seen
    pytest.fail(f"the stream ended: {[event.event for event in seen]}")


@pytest.fixture(autouse=True)
def short_heartbeat(monkeypatch):
    monkeypatch.setattr(live, "HEARTBEAT_SECONDS", 0.1)


def ticker_of_api(client, market) -> dict:
    return client.get(f"/api/v1/markets/{market.symbol}/ticker/").json()


def test_a_better_bid_without_a_trade_reaches_the_streams_ticker(
    stream_server, client, market, alice, funded
):
    stream = SseClient(stream_server.port, PATH)
    assert stream.until("snapshot").data["ticker"]["best_bid"] is None

    buy(alice, market, "0.1", "99")

    seen = events_for(stream, 2)
    assert [event.event for event in seen] == ["book", "ticker"]
    assert seen[1].data["ticker"]["best_bid"] == "99"
    assert seen[1].data["ticker"] == ticker_of_api(client, market)

    # A bid below the best changes the book, not the ticker: nothing is sent
    # again.
    buy(alice, market, "0.1", "98")

    assert [event.event for event in events_for(stream, 2)] == ["book"]
    stream.close()


def test_a_trade_leaving_the_24_hour_window_leaves_the_streams_ticker(
    settings, stream_server, client, market, alice, bob, funded
):
    settings.STREAM_TICKER_SECONDS = 0.3
    sell(bob, market, "1", "100")
    buy(alice, market, "0.4", "100")
    stream = SseClient(stream_server.port, PATH)
    assert stream.until("snapshot").data["ticker"]["base_volume"] == "0.4"

    Trade.objects.update(created_at=timezone.now() - timedelta(hours=24, seconds=1))

    seen = events_for(stream, 2)
    # Once: the timer reads the ticker again and again, unchanged since.
    assert [event.event for event in seen] == ["ticker"]
    streamed = seen[0].data["ticker"]
    assert (streamed["base_volume"], streamed["high_price"]) == ("0", None)
    assert streamed == ticker_of_api(client, market)
    stream.close()
