"""A password reset, or two-factor authentication turned off, leaves the API
keys working: the owner is told which, and how to revoke them."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.core import mail
from django.utils import timezone

from trading.api_keys import api_key_create, api_key_revoke
from trading.models import ApiKey

pytestmark = pytest.mark.django_db

NEW_PASSWORD = "a-fresh-pass-2026"
SUBJECT = "[Crypto Exchange] Your API keys still work"


def reset_password(client, user, capture):
    """Reset ``user``'s password from the mailed link, as a visitor does; the
    page shown at the end."""
    client.post("/accounts/password/reset/", {"email": user.email})
    link = next(w for w in mail.outbox[-1].body.split() if "/password/reset/key/" in w)
    form = client.get(link[link.index("/accounts/") :], follow=True)
    with capture(execute=True):
        return client.post(
            form.redirect_chain[-1][0],
            {"password1": NEW_PASSWORD, "password2": NEW_PASSWORD},
            follow=True,
        )


def keys_mails() -> list:
    return [m for m in mail.outbox if m.subject == SUBJECT]


@pytest.fixture
def keys(alice):
    """alice's keys: two that work, one revoked, one expired."""
    bot, _ = api_key_create(user=alice, name="bot", scopes=["read"])
    payer, _ = api_key_create(
        user=alice, name="payer", scopes=["withdraw"], allowed_ips="198.51.100.7"
    )
    revoked, _ = api_key_create(user=alice, name="revoked one", scopes=["read"])
    api_key_revoke(user=alice, api_key=revoked)
    expired, _ = api_key_create(
        user=alice, name="expired one", scopes=["read"], expires_in_days=30
    )
    ApiKey.objects.filter(pk=expired.pk).update(
        expires_at=timezone.now() - timedelta(seconds=1)
    )
    return bot, payer


def test_a_password_reset_mails_the_keys_that_still_work(
    client, alice, keys, django_capture_on_commit_callbacks
):
    bot, payer = keys

    page = reset_password(client, alice, django_capture_on_commit_callbacks)

    [notice] = keys_mails()
    assert notice.to == [alice.email]
    assert "Your password was reset. Your API keys were not changed" in notice.body
    assert f'"bot" ({bot.prefix}…), scopes read, used from anywhere' in notice.body
    assert (
        f'"payer" ({payer.prefix}…), scopes read withdraw, used from '
        "198.51.100.7/32" in notice.body
    )
    assert "revoked one" not in notice.body
    assert "expired one" not in notice.body
    assert "revoke them: http://testserver/api/keys/revoke-all/" in notice.body
    assert b'href="/api/keys/revoke-all/">revoke all 2 keys</a>' in page.content


def test_a_password_reset_of_an_account_without_keys_mails_nothing_about_keys(
    client, alice, django_capture_on_commit_callbacks
):
    reset_password(client, alice, django_capture_on_commit_callbacks)

    assert keys_mails() == []


def test_turning_two_factor_off_mails_the_keys_that_still_work(
    alice_client, alice, keys, mfa_enable, django_capture_on_commit_callbacks
):
    bot, _ = keys
    mfa_enable(alice)

    with django_capture_on_commit_callbacks(execute=True):
        alice_client.post("/accounts/2fa/totp/deactivate/")

    [notice] = keys_mails()
    assert "Two-factor authentication was turned off. Your API keys" in notice.body
    assert f'"bot" ({bot.prefix}…)' in notice.body
    assert "http://testserver/api/keys/revoke-all/" in notice.body


def test_staff_turning_a_users_two_factor_off_mails_the_keys_without_staffs_address(
    staff_client, alice, keys, mfa_enable, django_capture_on_commit_callbacks
):
    from allauth.mfa.models import Authenticator

    mfa_enable(alice)
    totp = Authenticator.objects.get(user=alice, type=Authenticator.Type.TOTP)

    with django_capture_on_commit_callbacks(execute=True):
        staff_client.post(
            f"/admin/mfa/authenticator/{totp.pk}/delete/", {"post": "yes"}
        )

    [notice] = keys_mails()
    assert notice.to == [alice.email]
    assert "made by the exchange's staff" in notice.body
    assert "IP address" not in notice.body
