"""Staff ending a user's session in the admin (User Sessions), for a stolen
or forgotten device: deleting its row signs that browser out, as ending it
from the user's profile does, and the user's security log names the staff
member. Nobody adds or edits a session there."""

from __future__ import annotations

import pytest
from allauth.usersessions.models import UserSession
from django.test import Client

from accounts.models import SecurityEvent
from tests.factories import PASSWORD, signed_in, user_make

pytestmark = pytest.mark.django_db

SESSIONS = "/admin/usersessions/usersession/"
SAFARI = (
    "Mozilla/5.0 (iPhone; CPU iPhone OS 18_0 like Mac OS X) AppleWebKit/605.1.15 "
    "(KHTML, like Gecko) Version/18.0 Mobile/15E148 Safari/604.1"
)


def signed_in_client(user) -> Client:
    client = Client(HTTP_USER_AGENT=SAFARI)
    client.post("/accounts/login/", {"login": user.username, "password": PASSWORD})
    assert signed_in(client)
    return client


def endings_logged(user) -> list[tuple]:
    return list(
        SecurityEvent.objects.filter(
            user=user, kind=SecurityEvent.Kind.SESSIONS_ENDED
        ).values_list("detail", "ip_address", "user_agent")
    )


def test_staff_deleting_a_session_sign_its_browser_out_and_the_log_says_who(
    staff_client,
):
    alice = user_make("alice")
    phone = signed_in_client(alice)
    session = UserSession.objects.get(user=alice)

    response = staff_client.post(f"{SESSIONS}{session.pk}/delete/", {"post": "yes"})

    assert response.status_code == 302
    assert not signed_in(phone)
    assert not UserSession.objects.filter(user=alice).exists()
    # Staff's address and browser stay out of her log.
    assert endings_logged(alice) == [
        ("by staff root: Safari on iOS, 127.0.0.1", None, "")
    ]


def test_staff_deleting_sessions_from_the_list_sign_each_out(staff_client):
    alice, bob = user_make("alice"), user_make("bob")
    phones = [signed_in_client(alice), signed_in_client(alice), signed_in_client(bob)]

    response = staff_client.post(
        SESSIONS,
        {
            "action": "delete_selected",
            "_selected_action": list(
                UserSession.objects.filter(user__in=[alice, bob]).values_list(
                    "pk", flat=True
                )
            ),
            "post": "yes",
        },
    )

    assert response.status_code == 302
    assert not any(signed_in(phone) for phone in phones)
    assert signed_in(staff_client)
    [(alice_detail, *_)] = endings_logged(alice)
    assert alice_detail.startswith("by staff root: 2 sessions: ")
    assert endings_logged(bob) == [
        ("by staff root: Safari on iOS, 127.0.0.1", None, "")
    ]


def test_sessions_are_neither_added_nor_edited_in_the_admin(staff_client):
    alice = user_make("alice")
    signed_in_client(alice)
    session = UserSession.objects.get(user=alice)

    assert staff_client.get(f"{SESSIONS}add/").status_code == 403
    page = staff_client.get(f"{SESSIONS}{session.pk}/change/")
    edited = staff_client.post(
        f"{SESSIONS}{session.pk}/change/",
        {"user": alice.pk, "ip": "203.0.113.5", "user_agent": "x", "data": "{}"},
    )

    assert page.status_code == 200
    assert 'name="ip"' not in page.content.decode()
    assert "Safari" in page.content.decode()
    assert edited.status_code == 403
    session.refresh_from_db()
    assert session.ip == "127.0.0.1"
