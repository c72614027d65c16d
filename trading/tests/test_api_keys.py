"""API keys: created with a secret shown once, stored hashed, revoked for good;
and the profile page's create and revoke buttons."""

from __future__ import annotations

import hashlib
from datetime import timedelta

import pytest
from django.contrib.messages import get_messages
from django.core.exceptions import ValidationError
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from trading.api_keys import (
    MAX_ACTIVE_KEYS,
    ApiKeyRefused,
    api_key_authenticate,
    api_key_create,
    api_key_revoke,
    api_keys_for_user,
)
from trading.models import ApiKey
from trading.tests.test_views import Page

pytestmark = pytest.mark.django_db


@pytest.mark.reliability("key-stored")
def test_a_new_key_is_returned_once_and_only_its_hash_is_stored(alice):
    api_key, key = api_key_create(user=alice, name=" trading bot ", scopes=["read"])

    prefix, secret = key.split(".")
    assert (api_key.prefix, api_key.name, api_key.scopes) == (
        prefix,
        "trading bot",
        "read",
    )
    assert len(secret) >= 43  # 32 random bytes
    assert api_key.secret_hash == hashlib.sha256(secret.encode()).hexdigest()
    with connection.cursor() as cursor:
        cursor.execute("SELECT * FROM trading_apikey")
        stored = " ".join(str(value) for row in cursor.fetchall() for value in row)
    assert prefix in stored
    assert secret not in stored
    assert key not in stored


def test_every_key_is_different(alice):
    keys = {api_key_create(user=alice, name="k", scopes=["read"])[1] for _ in range(5)}

    assert len(keys) == 5


@pytest.mark.parametrize(
    ("scopes", "stored"),
    [(["read"], "read"), (["trade"], "read trade"), (["trade", "read"], "read trade")],
)
def test_trade_always_includes_read(alice, scopes, stored):
    api_key, _ = api_key_create(user=alice, name="k", scopes=scopes)

    assert api_key.scopes == stored
    assert api_key.can_trade == ("trade" in scopes)


@pytest.mark.parametrize(
    ("name", "scopes", "field"),
    [
        ("", ["read"], "name"),
        ("   ", ["read"], "name"),
        ("x" * 101, ["read"], "name"),
        ("bot", [], "scopes"),
        ("bot", ["admin"], "scopes"),
    ],
)
@pytest.mark.reliability("key-scope")
def test_a_key_needs_a_name_and_known_scopes(alice, name, scopes, field):
    with pytest.raises(ValidationError) as refusal:
        api_key_create(user=alice, name=name, scopes=scopes)

    assert field in refusal.value.message_dict
    assert not ApiKey.objects.exists()


@pytest.mark.reliability("key-scope")
def test_a_user_has_at_most_a_limited_number_of_active_keys(alice):
    for n in range(MAX_ACTIVE_KEYS):
        api_key_create(user=alice, name=f"k{n}", scopes=["read"])

    with pytest.raises(ValidationError, match="revoke one"):
        api_key_create(user=alice, name="one more", scopes=["read"])
    api_key_revoke(user=alice, api_key=ApiKey.objects.first())
    api_key_create(user=alice, name="one more", scopes=["read"])


def test_authentication_finds_the_key_and_its_user(alice):
    created, key = api_key_create(user=alice, name="k", scopes=["trade"])

    found = api_key_authenticate(key=key)

    assert found == created
    assert found.user == alice
    assert found.last_used_at is not None


def test_last_use_is_written_at_most_once_a_minute(alice):
    _, key = api_key_create(user=alice, name="k", scopes=["read"])
    api_key_authenticate(key=key)

    with CaptureQueriesContext(connection) as soon:
        api_key_authenticate(key=key)
    ApiKey.objects.update(last_used_at=timezone.now() - timedelta(minutes=2))
    with CaptureQueriesContext(connection) as later:
        api_key_authenticate(key=key)

    assert (len(soon), len(later)) == (1, 2)


@pytest.mark.parametrize(
    "mangle", [lambda k: k + "x", lambda k: k.split(".")[0], lambda k: "x." + k]
)
@pytest.mark.reliability("key-invalid")
def test_a_wrong_key_is_refused(alice, mangle):
    _, key = api_key_create(user=alice, name="k", scopes=["read"])

    with pytest.raises(ApiKeyRefused) as refusal:
        api_key_authenticate(key=mangle(key))

    assert refusal.value.code == "invalid_api_key"


@pytest.mark.reliability("key-invalid")
def test_a_revoked_key_stays_revoked(alice):
    api_key, key = api_key_create(user=alice, name="k", scopes=["read"])

    api_key_revoke(user=alice, api_key=api_key)
    first_revoked_at = api_key.revoked_at
    api_key_revoke(user=alice, api_key=api_key)

    assert first_revoked_at is not None
    assert ApiKey.objects.get().revoked_at == first_revoked_at
    with pytest.raises(ApiKeyRefused) as refusal:
        api_key_authenticate(key=key)
    assert refusal.value.code == "api_key_revoked"


@pytest.mark.reliability("access-by-id")
def test_nobody_revokes_someone_elses_key(alice, bob):
    api_key, _ = api_key_create(user=alice, name="k", scopes=["read"])

    with pytest.raises(ApiKey.DoesNotExist):
        api_key_revoke(user=bob, api_key=api_key)

    assert ApiKey.objects.get().revoked_at is None


def test_the_key_list_shows_active_keys_newest_first(alice, bob):
    old, _ = api_key_create(user=alice, name="old", scopes=["read"])
    new, _ = api_key_create(user=alice, name="new", scopes=["trade"])
    gone, _ = api_key_create(user=alice, name="gone", scopes=["read"])
    api_key_revoke(user=alice, api_key=gone)
    api_key_create(user=bob, name="bob's", scopes=["read"])

    assert list(api_keys_for_user(user=alice)) == [new, old]
    assert list(api_keys_for_user(user=alice, include_revoked=True)) == [
        gone,
        new,
        old,
    ]


# -- The profile page's buttons ------------------------------------------------


@pytest.mark.reliability("key-stored")
def test_creating_a_key_shows_its_secret_once_and_uncached(alice_client, alice):
    response = alice_client.post(
        reverse("api:key_create"), {"name": "bot", "scopes": ["read", "trade"]}
    )

    assert response.status_code == 200
    api_key = ApiKey.objects.get()
    secret = response.context["secret"]
    assert response.context["api_key"] == api_key
    assert (api_key.user, api_key.name, api_key.scopes) == (alice, "bot", "read trade")
    assert secret.startswith(f"{api_key.prefix}.")
    assert secret in response.content.decode()
    assert "no-store" in response["Cache-Control"]
    assert api_key_authenticate(key=secret) == api_key


def test_a_single_scope_value_is_accepted(alice_client):
    response = alice_client.post(
        reverse("api:key_create"), {"name": "bot", "scopes": "trade"}
    )

    assert response.status_code == 200
    assert ApiKey.objects.get().can_trade


def test_a_refused_key_form_comes_back_as_typed_with_the_reason_by_the_field(
    alice_client,
):
    response = alice_client.post(
        reverse("api:key_create"),
        {
            "name": "payout bot",
            "scopes": ["read", "trade", "withdraw"],
            "allowed_ips": "203.0.113.7\n198.51.100.0/24\n10.0.0.300",
            "expires_in_days": "30",
            "require_signature": "on",
        },
    )

    assert response.status_code == 400
    page = Page(response)
    assert page.value("name") == "payout bot"
    assert page.checked_all("scopes") == ["read", "trade", "withdraw"]
    assert page.selected("expires_in_days") == "30"
    assert page.checked("require_signature") == "on"
    # A textarea keeps its lines only in the raw page.
    assert "203.0.113.7\n198.51.100.0/24\n10.0.0.300</textarea>" in page.text
    reason = "“10.0.0.300” is not an IP address or a CIDR range"
    assert reason in page.field_text("allowed_ips")
    assert "not an IP address" not in page.field_text("name")
    assert reason in page.description("allowed_ips")
    assert page.dangling_descriptions() == []
    [message] = page.texts("div", role="status")
    assert "The API key was not created: correct the form under “API keys”." in message
    # Shown at the key form's address, the page's picture form still posts
    # to the profile.
    assert page.texts("form", id="avatar-form", action="/accounts/profile/")
    assert not ApiKey.objects.exists()


@pytest.mark.parametrize(
    ("form", "field", "message"),
    [
        ({"name": "", "scopes": "read"}, "name", "This field is required."),
        (
            {"name": "bot", "scopes": "withdraw"},  # withdraw needs an allow-list
            "allowed_ips",
            "A key that can withdraw must be tied to the addresses",
        ),
        (
            {"name": "bot", "scopes": "read", "expires_in_days": "7"},
            "expires_in_days",
            "Select a valid choice.",
        ),
    ],
)
def test_each_refusal_of_the_key_form_is_shown_by_its_field(
    alice_client, form, field, message
):
    response = alice_client.post(reverse("api:key_create"), form)

    assert response.status_code == 400
    page = Page(response)
    assert message in page.field_text(field)
    assert page.value("name") == form["name"]
    assert not ApiKey.objects.exists()


def test_an_unknown_scope_is_shown_under_the_scopes(alice_client):
    response = alice_client.post(
        reverse("api:key_create"), {"name": "bot", "scopes": "all"}
    )

    assert response.status_code == 400
    page = Page(response)
    [errors] = page.texts("ul", id="id_scopes_error")
    assert "Select a valid choice. all is not one of the available choices." in errors
    [scopes] = page.texts("fieldset", **{"aria-describedby": "id_scopes_error"})
    assert scopes.startswith("Scopes")
    assert page.dangling_descriptions() == []
    assert not ApiKey.objects.exists()


def test_one_key_too_many_is_said_above_the_form_which_keeps_its_input(
    alice_client, alice
):
    for n in range(MAX_ACTIVE_KEYS):
        api_key_create(user=alice, name=f"k{n}", scopes=["read"])

    response = alice_client.post(
        reverse("api:key_create"), {"name": "one more", "scopes": ["trade"]}
    )

    assert response.status_code == 400
    page = Page(response)
    [alert] = page.texts("div", role="alert")
    assert f"You already have {MAX_ACTIVE_KEYS} API keys; revoke one first." in alert
    assert page.value("name") == "one more"
    assert page.checked_all("scopes") == ["trade"]
    assert ApiKey.objects.count() == MAX_ACTIVE_KEYS


@pytest.mark.reliability("access-anonymous")
def test_the_key_buttons_accept_only_post_from_a_signed_in_user(client, alice):
    api_key, _ = api_key_create(user=alice, name="bot", scopes=["read"])
    revoke = reverse("api:key_revoke", args=[api_key.pk])

    anonymous = client.post(reverse("api:key_create"), {"name": "x", "scopes": "read"})
    assert anonymous.status_code == 302
    assert anonymous.url.startswith(reverse("account_login"))
    assert client.post(revoke).status_code == 302
    client.force_login(alice)
    assert client.get(reverse("api:key_create")).status_code == 405
    assert b"Revoke the API key" in client.get(revoke).content  # asks first
    assert ApiKey.objects.get().revoked_at is None
    assert ApiKey.objects.count() == 1


def test_revoking_a_key_returns_to_the_profile_with_a_message(alice_client, alice):
    api_key, _ = api_key_create(user=alice, name="bot", scopes=["read"])

    response = alice_client.post(reverse("api:key_revoke", args=[api_key.pk]))

    assert response.status_code == 302
    assert response.url == reverse("accounts:profile")
    [message] = get_messages(response.wsgi_request)
    assert "bot" in str(message)
    assert ApiKey.objects.get().revoked_at is not None


def test_revoking_a_key_again_says_so_and_logs_it_once(alice_client, alice):
    from accounts.models import SecurityEvent

    api_key, _ = api_key_create(user=alice, name="bot", scopes=["read"])
    revoke = reverse("api:key_revoke", args=[api_key.pk])
    first = alice_client.post(revoke, follow=True).content.decode()
    revoked_at = ApiKey.objects.get().revoked_at

    again = [alice_client.post(revoke, follow=True).content.decode() for _ in "12"]

    assert "The API key “bot” was revoked." in first
    for page in again:
        assert "The API key “bot” was already revoked." in page
        assert "“bot” was revoked." not in page
    assert ApiKey.objects.get().revoked_at == revoked_at
    [event] = SecurityEvent.objects.filter(
        user=alice, kind=SecurityEvent.Kind.API_KEY_REVOKED
    )
    assert event.detail == f"bot ({api_key.prefix})"


@pytest.mark.reliability("access-by-id")
def test_nobody_revokes_someone_elses_key_from_the_page(alice_client, bob):
    api_key, _ = api_key_create(user=bob, name="bob's", scopes=["read"])

    response = alice_client.post(reverse("api:key_revoke", args=[api_key.pk]))

    assert response.status_code == 404
    assert ApiKey.objects.get().revoked_at is None


@pytest.mark.reliability("csrf-forms")
def test_the_key_forms_need_the_csrf_token(alice):
    from django.test import Client

    client = Client(enforce_csrf_checks=True)
    client.force_login(alice)

    response = client.post(reverse("api:key_create"), {"name": "x", "scopes": "read"})

    assert response.status_code == 403
    assert not ApiKey.objects.exists()
