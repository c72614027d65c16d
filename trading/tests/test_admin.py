"""Staff move money only through the services, from the admin."""

import html
import re
import time
from decimal import Decimal as D

import pytest
from allauth.account.models import EmailAddress
from django.contrib.admin.models import LogEntry
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Permission
from django.urls import resolve

from accounts.tests.totp import AuthenticatorApp
from tests.factories import balance, buy, fund, sell, token_make
from tests.forms import form_values
from tokens.models import Token
from trading.matcher import drain
from trading.models import Deposit, LedgerEntry, Market, Order, Withdrawal
from trading.orders import order_cancel
from trading.services import address_format_ensure, withdrawal_request

pytestmark = pytest.mark.django_db

CREDIT_URL = "/admin/trading/deposit/add/"


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


@pytest.mark.parametrize("amount", ["-1", "0", "-0.5"])
def test_a_credit_of_zero_or_less_is_refused_with_the_services_message(
    staff_client, alice, btc, amount
):
    response = credit(staff_client, alice, btc, amount)

    page = response.content.decode()
    assert response.status_code == 200
    assert "The amount must be a positive number." in page
    assert "greater than or equal to" not in page
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


NOT_KEYS = ["abc", "", "1.5", "99999999999999999999"]


def state() -> list:
    """What the actions below would change."""
    return [
        list(Withdrawal.objects.values_list("pk", "status")),
        list(Order.objects.values_list("pk", "status")),
        list(Token.objects.values_list("pk", flat=True)),
        list(EmailAddress.objects.values_list("pk", "verified")),
    ]


@pytest.mark.reliability("malformed-requests")
@pytest.mark.parametrize("not_a_key", NOT_KEYS)
@pytest.mark.parametrize(
    "changelist, action, confirm",
    [
        ("/admin/trading/withdrawal/", "approve", {"post": "yes"}),
        ("/admin/trading/order/", "cancel_orders", {}),
        ("/admin/tokens/token/", "delete_selected", {"post": "yes"}),
        # A list the app does not define (allauth's), on the same site.
        ("/admin/account/emailaddress/", "make_verified", {}),
    ],
)
def test_a_selection_naming_no_row_is_refused_and_changes_nothing(
    staff_client, staff, alice, pending, market, changelist, action, confirm, not_a_key
):
    # One row each action would change: a pending withdrawal, an open order,
    # a token, an unverified address.
    fund(alice, market.quote, "100")
    buy(alice, market, "1", "50")
    EmailAddress.objects.create(user=staff, email=staff.email, verified=False)
    model = resolve(changelist).func.model_admin.model
    # A browser sends the keys of the ticked rows; this request was made by
    # hand, with one key beside a real one.
    selection = [model.objects.values_list("pk", flat=True).first(), not_a_key]
    before = state()
    response = staff_client.post(
        changelist,
        {"action": action, "index": 0, "_selected_action": selection, **confirm},
        follow=True,
    )

    assert response.status_code == 200
    assert response.redirect_chain == [(changelist, 302)]
    assert (
        "The selection names items that do not exist. No items have been "
        "changed." in response.content.decode()
    )
    assert state() == before


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
    assert '<th scope="col">Requested (UTC)</th>' in page
    assert f"<td>{pending.created_at:%Y-%m-%d %H:%M}</td>" in page
    assert 'name="post" value="yes"' in page
    assert f'name="_selected_action" value="{pending.pk}"' in page
    assert ('name="reason"' in page) == (action == "reject")
    pending.refresh_from_db()
    assert pending.status == Withdrawal.Status.PENDING


def test_staff_approve_a_withdrawal_once_confirmed(
    staff_client, staff, pending, alice, btc
):
    decide(staff_client, "start_sending", [pending.pk])
    response = decide(staff_client, "approve", [pending.pk])

    assert b"1 approved" in response.content
    pending.refresh_from_db()
    assert (pending.status, pending.processing_by, pending.decided_by) == (
        Withdrawal.Status.APPROVED,
        staff,
        staff,
    )
    assert balance(alice, btc) == (D("1"), D("0"))
    assert list(
        LogEntry.objects.filter(object_id=str(pending.pk))
        .order_by("pk")
        .values_list("change_message", flat=True)
    ) == ["now being sent", "approved"]


def test_starting_to_send_asks_to_confirm_then_stops_the_user_cancelling(
    staff_client, staff, pending, alice, btc, client, mailoutbox
):
    asked = run_action(staff_client, "withdrawal", "start_sending", [pending.pk])
    page = asked.content.decode()
    assert asked.templates[0].name == (
        "admin/trading/withdrawal/start_sending_confirmation.html"
    )
    assert "Start sending withdrawals" in page
    assert "Their users can no longer cancel them" in page
    for shown in ("alice", "2 ", "BTC", "bc1q", "w-1", "Pending"):
        assert shown in page
    assert 'value="Yes, start sending 1"' in page
    assert 'name="reason"' not in page
    pending.refresh_from_db()
    assert pending.status == Withdrawal.Status.PENDING

    done = confirmation_posted(staff_client, asked)

    assert b"1 now being sent." in done.content
    pending.refresh_from_db()
    assert (pending.status, pending.processing_by) == (
        Withdrawal.Status.PROCESSING,
        staff,
    )
    assert mailoutbox == []  # the user is told once it ends
    # The user, in the wallet meanwhile: the coins may be on their way.
    client.force_login(alice)
    wallet = client.get("/wallet/").content.decode()
    assert "Being sent" in wallet
    assert f"/wallet/withdrawals/{pending.pk}/cancel/" not in wallet
    cancelled = client.post(f"/wallet/withdrawals/{pending.pk}/cancel/", follow=True)
    assert [str(m) for m in cancelled.context["messages"]] == [
        "Withdrawal 'w-1' can no longer be cancelled: staff are sending the coins now."
    ]
    asked_again = client.get(f"/wallet/withdrawals/{pending.pk}/cancel/")
    assert b"Staff are sending the coins now" in asked_again.content
    pending.refresh_from_db()
    assert pending.status == Withdrawal.Status.PROCESSING
    assert balance(alice, btc) == (D("1"), D("2"))


def test_approving_a_pending_withdrawal_asks_to_start_sending_it_first(
    staff_client, pending, alice, btc, mailoutbox
):
    asked = run_action(staff_client, "withdrawal", "approve", [pending.pk])
    response = decide(staff_client, "approve", [pending.pk])

    assert b"Pending, not being sent yet: will be skipped" in asked.content
    assert b"start sending it first" in response.content
    assert b" approved." not in response.content
    pending.refresh_from_db()
    assert pending.status == Withdrawal.Status.PENDING
    assert balance(alice, btc) == (D("1"), D("2"))
    assert mailoutbox == []


def test_a_second_staff_member_cannot_start_sending_the_same_withdrawal(
    staff_clients, pending, alice, btc
):
    first, second = staff_clients(2)
    decide(first, "start_sending", [pending.pk])

    asked = run_action(second, "withdrawal", "start_sending", [pending.pk])
    response = decide(second, "start_sending", [pending.pk])

    assert b"Already being sent by staff1: will be skipped" in asked.content
    messages = [str(m) for m in response.context["messages"]]
    assert len(messages) == 1
    assert messages[0].startswith(
        "Withdrawal w-1: 2 BTC: Withdrawal 'w-1' is already being sent by staff1"
    )
    assert messages[0].endswith("only they send it.")
    pending.refresh_from_db()
    assert (pending.status, pending.processing_by.username) == (
        Withdrawal.Status.PROCESSING,
        "staff1",
    )
    # The one sending it may still reject it: the coins were not sent.
    rejecting = run_action(first, "withdrawal", "reject", [pending.pk])
    assert b"Being sent by staff1</td>" in rejecting.content
    decide(first, "reject", [pending.pk])
    pending.refresh_from_db()
    assert pending.status == Withdrawal.Status.REJECTED
    assert balance(alice, btc) == (D("3"), D("0"))


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


def dangling_descriptions(page: str) -> list[str]:
    """The ids that an aria-describedby names and no element has."""
    ids = set(re.findall(r'\sid="([^"]+)"', page))
    named = re.findall(r'aria-describedby="([^"]+)"', page)
    return [id_ for value in named for id_ in value.split() if id_ not in ids]


def test_the_forms_of_staff_decisions_read_out_their_help_and_errors(
    staff_client, pending, alice, btc
):
    refused = decide(staff_client, "reject", [pending.pk], reason="  ")
    asked = run_action(staff_client, "withdrawal", "reject", [pending.pk])
    credit_refused = credit(staff_client, alice, btc, "0.123456789")

    for response in (refused, asked, credit_refused, staff_client.get(CREDIT_URL)):
        page = response.content.decode()
        assert "aria-describedby" in page
        assert dangling_descriptions(page) == []


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

    for action in ("start_sending", "approve", "reject"):
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
    decide(staff_client, "start_sending", [pending.pk])
    decide(staff_client, "approve", [pending.pk])
    asked = run_action(staff_client, "withdrawal", "reject", [pending.pk])

    response = decide(staff_client, "reject", [pending.pk])

    assert b"Already approved: will be skipped" in asked.content
    assert b"already approved" in response.content
    pending.refresh_from_db()
    assert pending.status == Withdrawal.Status.APPROVED
    assert balance(alice, btc) == (D("1"), D("0"))


def confirmation_posted(client, asked, **typed):
    """Answer the confirmation page ``asked`` as a browser does: its form's
    fields, with ``typed``, posted to the form's address (the page's own
    when the form names none)."""
    page = asked.content.decode()
    form = re.search(
        r'<form method="post"(?: action="([^"]*)")?>(.*?)</form>', page, re.S
    )
    data = {}
    for name, value in re.findall(
        r'type="hidden" name="([^"]+)" value="([^"]*)"', form[2]
    ):
        data.setdefault(name, []).append(html.unescape(value))
    address = html.unescape(form[1] or "") or (
        f"{asked.request['PATH_INFO']}?{asked.request['QUERY_STRING']}"
    )
    return client.post(address, {**data, **typed}, follow=True)


def test_rejecting_all_the_filtered_withdrawals_rejects_those_confirmed_only(
    staff_client, alice, bob, btc
):
    fund(alice, btc, "10")
    fund(bob, btc, "10")
    for user, reference in [
        (alice, "a-1"),
        (alice, "a-2"),
        (alice, "a-3"),
        (bob, "b-1"),
    ]:
        withdrawal_request(
            user=user, token=btc, amount=D(1), address="bc1q", reference=reference
        )
    listed = "/admin/trading/withdrawal/?q=alice"
    first = Withdrawal.objects.filter(user=alice).earliest("pk")

    # "Select all 3" on the list of alice's withdrawals.
    asked = staff_client.post(
        listed,
        {
            "action": "reject",
            "index": 0,
            "select_across": 1,
            "_selected_action": first.pk,
        },
    )
    # A withdrawal requested while staff read the confirmation page.
    withdrawal_request(
        user=alice, token=btc, amount=D(1), address="bc1q", reference="a-4"
    )
    done = confirmation_posted(staff_client, asked, reason=REASON)

    page = asked.content.decode()
    assert "Yes, reject 3" in page
    assert page.count('name="_selected_action"') == 1
    assert b"3 rejected." in done.content
    assert dict(Withdrawal.objects.values_list("reference", "status")) == {
        "a-1": "rejected",
        "a-2": "rejected",
        "a-3": "rejected",
        "a-4": "pending",
        "b-1": "pending",
    }
    assert set(Withdrawal.objects.filter(status="rejected").values_list("reason")) == {
        (REASON,)
    }


def test_staff_cancel_open_orders_with_an_action(staff_client, market, alice, btc):
    fund(alice, btc, "1")
    order = sell(alice, market, "1", "100")

    response = run_action(staff_client, "order", "cancel_orders", [order.pk])

    order.refresh_from_db()
    assert order.status == Order.Status.CANCELLED
    assert balance(alice, btc) == (D("1"), D("0"))
    assert f"Cancelled: {order}." in response.content.decode()


def test_with_the_matcher_stopped_cancelling_orders_waits_once_for_all(
    settings, staff_client, market, alice, btc
):
    fund(alice, btc, "1")
    closed = sell(alice, market, "0.01", "200")
    order_cancel(user=alice, order=closed)  # cancelled at once: matched inline
    orders = [sell(alice, market, "0.01", str(100 + i)) for i in range(6)]
    settings.ORDER_MATCH_INLINE = False  # no matcher answers
    settings.ORDER_RESULT_WAIT_SECONDS = 0.5

    started = time.monotonic()
    response = run_action(
        staff_client, "order", "cancel_orders", [closed.pk, *[o.pk for o in orders]]
    )
    took = time.monotonic() - started

    assert response.status_code == 200
    assert took < 1.5  # one wait of 0.5 s; one per order was 3 s
    page = response.content.decode()
    assert "Cancel requested, the matcher has not answered yet: " in page
    for order in orders:
        assert str(order) in page
    assert f"{closed}: Order #{closed.pk} is already cancelled." in page
    logged = LogEntry.objects.filter(change_message="cancel requested")
    assert sorted(int(pk) for pk in logged.values_list("object_id", flat=True)) == [
        order.pk for order in orders
    ]
    queued = Order.objects.filter(pk__in=[order.pk for order in orders])
    assert set(queued.values_list("status", flat=True)) == {Order.Status.OPEN}
    drain(market_id=market.pk)  # the matcher, started again, takes the cancels
    assert set(queued.values_list("status", flat=True)) == {Order.Status.CANCELLED}
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


# -- Crediting a deposit: finding the user, repeating a reference ---------------


def user_search(client, term: str):
    return client.get(
        "/admin/autocomplete/",
        {
            "term": term,
            "app_label": "trading",
            "model_name": "deposit",
            "field_name": "user",
        },
    )


def test_the_credit_form_picks_the_user_with_the_admins_autocomplete(staff_client):
    page = staff_client.get(CREDIT_URL).content.decode()

    assert 'class="admin-autocomplete' in page
    assert 'data-ajax--url="/admin/autocomplete/"' in page
    assert 'data-model-name="deposit"' in page and 'data-field-name="user"' in page
    assert "/static/admin/js/autocomplete.js" in page


@pytest.mark.parametrize("term", ["ali", "ALICE@example", "alice@example.com"])
def test_staff_find_the_user_by_name_or_e_mail(staff_client, alice, bob, term):
    response = user_search(staff_client, term)

    assert response.status_code == 200
    assert response.json()["results"] == [
        {"id": str(alice.pk), "text": "alice <alice@example.com>"}
    ]


@pytest.mark.reliability("access-staff")
def test_the_user_search_answers_only_staff_who_may_see_users(
    client, alice, mfa_enable
):
    assert user_search(client, "alice").status_code == 302  # to the log-in

    client.force_login(alice)
    refused = user_search(client, "alice")
    assert refused.status_code in (302, 403)
    assert b"alice@example.com" not in refused.content

    clerk = get_user_model().objects.create_user(
        "clerk", password="x-secret-1", is_staff=True
    )
    clerk.user_permissions.add(Permission.objects.get(codename="add_deposit"))
    mfa_enable(clerk)
    client.force_login(clerk)
    assert user_search(client, "alice").status_code == 403

    clerk.user_permissions.add(Permission.objects.get(codename="view_user"))
    client.force_login(clerk)
    assert user_search(client, "alice").json()["results"][0]["id"] == str(alice.pk)


def test_the_chosen_user_stays_chosen_when_the_form_has_an_error(
    staff_client, alice, btc
):
    response = credit(staff_client, alice, btc, "-1")

    page = response.content.decode()
    assert response.status_code == 200
    assert f'<option value="{alice.pk}" selected>alice &lt;alice@example.com&gt;' in (
        page
    )


@pytest.mark.reliability("malformed-requests")
@pytest.mark.parametrize("user", ["abc", "99999999999999999999", "-1"])
def test_a_credit_naming_no_user_is_refused_with_a_message(
    staff_client, alice, btc, user
):
    response = staff_client.post(
        CREDIT_URL,
        {"user": user, "token": btc.pk, "amount": "1", "reference": "tx-1"},
    )

    assert response.status_code == 200
    assert "Select a valid choice" in response.content.decode()
    assert not Deposit.objects.exists()


def test_a_repeated_reference_says_that_nothing_changed(staff_client, alice, btc):
    first = staff_client.post(
        CREDIT_URL,
        {"user": alice.pk, "token": btc.pk, "amount": "1.25", "reference": "tx-9"},
        follow=True,
    )
    again = staff_client.post(
        CREDIT_URL,
        {"user": alice.pk, "token": btc.pk, "amount": "1.25", "reference": "tx-9"},
        follow=True,
    )

    assert "Deposit tx-9: 1.25 BTC is credited." in first.content.decode()
    repeated = again.content.decode()
    assert "is credited" not in repeated
    assert "Nothing was credited: reference tx-9 was already credited" in repeated
    assert "(1.25 BTC to alice). Balances are unchanged." in repeated
    assert balance(alice, btc) == (D("1.25"), D("0"))
    assert LogEntry.objects.filter(object_repr__contains="tx-9").count() == 1


# -- Amounts without trailing zeros -----------------------------------------------

TRAILING_ZEROS = re.compile(r"\d\.\d*0{4,}(?!\d)")


@pytest.fixture
def money_everywhere(funded, market, alice, bob, btc):
    """A deposit, a withdrawal, orders, a trade, balances and ledger entries,
    none of whose amounts needs more than four decimals."""
    sell(alice, market, "1.5", "100.25")
    buy(bob, market, "1.5", "100.25")
    buy(bob, market, "0.5", "90")
    withdrawal_request(
        user=alice, token=btc, amount=D("0.25"), address="bc1q", reference="w-9"
    )


@pytest.mark.parametrize(
    ("model", "shown"),
    [
        ("deposit", "10"),
        ("withdrawal", "0.25"),
        ("order", "100.25"),
        ("trade", "100.25"),
        ("balance", "8.25"),
        ("ledgerentry", "-1.5"),
        ("market", "0.001"),
    ],
)
def test_amounts_show_without_trailing_zeros_in_lists_and_detail_pages(
    staff_client, money_everywhere, model, shown
):
    listing = staff_client.get(f"/admin/trading/{model}/")
    pk = re.search(
        rf'href="/admin/trading/{model}/(\d+)/change/', listing.content.decode()
    )[1]
    detail = staff_client.get(f"/admin/trading/{model}/{pk}/change/")

    for response in (listing, detail):
        page = response.content.decode()
        assert response.status_code == 200
        assert TRAILING_ZEROS.findall(page) == []
    assert f">{shown}<" in listing.content.decode()


def test_an_order_detail_page_shows_each_amount_and_its_help(
    staff_client, money_everywhere, bob
):
    order = Order.objects.get(user=bob, price=D("90"))

    page = staff_client.get(f"/admin/trading/order/{order.pk}/change/").content.decode()

    for label, value in [
        ("Price", "90"),
        ("Quantity", "0.5"),
        ("Filled quantity", "0"),
        ("Locked", "45"),
        ("Stop price", "-"),
    ]:
        shown = rf'<label>{label}:</label>\s*<div class="readonly">{value}</div>'
        assert re.search(shown, page), label
    assert "Limit price (limit, stop-limit)." in page  # the field's help text


def test_lists_still_sort_by_amount(staff_client, alice, btc):
    for reference, amount in [("small", "2"), ("large", "30"), ("middle", "10.5")]:
        credit(staff_client, alice, btc, amount, reference)

    listing = staff_client.get("/admin/trading/deposit/").content.decode()
    header = re.search(
        r'<th scope="col" class="[^"]*column-amount[^"]*">(.*?)</th>', listing, re.S
    )[1]
    ascending = re.search(r'href="(\?o=[^"]+)"', header)[1]
    page = staff_client.get(f"/admin/trading/deposit/{ascending}").content.decode()

    assert page.index(">small<") < page.index(">middle<") < page.index(">large<")
    assert ">10.5<" in page


def test_the_market_form_shows_steps_and_fees_without_trailing_zeros(
    staff_client, market
):
    page = staff_client.get(
        f"/admin/trading/market/{market.pk}/change/"
    ).content.decode()

    assert re.search(r'<div class="readonly">0.01</div>', page)  # price step
    assert re.search(r'<div class="readonly">0.0001</div>', page)  # amount step
    assert 'name="min_notional" value="1"' in page
    assert 'name="maker_fee" value="0.001"' in page
    assert TRAILING_ZEROS.findall(page) == []


def test_staff_change_a_market_fee_from_the_form_showing_plain_amounts(
    staff_client, market
):
    response = staff_client.post(
        f"/admin/trading/market/{market.pk}/change/",
        {
            "min_notional": "1",
            "maker_fee": "0.0005",
            "taker_fee": "0.002",
            "status": "open",
        },
    )

    assert response.status_code == 302
    market.refresh_from_db()
    assert (market.maker_fee, market.price_step) == (D("0.0005"), D("0.01"))


def test_a_market_saved_from_a_page_opened_before_a_halt_stays_halted(
    staff_clients, market
):
    url = f"/admin/trading/market/{market.pk}/change/"
    first, second = staff_clients(2)
    opened_by_first = form_values(first.get(url))
    halting = form_values(second.get(url))
    halting.update(status="halted", taker_fee="0.003")
    assert second.post(url, halting).status_code == 302

    response = first.post(url, {**opened_by_first, "maker_fee": "0.0005"})

    assert response.status_code == 302
    market.refresh_from_db()
    assert market.status == Market.Status.HALTED
    assert (market.maker_fee, market.taker_fee) == (D("0.0005"), D("0.003"))


def test_an_address_format_saved_from_a_page_opened_before_an_edit_keeps_it(
    staff_clients, btc
):
    address_format, _ = address_format_ensure(
        token=btc, network="Bitcoin", pattern=r"bc1[a-z0-9]{8,87}", description="Native"
    )
    url = f"/admin/trading/addressformat/{address_format.pk}/change/"
    first, second = staff_clients(2)
    opened_by_first = form_values(first.get(url))
    editing = form_values(second.get(url))
    editing["pattern"] = r"(bc1|tb1)[a-z0-9]{8,87}"
    assert second.post(url, editing).status_code == 302

    response = first.post(url, {**opened_by_first, "description": "SegWit"})

    assert response.status_code == 302
    address_format.refresh_from_db()
    assert address_format.pattern == r"(bc1|tb1)[a-z0-9]{8,87}"
    assert address_format.description == "SegWit"


def test_a_stale_page_is_checked_against_the_row_it_would_make(staff_clients, btc):
    # Another staff member moved the format to a token that has the network
    # this page renames it to: the pair is taken, said on the form.
    ltc = token_make("LTC")
    address_format_ensure(
        token=ltc, network="Lightning", pattern=r"ln[a-z0-9]{8,80}", description="LN"
    )
    moved, _ = address_format_ensure(
        token=btc, network="Bitcoin", pattern=r"bc1[a-z0-9]{8,87}", description="BTC"
    )
    url = f"/admin/trading/addressformat/{moved.pk}/change/"
    first, second = staff_clients(2)
    opened_by_first = form_values(first.get(url))
    moving = form_values(second.get(url))
    moving.update(token=str(ltc.pk), network="Litecoin")
    assert second.post(url, moving).status_code == 302

    response = first.post(url, {**opened_by_first, "network": "Lightning"})

    assert response.status_code == 200
    assert "already exists" in response.content.decode()
    moved.refresh_from_db()
    assert (moved.token, moved.network) == (ltc, "Litecoin")


@pytest.mark.parametrize("forged", ["sNaN", "-sNaN", "NaN", "Infinity", "abc"])
def test_a_forged_opened_page_amount_is_no_500(staff_client, market, forged):
    url = f"/admin/trading/market/{market.pk}/change/"
    page = form_values(staff_client.get(url))

    response = staff_client.post(
        url, {**page, "initial-maker_fee": forged, "maker_fee": "0.0005"}
    )

    assert response.status_code == 302
    market.refresh_from_db()
    assert market.maker_fee == D("0.0005")


@pytest.mark.reliability("number-abuse")
def test_a_negative_minimum_order_value_is_refused_by_the_market_form(
    staff_client, market
):
    response = staff_client.post(
        f"/admin/trading/market/{market.pk}/change/",
        {
            "min_notional": "-1",
            "maker_fee": "0.001",
            "taker_fee": "0.002",
            "status": "open",
        },
    )

    assert response.status_code == 200
    assert "greater than or equal to 0" in response.content.decode()
    market.refresh_from_db()
    assert market.min_notional == D("1")


def test_the_market_form_shows_an_error_on_a_fixed_field_instead_of_failing(
    staff_client, market, btc
):
    # Data from before a token's decimals were fixed once it is added: the
    # market's amount step (0.0001) is finer than the token's unit now.
    Token.objects.filter(pk=btc.pk).update(decimals=2)

    response = staff_client.post(
        f"/admin/trading/market/{market.pk}/change/",
        {
            "min_notional": "1",
            "maker_fee": "0.001",
            "taker_fee": "0.002",
            "status": "halted",
        },
    )

    assert response.status_code == 200
    assert "Amount step: Must be a whole number of BTC units (0.01)." in (
        response.content.decode()
    )
    market.refresh_from_db()
    assert market.status == Market.Status.OPEN


def test_a_new_market_under_a_symbol_already_taken_is_a_form_error(
    staff_client, market, btc, usdt
):
    # Data from before a token's symbol was fixed once it is added: BTC-USDT
    # trades XBT now, and a new BTC is listed.
    Token.objects.filter(pk=btc.pk).update(symbol="XBT")
    new_btc = token_make("BTC")

    response = staff_client.post(
        "/admin/trading/market/add/",
        {
            "base": new_btc.pk,
            "quote": usdt.pk,
            "price_step": "0.01",
            "amount_step": "0.0001",
            "min_notional": "1",
            "maker_fee": "0",
            "taker_fee": "0",
            "status": "open",
        },
    )

    assert response.status_code == 200
    assert (
        "The symbol BTC-USDT is already the symbol of the market of XBT and USDT"
        in response.content.decode()
    )
    assert list(Market.objects.values_list("pk", flat=True)) == [market.pk]


@pytest.mark.postgres
@pytest.mark.parametrize("locked", ["0", "5"])
def test_a_credit_a_balance_cannot_hold_is_refused_with_a_message(
    staff_client, alice, btc, locked
):
    # Amount columns hold less than 10^18: on PostgreSQL the balance's write
    # overflowed (a 500). What is locked counts too.
    fund(alice, btc, "999999999999999990")
    if locked != "0":
        withdrawal_request(
            user=alice, token=btc, amount=D(locked), address="bc1q", reference="w"
        )
    before = balance(alice, btc)
    entries = LedgerEntry.objects.count()

    response = credit(staff_client, alice, btc, "10", reference="tx-big")

    assert response.status_code == 200
    assert (
        "Nothing was credited: 10 BTC would take the balance to "
        "1,000,000,000,000,000,000 BTC" in response.content.decode()
    )
    assert balance(alice, btc) == before
    assert LedgerEntry.objects.count() == entries
    assert not Deposit.objects.filter(reference="tx-big").exists()
    fits = credit(staff_client, alice, btc, "9.99999999", reference="tx-fits")
    assert fits.status_code == 302
    assert sum(balance(alice, btc)) == D("999999999999999999.99999999")


# -- In a browser: the autocomplete and the confirmation, as staff use them -----

STAFF_PASSWORD = "staff-pass-2026"


def staff_sign_in(page, live_server, mfa_enable, path: str) -> None:
    """Open ``path`` of the admin as a superuser with an authenticator app,
    through the site's log-in and its second step."""
    staff = get_user_model().objects.create_superuser(
        "boss", email="boss@example.com", password=STAFF_PASSWORD
    )
    app = AuthenticatorApp(mfa_enable(staff))
    page.goto(f"{live_server.url}{path}")
    page.locator('input[name="login"]').fill("boss")
    page.locator('input[name="password"]').fill(STAFF_PASSWORD)
    page.get_by_role("button", name="Sign In").click()
    page.locator('input[name="code"]').fill(app.code())
    page.get_by_role("button", name="Sign In").click()
    page.wait_for_url(f"**{path}")


@pytest.mark.django_db(transaction=True)
def test_staff_credit_a_deposit_finding_the_user_by_e_mail_in_a_browser(
    page, live_server, mfa_enable, alice, bob, btc
):
    staff_sign_in(page, live_server, mfa_enable, CREDIT_URL)

    def credit_in_form(reference: str) -> None:
        page.goto(f"{live_server.url}{CREDIT_URL}")
        page.locator(".select2-selection").click()
        page.locator(".select2-search__field").fill("alice@exa")
        found = page.get_by_role("option", name="alice <alice@example.com>")
        found.wait_for()
        page.screenshot_step("user-found")
        found.click()
        page.locator("#id_token").select_option(str(btc.pk))
        page.locator("#id_amount").fill("1.25")
        page.locator("#id_reference").fill(reference)
        page.get_by_role("button", name="Credit").click()

    credit_in_form("tx-browser")
    page.get_by_text("Deposit tx-browser: 1.25 BTC is credited.").wait_for()
    page.screenshot_step("credited")

    credit_in_form("tx-browser")
    page.get_by_text("Nothing was credited: reference tx-browser").wait_for()
    page.screenshot_step("repeated")

    assert balance(alice, btc) == (D("1.25"), D("0"))
    assert balance(bob, btc) == (D("0"), D("0"))


@pytest.mark.django_db(transaction=True)
def test_approving_a_withdrawal_takes_a_second_click_on_a_confirmation_page(
    page, live_server, mfa_enable, pending, alice, btc
):
    staff_sign_in(page, live_server, mfa_enable, "/admin/trading/withdrawal/")

    page.locator(f'input[name="_selected_action"][value="{pending.pk}"]').check()
    page.locator('select[name="action"]').select_option("start_sending")
    page.get_by_role("button", name="Go").click()
    page.get_by_role("heading", name="Start sending withdrawals").wait_for()
    page.get_by_role("button", name="Yes, start sending 1").click()
    page.get_by_text("1 now being sent.").wait_for()
    pending.refresh_from_db()
    assert pending.status == Withdrawal.Status.PROCESSING

    page.locator(f'input[name="_selected_action"][value="{pending.pk}"]').check()
    page.locator('select[name="action"]').select_option("approve")
    page.get_by_role("button", name="Go").click()

    page.get_by_role("heading", name="Approve withdrawals").wait_for()
    page.screenshot_step("confirmation")
    pending.refresh_from_db()
    assert pending.status == Withdrawal.Status.PROCESSING
    assert balance(alice, btc) == (D("1"), D("2"))

    page.get_by_role("button", name="Yes, approve 1").click()
    page.get_by_text("1 approved.").wait_for()
    pending.refresh_from_db()
    assert pending.status == Withdrawal.Status.APPROVED
    assert balance(alice, btc) == (D("1"), D("0"))
