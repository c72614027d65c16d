"""What the owner is told by e-mail about API keys, withdrawals and the
address book (trading.notices), through the loopback SMTP server; and that
with the mail server down the action is done and answered all the same, the
lost mail logged (``notice lost``)."""

from __future__ import annotations

import re
from decimal import Decimal as D

import pytest
from django.contrib.admin.models import LogEntry
from django.db import connection, transaction

from accounts.models import SecurityEvent
from accounts.tests.mail import lost_notices, mail_server_down, mail_server_silent
from tests.factories import fund
from trading.api_keys import api_key_create
from trading.models import ApiKey, SavedAddress, Withdrawal, WithdrawalAddressPolicy
from trading.services import withdrawal_request

# The mails are sent after real commits, as in production.
pytestmark = pytest.mark.django_db(transaction=True)

Kind = SecurityEvent.Kind
EVM = "0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed"


def logged(user, kind: str) -> list[str]:
    return list(
        SecurityEvent.objects.filter(user=user, kind=kind).values_list(
            "detail", flat=True
        )
    )


# -- API keys -------------------------------------------------------------------


@pytest.mark.reliability("mail-down")
def test_a_key_created_with_mail_down_is_shown_with_its_secret_and_logged(
    settings, smtp_server, alice_client, alice, caplog
):
    with mail_server_down(settings):
        response = alice_client.post(
            "/api/keys/create/", {"name": "bot", "scopes": ["read"]}
        )

    assert response.status_code == 200
    secret = response.context["secret"]
    assert secret in response.content.decode()
    api_key = ApiKey.objects.get(user=alice)
    assert logged(alice, Kind.API_KEY_CREATED) == [f"bot ({api_key.prefix})"]
    assert lost_notices(caplog) == [(alice.pk, "accounts/email/api_key_created")]
    assert secret not in caplog.text


def test_revoking_a_key_is_mailed_to_the_owner(smtp_server, alice_client, alice):
    api_key, _ = api_key_create(user=alice, name="bot", scopes=["read"])

    response = alice_client.post(f"/api/keys/{api_key.pk}/revoke/")

    assert response.status_code == 302
    mail = smtp_server.wait_for("API key revoked", to="alice@example.com")
    assert f'named "bot" ({api_key.prefix}…) was revoked' in mail.text
    assert logged(alice, Kind.API_KEY_REVOKED) == [f"bot ({api_key.prefix})"]


@pytest.mark.reliability("mail-down")
def test_a_key_revoked_with_mail_down_is_revoked_and_logged(
    settings, smtp_server, alice_client, alice, caplog
):
    api_key, _ = api_key_create(user=alice, name="bot", scopes=["read"])

    with mail_server_down(settings):
        response = alice_client.post(f"/api/keys/{api_key.pk}/revoke/")

    assert (response.status_code, response["Location"]) == (302, "/accounts/profile/")
    api_key.refresh_from_db()
    assert api_key.revoked_at is not None
    assert logged(alice, Kind.API_KEY_REVOKED) == [f"bot ({api_key.prefix})"]
    assert lost_notices(caplog) == [(alice.pk, "accounts/email/api_key_revoked")]


class WorkerKilled(BaseException):
    """The worker dies: nothing after this point of the request runs."""


def _worker_killed() -> None:
    raise WorkerKilled


def killed_after_commit_of(table: str):
    """An execute wrapper that ends the request (``WorkerKilled``) right after
    the transaction that inserts into ``table`` commits, as a worker
    SIGKILLed at that moment: its commit stands, nothing after it runs."""
    insert = re.compile(rf'INSERT INTO "?{table}"?\s*\(')

    def wrapper(execute, sql, params, many, context):
        result = execute(sql, params, many, context)
        if insert.search(sql):
            transaction.on_commit(_worker_killed)
        return result

    return connection.execute_wrapper(wrapper)


def test_a_key_created_by_a_worker_killed_right_after_its_commit_is_logged(
    alice_client, alice
):
    with killed_after_commit_of("trading_apikey"), pytest.raises(WorkerKilled):
        alice_client.post("/api/keys/create/", {"name": "bot", "scopes": ["read"]})

    api_key = ApiKey.objects.get(user=alice)
    assert api_key.revoked_at is None
    assert logged(alice, Kind.API_KEY_CREATED) == [f"bot ({api_key.prefix})"]


# -- Withdrawals ----------------------------------------------------------------


@pytest.mark.parametrize("channel", ["page", "api"])
def test_a_withdrawal_left_unannounced_by_a_killed_worker_is_announced_once_on_resend(
    channel, smtp_server, alice_client, as_alice, alice, usdt
):
    fund(alice, usdt, "100")
    form = {"token": "USDT", "amount": "2", "address": "a1", "reference": "r-1"}
    # The first request committed the withdrawal, and its worker was killed
    # before the notice.
    withdrawal_request(
        user=alice, token=usdt, amount=D("2"), address="a1", reference="r-1"
    )
    assert logged(alice, Kind.WITHDRAWAL_REQUESTED) == []

    for _ in range(2):
        if channel == "page":
            response = alice_client.post("/wallet/", form, follow=True)
            assert response.redirect_chain == [("/wallet/", 302)]
            assert "Withdrawal requested" in response.content.decode()
        else:
            response = as_alice.post("/api/v1/withdrawals/", form, format="json")
            assert response.status_code == 200
            assert response.json()["reference"] == "r-1"

    smtp_server.wait_for("Withdrawal of 2 USDT requested", to="alice@example.com")
    assert logged(alice, Kind.WITHDRAWAL_REQUESTED) == ["2 USDT (reference r-1)"]
    mailed = [m for m in smtp_server.messages if "Withdrawal of" in m.subject]
    assert len(mailed) == 1
    assert Withdrawal.objects.filter(user=alice).count() == 1


@pytest.mark.reliability("mail-down")
def test_a_withdrawal_requested_and_cancelled_with_mail_down_is_done(
    settings, smtp_server, alice_client, alice, usdt, caplog
):
    fund(alice, usdt, "100")
    form = {"token": "USDT", "amount": "2", "address": "a1", "reference": "r-1"}

    with mail_server_down(settings):
        requested = alice_client.post("/wallet/", form, follow=True)
        withdrawal = Withdrawal.objects.get(user=alice)
        cancelled = alice_client.post(
            f"/wallet/withdrawals/{withdrawal.pk}/cancel/", follow=True
        )

    assert requested.redirect_chain == [("/wallet/", 302)]
    assert "Withdrawal requested" in requested.content.decode()
    assert cancelled.redirect_chain == [("/wallet/", 302)]
    assert "cancelled; the amount is available again" in cancelled.content.decode()
    withdrawal.refresh_from_db()
    assert withdrawal.status == Withdrawal.Status.CANCELLED
    assert logged(alice, Kind.WITHDRAWAL_REQUESTED) == ["2 USDT (reference r-1)"]
    assert lost_notices(caplog) == [
        (alice.pk, "accounts/email/withdrawal_requested"),
        (alice.pk, "accounts/email/withdrawal_decided"),
    ]


def three_requested_withdrawals(user, token):
    """The primary keys of three pending withdrawals of 1 token each."""
    fund(user, token, "10")
    return [
        withdrawal_request(
            user=user, token=token, amount=D(1), address="a1", reference=f"r-{n}"
        ).pk
        for n in range(3)
    ]


def sending_started(staff_client, selected: list[int]) -> None:
    """Staff start sending the withdrawals (no mail: the user is told once
    each ends), as they do before approving them."""
    response = staff_client.post(
        "/admin/trading/withdrawal/",
        {"action": "start_sending", "_selected_action": selected, "post": "yes"},
        follow=True,
    )
    assert f"{len(selected)} now being sent." in response.content.decode()


@pytest.mark.reliability("mail-down")
def test_staff_approve_every_selected_withdrawal_with_mail_down(
    settings, smtp_server, staff_client, alice, usdt, caplog
):
    selected = three_requested_withdrawals(alice, usdt)
    sending_started(staff_client, selected)

    with mail_server_down(settings):
        response = staff_client.post(
            "/admin/trading/withdrawal/",
            {"action": "approve", "_selected_action": selected, "post": "yes"},
            follow=True,
        )

    assert response.status_code == 200
    assert "3 approved" in response.content.decode()
    assert set(Withdrawal.objects.values_list("status", flat=True)) == {
        Withdrawal.Status.APPROVED
    }
    assert lost_notices(caplog) == [(alice.pk, "accounts/email/withdrawal_decided")] * 3


@pytest.mark.reliability("mail-down")
def test_staff_approving_many_withdrawals_wait_for_a_silent_mail_server_once(
    settings, smtp_server, staff_client, alice, usdt, caplog
):
    """A mail server that takes the connection and never answers: the first
    decision's mail is given up after EMAIL_TIMEOUT, the others are not tried
    (the action stays well inside gunicorn's timeout), and every row is
    decided and in the admin's log."""
    selected = three_requested_withdrawals(alice, usdt)
    sending_started(staff_client, selected)

    with mail_server_silent(settings) as connections:
        response = staff_client.post(
            "/admin/trading/withdrawal/",
            {"action": "approve", "_selected_action": selected, "post": "yes"},
            follow=True,
        )
        assert len(connections) == 1

    assert "3 approved" in response.content.decode()
    assert set(Withdrawal.objects.values_list("status", flat=True)) == {
        Withdrawal.Status.APPROVED
    }
    assert sorted(
        LogEntry.objects.filter(change_message="approved").values_list(
            "object_id", flat=True
        )
    ) == sorted(str(pk) for pk in selected)
    assert lost_notices(caplog) == [(alice.pk, "accounts/email/withdrawal_decided")] * 3


# -- The address book and its setting -------------------------------------------


def test_saving_an_address_mails_the_owner_its_label_and_when_it_is_usable(
    smtp_server, alice_client, alice, usdt
):
    response = alice_client.post(
        "/wallet/addresses/",
        {"book-label": "Cold wallet", "book-token": "USDT", "book-address": EVM},
    )

    assert response.status_code == 302
    saved = SavedAddress.objects.get(user=alice)
    mail = smtp_server.wait_for("USDT withdrawal address saved")
    assert mail.to == "alice@example.com"
    # The address first, the label in quotes: a label cannot pass for it.
    assert (
        "An address for USDT, 0x5aAeb6…1BeAed, was saved in your address book "
        'with the label "Cold wallet".'
    ) in " ".join(mail.text.split())
    assert EVM not in mail.text
    assert f"{saved.usable_from:%Y-%m-%d %H:%M} UTC" in mail.text
    assert logged(alice, Kind.ADDRESS_SAVED) == [f"USDT Cold wallet: {EVM}"]
    assert len(smtp_server.messages) == 1


@pytest.mark.reliability("mail-down")
def test_an_address_saved_with_mail_down_is_saved_and_logged(
    settings, smtp_server, alice_client, alice, usdt, caplog
):
    with mail_server_down(settings):
        response = alice_client.post(
            "/wallet/addresses/",
            {"book-label": "Cold wallet", "book-token": "USDT", "book-address": EVM},
            follow=True,
        )

    assert response.redirect_chain == [("/wallet/#address-book", 302)]
    assert "Address “Cold wallet” saved" in response.content.decode()
    assert SavedAddress.objects.filter(user=alice, address=EVM).exists()
    assert logged(alice, Kind.ADDRESS_SAVED) == [f"USDT Cold wallet: {EVM}"]
    assert lost_notices(caplog) == [(alice.pk, "accounts/email/address_saved")]


def test_turning_saved_only_off_is_mailed_once_with_when_it_takes_effect(
    smtp_server, alice_client, alice
):
    alice_client.post("/wallet/addresses/setting/", {"saved_only": "on"})
    assert smtp_server.messages == []  # more protection: nothing to fear

    response = alice_client.post("/wallet/addresses/setting/", {})
    alice_client.post("/wallet/addresses/setting/", {})  # sent again

    assert response.status_code == 302
    ends = WithdrawalAddressPolicy.objects.get(user=alice).saved_only_ends_at
    when = f"{ends:%Y-%m-%d %H:%M} UTC"
    mail = smtp_server.wait_for(f"Withdrawals to any address from {when}")
    assert mail.to == "alice@example.com"
    assert "was turned off" in mail.text and f"from {when}" in mail.text
    assert len(smtp_server.messages) == 1
    assert logged(alice, Kind.WITHDRAWAL_POLICY_CHANGED) == [
        f"saved addresses only, until {when}",
        f"saved addresses only, until {when}",
        "saved addresses only",
    ]


@pytest.mark.reliability("mail-down")
def test_saved_only_turned_off_with_mail_down_is_done_and_logged(
    settings, smtp_server, alice_client, alice, caplog
):
    alice_client.post("/wallet/addresses/setting/", {"saved_only": "on"})

    with mail_server_down(settings):
        response = alice_client.post("/wallet/addresses/setting/", {}, follow=True)

    assert response.redirect_chain == [("/wallet/#address-book", 302)]
    assert "Withdrawals may go to any address again from" in response.content.decode()
    policy = WithdrawalAddressPolicy.objects.get(user=alice)
    assert policy.saved_only_ends_at is not None
    assert lost_notices(caplog) == [(alice.pk, "accounts/email/withdrawal_policy_off")]
