"""The mail server down while a security action is done: the action is done
and answered as a success, its log entries are written, and the mail that
could not be sent is logged (``notice lost``). Mail goes through the loopback
SMTP server, and to a closed loopback port while it is "down"."""

from __future__ import annotations

import time

import pytest
from allauth.account.models import EmailAddress
from allauth.mfa.models import Authenticator
from django.contrib.auth import get_user_model
from django.test import Client

from accounts import adapter
from accounts.models import SecurityEvent
from accounts.services import NEW_BROWSER_NOT_MAILED
from accounts.tests.mail import lost_notices, mail_server_down, mail_server_silent
from accounts.tests.totp import totp_code
from tests.factories import PASSWORD, sign_up, signed_in, user_make

# The mails are sent after real commits, as in production.
pytestmark = pytest.mark.django_db(transaction=True)

Kind = SecurityEvent.Kind
FIREFOX = "Mozilla/5.0 (X11; Linux x86_64; rv:140.0) Gecko/20100101 Firefox/140.0"
SAFARI = (
    "Mozilla/5.0 (iPhone; CPU iPhone OS 18_0 like Mac OS X) AppleWebKit/605.1.15 "
    "(KHTML, like Gecko) Version/18.0 Mobile/15E148 Safari/604.1"
)


def log_in(client: Client):
    return client.post("/accounts/login/", {"login": "alice", "password": PASSWORD})


def reset_asked(client: Client, email: str) -> str:
    """Ask for a password reset link for ``email``; the page answered."""
    response = client.post("/accounts/password/reset/", {"email": email}, follow=True)
    assert response.status_code == 200
    return response.content.decode()


def lost_errors(caplog) -> list[str]:
    """Why each ``notice lost`` was lost, in order."""
    return [
        record.error
        for record in caplog.records
        if record.getMessage() == "notice lost"
    ]


RESET_SENT = "We have sent you an email."
RESET_LOST = "The e-mail could not be sent right now."


@pytest.mark.reliability("mail-down")
def test_a_password_change_is_done_logged_and_answered_with_its_mail_lost(
    settings, smtp_server, caplog
):
    alice = user_make("alice")
    elsewhere, here = Client(HTTP_USER_AGENT=FIREFOX), Client(HTTP_USER_AGENT=FIREFOX)
    log_in(elsewhere), log_in(here)

    with mail_server_down(settings):
        response = here.post(
            "/accounts/password/change/",
            {
                "oldpassword": PASSWORD,
                "password1": "a-new-pass-2026",
                "password2": "a-new-pass-2026",
            },
            follow=True,
        )

    assert response.status_code == 200
    assert "Password successfully changed." in response.content.decode()
    alice.refresh_from_db()
    assert alice.check_password("a-new-pass-2026")
    assert SecurityEvent.objects.filter(user=alice, kind=Kind.PASSWORD_CHANGED).exists()
    assert signed_in(here) and not signed_in(elsewhere)
    assert lost_notices(caplog) == [(alice.pk, "account/email/password_changed")]
    assert smtp_server.messages == []


@pytest.mark.reliability("mail-down")
def test_turning_2fa_off_is_done_and_logged_with_its_mail_lost(
    settings, smtp_server, mfa_enable, caplog
):
    alice = user_make("alice")
    secret = mfa_enable(alice)
    client = Client()
    client.force_login(alice)
    client.post("/accounts/2fa/reauthenticate/", {"code": totp_code(secret)})

    with mail_server_down(settings):
        response = client.post("/accounts/2fa/totp/deactivate/")

    assert response.status_code == 302
    assert not Authenticator.objects.filter(user=alice, type="totp").exists()
    assert SecurityEvent.objects.filter(user=alice, kind=Kind.MFA_DISABLED).exists()
    assert lost_notices(caplog) == [(alice.pk, "mfa/email/totp_deactivated")]


@pytest.mark.reliability("mail-down")
def test_a_new_address_is_confirmed_with_the_mail_to_the_old_one_lost(
    settings, smtp_server, reauthenticate, caplog
):
    alice = user_make("alice")
    client = Client()
    client.force_login(alice)
    reauthenticate(client, PASSWORD)
    client.post("/accounts/email/", {"email": "new@example.com", "action_add": ""})
    mail = smtp_server.wait_for("Confirm", to="new@example.com")
    link = next(word for word in mail.text.split() if "/confirm-email/" in word)

    with mail_server_down(settings):
        response = client.post(link[link.index("/accounts/") :])

    assert response.status_code == 302
    alice.refresh_from_db()
    assert alice.email == "new@example.com"
    event = SecurityEvent.objects.get(user=alice, kind=Kind.EMAIL_CHANGED)
    assert event.detail == "alice@example.com → new@example.com"
    assert lost_notices(caplog) == [(alice.pk, "account/email/email_changed")]


@pytest.mark.reliability("mail-down")
def test_a_sign_up_whose_link_is_lost_makes_the_account_and_may_ask_again(
    settings, smtp_server, caplog
):
    client = Client()

    with mail_server_down(settings):
        response = sign_up(client, "newbie")

    assert response.status_code == 302
    page = client.get(response.url, follow=True).content.decode()
    assert (
        "The confirmation e-mail to newbie@example.com could not be sent right now."
    ) in page
    assert "Confirmation email sent" not in page
    assert signed_in(client)
    newbie = get_user_model().objects.get(username="newbie")
    assert not EmailAddress.objects.get(user=newbie).verified
    assert lost_notices(caplog) == [
        (newbie.pk, "account/email/email_confirmation_signup")
    ]

    # The server is back: asking for the link again sends it at once.
    client.post("/accounts/email/", {"email": "newbie@example.com", "action_send": ""})

    mail = smtp_server.wait_for("Confirm", to="newbie@example.com")
    assert "/accounts/confirm-email/" in mail.text


@pytest.mark.reliability("mail-down")
def test_a_new_browser_whose_mail_is_lost_is_announced_at_its_next_sign_in(
    settings, smtp_server, caplog
):
    alice = user_make("alice")
    log_in(Client(HTTP_USER_AGENT=FIREFOX))  # the first sign-in: no mail
    safari = Client(HTTP_USER_AGENT=SAFARI)

    with mail_server_down(settings):
        response = log_in(safari)

    assert response.status_code == 302
    assert signed_in(safari)
    lost = SecurityEvent.objects.filter(user=alice, kind=Kind.SIGN_IN).first()
    assert (lost.user_agent, lost.detail) == (SAFARI, NEW_BROWSER_NOT_MAILED)
    assert lost_notices(caplog) == [(alice.pk, "accounts/email/new_sign_in")]
    assert smtp_server.messages == []

    # The server is back: the next sign-in from that browser is announced,
    # and from then on the browser is known.
    safari.post("/accounts/logout/")
    assert log_in(safari).status_code == 302

    mail = smtp_server.wait_for("New sign-in from Safari on iOS")
    assert mail.to == "alice@example.com"
    announced = SecurityEvent.objects.filter(user=alice, kind=Kind.SIGN_IN).first()
    assert announced.detail == ""

    safari.post("/accounts/logout/")
    log_in(safari)

    assert len(smtp_server.messages) == 1
    assert SecurityEvent.objects.filter(user=alice, kind=Kind.SIGN_IN).count() == 4


@pytest.mark.reliability("mail-down")
def test_a_silent_mail_server_is_waited_for_once_then_skipped_for_a_while(
    settings, smtp_server, caplog, monkeypatch
):
    """Every request (every worker, through the shared cache) skips a server
    that did not answer, for ``MAIL_SERVER_REST_SECONDS``; then it is tried
    again."""
    user_make("alice"), user_make("bob")
    monkeypatch.setattr(adapter, "MAIL_SERVER_REST_SECONDS", 2)

    with mail_server_silent(settings) as connections:
        reset_asked(Client(), "alice@example.com")
        assert len(connections) == 1
        reset_asked(Client(), "bob@example.com")
        assert len(connections) == 1
        assert lost_errors(caplog) == ["SMTPServerDisconnected", "MailServerSkipped"]

        time.sleep(2.5)  # the rest is over
        reset_asked(Client(), "bob@example.com")
        assert len(connections) == 2

    assert lost_errors(caplog)[2:] == ["SMTPServerDisconnected"]
    assert smtp_server.messages == []


@pytest.mark.reliability("mail-down")
def test_a_reset_whose_mail_is_lost_says_so_and_does_not_use_up_the_limit(
    settings, smtp_server, caplog
):
    """Three requests within the address's limit (``reset_password``,
    3 per 15 minutes) whose mails are lost leave it whole."""
    alice = user_make("alice")
    client = Client()

    with mail_server_down(settings):
        for _ in range(3):
            page = reset_asked(client, "alice@example.com")
            assert RESET_LOST in page and RESET_SENT not in page

    assert lost_notices(caplog) == [(alice.pk, "account/email/password_reset_key")] * 3
    page = reset_asked(client, "alice@example.com")
    assert RESET_SENT in page and RESET_LOST not in page
    mail = smtp_server.wait_for("Password Reset", to="alice@example.com")
    assert "/accounts/password/reset/key/" in mail.text


@pytest.mark.reliability("mail-down")
def test_a_lost_reset_mail_reads_alike_for_an_address_with_no_account(
    settings, smtp_server
):
    user_make("alice")

    with mail_server_down(settings):
        known = reset_asked(Client(), "alice@example.com")
        unknown = reset_asked(Client(), "nobody@example.com")

    # allauth mails an address with no account that it has none.
    assert RESET_LOST in known and RESET_LOST in unknown


@pytest.mark.reliability("mail-down")
def test_a_lost_reset_mail_is_not_told_where_no_account_would_be_mailed(
    settings, smtp_server
):
    """Without allauth's mail to an address with no account, nothing is sent
    to one to be lost: saying that the mail was lost would tell that the
    address has an account."""
    settings.ACCOUNT_EMAIL_UNKNOWN_ACCOUNTS = False
    user_make("alice")

    with mail_server_down(settings):
        known = reset_asked(Client(), "alice@example.com")
        unknown = reset_asked(Client(), "nobody@example.com")

    assert RESET_SENT in known and RESET_SENT in unknown
