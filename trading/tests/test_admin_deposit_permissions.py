"""Who may credit a deposit in the admin: the form finds the user with the
admin's autocomplete, which answers only staff who may view users, so the
credit page is offered only to staff who may both add deposits and view
users."""

from __future__ import annotations

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Permission
from django.test import Client

pytestmark = pytest.mark.django_db

DEPOSITS = "/admin/trading/deposit/"
CREDIT_URL = f"{DEPOSITS}add/"


@pytest.fixture
def clerk(mfa_enable):
    clerk = get_user_model().objects.create_user(
        "clerk", email="clerk@example.com", is_staff=True
    )
    clerk.user_permissions.set(
        Permission.objects.filter(codename__in=["add_deposit", "view_deposit"])
    )
    mfa_enable(clerk)
    return clerk


def signed_in_client(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


def test_staff_who_may_not_view_users_are_not_offered_the_credit_page(clerk):
    client = signed_in_client(clerk)

    listing = client.get(DEPOSITS)

    assert listing.status_code == 200
    assert CREDIT_URL not in listing.content.decode()
    assert client.get(CREDIT_URL).status_code == 403


@pytest.mark.parametrize("codename", ["view_user", "change_user"])
def test_staff_who_may_see_users_credit_deposits(clerk, codename, alice):
    clerk.user_permissions.add(Permission.objects.get(codename=codename))
    client = signed_in_client(clerk)

    assert CREDIT_URL in client.get(DEPOSITS).content.decode()
    assert client.get(CREDIT_URL).status_code == 200
    found = client.get(
        "/admin/autocomplete/",
        {
            "term": "alice",
            "app_label": "trading",
            "model_name": "deposit",
            "field_name": "user",
        },
    )
    assert found.json()["results"][0]["id"] == str(alice.pk)
