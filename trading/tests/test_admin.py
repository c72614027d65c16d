"""Staff move money only through the services, from the admin."""

from decimal import Decimal as D

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Permission

from trading.models import Deposit, LedgerEntry, Market, Order, Withdrawal
from trading.services import withdrawal_request
from trading.tests.factories import balance, fund, sell

pytestmark = pytest.mark.django_db

CREDIT_URL = "/admin/trading/deposit/add/"


@pytest.fixture
def staff_client(client, staff, mfa_enable):
    mfa_enable(staff)
    client.force_login(staff)
    return client


def credit(staff_client, user, token, amount: str, reference: str = "tx-1"):
    return staff_client.post(
        CREDIT_URL,
        {
            "user": user.pk,
            "token": token.pk,
            "amount": amount,
            "reference": reference,
        },
    )


def test_the_credit_form_is_shown_to_staff(staff_client):
    response = staff_client.get(CREDIT_URL)

    assert response.status_code == 200
    assert b"Credit a deposit" in response.content


def test_staff_credit_a_deposit_once_per_reference(staff_client, alice, btc):
    first = credit(staff_client, alice, btc, "1.25")
    again = credit(staff_client, alice, btc, "1.25")

    assert first.status_code == again.status_code == 302
    assert Deposit.objects.get().reference == "tx-1"
    assert balance(alice, btc) == (D("1.25"), D("0"))


def test_a_conflicting_credit_is_shown_as_an_error(staff_client, alice, bob, btc):
    credit(staff_client, alice, btc, "1.25")

    response = credit(staff_client, bob, btc, "1.25")

    assert response.status_code == 200
    assert b"already credited with different details" in response.content
    assert balance(bob, btc) == (D("0"), D("0"))


@pytest.mark.reliability("number-abuse")
def test_a_credit_finer_than_the_token_is_refused_not_rounded(staff_client, alice, btc):
    response = credit(staff_client, alice, btc, "0.123456789")

    assert response.status_code == 200
    assert b"too much precision" in response.content
    assert not Deposit.objects.exists()


@pytest.mark.reliability("access-staff")
def test_staff_without_the_permission_cannot_credit(client, alice, btc, mfa_enable):
    clerk = get_user_model().objects.create_user(
        "clerk", password="x-secret-1", is_staff=True
    )
    mfa_enable(clerk)
    client.force_login(clerk)

    response = credit(client, alice, btc, "1")

    assert response.status_code == 403
    assert not Deposit.objects.exists()


@pytest.fixture
def pending(alice, btc):
    fund(alice, btc, "3")
    return withdrawal_request(
        user=alice, token=btc, amount=D(2), address="bc1q", reference="w-1"
    )


def run_action(staff_client, model: str, action: str, pks: list[int], **confirm):
    """Choose an action for the rows; ``confirm`` (``post="yes"`` and the
    confirmation form's fields) answers its confirmation page."""
    return staff_client.post(
        f"/admin/trading/{model}/",
        {"action": action, "_selected_action": pks, **confirm},
        follow=True,
    )


REASON = "The address belongs to a sanctioned exchange."


def decide(staff_client, action: str, pks: list[int], reason: str = REASON):
    confirm = {"post": "yes"}
    if action == "reject":
        confirm["reason"] = reason
    return run_action(staff_client, "withdrawal", action, pks, **confirm)


@pytest.mark.parametrize("action", ["approve", "reject"])
def test_deciding_asks_to_confirm_showing_what_is_decided(
    staff_client, pending, action
):
    response = run_action(staff_client, "withdrawal", action, [pending.pk])

    page = response.content.decode()
    assert response.templates[0].name == (
        "admin/trading/withdrawal/decide_confirmation.html"
    )
    for shown in ("alice", "2 ", "BTC", "bc1q", "w-1"):
        assert shown in page
    assert 'name="post" value="yes"' in page
    assert f'name="_selected_action" value="{pending.pk}"' in page
    assert ('name="reason"' in page) == (action == "reject")
    pending.refresh_from_db()
    assert pending.status == Withdrawal.Status.PENDING


def test_staff_approve_a_withdrawal_once_confirmed(
    staff_client, staff, pending, alice, btc
):
    response = decide(staff_client, "approve", [pending.pk])

    assert b"1 approved" in response.content
    pending.refresh_from_db()
    assert (pending.status, pending.decided_by) == (Withdrawal.Status.APPROVED, staff)
    assert balance(alice, btc) == (D("1"), D("0"))


def test_staff_reject_a_withdrawal_with_a_reason_once_confirmed(
    staff_client, staff, pending, alice, btc
):
    decide(staff_client, "reject", [pending.pk])

    pending.refresh_from_db()
    assert (pending.status, pending.decided_by, pending.reason) == (
        Withdrawal.Status.REJECTED,
        staff,
        REASON,
    )
    assert balance(alice, btc) == (D("3"), D("0"))


def test_a_rejection_without_a_reason_asks_again_and_changes_nothing(
    staff_client, pending, alice, btc
):
    response = decide(staff_client, "reject", [pending.pk], reason="  ")

    assert b"This field is required" in response.content
    assert b'name="reason"' in response.content
    pending.refresh_from_db()
    assert pending.status == Withdrawal.Status.PENDING
    assert balance(alice, btc) == (D("1"), D("2"))


def test_the_decider_and_reason_are_shown_in_the_list_and_the_detail(
    staff_client, pending
):
    decide(staff_client, "reject", [pending.pk])

    listing = staff_client.get("/admin/trading/withdrawal/").content.decode()
    detail = staff_client.get(
        f"/admin/trading/withdrawal/{pending.pk}/change/"
    ).content.decode()

    assert "Decided by" in listing and ">root<" in listing
    assert "root" in detail and REASON in detail


@pytest.mark.reliability("access-staff")
def test_staff_without_the_permission_cannot_decide(client, pending, mfa_enable):
    clerk = get_user_model().objects.create_user(
        "clerk", password="x-secret-1", is_staff=True
    )
    clerk.user_permissions.add(Permission.objects.get(codename="view_withdrawal"))
    mfa_enable(clerk)
    client.force_login(clerk)

    for action in ("approve", "reject"):
        asked = run_action(client, "withdrawal", action, [pending.pk])
        confirmed = decide(client, action, [pending.pk])
        for response in (asked, confirmed):
            assert response.status_code == 200
            assert response.templates[0].name == "admin/change_list.html"
            assert f'value="{action}"'.encode() not in response.content

    pending.refresh_from_db()
    assert pending.status == Withdrawal.Status.PENDING


def test_deciding_a_decided_withdrawal_again_is_refused_with_a_message(
    staff_client, pending, alice, btc
):
    decide(staff_client, "approve", [pending.pk])
    asked = run_action(staff_client, "withdrawal", "reject", [pending.pk])

    response = decide(staff_client, "reject", [pending.pk])

    assert b"Already approved: will be skipped" in asked.content
    assert b"already approved" in response.content
    pending.refresh_from_db()
    assert pending.status == Withdrawal.Status.APPROVED
    assert balance(alice, btc) == (D("1"), D("0"))


def test_staff_cancel_open_orders_with_an_action(staff_client, market, alice, btc):
    fund(alice, btc, "1")
    order = sell(alice, market, "1", "100")

    run_action(staff_client, "order", "cancel_orders", [order.pk])

    order.refresh_from_db()
    assert order.status == Order.Status.CANCELLED
    assert balance(alice, btc) == (D("1"), D("0"))


def test_staff_list_a_market_and_its_symbol_is_derived(staff_client, btc, usdt):
    response = staff_client.post(
        "/admin/trading/market/add/",
        {
            "base": btc.pk,
            "quote": usdt.pk,
            "price_step": "0.01",
            "amount_step": "0.0001",
            "min_notional": "10",
            "maker_fee": "0.001",
            "taker_fee": "0.002",
            "status": "open",
        },
    )

    assert response.status_code == 302
    assert Market.objects.get().symbol == "BTC-USDT"


@pytest.mark.reliability("number-abuse")
def test_a_market_whose_notionals_the_quote_cannot_hold_is_refused(
    staff_client, btc, usdt
):
    response = staff_client.post(
        "/admin/trading/market/add/",
        {
            "base": btc.pk,
            "quote": usdt.pk,
            "price_step": "0.01",
            "amount_step": "0.00001",  # 0.01 x 0.00001 is finer than 1E-6 USDT
            "min_notional": "10",
            "maker_fee": "0.001",
            "taker_fee": "0.002",
            "status": "open",
        },
    )

    assert response.status_code == 200
    assert b"whole number of USDT units" in response.content
    assert not Market.objects.exists()


@pytest.mark.parametrize(
    "model", ["ledgerentry", "ledgertransaction", "balance", "order", "trade"]
)
@pytest.mark.reliability("access-staff")
def test_money_records_are_read_only_in_the_admin(staff_client, alice, btc, model):
    fund(alice, btc, "1")
    entry = LedgerEntry.objects.first()

    assert staff_client.get(f"/admin/trading/{model}/add/").status_code == 403
    if model == "ledgerentry":
        response = staff_client.post(
            f"/admin/trading/ledgerentry/{entry.pk}/change/", {"amount": "5"}
        )
        assert response.status_code == 403
        entry.refresh_from_db()
        assert entry.amount in (D("1"), D("-1"))
    assert staff_client.get(f"/admin/trading/{model}/").status_code == 200
