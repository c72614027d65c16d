"""The second factor's secrets are stored encrypted with a key derived from
SECRET_KEY (accounts.mfa), and the rows stored in the clear before that are
encrypted by a migration; codes are checked as before."""

from __future__ import annotations

import importlib
import json

import pytest
from allauth.mfa.adapter import get_adapter
from allauth.mfa.models import Authenticator
from allauth.mfa.recovery_codes.internal.auth import RecoveryCodes
from allauth.mfa.totp.internal.auth import generate_totp_secret
from django.apps import apps
from django.core.exceptions import ImproperlyConfigured
from django.test import Client

from accounts.tests.totp import current_code
from tests.factories import PASSWORD, user_make

pytestmark = pytest.mark.django_db

migration = importlib.import_module("accounts.migrations.0004_encrypt_mfa_secrets")

RECOVERY_SEED = "0123456789abcdef" * 5  # as allauth makes one: 80 hex digits


def signs_in_with(user, code: str) -> bool:
    client = Client()
    password = client.post(
        "/accounts/login/", {"login": user.username, "password": PASSWORD}
    )
    assert password["Location"] == "/accounts/2fa/authenticate/"
    client.post("/accounts/2fa/authenticate/", {"code": code})
    return client.get("/accounts/profile/").status_code == 200


def stored(user, kind: str) -> dict:
    return Authenticator.objects.get(user=user, type=kind).data


def test_a_secret_turned_on_from_the_profile_is_stored_encrypted_and_signs_in(
    client, reauthenticate
):
    alice = user_make("alice")
    client.force_login(alice)
    reauthenticate(client, PASSWORD)
    secret = client.get("/accounts/2fa/totp/activate/").context["form"].secret

    activated = client.post(
        "/accounts/2fa/totp/activate/", {"code": current_code(secret)}
    )

    assert activated.status_code == 302
    totp = stored(alice, Authenticator.Type.TOTP)
    assert secret not in json.dumps(totp)
    assert get_adapter().decrypt(totp["secret"]) == secret
    recovery = Authenticator.objects.get(
        user=alice, type=Authenticator.Type.RECOVERY_CODES
    )
    seed = get_adapter().decrypt(recovery.data["seed"])
    assert len(seed) == 80 and seed not in json.dumps(recovery.data)
    assert signs_in_with(alice, current_code(secret))
    assert signs_in_with(alice, RecoveryCodes(recovery).get_unused_codes()[0])


def test_a_secret_encrypted_with_another_secret_key_is_refused_in_words(settings):
    encrypted = get_adapter().encrypt("JBSWY3DPEHPK3PXP")
    old_key = settings.SECRET_KEY
    settings.SECRET_KEY = "a-new-secret-key-" + "x" * 40

    with pytest.raises(ImproperlyConfigured, match="encrypted with another SECRET_KEY"):
        get_adapter().decrypt(encrypted)
    settings.SECRET_KEY_FALLBACKS = [old_key]
    assert get_adapter().decrypt(encrypted) == "JBSWY3DPEHPK3PXP"


# -- The migration of rows stored in the clear ----------------------------------


def stored_in_the_clear(user) -> str:
    """A TOTP secret and recovery codes as allauth stored them before the
    adapter encrypted them; returns the TOTP secret."""
    secret = generate_totp_secret()
    Authenticator.objects.create(
        user=user, type=Authenticator.Type.TOTP, data={"secret": secret}
    )
    Authenticator.objects.create(
        user=user,
        type=Authenticator.Type.RECOVERY_CODES,
        data={"seed": RECOVERY_SEED, "used_mask": 0, "migrated_codes": ["12345678"]},
    )
    return secret


def encrypt_migration() -> None:
    migration.mfa_secrets_encrypt(apps=apps, schema_editor=None)


def test_the_migration_encrypts_secrets_stored_in_the_clear_and_codes_still_work():
    alice = user_make("alice")
    secret = stored_in_the_clear(alice)

    encrypt_migration()

    totp = stored(alice, Authenticator.Type.TOTP)
    recovery = stored(alice, Authenticator.Type.RECOVERY_CODES)
    assert secret not in json.dumps(totp)
    assert RECOVERY_SEED not in json.dumps(recovery)
    assert "12345678" not in json.dumps(recovery)
    assert recovery["used_mask"] == 0
    assert signs_in_with(alice, current_code(secret))
    assert signs_in_with(alice, "12345678")


def test_the_migration_leaves_encrypted_secrets_alone_and_running_it_again_too(
    mfa_enable,
):
    bob = user_make("bob")
    secret = mfa_enable(bob)  # through the adapter: already encrypted
    encrypted = stored(bob, Authenticator.Type.TOTP)
    alice = user_make("alice")
    stored_in_the_clear(alice)
    encrypt_migration()
    once = [authenticator.data for authenticator in Authenticator.objects.all()]

    encrypt_migration()

    assert stored(bob, Authenticator.Type.TOTP) == encrypted
    assert [authenticator.data for authenticator in Authenticator.objects.all()] == (
        once
    )
    assert signs_in_with(bob, current_code(secret))


def test_unapplying_the_migration_stores_the_secrets_in_the_clear_again():
    alice = user_make("alice")
    secret = stored_in_the_clear(alice)
    encrypt_migration()

    migration.mfa_secrets_decrypt(apps=apps, schema_editor=None)

    assert stored(alice, Authenticator.Type.TOTP) == {"secret": secret}
    assert stored(alice, Authenticator.Type.RECOVERY_CODES) == {
        "seed": RECOVERY_SEED,
        "used_mask": 0,
        "migrated_codes": ["12345678"],
    }


def test_a_secret_encrypted_with_another_secret_key_stops_the_migration(settings):
    alice = user_make("alice")
    secret = stored_in_the_clear(alice)  # converted first, then undone
    bob = user_make("bob")
    encrypted = get_adapter().encrypt(generate_totp_secret())
    Authenticator.objects.create(
        user=bob, type=Authenticator.Type.TOTP, data={"secret": encrypted}
    )
    settings.SECRET_KEY = "a-new-secret-key-" + "x" * 40

    with pytest.raises(ImproperlyConfigured, match="encrypted with another SECRET_KEY"):
        encrypt_migration()

    assert stored(bob, Authenticator.Type.TOTP) == {"secret": encrypted}
    assert stored(alice, Authenticator.Type.TOTP) == {"secret": secret}
