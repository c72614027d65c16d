"""Creating API keys: how wide a withdraw key's allow-list may be, and which
keys count towards the limit and how the profile shows them."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.core.exceptions import ValidationError
from django.urls import reverse
from django.utils import timezone

from trading.api_keys import MAX_ACTIVE_KEYS, api_key_create
from trading.models import ApiKey
from trading.tests.test_views import Page

pytestmark = pytest.mark.django_db


# -- A withdraw key's allow-list --------------------------------------------------


@pytest.mark.parametrize(
    "entry",
    [
        "0.0.0.0/0",
        "::/0",
        "10.0.0.0/8",
        "203.0.113.0/23",
        "2001:db8::/47",
        "::ffff:0:0/96",
        "::/80",  # holds ::ffff:0:0/96: every IPv4 client on a dual-stack socket
        "::/48",
    ],
)
def test_a_withdraw_key_refuses_a_range_wider_than_a_site(alice, entry):
    with pytest.raises(ValidationError) as refused:
        api_key_create(
            user=alice,
            name="bot",
            scopes=["withdraw"],
            allowed_ips=f"198.51.100.7, {entry}",
        )

    [message] = refused.value.message_dict["allowed_ips"]
    assert message == (
        f"“{entry}” is too wide a range for a key that can withdraw: list its "
        "addresses, or ranges of at most /24 (IPv4) or /48 (IPv6)."
    )
    assert not ApiKey.objects.exists()


def test_a_withdraw_key_takes_addresses_and_ranges_up_to_a_site(alice):
    api_key, _ = api_key_create(
        user=alice,
        name="bot",
        scopes=["withdraw"],
        allowed_ips="198.51.100.7 203.0.113.0/24 2001:db8::/48 ::ffff:192.0.2.0/120",
    )

    assert api_key.allowed_networks == [
        "198.51.100.7/32",
        "203.0.113.0/24",
        "2001:db8::/48",
        "192.0.2.0/24",  # written as IPv4-mapped IPv6
    ]


@pytest.mark.parametrize("scopes", [["read"], ["trade"]])
def test_a_key_that_cannot_withdraw_may_be_tied_to_any_range(alice, scopes):
    api_key, _ = api_key_create(
        user=alice, name="bot", scopes=scopes, allowed_ips="10.0.0.0/8 ::/0"
    )

    assert api_key.allowed_networks == ["10.0.0.0/8", "::/0"]


def test_the_form_says_which_entry_is_too_wide_for_a_withdraw_key(alice_client):
    response = alice_client.post(
        reverse("api:key_create"),
        {"name": "bot", "scopes": ["withdraw"], "allowed_ips": "0.0.0.0/0"},
    )

    assert response.status_code == 400
    reason = "“0.0.0.0/0” is too wide a range for a key that can withdraw"
    assert reason in Page(response).field_text("allowed_ips")
    assert not ApiKey.objects.exists()


# -- Expired keys -------------------------------------------------------------------


def expire(*api_keys: ApiKey) -> None:
    ApiKey.objects.filter(pk__in=[k.pk for k in api_keys]).update(
        expires_at=timezone.now() - timedelta(seconds=1)
    )


def test_expired_keys_do_not_count_towards_the_limit(alice):
    keys = [
        api_key_create(user=alice, name=f"k{n}", scopes=["read"], expires_in_days=30)[0]
        for n in range(MAX_ACTIVE_KEYS)
    ]
    expire(keys[0])

    api_key_create(user=alice, name="one more", scopes=["read"])
    with pytest.raises(ValidationError, match="revoke one"):
        api_key_create(user=alice, name="one too many", scopes=["read"])


def test_the_profile_says_which_keys_have_expired(client, alice):
    old, _ = api_key_create(user=alice, name="old", scopes=["read"], expires_in_days=30)
    api_key_create(user=alice, name="current", scopes=["read"], expires_in_days=30)
    expire(old)
    client.force_login(alice)

    page = Page(client.get("/accounts/profile/"))

    rows = {row.split()[0]: row for row in page.texts("tr") if row}
    assert "expired" in rows["old"]
    assert "expired" not in rows["current"]
