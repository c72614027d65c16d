"""Migrations against the code before them, which still serves while they run
(docs/DEPLOYMENT.md, Upgrading), and unapplied again."""

from decimal import Decimal as D

import pytest
from django.db import connection
from django.db.migrations.exceptions import IrreversibleError
from django.db.migrations.executor import MigrationExecutor
from django.utils import timezone

from tests.factories import fund
from trading.models import AddressFormat, Order, SavedAddress, Withdrawal
from trading.services import (
    withdrawal_process_start,
    withdrawal_reject,
    withdrawal_request,
)


def code_before(app: str, migration: str):
    """The models as the code before ``migration`` knew them."""
    executor = MigrationExecutor(connection)
    return executor.loader.project_state((app, migration), at_end=False).apps


@pytest.mark.django_db
def test_the_code_before_the_client_request_column_still_places_orders(alice, market):
    OldOrder = code_before("trading", "0011_order_client_request").get_model(
        "trading", "Order"
    )

    placed = OldOrder.objects.create(
        user_id=alice.pk,
        market_id=market.pk,
        side="buy",
        type="limit",
        time_in_force="GTC",
        price=D("100"),
        quantity=D("1"),
        status="cancelled",
        cancel_reason="user",
    )

    assert Order.objects.get(pk=placed.pk).client_request == ""


# -- Unapplying trading 0015, the Being sent state ------------------------------


@pytest.fixture
def executor(transactional_db):
    """Migrates; the database is at the latest migrations again afterwards."""
    executor = MigrationExecutor(connection)
    yield executor
    executor.loader.build_graph()
    executor.migrate(executor.loader.graph.leaf_nodes())


def unapply_0015(executor) -> None:
    executor.loader.build_graph()
    executor.migrate([("trading", "0014_received_signature")])


def test_unapplying_the_being_sent_state_names_the_withdrawals_being_sent(
    executor, alice, btc, staff
):
    fund(alice, btc, "5")
    sending = withdrawal_request(
        user=alice, token=btc, amount=D("2"), address="bc1q", reference="rent"
    )
    withdrawal_process_start(withdrawal=sending, staff=staff)
    pending = withdrawal_request(
        user=alice, token=btc, amount=D("1"), address="bc1q", reference="gift"
    )

    with pytest.raises(IrreversibleError) as refused:
        unapply_0015(executor)
    # The migrations after 0015 were unapplied before it refused.
    executor.loader.build_graph()
    executor.migrate(executor.loader.graph.leaf_nodes())

    assert str(refused.value) == (
        "Withdrawals are being sent, a state the code before trading 0015 does "
        f"not know: {sending.pk} (reference rent). Approve or reject each of "
        "them first, then migrate back again."
    )
    assert Withdrawal.objects.get(pk=sending.pk).status == "processing"
    assert Withdrawal.objects.get(pk=pending.pk).status == "pending"

    withdrawal_reject(withdrawal=sending, staff=staff, reason="Not sent.")
    unapply_0015(executor)

    with connection.cursor() as cursor:
        cursor.execute("SELECT status FROM trading_withdrawal ORDER BY id")
        assert cursor.fetchall() == [("rejected",), ("pending",)]


@pytest.mark.django_db
def test_the_code_before_the_network_column_still_requests_withdrawals(alice, btc):
    OldWithdrawal = code_before("trading", "0017_withdrawal_network").get_model(
        "trading", "Withdrawal"
    )

    # Ended, so that it locks nothing the invariants would look for.
    requested = OldWithdrawal.objects.create(
        user_id=alice.pk,
        token_id=btc.pk,
        amount=D("1"),
        address="bc1q",
        reference="r",
        status="cancelled",
        decided_at=timezone.now(),
    )

    assert Withdrawal.objects.get(pk=requested.pk).network == ""


@pytest.mark.django_db
def test_the_code_before_memos_still_requests_withdrawals_and_saves_addresses(
    alice, btc
):
    old = code_before("trading", "0018_withdrawal_memos")

    requested = old.get_model("trading", "Withdrawal").objects.create(
        user_id=alice.pk,
        token_id=btc.pk,
        amount=D("1"),
        address="bc1q",
        reference="r",
        status="cancelled",
        decided_at=timezone.now(),
    )
    saved = old.get_model("trading", "SavedAddress").objects.create(
        user_id=alice.pk,
        token_id=btc.pk,
        address="bc1q",
        label="Cold",
        usable_from=timezone.now(),
    )
    added = old.get_model("trading", "AddressFormat").objects.create(
        token_id=btc.pk, network="Bitcoin", pattern="bc1q", description="bc1q"
    )

    assert Withdrawal.objects.get(pk=requested.pk).memo == ""
    assert SavedAddress.objects.get(pk=saved.pk).memo == ""
    assert AddressFormat.objects.values_list("memo_name", "memo_pattern").get(
        pk=added.pk
    ) == ("", "")


def test_xrp_ledger_formats_added_before_memos_ask_for_a_destination_tag(executor, btc):
    executor.loader.build_graph()
    executor.migrate([("trading", "0017_withdrawal_network")])
    OldFormat = executor.loader.project_state(
        ("trading", "0017_withdrawal_network")
    ).apps.get_model("trading", "AddressFormat")
    xrp, bitcoin = (
        OldFormat.objects.create(
            token_id=btc.pk,
            network=network,
            pattern=pattern,
            checksum=checksum,
            description=pattern,
        )
        for network, pattern, checksum in [
            ("XRP Ledger", "r[1-9A-HJ-NP-Za-km-z]{24,34}", "base58check_xrp"),
            ("Bitcoin", "bc1q[0-9a-z]{38}", "segwit"),
        ]
    )

    executor.loader.build_graph()
    executor.migrate(executor.loader.graph.leaf_nodes())

    memos = AddressFormat.objects.values_list(
        "memo_name", "memo_pattern", "memo_description"
    )
    assert memos.get(pk=xrp.pk) == (
        "Destination tag",
        "[0-9]{1,10}",
        "a number of 1 to 10 digits",
    )
    assert memos.get(pk=bitcoin.pk) == ("", "", "")
