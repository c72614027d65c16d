"""The mails about API keys: where a new key may be used from, and one mail
for all the keys revoked at once."""

from __future__ import annotations

import pytest
from django.core import mail
from django.urls import reverse

from accounts.models import SecurityEvent
from trading.api_keys import api_key_create
from trading.models import ApiKey

pytestmark = pytest.mark.django_db


def test_the_created_mail_lists_the_addresses_the_key_may_be_used_from(
    alice_client, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        alice_client.post(
            reverse("api:key_create"),
            {
                "name": "payer",
                "scopes": ["withdraw"],
                "allowed_ips": "198.51.100.7\n2001:db8::/48",
            },
        )
        alice_client.post(reverse("api:key_create"), {"name": "reader"})

    payer, reader = (m.body for m in mail.outbox)
    assert "It may be used from 198.51.100.7/32, 2001:db8::/48." in payer
    assert "It may be used from anywhere." in reader


def test_revoking_all_keys_sends_one_mail_naming_them_all(
    alice_client, alice, django_capture_on_commit_callbacks
):
    keys = [
        api_key_create(user=alice, name=f"k{n}", scopes=["read"])[0] for n in range(20)
    ]

    with django_capture_on_commit_callbacks(execute=True):
        alice_client.post(reverse("api:keys_revoke_all"))

    [notice] = mail.outbox
    assert notice.subject == "[Crypto Exchange] API keys revoked"
    assert "These 20 API keys were revoked and can no longer be used:" in notice.body
    for api_key in keys:
        assert f'- "{api_key.name}" ({api_key.prefix}…)' in notice.body
    assert not ApiKey.objects.filter(revoked_at__isnull=True).exists()
    assert (
        SecurityEvent.objects.filter(
            user=alice, kind=SecurityEvent.Kind.API_KEY_REVOKED
        ).count()
        == 20
    )


def test_revoking_one_key_still_mails_about_that_key(
    alice_client, alice, django_capture_on_commit_callbacks
):
    api_key, _ = api_key_create(user=alice, name="bot", scopes=["read"])

    with django_capture_on_commit_callbacks(execute=True):
        alice_client.post(reverse("api:key_revoke", args=[api_key.pk]))

    [notice] = mail.outbox
    assert notice.subject == "[Crypto Exchange] API key revoked"
    assert f'The API key named "bot" ({api_key.prefix}…) was revoked' in notice.body
