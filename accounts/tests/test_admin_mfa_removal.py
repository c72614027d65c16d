"""Staff removing a user's authenticator app in the admin (MFA >
Authenticators), for a user who lost the phone: it ends as turning 2FA off on
the user's own page does: the recovery codes go too, the security log says
which staff member did it, the user is mailed and signed out everywhere, and
can confirm with the password and turn 2FA on again with new codes."""

from __future__ import annotations

import pytest
from allauth.mfa.models import Authenticator
from allauth.mfa.recovery_codes.internal.auth import RecoveryCodes
from django.test import Client

from accounts.models import SecurityEvent
from accounts.tests.totp import current_code
from tests.factories import PASSWORD, signed_in, user_make

# The mail is sent after the removal commits, as in production.
pytestmark = pytest.mark.django_db(transaction=True)

AUTHENTICATORS = "/admin/mfa/authenticator/"
TOTP_OFF_SUBJECT = "Authenticator App Deactivated"


def password_step(client: Client, user):
    return client.post(
        "/accounts/login/", {"login": user.username, "password": PASSWORD}
    )


def sign_in_with_code(user, code: str) -> Client:
    client = Client()
    assert password_step(client, user)["Location"] == "/accounts/2fa/authenticate/"
    client.post("/accounts/2fa/authenticate/", {"code": code})
    return client


def unused_recovery_codes(user) -> list[str]:
    authenticator = Authenticator.objects.get(
        user=user, type=Authenticator.Type.RECOVERY_CODES
    )
    return RecoveryCodes(authenticator).get_unused_codes()


@pytest.fixture
def with_app(mfa_enable):
    """``with_app(user)``: the user's app secret and recovery codes, as
    turning 2FA on from the profile leaves them."""

    def enable(user) -> tuple[str, list[str]]:
        secret = mfa_enable(user)
        return secret, RecoveryCodes.activate(user).get_unused_codes()

    return enable


def removals_logged(user) -> list[str]:
    return list(
        SecurityEvent.objects.filter(
            user=user, kind=SecurityEvent.Kind.MFA_DISABLED
        ).values_list("detail", flat=True)
    )


def test_staff_removing_a_lost_app_ends_2fa_as_turning_it_off_does(
    staff_client, smtp_server, with_app
):
    alice = user_make("alice")
    secret, old_codes = with_app(alice)
    phone = sign_in_with_code(alice, current_code(secret))
    assert signed_in(phone)
    totp = Authenticator.objects.get(user=alice, type=Authenticator.Type.TOTP)

    response = staff_client.post(f"{AUTHENTICATORS}{totp.pk}/delete/", {"post": "yes"})

    assert response.status_code == 302
    assert not Authenticator.objects.filter(user=alice).exists()
    assert removals_logged(alice) == ["by staff root"]
    assert SecurityEvent.objects.filter(
        user=alice, kind=SecurityEvent.Kind.SESSIONS_ENDED
    ).exists()
    mail = smtp_server.wait_for(TOTP_OFF_SUBJECT, to="alice@example.com")
    # Addressed to her, saying staff did it; nothing of staff's request.
    assert mail.text.startswith("Hello alice,")
    assert "made by the exchange's staff" in mail.text
    assert "IP address" not in mail.text
    assert list(
        SecurityEvent.objects.filter(
            user=alice, kind=SecurityEvent.Kind.MFA_DISABLED
        ).values_list("ip_address", "user_agent")
    ) == [(None, "")]
    assert not signed_in(phone)

    # The password alone signs in and confirms who she is: turning 2FA on
    # again is not asked for a code she lost with the phone.
    client = Client()
    assert password_step(client, alice)["Location"] == "/accounts/profile/"
    confirmed = client.post("/accounts/reauthenticate/", {"password": PASSWORD})
    assert confirmed.status_code == 302
    assert "2fa" not in confirmed["Location"]
    page = client.get("/accounts/2fa/totp/activate/")
    assert page.status_code == 200
    new_secret = page.context["form"].secret
    activated = client.post(
        "/accounts/2fa/totp/activate/", {"code": current_code(new_secret)}
    )
    assert activated.status_code == 302

    new_codes = unused_recovery_codes(alice)
    assert set(new_codes).isdisjoint(old_codes)
    assert not signed_in(sign_in_with_code(alice, old_codes[0]))
    assert signed_in(sign_in_with_code(alice, new_codes[0]))


def test_staff_removing_apps_from_the_list_ends_2fa_for_each_user(
    staff_client, staff, smtp_server, with_app
):
    alice, bob = user_make("alice"), user_make("bob")
    for user in (alice, bob):
        with_app(user)
    apps = Authenticator.objects.filter(
        user__in=[alice, bob], type=Authenticator.Type.TOTP
    )

    response = staff_client.post(
        AUTHENTICATORS,
        {
            "action": "delete_selected",
            "_selected_action": [app.pk for app in apps],
            "post": "yes",
        },
    )

    assert response.status_code == 302
    assert not Authenticator.objects.filter(user__in=[alice, bob]).exists()
    assert Authenticator.objects.filter(user=staff).exists()
    for user in (alice, bob):
        assert removals_logged(user) == ["by staff root"]
        smtp_server.wait_for(TOTP_OFF_SUBJECT, to=user.email)
    assert removals_logged(staff) == []
