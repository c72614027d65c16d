"""Encrypt the second-factor secrets stored in the clear.

Migration ``accounts.0004`` encrypts them, and 0005 those stored in the clear
since; but replicas of the code before 0004 keep serving until compose
replaces them, after both ran in one ``migrate``, and an authenticator turned
on through one of them is stored in the clear (codes are still checked with
it: ``accounts.mfa``). Run this once every replica runs the new code; it is
the migrations' own pass, so it leaves encrypted secrets alone and may be run
again.
"""

from importlib import import_module

from django.apps import apps
from django.core.management.base import BaseCommand

from accounts.mfa import mfa_secret_is_encrypted

encrypt_0004 = import_module("accounts.migrations.0004_encrypt_mfa_secrets")


def _clear_count() -> int:
    Authenticator = apps.get_model("mfa", "Authenticator")
    return sum(
        1
        for data in Authenticator.objects.values_list("data", flat=True)
        if any(
            isinstance(data.get(key), str) and not mfa_secret_is_encrypted(data[key])
            for key in ("secret", "seed")
        )
    )


class Command(BaseCommand):
    help = "Encrypt the two-factor secrets stored in the clear by older code."

    def handle(self, *args, **options):
        count = _clear_count()
        encrypt_0004.mfa_secrets_encrypt(apps, None)
        self.stdout.write(f"Two-factor secrets encrypted: {count}.")
