"""App instances killed (SIGKILL) and stopped (SIGTERM) behind nginx under traffic.

nginx round robin over three gunicorn instances of this checkout, the order
matcher (``manage.py run_matcher``, which the topology starts), PostgreSQL and
the suite's S3 server (the loopback topology of scripts/topology).
Members keep uploading profile pictures (from script, with their session),
placing limit orders through the API with a key of ``trade`` scope, and
loading the market page, all through nginx, while one instance is killed
outright (SIGKILL to all its processes, as when its container dies) and then
another is stopped (SIGTERM: gunicorn finishes what its workers hold).

So that a request is certainly in flight on the instance when it goes, the
matcher is paused (SIGSTOP) for a moment first: an order request then waits
in its worker for the result (ORDER_RESULT_WAIT_SECONDS), and one is sent to
the instance directly, as nginx would pass it on; the signal goes once that
order is accepted.

One run for the module; each test checks one thing that must hold.
"""

from __future__ import annotations

import json
import os
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

import psycopg
import pytest

from scripts.browser import Browser, Response
from scripts.processes import STOP_TIMEOUT
from scripts.tests.traffic import WAIT_TIMEOUT, Member, Sent, Traffic
from scripts.topology import DEFAULT_AVATAR, SCENARIO_UPLOAD_RATE, Instance, Topology

pytestmark = pytest.mark.postgres

MEMBERS = 3
WORKERS = 2  # per instance
MARKET = "BTC-USDT"
MARKET_PAGE = f"/markets/{MARKET}/"
ORDERS = "/api/v1/orders/"
# Through the real services, as staff and the sign-up would: tokens, a market,
# each member's address verified, funds deposited and an API key to trade.
SETUP = """
import json
from decimal import Decimal
from allauth.account.models import EmailAddress
from django.contrib.auth import get_user_model
from tokens.services import token_create
from trading.api_keys import api_key_create
from trading.services import deposit_credit, market_create

btc = token_create(name="Bitcoin", symbol="BTC", decimals=8)
usdt = token_create(name="Tether", symbol="USDT", decimals=6)
market_create(
    base=btc, quote=usdt, price_step=Decimal("0.01"), amount_step=Decimal("0.0001"),
    min_notional=Decimal("1"), maker_fee=Decimal("0.001"), taker_fee=Decimal("0.002"),
)
keys = {}
for username in USERNAMES:
    user = get_user_model().objects.get(username=username)
    EmailAddress.objects.filter(user=user).update(verified=True)
    for token, amount in ((btc, "1000"), (usdt, "1000000")):
        deposit_credit(
            user=user, token=token, amount=Decimal(amount),
            reference=f"faults-{username}-{token.symbol}",
        )
    keys[username] = api_key_create(user=user, name="faults", scopes=["trade"])[1]
print("KEYS", json.dumps(keys))
"""


class Trader:
    """A member who also trades through the API with a key of its own."""

    def __init__(self, member: Member, key: str) -> None:
        self.member = member
        self.key = key
        self.api = Browser(
            member.browser.port, client_address=member.browser.client_address
        )
        self.orders = 0

    def order(self, *, port: int | None = None, name: str | None = None) -> Sent:
        """A limit order at 100 that meets the others' (buys and sells
        alternate), named ``name`` or after the trader; ``port``: straight to
        an instance instead of through nginx."""
        self.orders += 1
        body = {
            "market": MARKET,
            "side": "buy" if self.orders % 2 else "sell",
            "type": "limit",
            "quantity": "0.05",
            "price": "100.00",
            "client_order_id": name or f"{self.member.username}-{self.orders}",
        }
        return self._send(body, port=port)

    def order_again(self, sent: Sent) -> Sent:
        """The same order once more, through nginx, as a client whose request
        got no answer sends it."""
        return self._send(sent.detail["body"], port=None)

    def _send(self, body: dict, *, port: int | None) -> Sent:
        response = self.api.post_json(
            ORDERS, body, port=port, Authorization=f"Api-Key {self.key}"
        )
        detail = {"body": body, "client_order_id": body["client_order_id"]}
        if response.status in (200, 201, 202):
            detail["order"] = json.loads(response.body)
        return Sent("order", self.member.username, response, detail=detail)


@dataclass
class Probe:
    """An order sent straight to one instance while the matcher was paused."""

    sent: Sent
    fault_at: float  # when the instance was signalled, the order waiting in it


@dataclass
class Run:
    sent: list[Sent]
    killed: str
    stopped: str
    killed_gone_at: float  # its processes reaped
    stopped_exited_at: float
    stopped_returncode: int
    killed_probe: Probe
    stopped_probe: Probe
    retried: Sent  # the killed probe's order sent again through nginx
    order_ids: set[int]  # every order in the database
    client_order_ids: dict[str, int]  # (user's) client order id -> order id
    still_accepted: int  # orders the matcher had not taken at the end
    ledger: str  # check_ledger's output
    avatars: dict[str, str]  # username -> the profile row's avatar
    objects: set[str]


def _order_exists(topology: Topology, client_order_id: str) -> bool:
    with psycopg.connect(topology.database_url) as connection:
        return bool(
            connection.execute(
                "SELECT 1 FROM trading_order WHERE client_order_id = %s",
                [client_order_id],
            ).fetchone()
        )


def _probe(
    topology: Topology, trader: Trader, instance: Instance, fault: Callable[[], None]
) -> Probe:
    """An order in one of the instance's workers, its request waiting for the
    paused matcher, then ``fault``; the matcher goes on right after."""
    matcher = topology.matcher_process.pid
    name = f"probe-{instance.port}"
    answers: list[Sent] = []
    sender = threading.Thread(
        target=lambda: answers.append(trader.order(port=instance.port, name=name))
    )
    os.kill(matcher, signal.SIGSTOP)
    try:
        sender.start()
        # Accepted: the order is written, and its request waits for the
        # matcher in a worker of the instance.
        deadline = time.monotonic() + WAIT_TIMEOUT
        while not _order_exists(topology, name):
            assert time.monotonic() < deadline, "the probe order was not accepted"
            time.sleep(0.05)
        fault_at = time.monotonic()
        fault()
    finally:
        os.kill(matcher, signal.SIGCONT)
    sender.join(timeout=WAIT_TIMEOUT)
    [sent] = answers
    return Probe(sent, fault_at)


def _answered_after(since: float, kinds: tuple[str, ...], members: int):
    def condition(sent: list[Sent]) -> bool:
        return all(
            len({s.client for s in sent if s.kind == kind and s.started > since})
            >= members
            for kind in kinds
        )

    return condition


@pytest.fixture(scope="module")
def run(s3_server, postgres_url, topology_static_root) -> Run:
    with Topology(
        instances=3,
        workers=WORKERS,
        s3=s3_server,
        postgres_url=postgres_url,
        upload_rate=SCENARIO_UPLOAD_RATE,
        static_root=topology_static_root,
        # Long enough that an order request certainly still waits in its
        # worker when the instance goes (the matcher is paused meanwhile).
        environment={"ORDER_RESULT_WAIT_SECONDS": "10"},
    ) as topology:
        members = [Member(topology) for _ in range(MEMBERS)]
        usernames = json.dumps([member.username for member in members])
        output = topology.manage("shell", "-c", f"USERNAMES = {usernames}\n{SETUP}")
        keys = json.loads(output.split("KEYS ", 1)[1])
        traders = [Trader(member, keys[member.username]) for member in members]
        killed, stopped = topology.instances[:2]
        traffic = Traffic()

        def step_of(trader: Trader) -> Callable[[], None]:
            def step() -> None:
                trader.member.avatar_upload(xhr=True, record=traffic.record)
                traffic.record(trader.order())
                traffic.record(trader.member.page(MARKET_PAGE))

            return step

        try:
            for trader in traders:
                traffic.run(step_of(trader))
            traffic.wait_for(
                "uploads and orders answered by every instance",
                lambda sent: all(
                    {s.response.upstream for s in sent if s.kind == kind}
                    >= {i.address for i in topology.instances}
                    for kind in ("upload", "order")
                ),
            )

            def kill() -> None:
                # The whole instance at once: gunicorn's master and workers.
                os.killpg(killed.process.pid, signal.SIGKILL)

            killed_probe = _probe(topology, traders[0], killed, kill)
            killed.process.wait(timeout=STOP_TIMEOUT)
            killed_gone_at = time.monotonic()
            traffic.wait_for(
                "uploads and orders after the kill",
                _answered_after(time.monotonic(), ("upload", "order"), MEMBERS),
            )

            stopped_probe = _probe(
                topology,
                traders[1],
                stopped,
                lambda: stopped.process.send_signal(signal.SIGTERM),
            )
            stopped_returncode = stopped.process.wait(timeout=STOP_TIMEOUT)
            stopped_exited_at = time.monotonic()
            traffic.wait_for(
                "uploads, orders and pages on the last instance",
                _answered_after(
                    stopped_exited_at, ("upload", "order", "page"), MEMBERS
                ),
            )
        finally:
            traffic.stop()

        # The order whose request the kill cut, placed again by its client
        # with the same client order id, as the API docs say to.
        retried = traders[0].order_again(killed_probe.sent)
        deadline = time.monotonic() + WAIT_TIMEOUT
        while True:
            with psycopg.connect(topology.database_url) as connection:
                still_accepted = connection.execute(
                    "SELECT count(*) FROM trading_order WHERE status = 'accepted'"
                ).fetchone()[0]
                orders = connection.execute(
                    "SELECT id, client_order_id FROM trading_order"
                ).fetchall()
                avatars = dict(
                    connection.execute(
                        "SELECT u.username, p.avatar FROM accounts_profile p "
                        "JOIN auth_user u ON u.id = p.user_id"
                    ).fetchall()
                )
            if not still_accepted or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        ledger = topology.manage("check_ledger")
        client = topology.minio_client()
        objects = {
            o.object_name
            for o in client.list_objects(bucket_name=topology.bucket, recursive=True)
        }
        return Run(
            sent=traffic.sent,
            killed=killed.address,
            stopped=stopped.address,
            killed_gone_at=killed_gone_at,
            stopped_exited_at=stopped_exited_at,
            stopped_returncode=stopped_returncode,
            killed_probe=killed_probe,
            stopped_probe=stopped_probe,
            retried=retried,
            order_ids={order_id for order_id, _ in orders},
            client_order_ids={name: order_id for order_id, name in orders},
            still_accepted=still_accepted,
            ledger=ledger,
            avatars=avatars,
            objects=objects,
        )


def _failed(response: Response) -> bool:
    return response.status >= 500 or response.status == 0


def _cut_by_the_kill(run: Run, response: Response) -> bool:
    """An answer the killed instance had begun to send: nginx passed its
    headers on, then the body stopped. nginx cannot send it again elsewhere,
    as a load balancer cannot take back what the client has received."""
    return (
        response.status == 0
        and response.upstream == run.killed
        and response.started < run.killed_gone_at
    )


@pytest.mark.reliability("instance-killed")
def test_every_request_through_nginx_is_answered_unless_the_kill_cut_its_answer(
    run,
):
    cut = [sent for sent in run.sent if _cut_by_the_kill(run, sent.response)]
    for sent in run.sent:
        if sent not in cut:
            assert sent.response.status != 0, sent.response.describe()
    # Only what the killed instance's workers were sending at that moment.
    assert len(cut) <= WORKERS, [sent.response.describe() for sent in cut]


@pytest.mark.reliability("instance-killed")
def test_only_posts_in_flight_on_the_instances_that_went_fail(run):
    gone_at = {run.killed: run.killed_gone_at, run.stopped: run.stopped_exited_at}
    failed = [
        sent
        for sent in run.sent
        if _failed(sent.response) and not _cut_by_the_kill(run, sent.response)
    ]
    for sent in failed:
        response = sent.response
        # nginx passes a GET on to the next instance; a POST it had already
        # sent is answered 502, as it cannot know whether it was processed.
        assert response.method == "POST", response.describe()
        assert response.status == 502, response.describe()
        assert response.upstream in gone_at, response.describe()
        assert response.started < gone_at[response.upstream], response.describe()
    after = [s for s in run.sent if s.started > run.stopped_exited_at]
    assert after and not any(_failed(s.response) for s in after)


@pytest.mark.reliability("instance-killed")
def test_every_order_the_clients_were_told_was_accepted_exists(run):
    accepted = [
        sent
        for sent in [*run.sent, run.stopped_probe.sent, run.retried]
        if sent.kind == "order" and sent.response.status in (200, 201, 202)
    ]
    assert accepted
    for sent in accepted:
        order = sent.detail["order"]
        assert order["id"] in run.order_ids, sent.response.describe()
        assert run.client_order_ids[sent.detail["client_order_id"]] == order["id"]
    # Every order request that was answered by the app was accepted.
    answered = [
        sent for sent in run.sent if sent.kind == "order" and not _failed(sent.response)
    ]
    assert all(sent.response.status in (201, 202) for sent in answered)


@pytest.mark.reliability("instance-killed")
def test_the_matcher_takes_every_order_and_the_ledger_balances(run):
    assert run.still_accepted == 0
    assert "The ledger is consistent." in run.ledger


@pytest.mark.reliability("outcome-unknown", "instance-killed")
def test_an_order_cut_by_the_kill_exists_and_placing_it_again_places_nothing(run):
    cut, again = run.killed_probe.sent, run.retried
    name = cut.detail["client_order_id"]

    # The client got no answer: the instance died with its request.
    assert cut.response.status == 0
    assert name in run.client_order_ids
    assert again.response.status == 200, again.response.describe()
    assert again.detail["order"]["id"] == run.client_order_ids[name]


@pytest.mark.reliability("instance-killed")
def test_a_stopped_instance_answers_the_request_it_holds_then_exits(run):
    probe = run.stopped_probe
    response = probe.sent.response

    assert response.status in (201, 202), response.describe()
    assert response.ended > probe.fault_at
    assert (
        probe.sent.detail["order"]["client_order_id"]
        == (probe.sent.detail["client_order_id"])
    )
    assert run.stopped_returncode == 0


@pytest.mark.reliability("instance-killed")
def test_no_avatar_row_lacks_its_object(run):
    names = set(run.avatars.values())
    assert names <= run.objects
    assert names - {DEFAULT_AVATAR}
    # An upload cut after its object was written and before its row commits
    # leaves that object (media_orphans removes it after its grace period);
    # never more than the uploads that failed.
    failed_uploads = [s for s in run.sent if s.kind == "upload" and _failed(s.response)]
    unreferenced = run.objects - names - {DEFAULT_AVATAR}
    assert len(unreferenced) <= len(failed_uploads)
