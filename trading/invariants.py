"""The ledger's invariants, checked against the live tables.

Used by ``manage.py check_ledger`` and after every trading test. Sums are
done here in exact decimals rather than by SQL ``SUM``: SQLite sums decimals
as floats, and a ledger check must not report rounding noise (or hide a
real difference). Rows are streamed, so memory stays small.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterator
from decimal import Decimal

from django.db import connection, transaction

from tokens.models import Token
from trading.models import (
    Balance,
    Deposit,
    LedgerEntry,
    Order,
    OrderCommand,
    Trade,
    Withdrawal,
)
from trading.money import ZERO, exact, plain

Account = LedgerEntry.Account
_CHUNK = 5000


def _stream(queryset, *fields: str) -> Iterator[tuple]:
    return queryset.values_list(*fields).iterator(chunk_size=_CHUNK)


@exact
def ledger_problems() -> list[str]:
    """Every broken invariant, as a readable line; empty when all hold.

    1. No balance is negative.
    2. Every ledger transaction sums to zero per token.
    3. Each user's ledger entries add up to their balance rows (available and
       locked separately).
    4. Per token, users' available + locked + fees == deposits - approved
       withdrawals, and the custody account mirrors it; fees are not negative.
    5. Each locked balance is exactly what the user's live orders, queued
       amends and open withdrawals (pending or being sent) reserve, and each
       live order reserves what it should (an accepted one what its request
       reserved, an open or waiting one what it still needs).
    6. Each order's filled quantity and traded value equal its trades.
    7. No market's book is crossed.

    Outside a transaction, all queries read one consistent snapshot
    (REPEATABLE READ on PostgreSQL), so it can run beside live trading.
    """
    if connection.in_atomic_block:
        return _problems()
    with transaction.atomic():
        if connection.vendor == "postgresql":
            with connection.cursor() as cursor:
                cursor.execute(
                    "SET TRANSACTION ISOLATION LEVEL REPEATABLE READ READ ONLY"
                )
        return _problems()


def _problems() -> list[str]:
    symbols = dict(Token.objects.values_list("pk", "symbol"))
    problems: list[str] = []

    balances: dict[tuple[int, int], tuple[Decimal, Decimal]] = {}
    for user_id, token_id, available, locked in _stream(
        Balance.objects.all(), "user_id", "token_id", "available", "locked"
    ):
        balances[(user_id, token_id)] = (available, locked)
        if available < 0 or locked < 0:
            problems.append(
                f"{symbols[token_id]}: user {user_id} has a negative balance "
                f"(available {plain(available)}, locked {plain(locked)})."
            )

    # One pass over the ledger, ordered by transaction so each transaction's
    # sums can be checked and forgotten.
    per_account: dict[tuple[str, int | None, int], Decimal] = defaultdict(lambda: ZERO)
    current, sums = None, defaultdict(lambda: ZERO)

    def transaction_check() -> None:
        for token_id, total in sums.items():
            if total != 0:
                problems.append(
                    f"{symbols[token_id]}: ledger transaction {current} sums "
                    f"to {plain(total)}, not zero."
                )

    for transaction_id, token_id, account, user_id, amount in _stream(
        LedgerEntry.objects.order_by("transaction_id"),
        "transaction_id",
        "token_id",
        "account",
        "user_id",
        "amount",
    ):
        if transaction_id != current:
            transaction_check()
            current, sums = transaction_id, defaultdict(lambda: ZERO)
        sums[token_id] += amount
        per_account[(account, user_id, token_id)] += amount
    transaction_check()

    user_keys = set(balances) | {
        (user_id, token_id)
        for account, user_id, token_id in per_account
        if account in LedgerEntry.USER_ACCOUNTS
    }
    for user_id, token_id in sorted(user_keys):
        available, locked = balances.get((user_id, token_id), (ZERO, ZERO))
        for account, held in (
            (Account.USER_AVAILABLE, available),
            (Account.USER_LOCKED, locked),
        ):
            entries = per_account[(account, user_id, token_id)]
            if entries != held:
                problems.append(
                    f"{symbols[token_id]}: user {user_id}'s {account} entries "
                    f"sum to {plain(entries)} but the balance row says {plain(held)}."
                )

    problems += _custody_problems(symbols, balances, per_account)
    problems += _reserve_problems(symbols, balances)
    problems += _fill_problems()
    problems += _crossed_book_problems()
    return problems


def _custody_problems(symbols, balances, per_account) -> list[str]:
    problems = []
    net_in: dict[int, Decimal] = defaultdict(lambda: ZERO)
    for token_id, amount in _stream(Deposit.objects.all(), "token_id", "amount"):
        net_in[token_id] += amount
    approved = Withdrawal.objects.filter(status=Withdrawal.Status.APPROVED)
    for token_id, amount in _stream(approved, "token_id", "amount"):
        net_in[token_id] -= amount
    held: dict[int, Decimal] = defaultdict(lambda: ZERO)
    for (_, token_id), (available, locked) in balances.items():
        held[token_id] += available + locked
    for token_id in sorted(set(net_in) | set(held) | set(symbols)):
        fees = per_account[(Account.FEES, None, token_id)]
        custody = per_account[(Account.CUSTODY, None, token_id)]
        symbol = symbols[token_id]
        if fees < 0:
            problems.append(f"{symbol}: the fee account is negative ({plain(fees)}).")
        if held[token_id] + fees != net_in[token_id]:
            problems.append(
                f"{symbol}: users hold {plain(held[token_id])} and fees "
                f"{plain(fees)}, but "
                f"deposits - withdrawals = {plain(net_in[token_id])}."
            )
        if custody != -net_in[token_id]:
            problems.append(
                f"{symbol}: the custody account is {plain(custody)}, expected "
                f"{plain(-net_in[token_id])} (minus deposits - withdrawals)."
            )
    return problems


def _order_reserve_should(
    status, side, price, quantity, filled, quote_amount, executed, protection
) -> Decimal:
    """What a live order must hold: an accepted one what its request
    reserved, an open or waiting one what it still needs (trading.engine)."""
    buying = side == Order.Side.BUY
    if status == Order.Status.ACCEPTED:
        if not buying:
            return quantity
        if quote_amount is not None:
            return quote_amount
        return (price if price is not None else protection) * quantity
    if not buying:
        return quantity - filled
    if quote_amount is not None:
        return quote_amount - executed
    return price * (quantity - filled)


def _reserve_problems(symbols, balances) -> list[str]:
    problems = []
    reserved: dict[tuple[int, int], Decimal] = defaultdict(lambda: ZERO)
    # Being sent, a withdrawal's amount stays locked until staff approve it.
    unended = Withdrawal.objects.filter(status__in=Withdrawal.OPEN)
    for user_id, token_id, amount in _stream(unended, "user_id", "token_id", "amount"):
        reserved[(user_id, token_id)] += amount
    # What queued amends reserved is the user's, locked, but no order's yet.
    amends = OrderCommand.objects.filter(reserved__gt=0)
    for user_id, side, base_id, quote_id, amount in _stream(
        amends,
        "user_id",
        "order__side",
        "market__base_id",
        "market__quote_id",
        "reserved",
    ):
        token_id = quote_id if side == Order.Side.BUY else base_id
        reserved[(user_id, token_id)] += amount
    live_orders = Order.objects.filter(status__in=Order.LIVE)
    for (
        pk,
        user_id,
        status,
        side,
        price,
        quantity,
        filled,
        quote_amount,
        executed,
        protection,
        locked,
        base_id,
        quote_id,
    ) in _stream(
        live_orders,
        "pk",
        "user_id",
        "status",
        "side",
        "price",
        "quantity",
        "filled_quantity",
        "quote_amount",
        "executed_value",
        "protection_price",
        "locked",
        "market__base_id",
        "market__quote_id",
    ):
        buying = side == Order.Side.BUY
        reserved[(user_id, quote_id if buying else base_id)] += locked
        should = _order_reserve_should(
            status,
            side,
            price,
            quantity,
            filled,
            quote_amount,
            executed,
            protection,
        )
        if locked != should:
            problems.append(
                f"{status.capitalize()} order #{pk} reserves {plain(locked)}, "
                f"expected {plain(should)}."
            )
    for key in sorted(set(reserved) | set(balances)):
        user_id, token_id = key
        locked = balances.get(key, (ZERO, ZERO))[1]
        if locked != reserved[key]:
            problems.append(
                f"{symbols[token_id]}: user {user_id} has {plain(locked)} locked, but "
                "live orders, queued amends and withdrawals pending or being sent "
                f"reserve {plain(reserved[key])}."
            )
    return problems


def _fill_problems() -> list[str]:
    traded: dict[int, list[Decimal]] = defaultdict(lambda: [ZERO, ZERO])
    for maker_id, taker_id, quantity, quote_amount in _stream(
        Trade.objects.all(),
        "maker_order_id",
        "taker_order_id",
        "quantity",
        "quote_amount",
    ):
        for order_id in (maker_id, taker_id):
            traded[order_id][0] += quantity
            traded[order_id][1] += quote_amount
    problems = []
    for pk, filled, value in _stream(
        Order.objects.filter(filled_quantity__gt=0),
        "pk",
        "filled_quantity",
        "executed_value",
    ):
        trades = traded.pop(pk, [ZERO, ZERO])
        if [filled, value] != trades:
            problems.append(
                f"Order #{pk} says {plain(filled)} filled for {plain(value)}, "
                "its trades "
                f"{plain(trades[0])} for {plain(trades[1])}."
            )
    problems += [
        f"Order #{pk} says nothing is filled, but it has trades." for pk in traded
    ]
    return problems


def _crossed_book_problems() -> list[str]:
    open_orders = Order.objects.filter(status=Order.Status.OPEN)
    best_bid: dict[int, Decimal] = {}
    best_ask: dict[int, Decimal] = {}
    for market_id, side, price in _stream(open_orders, "market_id", "side", "price"):
        if side == Order.Side.BUY:
            best_bid[market_id] = max(price, best_bid.get(market_id, price))
        else:
            best_ask[market_id] = min(price, best_ask.get(market_id, price))
    return [
        f"Market {market_id}'s book is crossed: bid {plain(best_bid[market_id])} >= "
        f"ask {plain(best_ask[market_id])}."
        for market_id in sorted(set(best_bid) & set(best_ask))
        if best_bid[market_id] >= best_ask[market_id]
    ]
