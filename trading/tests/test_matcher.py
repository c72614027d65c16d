"""The matcher and the request side around it: what the database holds after
each command, stop orders, amends, cancel-all, answers, waiting, failures."""

from __future__ import annotations

import logging
import subprocess
import sys
import threading
import time
from decimal import Decimal as D

import pytest
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext

from tests.factories import (
    balance,
    buy,
    cancel,
    fund,
    market_make,
    sell,
    token_make,
    user_make,
)
from trading.exceptions import (
    BalanceLimitExceeded,
    InsufficientBalance,
    InvalidOrder,
    OrderNotOpen,
)
from trading.invariants import ledger_problems
from trading.matcher import FileLocks, drain, engine_rebuild
from trading.models import (
    Balance,
    CommandRefusal,
    LedgerTransaction,
    MatcherState,
    Order,
    OrderCommand,
    Trade,
)
from trading.orders import (
    command_refusal,
    order_amend,
    order_cancel,
    order_place,
    order_refusal,
    order_wait,
    orders_cancel_all,
)

pytestmark = pytest.mark.django_db
Status = Order.Status


def accept(user, market, side, quantity, price, **fields) -> Order:
    """Accept a limit order without matching it."""
    return order_place(
        user=user,
        market=market,
        side=side,
        type=fields.pop("type", "limit"),
        quantity=D(quantity),
        price=D(price),
        **fields,
    )


# -- Accepting -------------------------------------------------------------------------


def test_an_accepted_order_reserves_its_funds_and_waits_in_the_queue(
    market, alice, usdt, funded
):
    order = accept(alice, market, "buy", "1", "100")

    assert (order.status, order.locked, order.priority_sequence) == (
        Status.ACCEPTED,
        D("100"),
        None,
    )
    assert balance(alice, usdt) == (D("9900"), D("100"))
    command = OrderCommand.objects.get()
    assert (command.kind, command.order_id) == ("place", order.pk)
    reservation = LedgerTransaction.objects.get(order=order)
    assert reservation.kind == LedgerTransaction.Kind.ORDER_PLACE

    assert drain(market_id=market.pk) == 1

    order.refresh_from_db()
    assert (order.status, order.priority_sequence) == (Status.OPEN, 1)
    assert not OrderCommand.objects.exists()


def test_commands_are_matched_in_acceptance_order_in_one_batch(
    market, alice, bob, carol, funded
):
    first = accept(alice, market, "sell", "0.5", "100")
    second = accept(carol, market, "sell", "0.5", "100")
    taker = accept(bob, market, "buy", "0.6", "100")

    drain(market_id=market.pk)

    assert list(
        Trade.objects.order_by("pk").values_list("maker_order_id", "quantity")
    ) == [(first.pk, D("0.5")), (second.pk, D("0.1"))]
    for order in (first, second, taker):
        order.refresh_from_db()
    assert [o.priority_sequence for o in (first, second, taker)] == [1, 2, 3]
    assert (first.status, second.status, taker.status) == ("filled", "open", "filled")
    # One batch, whatever its size: twice the commands and trades cost no
    # more queries (once the matcher holds the book).
    for user in (alice, carol):
        accept(user, market, "sell", "0.5", "100")
        accept(user, market, "sell", "0.5", "100")
    accept(bob, market, "buy", "0.6", "100")
    accept(bob, market, "buy", "0.6", "100")
    with CaptureQueriesContext(connection) as twice:
        assert drain(market_id=market.pk) == 6
    accept(alice, market, "sell", "0.5", "100")
    accept(bob, market, "buy", "0.2", "100")
    accept(carol, market, "sell", "0.5", "100")
    with CaptureQueriesContext(connection) as once:
        assert drain(market_id=market.pk) == 3
    assert len(twice) == len(once)


@pytest.mark.reliability("outcome-late-matcher")
def test_a_command_that_became_visible_late_is_still_taken_after_later_ones(
    market, alice, bob, funded
):
    early = accept(alice, market, "sell", "1", "101")
    drain(market_id=market.pk)
    late = accept(bob, market, "sell", "1", "101")
    # As if its transaction had committed after the one above was matched:
    # its row has the lower id.
    OrderCommand.objects.filter(order=late).update(id=1)

    drain(market_id=market.pk)

    early.refresh_from_db()
    late.refresh_from_db()
    assert late.status == Status.OPEN
    assert late.priority_sequence > early.priority_sequence


def test_the_matcher_gives_time_priority_when_it_takes_a_command(
    market, alice, bob, carol, funded
):
    older = accept(alice, market, "sell", "0.5", "100")
    newer = accept(carol, market, "sell", "0.5", "100")
    # older's row is taken last (a higher id): newer is first in time.
    OrderCommand.objects.filter(order=older).update(id=10_000)

    drain(market_id=market.pk)
    taker = buy(bob, market, "0.5", "100")

    assert Trade.objects.get().maker_order_id == newer.pk
    older.refresh_from_db()
    assert (older.status, taker.status) == (Status.OPEN, Status.FILLED)


def test_the_request_side_never_creates_a_balance_row_but_the_matcher_does(
    market, alice, btc, usdt
):
    fund(alice, btc, "1")
    newcomer = user_make("newcomer")
    fund(newcomer, usdt, "100")
    sell(alice, market, "1", "100")
    assert not Balance.objects.filter(user=newcomer, token=btc).exists()

    buy(newcomer, market, "1", "100")

    assert balance(newcomer, btc) == (D("0.998"), D("0"))


@pytest.mark.reliability("race-cancel")
def test_an_acknowledged_cancel_may_find_the_order_filled(
    market, alice, bob, btc, funded
):
    resting = sell(alice, market, "1", "100")
    accept(bob, market, "buy", "1", "100")  # queued first
    command = order_cancel(user=alice, order=resting)  # then the cancel

    drain(market_id=market.pk)

    resting.refresh_from_db()
    assert resting.status == Status.FILLED
    refusal = command_refusal(command)
    assert isinstance(refusal, OrderNotOpen)
    assert "filled or closed first" in refusal.message
    assert CommandRefusal.objects.get().code == "order_not_open"


def test_a_rejected_orders_client_order_id_is_free_at_once(market, alice, bob, funded):
    sell(bob, market, "1", "100")
    with pytest.raises(Exception, match="post-only"):
        buy(alice, market, "1", "100", post_only=True, client_order_id="x")

    again = buy(alice, market, "1", "99", post_only=True, client_order_id="x")

    assert again.status == Status.OPEN


# -- Stop-limit orders, amends, cancel-all ---------------------------------------------


def test_a_stop_limit_order_waits_outside_the_book_until_a_trade_reaches_it(
    market, alice, bob, carol, usdt, funded
):
    stop = buy(alice, market, "1", "105", type="stop_limit", stop_price="101")
    assert (stop.status, stop.locked) == (Status.WAITING, D("105"))
    assert balance(alice, usdt) == (D("9895"), D("105"))
    # A restarted matcher holds it too.
    assert [o.id for o in engine_rebuild(market.pk).waiting_orders()] == [stop.pk]

    sell(carol, market, "2", "101")
    buy(bob, market, "1", "101")  # trades at 101: the stop triggers

    stop.refresh_from_db()
    assert (stop.status, stop.filled_quantity) == (Status.FILLED, D("1"))
    assert Trade.objects.filter(taker_order=stop).get().price == D("101")
    assert balance(alice, usdt) == (D("9899"), D("0"))  # 4 back: it paid 101
    assert MatcherState.objects.get(market=market).last_price == D("101")


def test_an_amend_to_a_smaller_quantity_keeps_the_orders_place(
    market, alice, bob, carol, usdt, funded
):
    first = buy(alice, market, "1", "100")
    buy(carol, market, "1", "100")

    command = order_amend(user=alice, order=first, quantity=D("0.4"))
    drain(market_id=market.pk)
    sell(bob, market, "0.4", "100")

    first.refresh_from_db()
    assert command_refusal(command) is None
    assert (first.quantity, first.status) == (D("0.4"), Status.FILLED)
    assert balance(alice, usdt) == (D("9960"), D("0"))


def test_an_amend_to_a_higher_price_reserves_more_and_queues_again(
    market, alice, bob, carol, usdt, funded
):
    first = buy(alice, market, "1", "100")
    second = buy(carol, market, "1", "100")

    order_amend(user=alice, order=first, price=D("100.5"))
    assert balance(alice, usdt) == (D("9899.5"), D("100.5"))  # 0.5 more, at once
    drain(market_id=market.pk)
    first.refresh_from_db()
    assert (first.price, first.locked) == (D("100.5"), D("100.5"))
    # Back to 100: behind carol now, and the 0.5 comes back.
    order_amend(user=alice, order=first, price=D("100"))
    drain(market_id=market.pk)
    sell(bob, market, "1", "100")

    second.refresh_from_db()
    first.refresh_from_db()
    assert (second.status, first.status) == (Status.FILLED, Status.OPEN)
    assert balance(alice, usdt) == (D("9900"), D("100"))


def test_an_amend_to_a_larger_quantity_reserves_the_difference(
    market, alice, bob, usdt, funded
):
    order = buy(alice, market, "1", "100")
    command = order_amend(user=alice, order=order, quantity=D("2"))
    assert balance(alice, usdt) == (D("9800"), D("200"))
    sell(bob, market, "1", "100")  # queued after the amend: fills 1 of 2

    order.refresh_from_db()
    assert command_refusal(command) is None
    assert (order.quantity, order.filled_quantity, order.locked) == (
        D("2"),
        D("1"),
        D("100"),
    )
    cancel(alice, order)
    assert balance(alice, usdt) == (D("9900"), D("0"))
    # An amend of a closed order is refused at once.
    with pytest.raises(OrderNotOpen):
        order_amend(user=alice, order=order, quantity=D("3"))


@pytest.mark.reliability("race-cancel")
def test_an_amend_racing_a_fill_is_refused_and_gives_its_reservation_back(
    market, alice, bob, usdt, funded
):
    order = buy(alice, market, "1", "100")
    accept(bob, market, "sell", "1", "100")  # fills it, queued first
    command = order_amend(user=alice, order=order, price=D("101"))
    assert balance(alice, usdt)[1] == D("101")

    drain(market_id=market.pk)

    assert isinstance(command_refusal(command), OrderNotOpen)
    assert balance(alice, usdt) == (D("9900"), D("0"))


def test_cancel_all_cancels_every_live_order_of_the_user_in_every_market(
    market, btc, usdt, alice, bob, funded
):
    eth = token_make("ETH")
    other = market_make(eth, usdt)
    fund(alice, eth, "5")
    mine = [
        buy(alice, market, "1", "90"),
        sell(alice, market, "1", "110"),
        sell(alice, other, "1", "50"),
        buy(alice, market, "1", "105", type="stop_limit", stop_price="120"),
    ]
    theirs = buy(bob, market, "1", "80")

    commands = orders_cancel_all(user=alice)
    assert len(commands) == 2
    for command in commands:
        drain(market_id=command.market_id)

    assert {o.status for o in Order.objects.filter(user=alice)} == {Status.CANCELLED}
    assert all(balance(alice, token)[1] == 0 for token in (btc, usdt, eth))
    theirs.refresh_from_db()
    assert theirs.status == Status.OPEN
    assert len(mine) == 4


def test_self_trade_prevention_can_cancel_the_resting_order(market, alice, bob, funded):
    own = sell(alice, market, "0.5", "100")
    other = sell(bob, market, "0.5", "100")

    order = buy(alice, market, "0.5", "100", self_trade="cancel_oldest")

    own.refresh_from_db()
    assert (own.status, own.cancel_reason) == (Status.CANCELLED, "self_trade")
    assert order.status == Status.FILLED
    assert Trade.objects.get().maker_order_id == other.pk


# -- What the matcher cannot apply -----------------------------------------------------


@pytest.mark.reliability("matcher-write-failed")
def test_a_command_the_matcher_cannot_apply_is_refused_alone(
    market, alice, bob, carol, usdt, funded, engine_bug
):
    good = accept(alice, market, "sell", "1", "100")
    bad = accept(bob, market, "buy", "1", "99")
    after = accept(carol, market, "buy", "1", "100")

    engine_bug(bad)
    drain(market_id=market.pk)

    for order in (good, bad, after):
        order.refresh_from_db()
    assert (bad.status, bad.reject_reason, bad.locked) == (
        Status.REJECTED,
        "matcher_error",
        D("0"),
    )
    assert (good.status, after.status) == (Status.FILLED, Status.FILLED)
    assert balance(bob, usdt) == (D("10000"), D("0"))
    assert not OrderCommand.objects.exists()


def _published(subscriber, *, until: int, seconds: float = 5) -> list[tuple]:
    """(channel, body) of what ``subscriber`` receives: ``until`` messages,
    or what came within ``seconds``."""
    import json

    messages = []
    deadline = time.monotonic() + seconds
    while len(messages) < until and time.monotonic() < deadline:
        message = subscriber.get_message(timeout=0.1)
        if message and message["type"] == "pmessage":
            messages.append((message["channel"].decode(), json.loads(message["data"])))
    return messages


def _subscribed(redis_server, user):
    subscriber = redis_server.client().pubsub()
    subscriber.psubscribe(f"0:trading.user.{user.pk}.*")
    assert subscriber.get_message(timeout=5)["type"] == "psubscribe"
    return subscriber


@pytest.mark.reliability("matcher-write-failed")
def test_a_command_the_matcher_refuses_is_published_once_committed(
    settings, redis_server, market, bob, usdt, funded, engine_bug
):
    settings.REDIS_URL = redis_server.url
    subscriber = _subscribed(redis_server, bob)
    bad = accept(bob, market, "buy", "1", "99")
    engine_bug(bad)

    drain(market_id=market.pk)

    messages = _published(subscriber, until=2)
    subscriber.close()
    assert messages == [
        (
            f"0:trading.user.{bob.pk}.orders",
            {
                "orders": [
                    {
                        "id": bad.pk,
                        "status": "rejected",
                        "reason": "matcher_error",
                        "filled_quantity": "0",
                        "executed_value": "0",
                        "fee": "0",
                        "locked": "0",
                    }
                ]
            },
        ),
        (
            f"0:trading.user.{bob.pk}.balances",
            {"balances": [{"token_id": usdt.pk, "available": "10000", "locked": "0"}]},
        ),
    ]


@pytest.mark.reliability("matcher-without-redis")
def test_a_paused_redis_holds_the_matcher_once_per_retry_period_not_once_a_batch(
    settings, monkeypatch, caplog, redis_server, market, alice, bob, funded
):
    from trading import events

    settings.REDIS_URL = redis_server.url
    settings.REDIS_TIMEOUT = 0.3
    monkeypatch.setattr(events, "RETRY_AFTER", 3.0)
    caplog.set_level(logging.INFO, logger="trading.events")

    def batch() -> None:
        accept(bob, market, "sell", "0.01", "100")
        accept(alice, market, "buy", "0.01", "100")
        assert drain(market_id=market.pk) == 2

    def redis_counts() -> tuple[int, int]:
        """The connections Redis has taken (this one's included) and the
        PUBLISH commands it has run."""
        with redis_server.client() as client:
            connections = client.info("stats")["total_connections_received"]
            stats = client.info("commandstats").get("cmdstat_publish", {})
        return connections, stats.get("calls", 0)

    batch()  # Redis up: the connection is open before the pause
    before = redis_counts()
    redis_server.pause()
    try:
        for _ in range(5):
            batch()
    finally:
        redis_server.resume()
    after = redis_counts()
    subscriber = _subscribed(redis_server, bob)
    time.sleep(events.RETRY_AFTER)
    batch()  # published again

    assert Trade.objects.count() == 7
    # The first batch while Redis was paused went out on the open connection
    # (Redis ran it once resumed) and waited one REDIS_TIMEOUT; the next four
    # did not even connect: only the counting itself did.
    assert (after[0] - before[0], after[1] - before[1]) == (1, before[1])
    channels = [channel for channel, _ in _published(subscriber, until=2)]
    subscriber.close()
    assert channels == [
        f"0:trading.user.{bob.pk}.orders",
        f"0:trading.user.{bob.pk}.balances",
    ]
    logged = [(r.getMessage(), r.exc_info) for r in caplog.records]
    assert logged == [
        ("events not published: Redis unreachable", None),
        ("events published again", None),
    ]
    assert caplog.records[-1].batches_unpublished == 5


@pytest.mark.reliability("matcher-without-redis")
@pytest.mark.django_db(transaction=True)
def test_a_stream_that_missed_events_while_redis_was_paused_starts_again(
    settings, monkeypatch, stream_server, redis_server, market, bob, funded
):
    from trading import events
    from trading.tests.streaming import SseClient

    settings.REDIS_TIMEOUT = 0.3
    monkeypatch.setattr(events, "RETRY_AFTER", 1.0)
    path = f"/api/v1/markets/{market.symbol}/stream/"
    client = SseClient(stream_server.port, path)
    client.until("snapshot")

    redis_server.pause()
    try:
        sell(bob, market, "1", "101")  # sent, then the wait for Redis times out
        sell(bob, market, "1", "102")  # not sent
    finally:
        redis_server.resume()
    time.sleep(events.RETRY_AFTER)
    sell(bob, market, "1", "103")

    books = []
    while (event := client.next()).event != "resync":
        if event.event == "book":
            books += [level["price"] for level in event.data["levels"]]
    client.close()
    # The next update shows that one is missing: the stream ends for the
    # client to start again.
    assert "102" not in books
    assert event.data == {"reason": "gap"}
    again = SseClient(stream_server.port, path, headers={"Last-Event-ID": event.id})
    asks = again.until("snapshot").data["book"]["asks"]
    again.close()
    assert [ask["price"] for ask in asks] == ["101", "102", "103"]


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_a_refusal_whose_transaction_is_lost_publishes_nothing(
    settings, redis_server, market, bob, usdt, funded, engine_bug
):
    from django.db import InterfaceError, OperationalError

    from trading.tests.db_faults import backend_killed

    settings.REDIS_URL = redis_server.url
    subscriber = _subscribed(redis_server, bob)
    bad = accept(bob, market, "buy", "1", "99")
    engine_bug(bad)

    def last_write(sql: str) -> bool:  # the queue row, after the rest
        return sql.startswith('DELETE FROM "trading_ordercommand"')

    with (
        backend_killed("before", last_write),
        pytest.raises((OperationalError, InterfaceError)),
    ):
        drain(market_id=market.pk)

    assert _published(subscriber, until=1, seconds=1) == []
    bad.refresh_from_db()
    assert (bad.status, balance(bob, usdt)) == (Status.ACCEPTED, (D("9901"), D("99")))
    # Refused again once the database is back: now committed, and published.
    drain(market_id=market.pk)
    channels = [channel for channel, _ in _published(subscriber, until=2)]
    subscriber.close()
    assert channels == [
        f"0:trading.user.{bob.pk}.orders",
        f"0:trading.user.{bob.pk}.balances",
    ]


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_a_refusal_wakes_the_requests_waiting_on_its_market(
    market, bob, funded, engine_bug
):
    # A request waits for its command's outcome on the market's channel; the
    # refusal must be announced there as a batch is, not found at the timeout.
    import psycopg

    from trading.orders import notify_channel

    bad = accept(bob, market, "buy", "1", "99")
    engine_bug(bad)
    params = connection.get_connection_params()
    with psycopg.connect(**params, autocommit=True) as listener:
        listener.execute(f'LISTEN "{notify_channel(market.pk)}"')

        drain(market_id=market.pk)

        told = list(listener.notifies(timeout=10, stop_after=1))
    assert [note.channel for note in told] == [notify_channel(market.pk)]
    assert Order.objects.get(pk=bad.pk).reject_reason == "matcher_error"


# -- A balance's ceiling ---------------------------------------------------------------

# Bob holds 6 x 10^17 USDT more and rests a sell of 1 BTC at 8 x 10^17: a
# trade with it would take his USDT past what a balance holds (less than
# 10^18). The write overflowed on PostgreSQL: a matcher_error telling the
# buyer to try again, which could never succeed.
CEILING_PRICE = "800000000000000000"


def _near_the_ceiling(market, alice, bob, usdt) -> Order:
    fund(bob, usdt, "600000000000000000")
    fund(alice, usdt, CEILING_PRICE)
    return sell(bob, market, "1", CEILING_PRICE)


def test_a_trade_that_would_take_a_balance_to_10_18_is_refused_alone_for_that(
    market, alice, bob, carol, btc, usdt, funded
):
    resting = _near_the_ceiling(market, alice, bob, usdt)
    before = {user: balance(user, usdt) for user in (alice, bob)}
    crossing = accept(alice, market, "buy", "1", CEILING_PRICE)
    other = accept(carol, market, "buy", "1", "99")  # in the same batch

    drain(market_id=market.pk)

    for order in (resting, crossing, other):
        order.refresh_from_db()
    assert (crossing.status, crossing.reject_reason, crossing.locked) == (
        Status.REJECTED,
        "balance_limit",
        D("0"),
    )
    refusal = order_refusal(crossing)
    assert (refusal.code, type(refusal)) == ("balance_limit", BalanceLimitExceeded)
    assert "10^18" in refusal.message and "try again" not in refusal.message
    assert (resting.status, resting.filled_quantity) == (Status.OPEN, D("0"))
    assert other.status == Status.OPEN
    assert not Trade.objects.exists()
    assert {user: balance(user, usdt) for user in (alice, bob)} == before
    assert (balance(alice, btc), balance(bob, btc)) == (
        (D("10"), D("0")),
        (D("9"), D("1")),
    )
    assert not OrderCommand.objects.exists()
    assert ledger_problems() == []


def test_an_amend_whose_trade_would_take_a_balance_to_10_18_is_refused(
    market, alice, bob, usdt, funded
):
    _near_the_ceiling(market, alice, bob, usdt)
    order = buy(alice, market, "1", "10000")  # SQLite's floats hold the sums
    before = balance(alice, usdt)

    command = order_amend(user=alice, order=order, price=D(CEILING_PRICE))
    drain(market_id=market.pk)

    refusal = command_refusal(command)
    assert (refusal.code, type(refusal)) == ("balance_limit", BalanceLimitExceeded)
    order.refresh_from_db()
    assert (order.status, order.price, order.locked) == (
        Status.OPEN,
        D("10000"),
        D("10000"),
    )
    assert balance(alice, usdt) == before  # the amend's reservation is back
    assert not Trade.objects.exists()
    assert ledger_problems() == []


# -- Answers ---------------------------------------------------------------------------


@pytest.mark.reliability("outcome-late-matcher")
def test_the_api_answers_202_with_the_orders_url_when_the_matcher_is_late(
    settings, market, alice, funded
):
    from tests.factories import key_client
    from trading.tests.test_api import limit_order

    settings.ORDER_MATCH_INLINE = False
    settings.ORDER_RESULT_WAIT_SECONDS = 0.05
    client = key_client(alice, "trade")

    response = client.post("/api/v1/orders/", limit_order(), format="json")

    assert response.status_code == 202
    body = response.json()
    assert body["status"] == "accepted"
    assert response["Location"] == body["url"] == f"/api/v1/orders/{body['id']}/"
    assert client.get(body["url"]).json()["status"] == "accepted"
    drain(market_id=market.pk)
    assert client.get(body["url"]).json()["status"] == "open"

    cancelled = client.delete(body["url"])
    assert (cancelled.status_code, cancelled.json()["status"]) == (202, "open")
    drain(market_id=market.pk)
    assert client.get(body["url"]).json()["status"] == "cancelled"


def test_the_api_acknowledges_at_once_when_asked(market, alice, funded):
    from tests.factories import key_client
    from trading.tests.test_api import limit_order

    client = key_client(alice, "trade")

    response = client.post(
        "/api/v1/orders/", {**limit_order(), "response": "ack"}, format="json"
    )

    assert (response.status_code, response.json()["status"]) == (202, "accepted")


def test_the_api_amends_and_cancels_all(market, alice, usdt, funded):
    from tests.factories import key_client
    from trading.tests.test_api import limit_order

    client = key_client(alice, "trade")
    order = client.post("/api/v1/orders/", limit_order(), format="json").json()

    amended = client.patch(order["url"], {"price": "99"}, format="json")
    assert (amended.status_code, amended.json()["price"]) == (200, "99")
    refused = client.patch(order["url"], {"quantity": "0.00001"}, format="json")
    assert refused.json()["error"]["code"] == "precision_too_high"

    response = client.post("/api/v1/orders/cancel-all/", {}, format="json")
    assert response.status_code == 200
    assert response.json()["done"] is True
    assert [o["id"] for o in response.json()["cancelled"]] == [order["id"]]
    assert balance(alice, usdt) == (D("10000"), D("0"))


@pytest.mark.reliability("outcome-late-matcher")
def test_the_web_form_says_accepted_when_the_matcher_is_late(
    settings, client, market, alice, funded
):
    settings.ORDER_MATCH_INLINE = False
    settings.ORDER_RESULT_WAIT_SECONDS = 0
    client.force_login(alice)

    response = client.post(
        f"/markets/{market.symbol}/orders/",
        {
            "side": "buy",
            "type": "limit",
            "price": "100",
            "quantity": "1",
            "time_in_force": "GTC",
        },
        follow=True,
    )

    assert "accepted, and waiting for the matcher" in response.content.decode()
    drain(market_id=market.pk)


def test_a_market_buy_from_the_web_form_by_amount_to_spend(
    client, market, alice, bob, btc, funded
):
    sell(bob, market, "1", "100")
    client.force_login(alice)

    response = client.post(
        f"/markets/{market.symbol}/orders/",
        {"side": "buy", "type": "market", "quote_amount": "50", "time_in_force": "GTC"},
        follow=True,
    )

    assert "filled" in response.content.decode()
    assert balance(alice, btc)[0] == D("10") + D("0.5") - D("0.001")


def test_refusals_at_acceptance_keep_their_codes(market, alice, funded):
    with pytest.raises(InsufficientBalance):
        buy(alice, market, "1000", "100")
    with pytest.raises(InvalidOrder):
        buy(alice, market, "1", None, quote_amount="10", protection_price="100")
    with pytest.raises(InvalidOrder):
        buy(alice, market, "1", "100", type="stop_limit")
    assert not Order.objects.exists()


@pytest.mark.reliability("probes")
def test_readiness_reports_each_markets_queue_age(settings, market, alice, funded):
    accept(alice, market, "buy", "1", "100")
    OrderCommand.objects.update(
        created_at=OrderCommand.objects.get().created_at.replace(year=2020)
    )

    body = Client().get("/readyz/").json()
    assert body["checks"]["matcher_queues"] == "ok"
    assert body["matcher_queue_seconds"]["BTC-USDT"] > 3600

    settings.MATCHER_QUEUE_MAX_AGE_SECONDS = 30
    response = Client().get("/readyz/")
    assert response.status_code == 503
    assert response.json()["checks"]["matcher_queues"] == "failing"
    drain(market_id=market.pk)


# -- Waking and exclusivity ------------------------------------------------------------


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_a_waiting_request_is_woken_by_the_matchers_notification(settings):
    from trading.tests.test_concurrency import MatcherThread

    btc, usdt = token_make("BTC"), token_make("USDT", decimals=6)
    market = market_make(btc, usdt)
    alice = user_make("alice")
    fund(alice, usdt, "1000")
    settings.ORDER_MATCH_INLINE = False
    settings.ORDER_RESULT_WAIT_SECONDS = 20

    with MatcherThread(market.symbol):
        started = time.monotonic()
        order = order_wait(order=accept(alice, market, "buy", "1", "100"))
        took = time.monotonic() - started

    assert order.status == Status.OPEN
    assert took < 5  # the matcher answers in milliseconds; the wait is 20 s


@pytest.mark.reliability("matcher-killed")
def test_on_sqlite_a_matchers_file_lock_dies_with_its_process(tmp_path):
    database = tmp_path / "db.sqlite3"
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import fcntl, os, sys\n"
            f"f = os.open('{database}.matcher-7.lock', os.O_RDWR | os.O_CREAT)\n"
            "fcntl.flock(f, fcntl.LOCK_EX)\n"
            "print('held', flush=True)\n"
            "sys.stdin.read()\n",
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout.readline() == "held\n"
        locks = FileLocks(prefix=str(database))
        assert locks.try_acquire(7) is False
        holder.kill()
        holder.wait(timeout=10)
        assert locks.try_acquire(7) is True
        assert FileLocks(prefix=str(database)).try_acquire(7) is False
        locks.release(7)
    finally:
        if holder.poll() is None:
            holder.kill()


@pytest.mark.django_db(transaction=True)
@pytest.mark.reliability("matcher-killed")
def test_drain_is_refused_while_another_matcher_owns_the_market():
    from django.db import connections

    from trading.matcher import market_locks

    market = market_make(token_make("BTC"), token_make("USDT", decimals=6))
    held, done = threading.Event(), threading.Event()

    def other_matcher() -> None:  # its own connection, as another process
        locks = market_locks()
        assert locks.try_acquire(market.pk)
        held.set()
        done.wait(timeout=30)
        locks.release(market.pk)
        connections.close_all()

    thread = threading.Thread(target=other_matcher)
    thread.start()
    try:
        assert held.wait(timeout=30)
        with pytest.raises(RuntimeError):
            drain(market_id=market.pk)
    finally:
        done.set()
        thread.join(timeout=30)
    assert drain(market_id=market.pk) == 0


def test_events_are_published_on_redis_after_the_batch_commits(
    settings, market, alice, bob, funded
):
    import json

    import redis

    settings.REDIS_URL = "redis://127.0.0.1:6379/0"
    subscriber = redis.Redis.from_url(settings.REDIS_URL).pubsub()
    subscriber.psubscribe("0:trading.BTC-USDT.*", f"0:trading.user.{alice.pk}.*")
    try:
        maker = sell(bob, market, "1", "100")
        taker = buy(alice, market, "0.4", "100")
        messages = []
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            message = subscriber.get_message(timeout=0.2)
            if message and message["type"] == "pmessage":
                messages.append(
                    (message["channel"].decode(), json.loads(message["data"]))
                )
    finally:
        subscriber.close()

    trades = [body for channel, body in messages if channel.endswith(".trades")]
    trade = Trade.objects.get()
    assert {
        "id": trade.pk,
        "price": "100",
        "quantity": "0.4",
        "quote_amount": "40",
        "taker_side": "buy",
        "time": trade.created_at.isoformat().replace("+00:00", "Z"),
    } in [row for body in trades for row in body["trades"]]
    levels = [
        row
        for channel, body in messages
        if channel == "0:trading.BTC-USDT.book"
        for row in body["levels"]
    ]
    assert [(row["side"], row["price"], row["quantity"]) for row in levels][-2:] == [
        ("sell", "100", "1"),
        ("sell", "100", "0.6"),
    ]
    sequences = [row["sequence"] for row in levels][-2:]
    assert sequences[1] == sequences[0] + 1
    orders = [
        row
        for channel, body in messages
        if channel == f"0:trading.user.{alice.pk}.orders"
        for row in body["orders"]
    ]
    assert {"id": taker.pk, "status": "filled"}.items() <= orders[-1].items()
    balances = [
        body for channel, body in messages if channel.endswith(f"{alice.pk}.balances")
    ]
    assert balances and maker.pk
