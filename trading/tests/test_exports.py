"""A signed-in user downloads their trades, orders and ledger entries as CSV."""

import csv
import io
from datetime import datetime
from decimal import Decimal as D

import pytest
from django.db import connection
from django.db.models import Q
from django.test.utils import CaptureQueriesContext
from rest_framework.test import APIClient

from tests.factories import buy, sell
from trading.exceptions import InvalidReference
from trading.models import Balance, Deposit, LedgerEntry, Order, Trade, Withdrawal
from trading.services import withdrawal_request

pytestmark = pytest.mark.django_db

KINDS = ["trades", "orders", "ledger"]


def download(client, kind: str):
    """The export's response and its rows as the csv module reads them."""
    response = client.get(f"/wallet/exports/{kind}.csv")
    assert response.status_code == 200
    assert response.streaming
    text = b"".join(response.streaming_content).decode("utf-8")
    return response, list(csv.reader(io.StringIO(text, newline="")))


def as_dicts(rows: list[list[str]]) -> list[dict[str, str]]:
    header, *body = rows
    return [dict(zip(header, row, strict=True)) for row in body]


def utc_time(cell: str) -> datetime:
    """An ISO 8601 cell, which must say UTC."""
    assert cell.endswith("Z"), cell
    parsed = datetime.fromisoformat(cell)
    assert parsed.utcoffset().total_seconds() == 0
    return parsed


@pytest.fixture
def traded(funded, market, alice, bob):
    """alice's sell of 1.5 BTC at 100 rests; bob's buy of 1.5 takes it."""
    resting = sell(alice, market, "1.5", "100", client_order_id="alice-1")
    taking = buy(bob, market, "1.5", "100")
    return resting, taking


def test_trades_export_has_a_header_and_each_side_of_the_users_trades(
    client, alice, bob, traded
):
    resting, taking = traded
    trade = Trade.objects.get()
    client.force_login(alice)

    response, rows = download(client, "trades")

    assert response["Content-Type"] == "text/csv; charset=utf-8"
    disposition = response["Content-Disposition"]
    assert disposition.startswith('attachment; filename="trades-')
    assert disposition.endswith('.csv"')
    assert "Content-Length" not in response
    assert {"private", "no-store"} <= {
        part.strip() for part in response["Cache-Control"].split(",")
    }
    assert rows[0] == [
        "trade_id",
        "time",
        "market",
        "order_id",
        "side",
        "liquidity",
        "price",
        "quantity",
        "quote_amount",
        "fee",
        "fee_token",
    ]
    (row,) = as_dicts(rows)
    assert utc_time(row.pop("time")) == trade.created_at
    assert row == {
        "trade_id": str(trade.pk),
        "market": "BTC-USDT",
        "order_id": str(resting.pk),
        "side": "sell",
        "liquidity": "maker",
        "price": "100",
        "quantity": "1.5",
        "quote_amount": "150",
        "fee": "0.15",  # 0.1 % of the 150 USDT received
        "fee_token": "USDT",
    }

    client.force_login(bob)
    (bobs,) = as_dicts(download(client, "trades")[1])
    assert (bobs["order_id"], bobs["side"], bobs["liquidity"]) == (
        str(taking.pk),
        "buy",
        "taker",
    )
    assert (bobs["fee"], bobs["fee_token"]) == ("0.003", "BTC")


def test_orders_export_lists_every_order_with_plain_amounts(
    client, alice, market, traded
):
    resting, _ = traded
    open_order = buy(alice, market, "0.25", "90.5")
    client.force_login(alice)

    _, rows = download(client, "orders")

    assert rows[0] == [
        "order_id",
        "created_at",
        "updated_at",
        "market",
        "side",
        "type",
        "time_in_force",
        "post_only",
        "self_trade",
        "client_order_id",
        "price",
        "stop_price",
        "quantity",
        "quote_amount",
        "protection_price",
        "filled_quantity",
        "executed_value",
        "fee",
        "fee_token",
        "status",
        "cancel_reason",
        "reject_reason",
    ]
    filled, still_open = as_dicts(rows)
    assert [filled["order_id"], still_open["order_id"]] == [
        str(resting.pk),
        str(open_order.pk),
    ]
    assert utc_time(filled["created_at"]) == resting.created_at
    assert (
        utc_time(still_open["updated_at"])
        == Order.objects.get(pk=open_order.pk).updated_at
    )
    assert {name: filled[name] for name in list(filled)[3:]} == {
        "market": "BTC-USDT",
        "side": "sell",
        "type": "limit",
        "time_in_force": "GTC",
        "post_only": "false",
        "self_trade": resting.self_trade,
        "client_order_id": "alice-1",
        "price": "100",
        "stop_price": "",
        "quantity": "1.5",
        "quote_amount": "",
        "protection_price": "",
        "filled_quantity": "1.5",
        "executed_value": "150",
        "fee": "0.15",
        "fee_token": "USDT",
        "status": "filled",
        "cancel_reason": "",
        "reject_reason": "",
    }
    assert (still_open["price"], still_open["quantity"], still_open["status"]) == (
        "90.5",
        "0.25",
        "open",
    )
    assert still_open["fee_token"] == "BTC"


def test_ledger_export_lists_signed_changes_that_add_up_to_the_balances(
    client, alice, btc, usdt, traded
):
    deposit = Deposit.objects.filter(user=alice, token=btc).get()
    client.force_login(alice)

    _, rows = download(client, "ledger")

    assert rows[0] == [
        "entry_id",
        "time",
        "transaction_id",
        "kind",
        "token",
        "account",
        "amount",
        "order_id",
        "deposit_reference",
        "withdrawal_reference",
    ]
    entries = as_dicts(rows)
    assert len(entries) == LedgerEntry.objects.filter(user=alice).count()
    credited = next(e for e in entries if e["deposit_reference"] == deposit.reference)
    assert (credited["kind"], credited["token"], credited["account"]) == (
        "deposit",
        "BTC",
        "available",
    )
    assert credited["amount"] == "10"
    # The sell reserved 1.5 BTC: a negative number, not text.
    reserved = [e for e in entries if e["kind"] == "order_place"]
    assert sorted((e["account"], e["amount"]) for e in reserved) == [
        ("available", "-1.5"),
        ("locked", "1.5"),
    ]
    for token in (btc, usdt):
        row = Balance.objects.get(user=alice, token=token)
        for account, held in (("available", row.available), ("locked", row.locked)):
            total = sum(
                (
                    D(e["amount"])
                    for e in entries
                    if (e["token"], e["account"]) == (token.symbol, account)
                ),
                D(0),
            )
            assert total == held, (token.symbol, account)
    for entry in entries:
        utc_time(entry["time"])
        assert "E" not in entry["amount"] and "e" not in entry["amount"]


def test_each_side_of_a_match_names_its_own_order_in_the_ledger(
    client, market, alice, bob, carol, funded
):
    """One buy takes alice's and carol's asks: the match is one transaction,
    whose order is bob's, yet each maker's rows name the maker's order."""
    asks = {
        alice: sell(alice, market, "0.5", "100"),
        carol: sell(carol, market, "0.5", "101"),
    }
    taking = buy(bob, market, "1", "101")
    for user, order in [*asks.items(), (bob, taking)]:
        client.force_login(user)
        entries = as_dicts(download(client, "ledger")[1])

        matched = [e for e in entries if e["kind"] == "order_match"]
        assert matched, user
        assert {e["order_id"] for e in matched} == {str(order.pk)}, user

    # Rows written before entries named their order: a maker's name none,
    # never the taker's; the rest still name the user's order.
    LedgerEntry.objects.filter(user=alice).update(order=None)
    client.force_login(alice)
    entries = as_dicts(download(client, "ledger")[1])
    assert {e["order_id"] for e in entries if e["kind"] == "order_match"} == {""}
    placed = [e for e in entries if e["kind"] == "order_place"]
    assert {e["order_id"] for e in placed} == {str(asks[alice].pk)}


def own_ids(user, kind: str) -> tuple[str, set[str]]:
    """The column naming each row, and the ids the user's rows must have."""
    if kind == "ledger":
        entries = LedgerEntry.objects.filter(user=user)
        return "entry_id", {str(pk) for pk in entries.values_list("pk", flat=True)}
    orders = Order.objects.filter(user=user)
    if kind == "trades":
        orders = orders.filter(
            Q(maker_trades__isnull=False) | Q(taker_trades__isnull=False)
        )
    return "order_id", {str(pk) for pk in orders.values_list("pk", flat=True)}


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.reliability("access-by-id")
def test_each_user_sees_only_their_own_rows(client, alice, bob, carol, traded, kind):
    for user in (alice, bob, carol):
        client.force_login(user)
        rows = as_dicts(download(client, kind)[1])

        column, expected = own_ids(user, kind)
        assert {row[column] for row in rows} == expected, user
        assert len(rows) == len(expected)
        if user == carol:  # funded, never traded
            assert (len(rows) == 2) == (kind == "ledger")


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.reliability("access-anonymous")
def test_an_anonymous_visitor_is_sent_to_log_in(client, kind):
    response = client.get(f"/wallet/exports/{kind}.csv")

    assert response.status_code == 302
    assert response["Location"] == (f"/accounts/login/?next=/wallet/exports/{kind}.csv")


def test_no_id_of_the_clients_can_hold_a_cell_of_its_own(alice, market, funded, btc):
    # A spreadsheet that splits cells on ";" (many locales' Excel) would read
    # "x;=cmd…;" as three cells, the middle one a formula.
    hostile = "x;=cmd|' /C calc'!A0;"
    api_client = APIClient()
    api_client.force_authenticate(alice)

    answer = api_client.post(
        "/api/v1/orders/",
        {
            "market": market.symbol,
            "side": "sell",
            "type": "limit",
            "price": "1000",
            "quantity": "0.01",
            "client_order_id": hostile,
        },
        format="json",
    )
    with pytest.raises(InvalidReference, match="letters, digits"):
        withdrawal_request(
            user=alice, token=btc, amount=D("0.5"), address="bc1q", reference=hostile
        )

    assert answer.status_code == 400
    assert answer.json()["error"]["fields"] == {
        "client_order_id": ['Use letters, digits and ". _ : / -" only.']
    }
    assert not Order.objects.exists() and not Withdrawal.objects.exists()


def test_an_unknown_export_is_not_found(client, alice):
    client.force_login(alice)

    assert client.get("/wallet/exports/balances.csv").status_code == 404


INJECTIONS = [
    '=HYPERLINK("http://evil.example","Click")',
    "+1+cmd|' /C calc'!A0",
    "-2+3",
    "@SUM(1+1)",
    "\tTAB",
    "\rCR",
]


def test_text_a_spreadsheet_would_run_as_a_formula_is_quoted_not_amounts(
    client, alice, market, funded, btc
):
    # Ids stored before they were held to CLIENT_ID's characters.
    for number, client_order_id in enumerate(INJECTIONS):
        placed = sell(alice, market, "0.01", "1000", client_order_id=f"o-{number}")
        Order.objects.filter(pk=placed.pk).update(client_order_id=client_order_id)
    made = withdrawal_request(
        user=alice, token=btc, amount=D("0.5"), address="bc1q", reference="w-1"
    )
    Withdrawal.objects.filter(pk=made.pk).update(reference="=cmd|x")
    client.force_login(alice)

    orders = as_dicts(download(client, "orders")[1])
    ledger = as_dicts(download(client, "ledger")[1])

    assert [row["client_order_id"] for row in orders] == [
        "'" + text for text in INJECTIONS
    ]
    withdrawn = [row for row in ledger if row["kind"] == "withdrawal_request"]
    assert {row["withdrawal_reference"] for row in withdrawn} == {"'=cmd|x"}
    assert sorted(row["amount"] for row in withdrawn) == ["-0.5", "0.5"]
    # Every sell reserved its base: negative amounts stay numbers.
    assert [row["amount"] for row in ledger if row["kind"] == "order_place"].count(
        "-0.01"
    ) == len(INJECTIONS)


def queries_for(client, kind: str) -> tuple[int, int]:
    """(queries, rows) of one download, the streamed body read to its end."""
    with CaptureQueriesContext(connection) as queries:
        _, rows = download(client, kind)
    return len(queries), len(rows) - 1


@pytest.mark.parametrize("kind", KINDS)
def test_the_queries_of_an_export_do_not_grow_with_its_rows(
    client, alice, bob, market, funded, kind
):
    buy(bob, market, "5", "100")
    sell(alice, market, "0.1", "100")
    client.force_login(alice)
    download(client, kind)  # the first request of a session records it

    few_queries, few_rows = queries_for(client, kind)
    for _ in range(6):
        sell(alice, market, "0.1", "100")
    many_queries, many_rows = queries_for(client, kind)

    assert many_rows > few_rows
    assert many_queries == few_queries
    assert many_queries <= 5


EXPORT_SIZE = 5000


def refused_orders(user, market, count: int) -> None:
    """``count`` limit sells the matcher refused: closed, holding nothing and
    without trades, so every ledger invariant still holds. Written in bulk:
    the export only reads them, and thousands placed one by one through the
    matcher would take minutes."""
    Order.objects.bulk_create(
        [
            Order(
                user=user,
                market=market,
                side=Order.Side.SELL,
                type=Order.Type.LIMIT,
                time_in_force=Order.TimeInForce.GTC,
                client_order_id=f"=bot-{number}" if number % 2 else f"bot-{number}",
                price=D("100") + D("0.01") * number,
                quantity=D("0.0001") * (number + 1),
                status=Order.Status.REJECTED,
                reject_reason=Order.RejectReason.BELOW_MIN_NOTIONAL,
            )
            for number in range(count)
        ],
        batch_size=1000,
    )


def test_a_large_export_streams_in_pieces_and_parses(client, alice, market):
    client.force_login(alice)
    download(client, "orders")  # the first request of a session records it
    header_only, _ = queries_for(client, "orders")
    refused_orders(alice, market, EXPORT_SIZE)

    with CaptureQueriesContext(connection) as queries:
        response = client.get("/wallet/exports/orders.csv")
        pieces = list(response.streaming_content)

    assert len(queries) == header_only
    assert len(pieces) > 10  # sent as it is written, not as one body
    assert max(len(piece) for piece in pieces) < 70 * 1024
    text = b"".join(pieces).decode()
    orders = as_dicts(list(csv.reader(io.StringIO(text, newline=""))))
    assert len(orders) == EXPORT_SIZE
    ids = [int(order["order_id"]) for order in orders]
    assert ids == sorted(ids) and len(set(ids)) == EXPORT_SIZE
    last = orders[-1]
    assert (last["price"], last["quantity"], last["status"]) == (
        "149.99",
        "0.5",
        "rejected",
    )
    assert orders[0]["quantity"] == "0.0001"
    assert [order["client_order_id"] for order in orders[:2]] == ["bot-0", "'=bot-1"]
    times = [utc_time(order["created_at"]) for order in orders]
    assert times == sorted(times)


def test_the_wallet_page_links_each_export(client, alice):
    client.force_login(alice)

    page = client.get("/wallet/").content.decode()

    for kind in KINDS:
        assert f'href="/wallet/exports/{kind}.csv"' in page
