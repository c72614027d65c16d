"""allauth's own notices (password, address, 2FA changed) go, as the site's
do, only to an address verified for the account: anyone can sign up with a
stranger's address and then change the password, or turn 2FA on and off, as
often as they like. As the loopback SMTP server receives them."""

from __future__ import annotations

import logging
import re
from urllib.parse import urlsplit

import pytest
from allauth.account.models import EmailAddress
from allauth.mfa.models import Authenticator
from django.test import Client

from accounts.tests.test_mail_recipients import notices_not_sent
from accounts.tests.totp import current_code
from tests.factories import PASSWORD, user_make

# allauth sends its notices in the request, after the rows are committed.
pytestmark = pytest.mark.django_db(transaction=True)

NEW_PASSWORD = "a-new-pass-2026"


@pytest.fixture
def notices_logged(caplog):
    caplog.set_level(logging.INFO, logger="accounts.adapter")
    return lambda: notices_not_sent(caplog)


def password_change(client: Client) -> None:
    response = client.post(
        "/accounts/password/change/",
        {"oldpassword": PASSWORD, "password1": NEW_PASSWORD, "password2": NEW_PASSWORD},
    )
    assert response.status_code == 302, response.content.decode()[:500]


def signed_in_client(user) -> Client:
    client = Client()
    response = client.post(
        "/accounts/login/", {"login": user.username, "password": PASSWORD}
    )
    assert response.status_code == 302
    return client


def address_confirm(client: Client, mail) -> None:
    link = re.search(r"\S+/accounts/confirm-email/[^/\s]+/", mail.text)
    assert client.post(urlsplit(link[0]).path).status_code == 302


def test_a_password_change_is_not_mailed_to_an_unverified_address(
    smtp_server, notices_logged
):
    alice = user_make("alice", verified=False)

    password_change(signed_in_client(alice))

    alice.refresh_from_db()
    assert alice.check_password(NEW_PASSWORD)
    assert smtp_server.messages == []
    assert notices_logged() == [(alice.pk, "account/email/password_changed")]


def test_a_password_change_is_mailed_to_a_verified_address(smtp_server, notices_logged):
    alice = user_make("alice")

    password_change(signed_in_client(alice))

    assert [(mail.envelope_to, mail.subject) for mail in smtp_server.messages] == [
        (["alice@example.com"], "[Crypto Exchange] Password Changed")
    ]
    assert notices_logged() == []


def test_an_address_change_is_mailed_to_the_verified_old_address(
    smtp_server, reauthenticate, notices_logged
):
    alice = user_make("alice")
    client = signed_in_client(alice)
    reauthenticate(client, PASSWORD)
    client.post("/accounts/email/", {"email": "new@example.com", "action_add": ""})

    address_confirm(client, smtp_server.wait_for("Confirm", to="new@example.com"))

    # allauth deletes the old address before it mails it.
    assert list(
        EmailAddress.objects.filter(user=alice).values_list("email", "verified")
    ) == [("new@example.com", True)]
    changed = smtp_server.wait_for("Email Changed")
    assert changed.envelope_to == ["alice@example.com"]
    assert "new@example.com" in changed.text
    assert notices_logged() == []


def test_turning_2fa_off_is_not_mailed_to_an_unverified_address(
    smtp_server, mfa_enable, notices_logged
):
    alice = user_make("alice", verified=False)
    secret = mfa_enable(alice)
    client = Client()
    client.force_login(alice)
    client.post("/accounts/2fa/reauthenticate/", {"code": current_code(secret)})

    response = client.post("/accounts/2fa/totp/deactivate/")

    assert response.status_code == 302
    assert not Authenticator.objects.filter(user=alice).exists()
    assert smtp_server.messages == []
    assert notices_logged() == [(alice.pk, "mfa/email/totp_deactivated")]
