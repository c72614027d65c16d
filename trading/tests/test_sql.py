"""The order path's compiled statements (trading/sql.py) against the ORM."""

from __future__ import annotations

import threading
from decimal import Decimal as D

import pytest
from django.db import IntegrityError, connection, transaction
from django.utils import timezone

from trading import sql
from trading.locks import market_lock
from trading.models import Balance, LedgerTransaction, Order, Trade
from trading.services import order_cancel
from trading.tests.factories import (
    buy,
    fund,
    market_make,
    sell,
    token_make,
    user_make,
)


def fields_of(obj) -> dict:
    return {f.attname: getattr(obj, f.attname) for f in obj._meta.concrete_fields}


@pytest.mark.django_db
def test_rows_select_reads_exactly_what_the_orm_reads(market, alice, funded):
    resting = sell(alice, market, "0.1234", "30000.17")
    buy(alice, market, "0.1", "29000.01")

    found = sql.rows_select(
        Order,
        where={"market": market.pk, "status": "open", "side__in": ["sell", "buy"]},
        order_by=("-price", "id"),
    )

    expected = list(Order.objects.filter(market=market).order_by("-price", "id"))
    assert [fields_of(row) for row in found] == [fields_of(row) for row in expected]
    assert found[0].pk == resting.pk
    assert isinstance(found[0].price, D)
    assert found[0].created_at.tzinfo is not None
    assert found[0]._state.adding is False


@pytest.mark.django_db
def test_rows_select_pages_and_compares_prices(market, alice, funded):
    for price in ("101", "102", "103", "104"):
        sell(alice, market, "0.1", price)

    def page(offset):
        return sql.rows_select(
            Order,
            where={"market": market.pk, "price__lte": D("103")},
            order_by=("price", "id"),
            limit=2,
            offset=offset,
        )

    assert [o.price for o in page(0)] == [D("101"), D("102")]
    assert [o.price for o in page(2)] == [D("103")]


@pytest.mark.django_db
def test_market_lock_loads_both_tokens_without_more_queries(
    market, django_assert_num_queries
):
    with transaction.atomic(), django_assert_num_queries(1):
        locked = market_lock(market_id=market.pk)
        assert (locked.base.symbol, locked.quote.symbol) == ("BTC", "USDT")
        assert fields_of(locked) == fields_of(market)


@pytest.mark.django_db
def test_rows_insert_gives_keys_in_order_and_takes_keys_of_objects_saved_since(
    market, alice, bob, funded
):
    maker = sell(alice, market, "1", "100")
    taker = Order(
        user=bob,
        market=market,
        side="buy",
        type="limit",
        time_in_force="IOC",
        price=D("100"),
        quantity=D("1"),
        status="cancelled",
    )
    trades = [
        Trade(
            market=market,
            maker_order=maker,
            taker_order=taker,  # assigned before the taker is saved
            taker_side="buy",
            price=D("100"),
            quantity=D(q),
            quote_amount=D(q) * 100,
            maker_fee=D(0),
            taker_fee=D(0),
        )
        for q in ("0.25", "0.75")
    ]
    before = timezone.now()

    sql.rows_insert([taker])
    sql.rows_insert(trades)

    assert taker.pk is not None and taker.created_at >= before
    saved = list(Trade.objects.filter(taker_order=taker).order_by("pk"))
    assert [t.pk for t in trades] == [t.pk for t in saved]
    assert [t.quantity for t in saved] == [D("0.25"), D("0.75")]
    # Trades nobody filled break the ledger's invariants, checked afterwards.
    Trade.objects.filter(taker_order=taker).delete()
    taker.delete()


@pytest.mark.django_db
def test_rows_insert_ignoring_conflicts_keeps_the_existing_row(usdt, alice):
    fund(alice, usdt, "5")

    sql.rows_insert([Balance(user=alice, token=usdt)], ignore_conflicts=True)

    assert Balance.objects.get(user=alice, token=usdt).available == D("5")


@pytest.mark.django_db
def test_rows_update_writes_what_the_orm_writes_and_the_auto_now_time(
    usdt, alice, bob, carol
):
    for user in (alice, bob, carol):
        fund(user, usdt, "1")
    rows = list(Balance.objects.filter(token=usdt).order_by("user__username"))
    old = [row.updated_at for row in rows]
    tiny, large = D("0.000000000000000001"), D("123456789012345678.5")
    rows[0].available, rows[0].locked = tiny, large
    rows[1].available = D("7")

    sql.rows_update(rows[:2], ["available", "locked", "updated_at"])
    Balance.objects.filter(pk=rows[2].pk).update(available=tiny, locked=large)

    fresh = [Balance.objects.get(pk=row.pk) for row in rows]
    # The same values as through the ORM: exact on PostgreSQL, SQLite's 15
    # significant digits on SQLite.
    assert (fresh[0].available, fresh[0].locked) == (
        fresh[2].available,
        fresh[2].locked,
    )
    if connection.vendor == "postgresql":
        assert (fresh[0].available, fresh[0].locked) == (tiny, large)
    assert (fresh[1].available, fresh[1].locked) == (D("7"), D("0"))
    assert fresh[0].updated_at > old[0] and fresh[1].updated_at > old[1]
    # Back to what the ledger says, which is checked afterwards.
    for row in rows:
        row.available, row.locked = D("1"), D("0")
    sql.rows_update(rows, ["available", "locked"])


@pytest.mark.django_db
def test_rows_delete_removes_only_those_rows():
    kept, dropped = (
        LedgerTransaction.objects.create(kind="deposit"),
        LedgerTransaction.objects.create(kind="deposit"),
    )

    sql.rows_delete([dropped])

    assert list(LedgerTransaction.objects.values_list("pk", flat=True)) == [kept.pk]


@pytest.mark.django_db(transaction=True)
def test_a_broken_constraint_in_a_pipeline_is_an_integrity_error_and_writes_nothing(
    usdt, alice
):
    fund(alice, usdt, "1")
    row = Balance.objects.get(user=alice, token=usdt)
    other = LedgerTransaction(kind="deposit")

    with pytest.raises(IntegrityError), transaction.atomic(), sql.pipeline():
        sql.rows_insert([other], returning=False)
        row.available = D("-1")  # balance_available_not_negative
        sql.rows_update([row], ["available"])

    assert Balance.objects.get(pk=row.pk).available == D("1")
    assert LedgerTransaction.objects.count() == 1  # the deposit's


@pytest.mark.django_db
def test_a_market_order_that_meets_an_empty_book_leaves_no_ledger_transaction(
    usdt, alice
):
    free = market_make(token_make("ETH"), usdt, min_notional=D(0))
    fund(alice, usdt, "100")
    before = LedgerTransaction.objects.count()

    order = buy(alice, free, "1")

    assert (order.status, order.cancel_reason) == ("cancelled", "unfilled")
    assert LedgerTransaction.objects.count() == before


def prepared_statements() -> list[str]:
    with connection.cursor() as cursor:
        cursor.execute("SELECT statement FROM pg_prepared_statements")
        return [statement for (statement,) in cursor.fetchall()]


@pytest.mark.postgres
@pytest.mark.django_db
def test_the_order_path_is_prepared_on_postgresql(market, alice, bob, funded):
    sell(alice, market, "1", "100")
    buy(bob, market, "0.5", "100")

    statements = prepared_statements()
    assert any(
        'FROM "trading_market"' in s and "FOR NO KEY UPDATE" in s for s in statements
    )
    assert any(s.startswith('INSERT INTO "trading_trade"') for s in statements)


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_nothing_is_prepared_when_the_setting_is_off(market, alice, funded, settings):
    settings.DATABASE_PREPARED_STATEMENTS = False
    connection.close()  # a fresh connection, with nothing prepared yet

    sell(alice, market, "1", "100")

    assert prepared_statements() == []


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_orders_queued_behind_a_held_market_lock_all_go_through(market, funded):
    """Each order inserts its own row and ledger transaction before it waits
    for the market's lock; the waiters see none of each other's, and each
    completes in turn once the lock is free."""
    traders = [user_make(f"t{i}") for i in range(4)]
    for trader in traders:
        fund(trader, market.quote, "1000")
    waiting = threading.Barrier(len(traders) + 1)
    results: list[object] = []

    def place(trader):
        try:
            waiting.wait(timeout=30)
            results.append(buy(trader, market, "0.1", "50"))
        except Exception as error:  # reported below
            results.append(error)
        finally:
            connection.close()

    threads = [threading.Thread(target=place, args=(t,)) for t in traders]
    with transaction.atomic():
        market_lock(market_id=market.pk)
        for thread in threads:
            thread.start()
        waiting.wait(timeout=30)
        # Long enough for every thread to insert its order and queue up.
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_sleep(0.5)")
    for thread in threads:
        thread.join(timeout=60)

    assert [type(r).__name__ for r in results] == ["Order"] * len(traders)
    assert Order.objects.filter(market=market, status="open").count() == len(traders)


@pytest.mark.django_db
def test_cancel_given_a_copy_with_the_wrong_market_releases_the_right_balance(
    market, usdt, alice, funded
):
    order = buy(alice, market, "0.5", "100")
    other = market_make(token_make("ETH"), usdt)
    copy = Order(pk=order.pk, user=alice, market=other, side="sell")

    cancelled = order_cancel(user=alice, order=copy)

    assert (cancelled.status, cancelled.locked) == ("cancelled", D(0))
    assert Balance.objects.get(user=alice, token=usdt).locked == D(0)


@pytest.mark.django_db
def test_a_choice_is_written_into_the_statement_only_if_it_is_a_choice(
    market, alice, funded
):
    resting = sell(alice, market, "0.1", "101")

    found = sql.rows_select(
        Order, where={"market": market.pk, "status": sql.Choice("open")}
    )

    assert [order.pk for order in found] == [resting.pk]
    with pytest.raises(ValueError, match="not a choice"):
        sql.rows_select(Order, where={"status": sql.Choice("open' OR '1'='1")})


@pytest.mark.postgres
@pytest.mark.django_db
def test_the_book_query_has_a_generic_plan_on_the_books_partial_index(
    market, alice, bob, funded
):
    """Prepared once, the book's query can be planned once for all prices:
    its status and side are in the statement, so the partial index applies
    whatever the parameters."""
    with connection.cursor() as cursor:
        cursor.execute("SET plan_cache_mode = force_generic_plan")
    sell(alice, market, "0.1", "101")
    buy(bob, market, "0.1", "102")  # crosses: reads the asks

    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT name FROM pg_prepared_statements WHERE statement LIKE "
            "'SELECT \"trading_order\".%%''sell''%%\"price\" <= $2 ORDER%%'"
        )
        (name,) = cursor.fetchone()
        cursor.execute(f"EXPLAIN EXECUTE {name}({market.pk}, 102, 4, 0)")
        plan = "\n".join(row[0] for row in cursor.fetchall())
        cursor.execute("RESET plan_cache_mode")
    assert "order_book_asks" in plan
