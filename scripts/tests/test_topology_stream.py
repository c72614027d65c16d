"""The live stream behind nginx, on the loopback topology of scripts/topology.

nginx with deploy/nginx.conf's stream location (copied verbatim) in front of
the stream's ASGI process (uvicorn, as the Procfile runs it) and one gunicorn
instance; the order matcher (``manage.py run_matcher``) publishing to Redis;
PostgreSQL and the suite's S3 server. Two members trade through nginx with
API keys; one of them listens to the market's stream through nginx, as a bot
would, and gets the trade, with its time, and their own fill.

One run for the module; each test checks one thing that must hold.
"""

from __future__ import annotations

import json
import secrets
import string
from dataclasses import dataclass

import psycopg
import pytest

from scripts.browser import Browser, Response, client_address
from scripts.processes import LOOPBACK
from scripts.topology import Topology
from trading.tests.streaming import Event, SseClient

pytestmark = pytest.mark.postgres

ORDERS = "/api/v1/orders/"
# Redis channels are one namespace for the whole server, whatever the
# database number: other runs on this machine's Redis publish for their own
# BTC-USDT, so this market's symbols are its own.
SETUP = """
import json
from decimal import Decimal
from allauth.account.models import EmailAddress
from django.contrib.auth import get_user_model
from tokens.services import token_create
from trading.api_keys import api_key_create
from trading.services import deposit_credit, market_create

base = token_create(name="Base", symbol=BASE, decimals=8)
quote = token_create(name="Quote", symbol=QUOTE, decimals=6)
market_create(
    base=base, quote=quote, price_step=Decimal("0.01"), amount_step=Decimal("0.0001"),
    min_notional=Decimal("1"), maker_fee=Decimal("0.001"), taker_fee=Decimal("0.002"),
)
keys = {}
for username in ("seller", "buyer"):
    email = f"{username}@example.com"
    user = get_user_model().objects.create_user(username, email)
    EmailAddress.objects.create(user=user, email=email, verified=True, primary=True)
    for token, amount in ((base, "10"), (quote, "10000")):
        deposit_credit(
            user=user, token=token, amount=Decimal(amount),
            reference=f"stream-{username}-{token.symbol}",
        )
    keys[username] = api_key_create(user=user, name="bot", scopes=["trade"])[1]
print("KEYS", json.dumps(keys))
"""


@dataclass
class Run:
    stream_address: str
    opened: Response  # the stream's answer through nginx (headers)
    snapshot: Event
    trades: Event
    fills: Event
    trade: tuple[int, str]  # the database's trade: id, created_at (ISO, UTC)
    buy_order_id: int
    from_gunicorn: Response  # the stream's path asked of the instance itself


def _symbol() -> str:
    return "S" + "".join(secrets.choice(string.ascii_uppercase) for _ in range(7))


@pytest.fixture(scope="module")
def run(s3_server, postgres_url, topology_static_root) -> Run:
    base, quote = _symbol(), _symbol()
    market = f"{base}-{quote}"
    path = f"/api/v1/markets/{market}/stream/"
    with Topology(
        instances=1,
        workers=1,
        s3=s3_server,
        postgres_url=postgres_url,
        static_root=topology_static_root,
    ) as topology:
        output = topology.manage(
            "shell", "-c", f"BASE = {base!r}\nQUOTE = {quote!r}\n{SETUP}"
        )
        keys = json.loads(output.split("KEYS ", 1)[1])
        browser = Browser(topology.nginx_port, client_address=client_address(1))

        buyer_headers = {
            "Authorization": f"Api-Key {keys['buyer']}",
            "X-Forwarded-For": client_address(2),
        }
        stream = SseClient(topology.nginx_port, path, headers=buyer_headers, timeout=60)
        opened = Response(
            "GET",
            path,
            stream.status,
            {key.lower(): value for key, value in stream.response.getheaders()},
            b"",
            0.0,
            0.0,
        )
        snapshot = stream.until("snapshot")

        for name, side in (("seller", "sell"), ("buyer", "buy")):
            answer = browser.post_json(
                ORDERS,
                {
                    "market": market,
                    "side": side,
                    "type": "limit",
                    "quantity": "0.5",
                    "price": "100.00",
                },
                Authorization=f"Api-Key {keys[name]}",
            )
            assert answer.status in (200, 201, 202), answer.describe()
        buy_order_id = json.loads(answer.body)["id"]
        trades = stream.until("trades")
        fills = stream.until("fills")
        stream.close()

        with psycopg.connect(topology.database_url) as connection:
            trade_id, created_at = connection.execute(
                "SELECT id, created_at FROM trading_trade"
            ).fetchone()
        from_gunicorn = browser.get(path, port=topology.instances[0].port)
        return Run(
            stream_address=topology.stream_address,
            opened=opened,
            snapshot=snapshot,
            trades=trades,
            fills=fills,
            trade=(trade_id, created_at.isoformat().replace("+00:00", "Z")),
            buy_order_id=buy_order_id,
            from_gunicorn=from_gunicorn,
        )


def test_nginx_routes_the_stream_to_the_asgi_process(run):
    assert run.opened.status == 200
    assert run.opened.headers["content-type"].startswith("text/event-stream")
    assert run.opened.upstream == run.stream_address
    assert run.stream_address.startswith(f"{LOOPBACK}:")


def test_a_trade_arrives_through_nginx_with_its_time(run):
    trade_id, created_at = run.trade
    [trade] = run.trades.data["trades"]
    assert trade["id"] == trade_id
    assert trade["time"] == created_at
    assert (trade["price"], trade["quantity"]) == ("100", "0.5")
    assert run.trades.id.split(".")[1] == str(trade_id)


def test_the_bot_gets_its_own_fill_through_nginx(run):
    assert "balances" in run.snapshot.data  # signed in by its API key
    [fill] = run.fills.data["fills"]
    assert fill["order_id"] == run.buy_order_id


def test_a_gunicorn_instance_never_holds_a_stream(run):
    assert run.from_gunicorn.status == 503
    assert json.loads(run.from_gunicorn.body)["error"]["code"] == "stream_unavailable"
