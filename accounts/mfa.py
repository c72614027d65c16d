"""The second factor's secrets, encrypted in the database.

allauth stores what it needs to check a code in ``Authenticator.data``: an
authenticator app's TOTP secret, the seed the recovery codes are derived
from (and recovery codes migrated from another library), and passes each
through the MFA adapter's ``encrypt`` on the way in and ``decrypt`` on the
way out. Its default adapter does neither, so a database dump or the admin
gave away every user's second factor. ``MFAAdapter`` encrypts them with a key
derived from ``SECRET_KEY`` (``core.encryption``); rows stored before it are
encrypted by migration ``accounts.0004_encrypt_mfa_secrets``, and those the
code before it still stored in the clear while it was rolled out by
``accounts.0005_encrypt_mfa_secrets_again`` and, stored after the
migrations ran, by ``manage.py mfa_secrets_encrypt``.
"""

from __future__ import annotations

import base64

from allauth.mfa.adapter import DefaultMFAAdapter
from cryptography.fernet import InvalidToken
from django.core.exceptions import ImproperlyConfigured

from core.encryption import secret_fernet

_PURPOSE = "mfa-secret"
# A Fernet token's version byte, and its shortest length: version, timestamp,
# IV, one block of ciphertext, HMAC.
_FERNET_VERSION = 0x80
_FERNET_MIN_BYTES = 1 + 8 + 16 + 16 + 32


def mfa_secret_encrypt(text: str) -> str:
    return secret_fernet(_PURPOSE).encrypt(text.encode()).decode()


def mfa_secret_decrypt(token: str) -> str:
    """Raises ``ImproperlyConfigured`` when ``token`` was encrypted with a
    ``SECRET_KEY`` that is neither the current one nor a fallback: no code can
    be checked until the setting is put right, and calling every code wrong
    would hide why."""
    try:
        return secret_fernet(_PURPOSE).decrypt(token.encode()).decode()
    except InvalidToken:
        raise ImproperlyConfigured(
            "A two-factor secret cannot be decrypted: it was encrypted with "
            "another SECRET_KEY. Set SECRET_KEY back to the value it was "
            "encrypted with (or list that value in SECRET_KEY_FALLBACKS); "
            "otherwise staff delete the user's authenticators and the user "
            "turns two-factor authentication on again."
        ) from None


def mfa_secret_is_encrypted(value: str) -> bool:
    """Whether ``value`` is a Fernet token, under whichever ``SECRET_KEY``, and
    not a secret stored in the clear: a TOTP secret (base32, 32 characters)
    or a recovery-code seed (80 hexadecimal digits) is too short to decode to
    one, and neither starts with its version byte."""
    try:
        raw = base64.urlsafe_b64decode(value.encode())
    except ValueError:
        return False
    return len(raw) >= _FERNET_MIN_BYTES and raw[0] == _FERNET_VERSION


class MFAAdapter(DefaultMFAAdapter):
    def encrypt(self, text: str) -> str:
        return mfa_secret_encrypt(text)

    def decrypt(self, encrypted_text: str) -> str:
        # The code before 0004 stores secrets in the clear while a rolling
        # upgrade runs; they are checked as stored, and 0005 encrypts them.
        if not mfa_secret_is_encrypted(encrypted_text):
            return encrypted_text
        return mfa_secret_decrypt(encrypted_text)
