"""The accounts' admin: adding a user, the read-only security log, and the
second factors, shown without their secrets."""

from __future__ import annotations

import json

import pytest
from allauth.mfa.models import Authenticator
from django.contrib.auth import get_user_model

from accounts.models import Profile, SecurityEvent
from accounts.services import security_event_record
from tests.factories import jpeg_upload, user_make

pytestmark = pytest.mark.django_db

USER_ADD = "/admin/auth/user/add/"
SECURITY_LOG = "/admin/accounts/securityevent/"


@pytest.mark.parametrize("with_avatar", [False, True])
def test_adding_a_user_makes_one_profile_whatever_profile_fields_are_posted(
    staff_client, with_avatar
):
    # The profile inline's fields, as a form made before the fix posts them.
    profile_fields = {
        "profile-TOTAL_FORMS": "1",
        "profile-INITIAL_FORMS": "0",
        "profile-MIN_NUM_FORMS": "0",
        "profile-MAX_NUM_FORMS": "1",
    }
    if with_avatar:
        profile_fields["profile-0-avatar"] = jpeg_upload()
    assert staff_client.get(USER_ADD).context["inline_admin_formsets"] == []

    response = staff_client.post(
        USER_ADD,
        {
            "username": "newbie",
            "password1": "a-very-good-pass-2026!",
            "password2": "a-very-good-pass-2026!",
            "usable_password": "true",
            **profile_fields,
        },
    )

    assert response.status_code == 302
    newbie = get_user_model().objects.get(username="newbie")
    assert response["Location"] == f"/admin/auth/user/{newbie.pk}/change/"
    assert Profile.objects.filter(user=newbie).count() == 1
    change = staff_client.get(response["Location"])
    [profile_inline] = change.context["inline_admin_formsets"]
    assert profile_inline.formset.prefix == "profile"


def test_the_security_log_cannot_be_deleted_from_the_admin(staff_client):
    alice = user_make("alice")
    for kind in (SecurityEvent.Kind.SIGN_IN, SecurityEvent.Kind.PASSWORD_CHANGED):
        security_event_record(user=alice, kind=kind, request=None)
    events = list(SecurityEvent.objects.values_list("pk", flat=True))

    listed = staff_client.get(SECURITY_LOG)
    deleted = staff_client.post(
        SECURITY_LOG,
        {"action": "delete_selected", "_selected_action": events, "post": "yes"},
    )

    assert listed.status_code == 200
    assert b"delete_selected" not in listed.content
    assert deleted.status_code in (200, 302)
    assert staff_client.get(f"{SECURITY_LOG}{events[0]}/delete/").status_code == 403
    assert sorted(SecurityEvent.objects.values_list("pk", flat=True)) == sorted(events)


def test_the_authenticators_admin_never_shows_the_secret(staff_client, mfa_enable):
    alice = user_make("alice")
    secret = mfa_enable(alice)
    authenticator = Authenticator.objects.get(user=alice)
    stored = authenticator.data["secret"]
    url = f"/admin/mfa/authenticator/{authenticator.pk}/change/"

    page = staff_client.get(url)
    listed = staff_client.get("/admin/mfa/authenticator/")

    assert page.status_code == listed.status_code == 200
    assert b"alice" in page.content
    for response in (page, listed):
        text = response.content.decode()
        assert secret not in text
        assert stored not in text
        assert json.dumps(authenticator.data) not in text
    assert staff_client.get("/admin/mfa/authenticator/add/").status_code == 403
    staff_client.post(url, {"user": alice.pk, "type": "totp", "data": "{}"})
    authenticator.refresh_from_db()
    assert authenticator.data == {"secret": stored}
