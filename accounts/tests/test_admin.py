"""The accounts' admin: adding a user, the read-only security log, and the
second factors, shown without their secrets."""

from __future__ import annotations

import json
from decimal import Decimal as D

import pytest
from allauth.mfa.models import Authenticator
from allauth.usersessions.models import UserSession
from django.contrib import admin
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.db import connection, models
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from accounts.models import Profile, SecurityEvent
from accounts.services import security_event_record
from tests.factories import (
    buy,
    fund,
    jpeg_upload,
    market_make,
    sell,
    token_make,
    user_make,
)
from trading.models import AddressFormat, SavedAddress, Withdrawal
from trading.services import withdrawal_request
from verification.models import IdentityDocumentAccess, IdentityVerification

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


# -- Every list of the site ------------------------------------------------------

REGISTERED = sorted(admin.site._registry, key=lambda model: model._meta.label)


def changelist(model) -> str:
    opts = model._meta
    return reverse(f"admin:{opts.app_label}_{opts.model_name}_changelist")


def hostile_filters(model) -> list[str]:
    """Filters typed into a list's address that Django accepts (any lookup on
    a field of the model) and that failed only when the rows were counted."""
    pk = model._meta.pk.attname
    filters = [f"{pk}__range=1", f"{pk}__regex=(", f"{pk}__iregex=["]
    for field in model._meta.concrete_fields:
        name = field.name
        if isinstance(field, models.DateField):  # and DateTimeField
            filters += [f"{name}__year=10000", f"{name}__iso_year=10000"]
            filters += [f"{name}__year=-1", f"{name}__year__gt=10000"]
        elif isinstance(field, models.GenericIPAddressField):
            if connection.vendor != "postgresql":
                continue  # SQLite compares an address as text, any text
            filters += [f"{name}=abc", f"{name}__in=1.2.3.4,x"]
        elif isinstance(field, models.CharField) and name != "password":
            filters.append(f"{name}__regex=(")
    if hierarchy := admin.site._registry[model].date_hierarchy:
        filters += [f"{hierarchy}__year=9999999999", f"{hierarchy}__year=2026&"]
        filters[-1] += f"{hierarchy}__month=99999999999999999999"
    return filters


@pytest.fixture
def listed(staff, mfa_enable, market, btc, usdt):
    """Two rows or more of every model the admin lists, their related rows
    different, made through the services where money is concerned."""
    alice, bob = user_make("alice"), user_make("bob")
    mfa_enable(alice)
    for user in (alice, bob):
        fund(user, btc, "10")
        fund(user, usdt, "1000")
        security_event_record(user=user, kind=SecurityEvent.Kind.SIGN_IN)
        UserSession.objects.create(
            user=user, ip="192.0.2.1", session_key=f"key-{user.pk}", user_agent="UA"
        )
        SavedAddress.objects.create(
            user=user,
            token=btc,
            address=f"bc1q{user.pk}",
            label="cold",
            usable_from=timezone.now(),
        )
        IdentityDocumentAccess.objects.create(
            staff=staff, staff_username=staff.username, delivery="stream"
        )
    for symbol in ("G1", "G2"):
        Group.objects.create(name=symbol)
        token = token_make(symbol)
        AddressFormat.objects.create(
            token=token, network="Main", pattern="x", description="x"
        )
    market_make(token, usdt)
    IdentityVerification.objects.create(user=alice)
    IdentityVerification.objects.create(user=bob)
    for seller, buyer in ((alice, bob), (bob, alice)):
        sell(seller, market, "1", "100")
        buy(buyer, market, "1", "100")
    for user in (alice, bob):
        withdrawal_request(
            user=user, token=btc, amount=D(1), address="bc1q", reference=f"w{user.pk}"
        )


@pytest.mark.reliability("malformed-requests")
@pytest.mark.parametrize("model", REGISTERED, ids=lambda model: model._meta.label)
def test_a_filter_typed_into_any_lists_address_that_cannot_run_is_refused_as_invalid(
    staff_client, listed, model
):
    staff_client.raise_request_exception = False
    url = changelist(model)

    answers = {
        typed: (response.status_code, response.get("Location"))
        for typed in hostile_filters(model)
        for response in [staff_client.get(f"{url}?{typed}")]
    }

    # Django's answer to a filter it cannot build: the list, unfiltered.
    assert answers == dict.fromkeys(hostile_filters(model), (302, f"{url}?e=1"))
    assert staff_client.get(f"{url}?e=1").status_code == 200


def test_saving_from_a_list_filtered_by_hand_returns_to_the_list_unfiltered(
    staff_client,
):
    group = Group.objects.create(name="desk")
    url = f"/admin/auth/group/{group.pk}/change/?_changelist_filters=id__range%3D1"

    response = staff_client.post(url, {"name": "front desk"}, follow=True)

    assert response.status_code == 200
    assert response.redirect_chain[-1] == ("/admin/auth/group/?e=1", 302)
    group.refresh_from_db()
    assert group.name == "front desk"


@pytest.mark.postgres
@pytest.mark.reliability("malformed-requests")
@pytest.mark.parametrize(
    "typed",
    [
        "/admin/trading/withdrawal/?amount__gt=1e1000000",
        "/admin/trading/ledgerentry/?amount=-1e131072",
        "/admin/tokens/token/?symbol__regex=(",
        "/admin/trading/market/?symbol__iregex=[",
    ],
)
def test_a_filter_value_postgresql_refuses_is_refused_as_invalid(
    staff_client, listed, typed
):
    response = staff_client.get(typed)

    assert (response.status_code, response["Location"]) == (
        302,
        typed.split("?")[0] + "?e=1",
    )
    # The refusal left the test's transaction, around the request, usable.
    assert Withdrawal.objects.count() == 2


@pytest.mark.parametrize("model", REGISTERED, ids=lambda model: model._meta.label)
def test_a_lists_queries_do_not_grow_with_the_rows_it_shows(
    staff_client, listed, model, monkeypatch
):
    assert model._default_manager.count() >= 2
    model_admin = admin.site._registry[model]

    def queries(per_page: int) -> int:
        monkeypatch.setattr(model_admin, "list_per_page", per_page)
        with CaptureQueriesContext(connection) as captured:
            assert staff_client.get(changelist(model)).status_code == 200
        return len(captured)

    queries(per_page=1)  # the first request also loads what is cached

    assert queries(per_page=100) == queries(per_page=1)
