"""The live stream (GET /api/v1/markets/<symbol>/stream/) through its real
parts: uvicorn, Redis, and orders matched by the matcher (trading.matcher.drain
runs inline when an order is placed)."""

import functools
import http.client
import json
import select
import threading
import time
from decimal import Decimal as D
from pathlib import Path

import pytest
from django.db import connection
from django.test import Client
from django.urls import reverse

from tests.factories import buy, sell
from trading import live
from trading.api_keys import api_key_create, api_key_revoke
from trading.exceptions import InsufficientBalance
from trading.models import MatcherState, Order, Trade
from trading.services import (
    deposit_credit,
    withdrawal_approve,
    withdrawal_cancel,
    withdrawal_process_start,
    withdrawal_reject,
    withdrawal_request,
)
from trading.tests.streaming import Event, SseClient

pytestmark = pytest.mark.django_db(transaction=True)

PATH = "/api/v1/markets/BTC-USDT/stream/"


def key_of(user, **options) -> dict[str, str]:
    _, key = api_key_create(user=user, name="bot", scopes=["read"], **options)
    return {"Authorization": f"Api-Key {key}"}


def test_a_matched_order_reaches_the_stream_after_its_batch(
    stream_server, market, alice, bob, funded
):
    resting = sell(bob, market, "1", "100")
    client = SseClient(stream_server.port, PATH, headers=key_of(alice))
    assert client.status == 200
    assert client.response.getheader("Content-Type").startswith("text/event-stream")
    snapshot = client.until("snapshot")
    assert snapshot.data["book"]["asks"] == [{"price": "100", "quantity": "1"}]
    assert snapshot.data["orders"] == []
    usdt = {row["token"]: row for row in snapshot.data["balances"]}["USDT"]
    assert usdt["available"] == "10000"
    sequence = snapshot.data["sequence"]

    taker = buy(alice, market, "0.4", "100")

    trade = Trade.objects.get()
    trades = client.until("trades")
    assert trades.data["trades"] == [
        {
            "id": trade.pk,
            "price": "100",
            "quantity": "0.4",
            "quote_amount": "40",
            "taker_side": "buy",
            "time": trade.created_at.isoformat().replace("+00:00", "Z"),
        }
    ]
    book = client.until("book")
    assert book.data["levels"] == [
        {"sequence": sequence + 1, "side": "sell", "price": "100", "quantity": "0.6"}
    ]
    # A user's stream: the last fill sent too, none yet.
    assert book.id == f"{sequence + 1}.{trade.pk}.0"
    fills = client.until("fills")
    assert [(fill["order_id"], fill["liquidity"]) for fill in fills.data["fills"]] == [
        (taker.pk, "taker")
    ]
    assert fills.id == f"{sequence + 1}.{trade.pk}.{trade.pk}"
    orders = client.until("orders")
    assert [(order["id"], order["status"]) for order in orders.data["orders"]] == [
        (taker.pk, "filled")
    ]
    balances = client.until("balances")
    usdt = {row["token"]: row for row in balances.data["balances"]}["USDT"]
    assert usdt["available"] == "9960"
    ticker = client.until("ticker")
    assert ticker.data["ticker"]["last_price"] == "100"
    candles = client.until("candles")
    assert candles.data["candles"]["1m"]["close"] == "100"
    client.close()
    assert resting.pk


@pytest.mark.reliability("access-by-id")
def test_a_user_never_receives_another_users_events(
    stream_server, market, alice, bob, carol, funded
):
    watcher = SseClient(stream_server.port, PATH, headers=key_of(carol))
    assert watcher.until("snapshot").data["orders"] == []
    sell(bob, market, "1", "100")
    buy(alice, market, "1", "100")
    seen = []
    while True:
        event = watcher.next()
        seen.append(event)
        if event.event == "candles":  # the last of the batch with the trade
            break
    kinds = [event.event for event in seen]
    assert "trades" in kinds and "book" in kinds
    assert not {"orders", "fills", "balances"} & set(kinds)
    watcher.close()


@pytest.mark.reliability("shared-redis")
def test_another_exchange_on_another_redis_database_never_reaches_the_stream(
    settings, redis_server, stream_server, market, alice, bob, funded
):
    # Redis shares channels between its databases. Here the other exchange,
    # on database 1, shares the test's database too: our next book update is
    # numbered after its, so our stream, which never saw it, has the client
    # resync.
    client = SseClient(stream_server.port, PATH, headers=key_of(alice))
    client.until("snapshot")
    settings.REDIS_URL = redis_server.url.removesuffix("/0") + "/1"
    sell(bob, market, "1", "100")
    buy(alice, market, "0.4", "100")
    settings.REDIS_URL = redis_server.url
    buy(alice, market, "0.1", "100")

    events = []
    while (event := client.next()) is not None:
        events.append(event)
    trades = [
        row["id"] for e in events if e.event == "trades" for row in e.data["trades"]
    ]
    assert trades == [Trade.objects.order_by("pk").last().pk]
    assert events[-1].event == "resync"
    client.close()


def test_anyone_may_watch_the_market_but_sees_no_account(stream_server, market):
    client = SseClient(stream_server.port, PATH)
    snapshot = client.until("snapshot")
    assert "orders" not in snapshot.data and "balances" not in snapshot.data
    assert snapshot.data["ticker"]["market"] == "BTC-USDT"
    client.close()


@pytest.mark.reliability("key-invalid")
def test_a_bad_api_key_is_refused_with_a_json_401(stream_server, market, alice):
    client = SseClient(
        stream_server.port, PATH, headers={"Authorization": "Api-Key nope.nope"}
    )
    assert client.status == 401
    assert client.response.getheader("WWW-Authenticate") == "Api-Key"
    assert client.json()["error"]["code"] == "invalid_api_key"


@pytest.mark.reliability("key-address")
def test_a_key_used_from_an_address_it_does_not_allow_gets_a_403(
    stream_server, market, alice
):
    headers = key_of(alice, allowed_ips="192.0.2.0/24")
    client = SseClient(stream_server.port, PATH, headers=headers)
    assert client.status == 403
    assert client.json()["error"]["code"] == "ip_not_allowed"


def test_an_unknown_market_is_the_rest_apis_json_404(stream_server):
    client = SseClient(stream_server.port, "/api/v1/markets/NOPE-USDT/stream/")
    rest = Client().get("/api/v1/markets/NOPE-USDT/ticker/")
    unknown = {"code": "not_found", "message": "There is no market 'NOPE-USDT'."}

    assert client.status == rest.status_code == 404
    # The same stable code, and wording, as every REST endpoint of a market.
    assert client.json() == rest.json() == {"error": unknown}


@pytest.mark.reliability("malformed-requests")
@pytest.mark.parametrize("method", ["POST", "PUT", "PATCH", "DELETE"])
def test_a_write_to_the_stream_is_a_json_405_with_a_key_or_a_session(
    method, stream_server, market, alice
):
    for headers in (key_of(alice), session_of(alice)[1]):
        link = http.client.HTTPConnection("127.0.0.1", stream_server.port)
        link.request(method, PATH, body=b"{}", headers=headers)
        response = link.getresponse()
        body = json.loads(response.read())
        link.close()

        assert response.status == 405
        assert response.getheader("Allow") == "GET, HEAD"
        assert body["error"]["code"] == "method_not_allowed"


def test_a_head_of_the_stream_ends_and_its_connection_serves_the_next_request(
    stream_server, market
):
    link = http.client.HTTPConnection("127.0.0.1", stream_server.port, timeout=5)
    link.request("HEAD", PATH)
    head = link.getresponse()
    assert head.read() == b""
    assert head.status == 200
    assert head.getheader("Content-Type").startswith("text/event-stream")
    assert head.getheader("Content-Length") is None  # a GET's never ends

    link.request("GET", "/api/v1/markets/NOPE-USDT/stream/")
    after = link.getresponse()
    assert after.status == 404
    assert json.loads(after.read())["error"]["code"] == "not_found"
    link.close()


@pytest.mark.reliability("stream-without-redis")
def test_without_redis_the_stream_says_it_is_unavailable(
    stream_server, redis_server, market
):
    redis_server.kill()
    client = SseClient(stream_server.port, PATH)
    # Either refused at once, or (when the subscription had not noticed yet)
    # told to resync at its first event.
    if client.status == 503:
        assert client.json()["error"]["code"] == "stream_unavailable"
        assert client.response.getheader("Retry-After")
    else:
        assert client.until("resync").data == {"reason": "unavailable"}


def position_after_a_trade(stream_server, market, alice, bob) -> str:
    """The Last-Event-ID of a client that saw bob's ask and alice's first
    buy from it, then went away."""
    sell(bob, market, "1", "100")
    first = SseClient(stream_server.port, PATH)
    first.until("snapshot")
    buy(alice, market, "0.1", "100")
    first.until("book")
    first.close()
    return first.last_id


@pytest.mark.reliability("stream-clients")
def test_resuming_with_last_event_id_catches_up_with_what_was_missed(
    stream_server, market, alice, bob, funded
):
    last_id = position_after_a_trade(stream_server, market, alice, bob)

    # Missed while disconnected: a trade and two level changes.
    sell(bob, market, "2", "101")
    buy(alice, market, "0.2", "100")
    missed = list(Trade.objects.order_by("pk"))[-1]

    again = SseClient(stream_server.port, PATH, headers={"Last-Event-ID": last_id})
    snapshot = again.until("snapshot")
    assert "book" not in snapshot.data  # caught up instead
    assert "trades" not in snapshot.data
    book = again.until("book")
    levels = book.data["levels"]
    assert levels[0]["sequence"] == int(last_id.split(".")[0]) + 1
    assert [(row["price"], row["quantity"]) for row in levels] == [
        ("101", "2"),
        ("100", "0.7"),
    ]
    trades = again.until("trades")
    assert [trade["id"] for trade in trades.data["trades"]] == [missed.pk]
    # Caught up in the shape of the live event, with the trade's time.
    assert trades.data["trades"][0]["time"] == missed.created_at.isoformat().replace(
        "+00:00", "Z"
    )
    assert "created_at" not in trades.data["trades"][0]
    again.close()


def test_resuming_sends_the_fills_made_while_disconnected(
    stream_server, market, alice, bob, funded
):
    last_id = position_after_a_trade(stream_server, market, alice, bob)
    seen = Trade.objects.get()
    resting = Order.objects.get(user=bob)

    # Missed while disconnected: alice takes more of bob's resting order.
    buy(alice, market, "0.2", "100")
    missed = Trade.objects.order_by("pk").last()

    again = SseClient(
        stream_server.port, PATH, headers={**key_of(bob), "Last-Event-ID": last_id}
    )
    snapshot = again.until("snapshot")
    assert "trades" not in snapshot.data  # caught up instead
    assert [fill["id"] for fill in snapshot.data["fills"]] == [missed.pk, seen.pk]
    fills = again.until("fills")
    assert [
        (fill["id"], fill["order_id"], fill["liquidity"], fill["quantity"])
        for fill in fills.data["fills"]
    ] == [(missed.pk, resting.pk, "maker", "0.2")]
    assert fills.id.split(".")[1] == str(missed.pk)
    again.close()


@pytest.mark.reliability("stream-clients")
def test_a_client_cut_off_between_a_trade_and_its_fill_gets_the_fill_on_resume(
    monkeypatch, stream_server, market, alice, bob, funded
):
    # The snapshot lists the latest fill only, so the one cut off is not in it.
    monkeypatch.setattr(live, "RECENT_FILLS", 1)
    headers = key_of(alice)
    sell(bob, market, "1", "100")
    client = SseClient(stream_server.port, PATH, headers=headers)
    client.until("snapshot")
    buy(alice, market, "0.1", "100")
    cut = client.until("trades")  # the connection drops before its fills
    client.close()
    first = Trade.objects.get()
    buy(alice, market, "0.2", "100")  # and she trades on meanwhile
    later = Trade.objects.latest("pk")

    again = SseClient(
        stream_server.port, PATH, headers={**headers, "Last-Event-ID": cut.id}
    )
    snapshot = again.until("snapshot")
    assert [fill["id"] for fill in snapshot.data["fills"]] == [later.pk]
    fills = again.until("fills")
    assert [fill["id"] for fill in fills.data["fills"]] == [first.pk, later.pk]
    assert fills.id.split(".")[1:] == [str(later.pk), str(later.pk)]
    again.close()


@pytest.mark.reliability("stream-clients")
def test_a_resume_owed_more_fills_than_it_sends_gets_a_trades_snapshot(
    monkeypatch, stream_server, market, alice, bob, funded
):
    monkeypatch.setattr(live, "CATCH_UP_TRADES", 2)
    headers = key_of(alice)
    sell(bob, market, "1", "100")
    for _ in range(3):
        buy(alice, market, "0.1", "100")
    sequence = MatcherState.objects.get(market=market).book_sequence
    trade = Trade.objects.latest("pk").pk

    # All three trades seen, none of their fills: more than a resume sends.
    again = SseClient(
        stream_server.port,
        PATH,
        headers={**headers, "Last-Event-ID": f"{sequence}.{trade}.0"},
    )
    snapshot = again.until("snapshot")
    # Its trades say the stream did not catch up: the API has the fills.
    assert snapshot.data["trades"][0]["id"] == trade
    buy(alice, market, "0.1", "100")
    fills = again.until("fills")
    assert [fill["id"] for fill in fills.data["fills"]] == [
        Trade.objects.latest("pk").pk
    ]
    again.close()


def test_a_resuming_user_gets_no_fills_of_another(
    monkeypatch, stream_server, market, alice, bob, carol, funded
):
    # The missed batch's ticker and candles reach the resumed stream too:
    # the hub reads them for another client, still there, after the stream
    # resumed.
    monkeypatch.setattr(live, "FIGURES_DELAY_SECONDS", 0.5)
    last_id = position_after_a_trade(stream_server, market, alice, bob)
    other = SseClient(stream_server.port, PATH)
    other.until("snapshot")
    buy(alice, market, "0.2", "100")
    missed = Trade.objects.latest("pk")

    watcher = SseClient(
        stream_server.port, PATH, headers={**key_of(carol), "Last-Event-ID": last_id}
    )
    assert watcher.until("snapshot").data["fills"] == []
    other.until("candles")  # the missed batch's, sent to the watcher as well
    buy(alice, market, "0.1", "100")
    new = Trade.objects.latest("pk")
    # The ticker and candles of the missed trade's batch may come first.
    kinds, trades = [], []
    while new.pk not in trades:
        event = watcher.next()
        kinds.append(event.event)
        if event.event == "trades":
            trades += [trade["id"] for trade in event.data["trades"]]
    while (event := watcher.next()).event != "candles":  # the new batch's last
        kinds.append(event.event)
    assert trades == [missed.pk, new.pk]  # the missed one, then the new one
    assert "fills" not in kinds
    watcher.close()
    other.close()


def test_the_snapshot_holds_the_users_latest_fills_and_none_comes_again(
    monkeypatch, stream_server, market, alice, bob, funded
):
    monkeypatch.setattr(live, "RECENT_FILLS", 2)
    sell(bob, market, "1", "100")
    for _ in range(3):
        buy(alice, market, "0.1", "100")
    latest = list(Trade.objects.order_by("-pk").values_list("pk", flat=True))[:2]

    client = SseClient(stream_server.port, PATH, headers=key_of(alice))
    snapshot = client.until("snapshot")
    assert [fill["id"] for fill in snapshot.data["fills"]] == latest
    assert {fill["liquidity"] for fill in snapshot.data["fills"]} == {"taker"}
    buy(alice, market, "0.2", "100")
    fills = client.until("fills")
    assert [fill["id"] for fill in fills.data["fills"]] == [
        Trade.objects.order_by("pk").last().pk
    ]
    client.close()


@pytest.mark.reliability("stream-clients")
def test_resuming_from_an_unknown_position_gets_a_fresh_snapshot(
    stream_server, market, alice, bob, funded
):
    sell(bob, market, "1", "100")
    client = SseClient(
        stream_server.port, PATH, headers={"Last-Event-ID": "999999.999999"}
    )
    snapshot = client.until("snapshot")
    assert snapshot.data["book"]["asks"] == [{"price": "100", "quantity": "1"}]
    client.close()
    client = SseClient(stream_server.port, PATH, headers={"Last-Event-ID": "junk"})
    assert "book" in client.until("snapshot").data
    client.close()


@pytest.mark.reliability("stream-clients")
def test_a_last_event_id_of_digits_other_than_ascii_is_taken_for_none(
    stream_server, market, bob, funded
):
    sell(bob, market, "1", "100")
    # Sent as raw bytes (http.client writes latin-1), which ASGI decodes as
    # latin-1: b"\xb2" is '²', a digit to str.isdigit() that int() refuses.
    for value in ("\xb2.1", "1.\xb9", "1" * 19 + ".1", "1." + "1" * 5000):
        client = SseClient(stream_server.port, PATH, headers={"Last-Event-ID": value})
        assert client.status == 200
        snapshot = client.until("snapshot")
        assert snapshot.data["book"]["asks"] == [{"price": "100", "quantity": "1"}]
        assert "trades" in snapshot.data
        client.close()


def test_a_user_channel_of_digits_other_than_ascii_leaves_the_streams_alone(
    stream_server, redis_server, market, alice, bob, funded
):
    client = SseClient(stream_server.port, PATH)
    client.until("snapshot")
    redis_server.client().publish("0:trading.user.\xb2.orders", '{"orders": []}')
    sell(bob, market, "1", "100")
    buy(alice, market, "0.1", "100")

    trades = client.until("trades")
    assert [trade["id"] for trade in trades.data["trades"]] == [Trade.objects.get().pk]
    client.close()


@pytest.mark.reliability("stream-clients")
def test_resuming_from_a_trade_this_database_never_had_still_gets_its_trades(
    stream_server, market, alice, bob, funded
):
    sequence = position_after_a_trade(stream_server, market, alice, bob).split(".")[0]
    known = Trade.objects.get()

    # An id this database never reached: restored from an older backup since,
    # or made up.
    again = SseClient(
        stream_server.port,
        PATH,
        headers={"Last-Event-ID": f"{sequence}.{known.pk + 1000}"},
    )
    snapshot = again.until("snapshot")
    assert [trade["id"] for trade in snapshot.data["trades"]] == [known.pk]
    buy(alice, market, "0.2", "100")
    trades = again.until("trades")
    assert [trade["id"] for trade in trades.data["trades"]] == [
        Trade.objects.order_by("pk").last().pk
    ]
    again.close()


@pytest.mark.reliability("stream-clients")
def test_a_resumed_streams_snapshot_carries_the_position_it_resumed_from(
    stream_server, market, alice, bob, funded
):
    last_id = position_after_a_trade(stream_server, market, alice, bob)
    sequence, trade = (int(part) for part in last_id.split("."))

    again = SseClient(stream_server.port, PATH, headers={"Last-Event-ID": last_id})
    snapshot = again.until("snapshot")
    again.close()
    assert "book" not in snapshot.data  # caught up from the hub instead
    assert snapshot.id == last_id

    sell(bob, market, "2", "101")  # missed: one level update
    third = SseClient(stream_server.port, PATH, headers={"Last-Event-ID": snapshot.id})
    assert third.until("snapshot").id == last_id
    book = third.until("book")
    third.close()
    # Only what followed the position, as the documented bot requires.
    assert [level["sequence"] for level in book.data["levels"]] == [sequence + 1]
    assert book.id == f"{sequence + 1}.{trade}"


@pytest.mark.reliability("stream-clients")
def test_a_client_that_does_not_read_is_told_to_resync_and_disconnected(
    settings, stream_server, redis_server, market
):
    settings.STREAM_QUEUE_SIZE = 8
    slow = SseClient(stream_server.port, PATH, receive_buffer=4096, timeout=30)
    slow.until("snapshot")
    # A flood the client does not read: once the socket buffers are full the
    # server's writes wait, its queue fills, and the stream ends.
    publisher = redis_server.client()
    filler = "x" * 8_000
    # More than the kernel's largest send buffer for the connection can
    # hold, so the server's writes must wait whatever the autotuning.
    tcp_wmem = Path("/proc/sys/net/ipv4/tcp_wmem").read_text().split()
    largest_send_buffer = int(tcp_wmem[2])
    published = largest_send_buffer // len(filler) + 200
    for number in range(published):
        trade = {
            "id": 10**9 + number,
            "price": "1",
            "quantity": "1",
            "quote_amount": "1",
            "taker_side": "buy",
            "note": filler,
        }
        publisher.publish("0:trading.BTC-USDT.trades", json.dumps({"trades": [trade]}))

    received = 0
    while (event := slow.next()) is not None:
        if event.event == "trades":
            received += 1
        last = event
        if event.event == "resync":
            break
    assert last.event == "resync"
    assert last.data == {"reason": "behind"}
    assert received < published
    slow.close()


def _streams_open(port: int, count: int) -> list[SseClient]:
    clients = [SseClient(port, PATH) for _ in range(count)]
    for client in clients:
        client.until("snapshot")
    return clients


def test_open_streams_hold_no_thread_each(stream_server, market):
    # The first stream starts what the process keeps for all (the reading
    # threads, the one for requests' synchronous parts).
    first = _streams_open(stream_server.port, 1)
    before = threading.active_count()

    more = _streams_open(stream_server.port, 20)

    # The reading threads start as they are needed, up to their number.
    assert threading.active_count() <= before + live.READ_THREADS
    for client in first + more:
        client.close()


@pytest.mark.postgres
def test_open_streams_hold_no_database_connection_each(stream_server, market):
    def connected() -> int:
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = "
                "current_database()"
            )
            return cursor.fetchone()[0]

    first = _streams_open(stream_server.port, 1)
    before = connected()

    more = _streams_open(stream_server.port, 20)

    # The reading threads start as they are needed, up to their number, each
    # with its connection; the one of the requests' shared thread may come
    # and go. Twenty streams are far more than that.
    assert connected() <= before + live.READ_THREADS + 1
    for client in first + more:
        client.close()


def test_a_stream_waiting_for_redis_holds_up_no_other_request(
    settings, stream_server, redis_server, market
):
    settings.REDIS_TIMEOUT = 30
    redis_server.pause()
    waiting = http.client.HTTPConnection("127.0.0.1", stream_server.port, timeout=60)
    waiting.request("GET", PATH)
    try:
        # Answered while the first still waits for Redis: nothing of the
        # first request keeps the thread that requests' synchronous parts
        # share (crypto_exchange.asgi).
        other = SseClient(stream_server.port, "/api/v1/markets/NOPE-USDT/stream/")
        assert other.status == 404
        readable, _, _ = select.select([waiting.sock], [], [], 0)
        assert not readable, "the first stream answered before Redis did"
    finally:
        redis_server.resume()
    response = waiting.getresponse()
    assert response.status == 200
    waiting.close()


def test_an_idle_stream_shows_it_is_alive(monkeypatch, stream_server, market):
    monkeypatch.setattr(live, "HEARTBEAT_SECONDS", 0.2)
    client = SseClient(stream_server.port, PATH)
    client.until("snapshot")

    lines = [client.response.readline() for _ in range(4)]

    # A comment line (EventSource ignores it), so that proxies see a live link.
    assert b": keep-alive\n" in lines
    client.close()


# -- Balances: every change reaches the user's stream ---------------------------------


def next_of(client: SseClient, kind: str, *, within: float = 5) -> Event:
    """The next event ``kind``; fails when none comes within ``within``
    seconds (the heartbeat must be short for the deadline to be seen)."""
    deadline = time.monotonic() + within
    seen = []
    while True:
        try:
            event = client.next(deadline=deadline)
        except TimeoutError:
            pytest.fail(f"no {kind} event within {within} s, only {seen}")
        assert event is not None, f"the stream ended before {kind}: {seen}"
        seen.append(event.event)
        if event.event == kind:
            return event


def balance_of(event: Event, token: str) -> tuple[str, str]:
    row = {row["token"]: row for row in event.data["balances"]}[token]
    return row["available"], row["locked"]


def test_an_order_resting_in_the_book_sends_the_balances_it_reserved(
    monkeypatch, stream_server, market, alice, funded
):
    monkeypatch.setattr(live, "HEARTBEAT_SECONDS", 0.2)
    client = SseClient(stream_server.port, PATH, headers=key_of(alice))
    client.until("snapshot")

    buy(alice, market, "1", "90")  # nothing to match: no trade, no release

    assert balance_of(next_of(client, "balances"), "USDT") == ("9910", "90")
    client.close()


def test_a_trade_sends_the_new_balances_once(
    monkeypatch, stream_server, market, alice, bob, funded
):
    monkeypatch.setattr(live, "HEARTBEAT_SECONDS", 0.2)
    sell(bob, market, "1", "100")
    client = SseClient(stream_server.port, PATH, headers=key_of(alice))
    client.until("snapshot")

    buy(alice, market, "0.4", "100")

    kinds = []
    while (event := client.next()).event != "candles":  # the batch's last
        kinds.append(event.event)
        if event.event == "balances":
            assert balance_of(event, "USDT") == ("9960", "0")
    assert kinds.count("balances") == 1, kinds
    client.close()


def test_deposits_and_withdrawals_send_the_balances_they_change(
    monkeypatch, stream_server, market, alice, staff, btc, funded
):
    monkeypatch.setattr(live, "HEARTBEAT_SECONDS", 0.2)
    client = SseClient(stream_server.port, PATH, headers=key_of(alice))
    client.until("snapshot")

    request = functools.partial(
        withdrawal_request, user=alice, token=btc, address="bc1qexample"
    )

    with pytest.raises(InsufficientBalance):
        request(amount=D("100"), reference="too-much")  # rolled back: nothing
    deposit_credit(user=alice, token=btc, amount=D("1"), reference="d-1")
    assert balance_of(next_of(client, "balances"), "BTC") == ("11", "0")
    first = request(amount=D("2"), reference="w-1")
    assert balance_of(next_of(client, "balances"), "BTC") == ("9", "2")
    withdrawal_cancel(user=alice, withdrawal=first)
    assert balance_of(next_of(client, "balances"), "BTC") == ("11", "0")
    # One change at a time: the stream reads the balances as they are when
    # it sends them, and sends none that did not change since.
    second = request(amount=D("3"), reference="w-2")
    assert balance_of(next_of(client, "balances"), "BTC") == ("8", "3")
    withdrawal_reject(withdrawal=second, staff=staff)
    assert balance_of(next_of(client, "balances"), "BTC") == ("11", "0")
    third = request(amount=D("4"), reference="w-3")
    assert balance_of(next_of(client, "balances"), "BTC") == ("7", "4")
    withdrawal_process_start(withdrawal=third, staff=staff)  # no balance moves
    withdrawal_approve(withdrawal=third, staff=staff)
    assert balance_of(next_of(client, "balances"), "BTC") == ("7", "0")
    client.close()


# -- A key or session withdrawn while the stream is open -------------------------------

PRIVATE = {"orders", "fills", "balances"}


def session_of(user) -> tuple[Client, dict[str, str]]:
    """A browser signed in as ``user``, and its cookie as a stream sends it."""
    browser = Client()
    browser.force_login(user)
    cookies = "; ".join(f"{name}={c.value}" for name, c in browser.cookies.items())
    return browser, {"Cookie": cookies}


def rest_of_stream(client: SseClient, *, within: float = 5) -> list[str]:
    """The kinds of the events until the server ends the stream (``resync``
    with its reason), or ``"still open"`` after ``within`` seconds."""
    deadline = time.monotonic() + within
    kinds = []
    try:
        while (event := client.next(deadline=deadline)) is not None:
            kinds.append(event.event)
            if event.event == "resync":
                kinds[-1] += f" {event.data['reason']}"
    except TimeoutError:
        kinds.append("still open")
    client.close()
    return kinds


def assert_ended_as_revoked(kinds: list[str]) -> None:
    assert not PRIVATE & set(kinds), kinds
    assert kinds[-1] == "resync revoked", kinds


@pytest.mark.reliability("access-withdrawn")
def test_a_revoked_key_streams_none_of_its_users_events_and_is_cut_off(
    stream_server, market, alice, bob, funded
):
    api_key, key = api_key_create(user=alice, name="bot", scopes=["read"])
    headers = {"Authorization": f"Api-Key {key}"}
    client = SseClient(stream_server.port, PATH, headers=headers)
    client.until("snapshot")

    api_key_revoke(user=alice, api_key=api_key)
    sell(bob, market, "1", "100")
    buy(alice, market, "0.5", "100")

    assert_ended_as_revoked(rest_of_stream(client))
    again = SseClient(stream_server.port, PATH, headers=headers)
    assert again.status == 401
    assert again.json()["error"]["code"] == "api_key_revoked"


@pytest.mark.reliability("access-withdrawn")
def test_a_session_ended_elsewhere_streams_none_of_its_users_events(
    stream_server, market, alice, bob, funded
):
    _, headers = session_of(alice)
    client = SseClient(stream_server.port, PATH, headers=headers)
    assert "orders" in client.until("snapshot").data

    other_browser, _ = session_of(alice)
    ended = other_browser.post(reverse("accounts:sessions_end_others"))
    assert ended.status_code == 302
    sell(bob, market, "1", "100")
    buy(alice, market, "0.5", "100")

    assert_ended_as_revoked(rest_of_stream(client))
    # The browser reconnects signed out: the market's events only.
    again = SseClient(stream_server.port, PATH, headers=headers)
    assert "orders" not in again.until("snapshot").data
    again.close()


@pytest.mark.reliability("access-withdrawn")
@pytest.mark.parametrize("credential", ["key", "session"])
def test_a_disabled_account_streams_none_of_its_events(
    credential, stream_server, market, alice, bob, funded
):
    headers = key_of(alice) if credential == "key" else session_of(alice)[1]
    client = SseClient(stream_server.port, PATH, headers=headers)
    client.until("snapshot")
    buy(alice, market, "0.5", "100")
    client.until("orders")  # hers while the account is active,
    client.until("balances")  # and what the order reserved

    alice.is_active = False
    alice.save(update_fields=["is_active"])
    sell(bob, market, "0.5", "100")  # fills her resting order

    assert_ended_as_revoked(rest_of_stream(client))


@pytest.mark.reliability("access-withdrawn")
def test_an_idle_stream_is_cut_off_at_the_next_heartbeat(
    monkeypatch, stream_server, market, alice
):
    monkeypatch.setattr(live, "HEARTBEAT_SECONDS", 0.2)
    api_key, key = api_key_create(user=alice, name="bot", scopes=["read"])
    client = SseClient(
        stream_server.port, PATH, headers={"Authorization": f"Api-Key {key}"}
    )
    client.until("snapshot")

    api_key_revoke(user=alice, api_key=api_key)

    # Nothing happens on the market, and nothing is published: the stream
    # still ends, well before the client's 10 s read timeout.
    assert_ended_as_revoked(rest_of_stream(client))


@pytest.mark.parametrize("credential", ["key", "session"])
def test_a_stream_still_signed_in_lives_on_through_its_heartbeats(
    credential, monkeypatch, stream_server, market, alice, bob, funded
):
    monkeypatch.setattr(live, "HEARTBEAT_SECONDS", 0.1)
    headers = key_of(alice) if credential == "key" else session_of(alice)[1]
    client = SseClient(stream_server.port, PATH, headers=headers)
    client.until("snapshot")
    keep_alives = 0
    while keep_alives < 5:
        line = client.response.readline()
        assert line, "the stream ended"
        keep_alives += line == b": keep-alive\n"

    sell(bob, market, "1", "100")
    buy(alice, market, "0.5", "100")

    assert client.until("fills").data["fills"][0]["liquidity"] == "taker"
    client.close()
