"""Bad input to the account flows: expired or reused verification and reset
links, wrong or reused second-factor codes. Each is answered with a message a
person understands, and nothing changes."""

from __future__ import annotations

import re
import time
from datetime import datetime, timedelta
from types import SimpleNamespace
from unittest import mock
from urllib.parse import urlsplit

import pytest
from allauth.account import app_settings as account_settings
from allauth.account.forms import default_token_generator
from allauth.account.models import EmailAddress
from allauth.mfa.models import Authenticator
from allauth.mfa.recovery_codes.internal.auth import RecoveryCodes
from allauth.mfa.totp.internal.auth import TOTP, generate_totp_secret
from django.conf import settings
from django.contrib.auth import get_user_model
from django.core import signing
from django.test import Client, override_settings

from accounts.models import SecurityEvent
from accounts.tests.totp import TOTP_STEP, current_code, totp_code
from tests.factories import PASSWORD, sign_up, signed_in

pytestmark = pytest.mark.django_db

NEW_PASSWORD = "purple-monkey-dishwasher-4"
LINK_REFUSED = "This email confirmation link expired or is invalid."
RESET_REFUSED = "The password reset link was invalid"
INCORRECT_CODE = "Incorrect code."
LOCKED = (
    "Too many failed log-in attempts for this account or from your address. "
    f"Try again in {settings.LOGIN_FAILURE_WINDOW_MINUTES} minutes."
)
ASKS_FOR_A_CODE = (
    "Enter the code from your authenticator app, or one of your recovery codes."
)
LOST_BOTH = (
    "Lost both? Contact us: staff can turn two-factor authentication off once "
    "they have checked it is you."
)


def page_text(response) -> str:
    """The page's words, tags stripped and spaces collapsed."""
    text = re.sub(r"<[^>]+>", " ", response.content.decode())
    return " ".join(text.split())


def link_path(mail, pattern: str) -> str:
    """The path of the link in a mail (links are absolute, https outside DEBUG)."""
    found = re.search(rf"https?://\S+{pattern}", mail.body)
    assert found, mail.body
    return urlsplit(found.group(0)).path


@pytest.fixture
def signed_up(client, mailoutbox, django_capture_on_commit_callbacks):
    """Someone who signed up with an address (not verified yet), and the
    verification link of the mail."""
    with django_capture_on_commit_callbacks(execute=True):
        response = sign_up(client, "alice")
    assert response.status_code == 302, page_text(response)
    (mail,) = [m for m in mailoutbox if "Confirm Your Email Address" in m.subject]
    user = get_user_model().objects.get(username="alice")
    return SimpleNamespace(
        user=user,
        address=EmailAddress.objects.get(user=user),
        link=link_path(mail, r"/accounts/confirm-email/[^/\s]+/"),
    )


def shifted_signing_clock(seconds: float):
    """Django's signing (allauth's HMAC confirmation keys) sees a later time."""
    return mock.patch.object(
        signing, "time", SimpleNamespace(time=lambda: time.time() + seconds)
    )


def test_the_rfc_6238_helper_gives_the_rfcs_and_allauths_codes():
    # RFC 6238 appendix B, SHA-1 at T=59 s: 94287082 (8 digits).
    rfc_secret = "GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ"  # base32("12345678901234567890")
    assert totp_code(rfc_secret, at=59, digits=8) == "94287082"
    from allauth.mfa.totp.internal.auth import format_hotp_value, hotp_value

    secret = generate_totp_secret()
    at = 1_800_000_000
    assert totp_code(secret, at=at) == format_hotp_value(
        hotp_value(secret, at // TOTP_STEP)
    )


# --- E-mail verification links ------------------------------------------------


@pytest.mark.reliability("auth-links")
def test_an_expired_verification_link_is_refused_and_the_address_stays_unverified(
    client, signed_up, mailoutbox
):
    # allauth's keys are HMAC-signed (ACCOUNT_EMAIL_CONFIRMATION_HMAC): they
    # carry their time and expire after EMAIL_CONFIRMATION_EXPIRE_DAYS.
    assert account_settings.EMAIL_CONFIRMATION_HMAC
    days = account_settings.EMAIL_CONFIRMATION_EXPIRE_DAYS
    events_before = SecurityEvent.objects.filter(user=signed_up.user).count()
    mails_before = len(mailoutbox)

    with shifted_signing_clock(days * 86400 + 60):
        opened = client.get(signed_up.link)
        confirmed = client.post(signed_up.link)

    assert opened.status_code == 200
    assert LINK_REFUSED in page_text(opened)
    assert "issue a new email confirmation request" in page_text(opened)
    # The confirmation form sent after the link expired (opened in time, sent
    # too late) is refused too; allauth answers it with a 404 page.
    assert confirmed.status_code != 302
    signed_up.address.refresh_from_db()
    assert not signed_up.address.verified
    assert SecurityEvent.objects.filter(user=signed_up.user).count() == events_before
    assert len(mailoutbox) == mails_before


def test_a_verification_link_still_works_just_before_it_expires(client, signed_up):
    days = account_settings.EMAIL_CONFIRMATION_EXPIRE_DAYS
    with shifted_signing_clock(days * 86400 - 60):
        response = client.post(signed_up.link)
    assert response.status_code == 302
    signed_up.address.refresh_from_db()
    assert signed_up.address.verified


@pytest.mark.reliability("auth-links")
def test_a_verification_link_used_twice_is_refused_the_second_time(
    client, signed_up, mailoutbox, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        assert client.post(signed_up.link).status_code == 302
    signed_up.address.refresh_from_db()
    assert signed_up.address.verified
    events_before = list(
        SecurityEvent.objects.filter(user=signed_up.user).values_list("pk", flat=True)
    )
    mails_before = len(mailoutbox)

    with django_capture_on_commit_callbacks(execute=True):
        again = client.get(signed_up.link)
    assert again.status_code == 200
    assert LINK_REFUSED in page_text(again)
    signed_up.address.refresh_from_db()
    assert signed_up.address.verified
    assert signed_up.address.email == "alice@example.com"
    after = SecurityEvent.objects.filter(user=signed_up.user).values_list(
        "pk", flat=True
    )
    assert list(after) == events_before
    assert len(mailoutbox) == mails_before


# --- Password reset links -----------------------------------------------------


@pytest.fixture
def reset_link(client, bob, mailoutbox, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post("/accounts/password/reset/", {"email": bob.email})
    assert response.status_code == 302, page_text(response)
    (mail,) = [m for m in mailoutbox if "Password Reset" in m.subject]
    return link_path(mail, r"/accounts/password/reset/key/[^/\s]+/")


def reset_password(client, link: str, password: str):
    """Open the link as a person does (allauth moves the key into the session
    and redirects to the form) and send the new password."""
    opened = client.get(link)
    if opened.status_code != 302:
        return opened
    return client.post(
        opened["Location"], {"password1": password, "password2": password}
    )


def password_is(user, password: str) -> bool:
    user.refresh_from_db()
    return user.check_password(password)


@pytest.mark.reliability("auth-links")
def test_a_reset_link_works_once_and_is_refused_when_used_again(
    client, bob, reset_link, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        done = reset_password(client, reset_link, NEW_PASSWORD)
    assert done.status_code == 302
    assert password_is(bob, NEW_PASSWORD)

    client.logout()
    with django_capture_on_commit_callbacks(execute=True):
        again = reset_password(client, reset_link, "another-new-password-77")
    assert again.status_code == 200
    assert RESET_REFUSED in page_text(again)
    assert "possibly because it has already been used" in page_text(again)
    refused = client.post(
        reset_link,
        {
            "password1": "another-new-password-77",
            "password2": "another-new-password-77",
        },
    )
    assert RESET_REFUSED in page_text(refused)
    assert password_is(bob, NEW_PASSWORD)
    assert not signed_in(client)


@pytest.mark.reliability("auth-links")
def test_a_tampered_reset_link_is_refused_and_the_password_stays(
    client, bob, reset_link
):
    last = reset_link[-2]  # the last character of the key, before the slash
    tampered = f"{reset_link[:-2]}{'1' if last == '0' else '0'}/"
    response = reset_password(client, tampered, NEW_PASSWORD)
    assert response.status_code == 200
    assert RESET_REFUSED in page_text(response)
    assert password_is(bob, PASSWORD)
    assert not signed_in(client)


@pytest.mark.reliability("auth-links")
def test_an_expired_reset_link_is_refused_and_the_password_stays(
    client, bob, reset_link
):
    later = datetime.now() + timedelta(seconds=settings.PASSWORD_RESET_TIMEOUT + 60)
    with mock.patch.object(default_token_generator, "_now", return_value=later):
        response = reset_password(client, reset_link, NEW_PASSWORD)
    assert response.status_code == 200
    assert RESET_REFUSED in page_text(response)
    assert password_is(bob, PASSWORD)
    assert not signed_in(client)


# --- Second factor at log-in ---------------------------------------------------


@pytest.fixture
def secret(bob) -> str:
    """Bob's authenticator app secret (TOTP on, with recovery codes)."""
    value = generate_totp_secret()
    TOTP.activate(bob, value)
    RecoveryCodes.activate(bob)
    return value


def password_step(client, bob):
    response = client.post(
        "/accounts/login/", {"login": bob.username, "password": PASSWORD}
    )
    assert response.status_code == 302
    assert response["Location"] == "/accounts/2fa/authenticate/"
    assert not signed_in(client)


def code_step(client, code: str):
    return client.post("/accounts/2fa/authenticate/", {"code": code})


def unused_recovery_codes(bob) -> list[str]:
    authenticator = Authenticator.objects.get(
        user=bob, type=Authenticator.Type.RECOVERY_CODES
    )
    return RecoveryCodes(authenticator).get_unused_codes()


@pytest.mark.reliability("auth-codes")
def test_a_wrong_code_at_log_in_is_refused_and_nobody_is_signed_in(client, bob, secret):
    right = current_code(secret)
    wrong = f"{(int(right) + 1) % 10**6:06d}"
    password_step(client, bob)

    response = code_step(client, wrong)

    assert response.status_code == 200
    assert INCORRECT_CODE in page_text(response)
    assert not signed_in(client)
    assert client.get("/accounts/profile/").status_code == 302
    assert len(unused_recovery_codes(bob)) == 10


@pytest.mark.reliability("auth-codes")
def test_wrong_codes_from_many_addresses_lock_the_accounts_code_step(
    client, bob, secret
):
    # The addresses' own limit would let each one guess as many codes again.
    right = current_code(secret)
    wrong = f"{(int(right) + 1) % 10**6:06d}"
    password_step(client, bob)
    for number in range(settings.LOGIN_FAILURES_PER_ACCOUNT):
        response = client.post(
            "/accounts/2fa/authenticate/",
            {"code": wrong},
            REMOTE_ADDR=f"198.51.100.{number + 1}",
        )
        assert INCORRECT_CODE in page_text(response)

    response = client.post(
        "/accounts/2fa/authenticate/",
        {"code": right},
        REMOTE_ADDR="203.0.113.9",
    )

    minutes = settings.LOGIN_FAILURE_WINDOW_MINUTES
    assert (
        "Too many failed log-in attempts for this account or from your address. "
        f"Try again in {minutes} minutes." in page_text(response)
    )
    assert not signed_in(client)


@pytest.mark.reliability("auth-codes")
def test_a_code_used_once_is_refused_the_second_time(client, bob, secret):
    code = current_code(secret)
    password_step(client, bob)
    assert code_step(client, code).status_code == 302
    assert signed_in(client)
    client.post("/accounts/logout/")
    assert not signed_in(client)

    password_step(client, bob)
    response = code_step(client, code)

    assert INCORRECT_CODE in page_text(response)
    assert not signed_in(client)
    # Still the current code: refused because it was used, not because it aged.
    assert totp_code(secret) == code


@pytest.mark.reliability("auth-codes")
def test_a_recovery_code_works_once(client, bob, secret):
    first = unused_recovery_codes(bob)[0]
    password_step(client, bob)
    page = page_text(client.get("/accounts/2fa/authenticate/"))
    assert ASKS_FOR_A_CODE in page
    assert LOST_BOTH in page
    assert code_step(client, first).status_code == 302
    assert signed_in(client)
    client.post("/accounts/logout/")
    left = unused_recovery_codes(bob)
    assert first not in left and len(left) == 9

    password_step(client, bob)
    response = code_step(client, first)

    assert INCORRECT_CODE in page_text(response)
    assert not signed_in(client)
    assert unused_recovery_codes(bob) == left


def wrong_code(secret: str) -> str:
    return f"{(int(totp_code(secret)) + 1) % 10**6:06d}"


def lock_the_code_step(bob, secret) -> None:
    """As many wrong codes at log-in as the account allows, each from an
    address of its own."""
    guesser = Client()
    password_step(guesser, bob)
    for number in range(settings.LOGIN_FAILURES_PER_ACCOUNT):
        response = guesser.post(
            "/accounts/2fa/authenticate/",
            {"code": wrong_code(secret)},
            REMOTE_ADDR=f"198.51.100.{number + 1}",
        )
        assert INCORRECT_CODE in page_text(response)


REAUTHENTICATE = "/accounts/2fa/reauthenticate/"


@pytest.mark.reliability("auth-codes")
def test_wrong_codes_when_confirming_who_you_are_lock_the_account(bob, secret):
    # A stolen signed-in session guessing from many addresses, paced under
    # allauth's limit per user and minute (lifted here rather than waited for).
    rates = {**settings.ACCOUNT_RATE_LIMITS, "reauthenticate": ""}
    stolen = Client()
    stolen.force_login(bob)
    with override_settings(ACCOUNT_RATE_LIMITS=rates):
        for number in range(settings.LOGIN_FAILURES_PER_ACCOUNT):
            response = stolen.post(
                REAUTHENTICATE,
                {"code": wrong_code(secret)},
                REMOTE_ADDR=f"198.51.100.{number + 1}",
            )
            assert INCORRECT_CODE in page_text(response)

        refused = stolen.post(
            REAUTHENTICATE, {"code": current_code(secret)}, REMOTE_ADDR="203.0.113.9"
        )

    assert refused.status_code == 200
    assert LOCKED in page_text(refused)
    asked = stolen.post("/api/keys/create/", {"name": "bot", "scopes": ["read"]})
    assert asked["Location"].startswith(REAUTHENTICATE)
    owner = Client(REMOTE_ADDR="203.0.113.10")
    password_step(owner, bob)
    assert LOCKED in page_text(code_step(owner, current_code(secret)))
    assert not signed_in(owner)


@pytest.mark.reliability("auth-codes")
def test_a_password_reset_does_not_lift_the_lock_of_wrong_codes(
    client, bob, secret, mailoutbox, django_capture_on_commit_callbacks
):
    # The mailbox is no second factor: a reset each time would give as many
    # code guesses again.
    lock_the_code_step(bob, secret)

    with django_capture_on_commit_callbacks(execute=True):
        client.post("/accounts/password/reset/", {"email": bob.email})
    (mail,) = [m for m in mailoutbox if "Password Reset" in m.subject]
    link = link_path(mail, r"/accounts/password/reset/key/[^/\s]+/")
    assert reset_password(client, link, NEW_PASSWORD).status_code == 302
    assert password_is(bob, NEW_PASSWORD)

    owner = Client(REMOTE_ADDR="203.0.113.9")
    response = owner.post(
        "/accounts/login/", {"login": bob.username, "password": NEW_PASSWORD}
    )
    assert response["Location"] == "/accounts/2fa/authenticate/"
    assert LOCKED in page_text(code_step(owner, current_code(secret)))
    assert not signed_in(owner)


def test_confirming_who_you_are_takes_a_recovery_code_and_says_so(client, bob, secret):
    client.force_login(bob)
    page = page_text(client.get(REAUTHENTICATE))
    assert ASKS_FOR_A_CODE in page
    assert LOST_BOTH in page

    response = client.post(REAUTHENTICATE, {"code": unused_recovery_codes(bob)[0]})

    assert response.status_code == 302
    assert len(unused_recovery_codes(bob)) == 9
