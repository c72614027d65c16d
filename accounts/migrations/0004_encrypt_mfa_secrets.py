"""Encrypt the second-factor secrets stored in the clear.

Until ``accounts.mfa.MFAAdapter`` was set as ``MFA_ADAPTER``, allauth stored
each TOTP secret, recovery-code seed and migrated recovery code as given.
This encrypts those still in the clear and leaves the encrypted ones alone,
so running it again changes nothing; unapplied, it decrypts them again. A
value encrypted with another ``SECRET_KEY`` stops it with the error that
says so, and nothing is changed.
"""

from django.db import migrations, transaction

from accounts.mfa import mfa_secret_decrypt, mfa_secret_encrypt, mfa_secret_is_encrypted


def _encrypted(value):
    if mfa_secret_is_encrypted(value):
        mfa_secret_decrypt(value)  # readable with this SECRET_KEY, or refused
        return value
    return mfa_secret_encrypt(value)


def _decrypted(value):
    return mfa_secret_decrypt(value) if mfa_secret_is_encrypted(value) else value


def _secrets_convert(apps, convert):
    Authenticator = apps.get_model("mfa", "Authenticator")
    # All or nothing, also where migrations are not run in a transaction.
    with transaction.atomic():
        for authenticator in Authenticator.objects.filter(
            type__in=["totp", "recovery_codes"]
        ).order_by("pk").iterator():
            data = dict(authenticator.data)
            for key in ("secret", "seed"):
                if isinstance(data.get(key), str):
                    data[key] = convert(data[key])
            if isinstance(data.get("migrated_codes"), list):
                data["migrated_codes"] = [convert(code) for code in data["migrated_codes"]]
            if data != authenticator.data:
                Authenticator.objects.filter(pk=authenticator.pk).update(data=data)


def mfa_secrets_encrypt(apps, schema_editor):
    _secrets_convert(apps, _encrypted)


def mfa_secrets_decrypt(apps, schema_editor):
    _secrets_convert(apps, _decrypted)


class Migration(migrations.Migration):

    dependencies = [
        ("accounts", "0003_address_book_events"),
        ("mfa", "0003_authenticator_type_uniq"),
    ]

    operations = [
        migrations.RunPython(mfa_secrets_encrypt, mfa_secrets_decrypt),
    ]
