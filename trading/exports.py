"""A signed-in user's trades, orders and ledger entries as CSV files.

Each export is streamed: its rows come from one query read in chunks
(``QuerySet.iterator``) and are written out as they arrive, so an export of
any size holds one chunk in memory and runs the same number of queries.

Cells: amounts are plain decimal strings (``0.00000001``, ``-2.5``: no
exponent, no trailing zeros, never a float), times ISO 8601 in UTC, booleans
``true``/``false``, nothing as an empty cell. A text cell that a spreadsheet
would read as a formula (it starts with ``= + - @``, a tab or a carriage
return: a client order id, a withdrawal reference) is prefixed with ``'``, as
OWASP's "CSV Injection" advises; amounts are numbers, never text, so a
negative amount stays a negative number.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal

from django.contrib.auth.base_user import AbstractBaseUser
from django.contrib.auth.decorators import login_required
from django.db.models import Case, F, When
from django.http import Http404, HttpRequest, StreamingHttpResponse
from django.utils import timezone
from django.views.decorators.http import require_GET

from trading.api.selectors import fill_of, orders_for_user, trades_for_user
from trading.models import LedgerEntry, Order
from trading.money import plain

# Rows fetched from the database at a time, and the size of the pieces sent.
CHUNK_ROWS = 2000
FLUSH_BYTES = 64 * 1024

# OWASP's list of the first characters that make a spreadsheet evaluate a cell.
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")

Row = list[object]


def csv_cell(value: object) -> str:
    """One value as a CSV cell (see the module's docstring)."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, Decimal):
        return plain(value)
    if isinstance(value, int):
        return str(value)
    if isinstance(value, datetime):
        return (
            value.astimezone(UTC)
            .isoformat(timespec="microseconds")
            .replace("+00:00", "Z")
        )
    text = str(value)
    if text.startswith(FORMULA_STARTS):
        return "'" + text
    return text


def csv_lines(header: list[str], rows: Iterable[Row]) -> Iterator[str]:
    """The CSV text of ``header`` and ``rows``, in pieces of about
    ``FLUSH_BYTES``: a row at a time would send thousands of tiny pieces."""
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(header)
    for row in rows:
        writer.writerow([csv_cell(value) for value in row])
        if buffer.tell() >= FLUSH_BYTES:
            yield buffer.getvalue()
            buffer.seek(0)
            buffer.truncate()
    yield buffer.getvalue()


# -- The exports ----------------------------------------------------------------


TRADE_COLUMNS = [
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


def trade_rows(*, user: AbstractBaseUser) -> Iterator[Row]:
    """The user's side of each trade of their orders, oldest first (as the
    API's fills: one query, the orders and market joined)."""
    trades = trades_for_user(user=user).order_by("id")
    for trade in trades.iterator(chunk_size=CHUNK_ROWS):
        fill = fill_of(trade, user=user)
        yield [
            fill.id,
            fill.created_at,
            fill.market.symbol,
            fill.order_id,
            fill.side,
            fill.liquidity,
            fill.price,
            fill.quantity,
            fill.quote_amount,
            fill.fee,
            fill.fee_token,
        ]


ORDER_COLUMNS = [
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


def order_rows(*, user: AbstractBaseUser) -> Iterator[Row]:
    """The user's orders, oldest first, in the API's terms."""
    orders = orders_for_user(user=user).order_by("id")
    for order in orders.iterator(chunk_size=CHUNK_ROWS):
        market = order.market
        # Each side pays its fee in the token it receives.
        fee_token = market.base if order.side == Order.Side.BUY else market.quote
        yield [
            order.pk,
            order.created_at,
            order.updated_at,
            market.symbol,
            order.side,
            order.type,
            order.time_in_force,
            order.post_only,
            order.self_trade,
            order.client_order_id,
            order.price,
            order.stop_price,
            order.quantity,
            order.quote_amount,
            order.protection_price,
            order.filled_quantity,
            order.executed_value,
            order.fee,
            fee_token.symbol,
            order.status,
            order.cancel_reason,
            order.reject_reason,
        ]


LEDGER_COLUMNS = [
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

_ACCOUNT_NAMES = {
    LedgerEntry.Account.USER_AVAILABLE: "available",
    LedgerEntry.Account.USER_LOCKED: "locked",
}


def ledger_rows(*, user: AbstractBaseUser) -> Iterator[Row]:
    """Every change of the user's balances, oldest first: the amount is
    signed (a credit is positive), ``account`` says which part of the
    balance it changed, and each names what caused it."""
    # The user's own order: a match's transaction names the taker's order,
    # so a maker's entries name theirs. Entries from before they did get
    # none rather than another user's.
    own_order = Case(
        When(order__isnull=False, then=F("order_id")),
        When(transaction__order__user=user, then=F("transaction__order_id")),
        default=None,
    )
    entries = (
        LedgerEntry.objects.filter(user=user)
        .order_by("id")
        .values_list(
            "pk",
            "transaction__created_at",
            "transaction_id",
            "transaction__kind",
            "token__symbol",
            "account",
            "amount",
            own_order,
            "transaction__deposit__reference",
            "transaction__withdrawal__reference",
        )
    )
    for entry in entries.iterator(chunk_size=CHUNK_ROWS):
        row = list(entry)
        row[5] = _ACCOUNT_NAMES.get(row[5], row[5])
        yield row


@dataclass(frozen=True)
class Export:
    columns: list[str]
    rows: Callable[..., Iterator[Row]]


EXPORTS = {
    "trades": Export(TRADE_COLUMNS, trade_rows),
    "orders": Export(ORDER_COLUMNS, order_rows),
    "ledger": Export(LEDGER_COLUMNS, ledger_rows),
}


@login_required
@require_GET
def export_csv(request: HttpRequest, kind: str) -> StreamingHttpResponse:
    """Download the signed-in user's ``trades``, ``orders`` or ``ledger``."""
    export = EXPORTS.get(kind)
    if export is None:
        raise Http404("No such export.")
    response = StreamingHttpResponse(
        csv_lines(export.columns, export.rows(user=request.user)),
        content_type="text/csv; charset=utf-8",
    )
    filename = f"{kind}-{timezone.now():%Y-%m-%d}.csv"
    response["Content-Disposition"] = f'attachment; filename="{filename}"'
    return response
