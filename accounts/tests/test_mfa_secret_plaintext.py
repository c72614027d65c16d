"""Secrets stored in the clear by the code before accounts 0004, which still
serves while a rolling upgrade runs it: codes are checked with them as
stored, and migration 0005 encrypts them."""

from __future__ import annotations

import io
import json

import pytest
from allauth.mfa.adapter import get_adapter
from allauth.mfa.models import Authenticator
from django.core.management import call_command
from django.db import connection
from django.db.migrations.executor import MigrationExecutor

from accounts.tests.test_mfa import signs_in_with, stored, stored_in_the_clear
from accounts.tests.totp import current_code, totp_code
from tests.factories import user_make


@pytest.mark.django_db
def test_a_secret_stored_in_the_clear_checks_codes():
    alice = user_make("alice")
    secret = stored_in_the_clear(alice)

    assert not signs_in_with(alice, totp_code(secret, at=0))
    assert signs_in_with(alice, current_code(secret))
    assert signs_in_with(alice, "12345678")  # a recovery code


@pytest.mark.django_db(transaction=True)
def test_migration_0005_encrypts_secrets_stored_in_the_clear_since_0004(
    mfa_enable,
):
    bob = user_make("bob")
    mfa_enable(bob)
    encrypted = stored(bob, Authenticator.Type.TOTP)
    alice = user_make("alice")
    secret = stored_in_the_clear(alice)
    executor = MigrationExecutor(connection)
    executor.migrate([("accounts", "0004_encrypt_mfa_secrets")])
    executor.loader.build_graph()

    executor.migrate(executor.loader.graph.leaf_nodes())

    totp = stored(alice, Authenticator.Type.TOTP)
    assert secret not in json.dumps(totp)
    assert get_adapter().decrypt(totp["secret"]) == secret
    assert "12345678" not in json.dumps(
        stored(alice, Authenticator.Type.RECOVERY_CODES)
    )
    assert stored(bob, Authenticator.Type.TOTP) == encrypted
    assert signs_in_with(alice, current_code(secret))


@pytest.mark.django_db
def test_the_command_encrypts_secrets_stored_in_the_clear_after_0005(mfa_enable):
    """An upgrade from before 0004 runs 0004 and 0005 in one ``migrate``;
    replicas of the old code then store secrets in the clear until they are
    replaced, and the operator runs the command."""
    bob = user_make("bob")
    mfa_enable(bob)
    encrypted = stored(bob, Authenticator.Type.TOTP)
    alice = user_make("alice")
    secret = stored_in_the_clear(alice)
    output = io.StringIO()

    call_command("mfa_secrets_encrypt", stdout=output)

    assert output.getvalue() == "Two-factor secrets encrypted: 2.\n"  # TOTP, codes
    assert secret not in json.dumps(stored(alice, Authenticator.Type.TOTP))
    assert "12345678" not in json.dumps(
        stored(alice, Authenticator.Type.RECOVERY_CODES)
    )
    assert stored(bob, Authenticator.Type.TOTP) == encrypted
    assert signs_in_with(alice, current_code(secret))
