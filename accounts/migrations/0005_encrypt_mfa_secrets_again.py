"""Encrypt the second-factor secrets stored in the clear since 0004.

The code before 0004 kept serving while a rolling upgrade ran 0004, and
stored the secrets of the authenticators turned on there in the clear; the
adapter checks codes with them as stored. This is 0004's pass again: it
encrypts those and leaves the encrypted ones alone. Unapplied, it changes
nothing (unapplying 0004 decrypts them all).
"""

from importlib import import_module

from django.db import migrations

encrypt_0004 = import_module("accounts.migrations.0004_encrypt_mfa_secrets")


class Migration(migrations.Migration):
    dependencies = [
        ("accounts", "0004_encrypt_mfa_secrets"),
    ]

    operations = [
        migrations.RunPython(
            encrypt_0004.mfa_secrets_encrypt, migrations.RunPython.noop
        ),
    ]
