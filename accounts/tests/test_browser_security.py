"""The account's security in a real browser, with mail through a real SMTP server.

Sign up, verify the address from the mail the SMTP server on loopback got,
turn on two-factor authentication with codes computed here (RFC 6238), sign
in with a code and with a recovery code, and end another browser's session.
Pages are driven by form field names and the words allauth puts on buttons and
headings, not by the site's CSS.
"""

from __future__ import annotations

import re
from urllib.parse import urlsplit

import pytest
from allauth.account.models import EmailAddress
from allauth.mfa.models import Authenticator
from allauth.mfa.recovery_codes.internal.auth import RecoveryCodes
from allauth.usersessions.models import UserSession
from django.contrib.auth import get_user_model
from playwright.sync_api import expect

from accounts.tests.totp import AuthenticatorApp

pytestmark = pytest.mark.django_db(transaction=True)

USERNAME = "satoshi"
EMAIL = "satoshi@example.com"
PASSWORD = "correct-horse-battery-9"
FIREFOX_ON_WINDOWS = (
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:128.0) Gecko/20100101 Firefox/128.0"
)


def sign_in(page, live_server, *, second_factor: str) -> None:
    page.goto(f"{live_server.url}/accounts/login/")
    page.locator('input[name="login"]').fill(USERNAME)
    page.locator('input[name="password"]').fill(PASSWORD)
    page.get_by_role("button", name="Sign In").click()
    page.wait_for_url("**/accounts/2fa/authenticate/")
    page.locator('input[name="code"]').fill(second_factor)
    page.get_by_role("button", name="Sign In").click()


def sign_out(page, live_server) -> None:
    page.goto(f"{live_server.url}/accounts/logout/")
    page.get_by_role("button", name="Sign Out").click()
    page.wait_for_url(f"{live_server.url}/")


def test_sign_up_verify_turn_on_2fa_sign_in_with_codes_and_end_another_session(
    browser, page, live_server, smtp_server, watch_headers
):
    # Sign up: the address is not verified yet, the link comes by mail.
    page.goto(f"{live_server.url}/accounts/signup/")
    page.locator('input[name="username"]').fill(USERNAME)
    page.locator('input[name="email"]').fill(EMAIL)
    page.locator('input[name="password1"]').fill(PASSWORD)
    page.locator('input[name="password2"]').fill(PASSWORD)
    page.screenshot_step("sign-up")
    page.get_by_role("button", name="Sign Up").click()
    page.wait_for_url("**/accounts/profile/")
    expect(page.get_by_text("not verified", exact=True)).to_be_visible()
    page.screenshot_step("signed-up")
    user = get_user_model().objects.get(username=USERNAME)
    assert not EmailAddress.objects.get(user=user, email=EMAIL).verified

    verification = smtp_server.wait_for("Confirm Your Email Address", to=EMAIL)
    assert verification.envelope_to == [EMAIL]
    link = re.search(r"\S+/accounts/confirm-email/[^/\s]+/", verification.text)
    assert link, verification.text
    assert link.group(0) in verification.html
    # The link is absolute (https outside DEBUG); the live server answers on
    # its own address, so only the path is taken from it.
    page.goto(live_server.url + urlsplit(link.group(0)).path)
    page.screenshot_step("confirm-email")
    page.get_by_role("button", name="Confirm").click()
    page.wait_for_url("**/accounts/profile/")
    expect(page.get_by_text("verified", exact=True)).to_be_visible()
    expect(page.get_by_text("not verified", exact=True)).to_have_count(0)
    page.screenshot_step("verified")
    assert EmailAddress.objects.get(user=user, email=EMAIL).verified

    # Two-factor authentication, after the password once more (allauth asks
    # again for a recent sign-in: ACCOUNT_REAUTHENTICATION_REQUIRED); the
    # code is computed from the secret the page shows.
    page.goto(f"{live_server.url}/accounts/2fa/totp/activate/")
    page.wait_for_url("**/accounts/reauthenticate/?next=*")
    page.locator('input[name="password"]').fill(PASSWORD)
    page.get_by_role("button", name="Confirm").click()
    page.wait_for_url("**/accounts/2fa/totp/activate/")
    secret = page.get_by_label("Authenticator secret").input_value()
    assert re.fullmatch(r"[A-Z2-7]{32}", secret), secret
    # The QR code: allauth's alternative text is the secret, the site's
    # template may name it.
    qr_code = page.get_by_role("img", name=re.compile(rf"QR code|{secret}", re.I))
    expect(qr_code.first).to_be_visible()
    app = AuthenticatorApp(secret)
    page.locator('input[name="code"]').fill(app.code())
    page.screenshot_step("activate-totp")
    page.get_by_role("button", name="Activate").click()
    page.wait_for_url("**/accounts/2fa/recovery-codes/")
    recovery_codes = page.get_by_label("Unused codes").input_value().split()
    page.screenshot_step("recovery-codes")
    assert len(recovery_codes) == 10
    assert Authenticator.objects.filter(
        user=user, type=Authenticator.Type.TOTP
    ).exists()
    smtp_server.wait_for("Authenticator App Activated", to=EMAIL)

    # Log out, and back in with the next code of the app.
    sign_out(page, live_server)
    page.screenshot_step("signed-out")
    sign_in(page, live_server, second_factor=app.code())
    page.wait_for_url("**/accounts/profile/")
    page.screenshot_step("signed-in-with-totp")

    # A second browser (another device) signs in with a recovery code; used
    # again there, the same code is refused, and the next one works.
    second_context = browser.new_context(
        user_agent=FIREFOX_ON_WINDOWS, viewport={"width": 1200, "height": 900}
    )
    watch_headers(second_context)
    try:
        second = second_context.new_page()
        second.set_default_timeout(15_000)
        sign_in(second, live_server, second_factor=recovery_codes[0])
        second.wait_for_url("**/accounts/profile/")
        new_device = smtp_server.wait_for("New sign-in", to=EMAIL)
        assert "Firefox on Windows" in new_device.subject
        assert "Firefox on Windows" in new_device.text

        sign_out(second, live_server)
        sign_in(second, live_server, second_factor=recovery_codes[0])
        expect(second.get_by_text("Incorrect code.")).to_be_visible()
        assert urlsplit(second.url).path == "/accounts/2fa/authenticate/"
        rc = Authenticator.objects.get(user=user, type="recovery_codes")
        assert len(RecoveryCodes(rc).get_unused_codes()) == 9
        second.locator('input[name="code"]').fill(recovery_codes[1])
        second.get_by_role("button", name="Sign In").click()
        second.wait_for_url("**/accounts/profile/")
        assert UserSession.objects.filter(user=user).count() == 2

        # The first browser ends the second one's session from its profile.
        page.goto(f"{live_server.url}/accounts/profile/")
        sessions = page.get_by_role("table", name="Where you are signed in")
        other_row = sessions.get_by_role("row").filter(has_text="Firefox on Windows")
        expect(other_row).to_have_count(1)
        page.screenshot_step("sessions")
        other_row.get_by_role("button", name=re.compile(r"^End\b")).click()
        expect(
            sessions.get_by_role("row").filter(has_text="Firefox on Windows")
        ).to_have_count(0)
        page.screenshot_step("session-ended")
        assert UserSession.objects.filter(user=user).count() == 1

        second.goto(f"{live_server.url}/accounts/profile/")
        second.wait_for_url("**/accounts/login/**")
        expect(second.locator('input[name="password"]')).to_be_visible()
    finally:
        second_context.close()

    # The first browser is still signed in; the mails were sent once each.
    page.goto(f"{live_server.url}/accounts/profile/")
    page.wait_for_url("**/accounts/profile/")
    subjects = [mail.subject for mail in smtp_server.messages]
    assert sum("Confirm Your Email Address" in s for s in subjects) == 1, subjects
    assert sum("Authenticator App Activated" in s for s in subjects) == 1, subjects
    assert sum("New sign-in" in s for s in subjects) == 1, subjects
    assert all(mail.envelope_to == [EMAIL] for mail in smtp_server.messages)
