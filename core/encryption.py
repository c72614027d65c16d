"""Secrets the server must read back (an API key's signing secret, a user's
second-factor secret), kept in the database encrypted with a key derived from
``SECRET_KEY``."""

from __future__ import annotations

import base64
import hashlib

from cryptography.fernet import Fernet, MultiFernet
from django.conf import settings


def secret_fernet(purpose: str) -> MultiFernet:
    """A Fernet whose key is derived from ``SECRET_KEY`` and ``purpose``, so
    that each kind of secret has a key of its own. It encrypts with
    ``SECRET_KEY`` and also decrypts with ``SECRET_KEY_FALLBACKS``, so that
    rotating the setting keeps what was stored readable while the old value
    is listed there. Decrypting with none of them raises ``InvalidToken``."""
    keys = [settings.SECRET_KEY, *getattr(settings, "SECRET_KEY_FALLBACKS", [])]
    return MultiFernet(
        [
            Fernet(
                base64.urlsafe_b64encode(
                    hashlib.sha256(f"{purpose}:{key}".encode()).digest()
                )
            )
            for key in keys
        ]
    )
