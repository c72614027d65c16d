"""API keys: created and revoked by their user, checked on every API request.

A key reads ``<prefix>.<secret>``. The prefix (8 random bytes, hex) is public:
it names the key on the profile page and finds its row. The secret (32 random
bytes, URL-safe base64) is shown once, at creation, and only its SHA-256
digest is stored.

Why a plain SHA-256 and not Django's password hashers: those are slow on
purpose, to make guessing a human-chosen password from a stolen hash costly,
and would add a quarter of a second to every API request. A secret of 256
random bits cannot be guessed whatever the hash's speed, and SHA-256 is
preimage-resistant, so a leaked table of digests gives nobody a usable key.
It is not keyed with ``SECRET_KEY`` either, so rotating that setting does not
silently invalidate every key. Digests are compared in constant time.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Iterable
from datetime import timedelta

from django.contrib.auth.base_user import AbstractBaseUser
from django.core.exceptions import ValidationError
from django.db.models import QuerySet
from django.utils import timezone

from trading.models import ApiKey

PREFIX_BYTES = 8
SECRET_BYTES = 32
MAX_ACTIVE_KEYS = 20
# ``last_used_at`` is written at most this often per key, not on every request.
LAST_USED_RESOLUTION = timedelta(minutes=1)


class ApiKeyRefused(Exception):
    """The presented key does not authenticate anyone; ``code`` says why."""

    def __init__(self, code: str, message: str) -> None:
        self.code = code
        self.message = message
        super().__init__(message)


def _digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def _scopes_normalize(scopes: Iterable[str]) -> str:
    chosen = set(scopes)
    unknown = chosen - set(ApiKey.Scope.values)
    if unknown:
        raise ValidationError(
            {"scopes": f"Unknown scope {sorted(unknown)[0]!r}: use read or trade."}
        )
    if not chosen:
        raise ValidationError({"scopes": "Choose at least one scope."})
    # Trading without reading makes no sense: trade always includes read.
    return "read trade" if ApiKey.Scope.TRADE in chosen else "read"


def api_key_create(
    *, user: AbstractBaseUser, name: str, scopes: Iterable[str]
) -> tuple[ApiKey, str]:
    """Create a key; return it and the full key string, which is never stored.

    ``scopes`` holds ``read`` and/or ``trade``; raises ``ValidationError``
    for a blank or too long name, unknown or no scopes, or too many keys.
    """
    name = (name or "").strip()
    if not 0 < len(name) <= 100:
        raise ValidationError({"name": "A name of 1 to 100 characters is required."})
    scope_text = _scopes_normalize(scopes)
    active = ApiKey.objects.filter(user=user, revoked_at__isnull=True).count()
    if active >= MAX_ACTIVE_KEYS:
        raise ValidationError(
            f"You already have {MAX_ACTIVE_KEYS} API keys; revoke one first."
        )
    prefix = secrets.token_hex(PREFIX_BYTES)
    secret = secrets.token_urlsafe(SECRET_BYTES)
    api_key = ApiKey.objects.create(
        user=user,
        name=name,
        prefix=prefix,
        secret_hash=_digest(secret),
        scopes=scope_text,
    )
    return api_key, f"{prefix}.{secret}"


def api_key_revoke(*, user: AbstractBaseUser, api_key: ApiKey) -> ApiKey:
    """Revoke one of ``user``'s keys for good; revoking twice changes nothing.

    Raises ``ApiKey.DoesNotExist`` if the key is not the user's.
    """
    if api_key.user_id != user.pk:
        raise ApiKey.DoesNotExist("No such API key.")
    now = timezone.now()
    ApiKey.objects.filter(pk=api_key.pk, revoked_at__isnull=True).update(revoked_at=now)
    api_key.refresh_from_db(fields=["revoked_at"])
    return api_key


def api_key_authenticate(*, key: str) -> ApiKey:
    """The active key ``<prefix>.<secret>`` names, with its user loaded.

    Raises ``ApiKeyRefused`` for a malformed, unknown, wrong or revoked key
    or an inactive user. Revocation is only revealed to who holds the secret.
    """
    prefix, dot, secret = key.partition(".")
    if not (dot and prefix and secret):
        raise ApiKeyRefused("invalid_api_key", "An API key reads <prefix>.<secret>.")
    api_key = ApiKey.objects.select_related("user").filter(prefix=prefix).first()
    if api_key is None or not hmac.compare_digest(api_key.secret_hash, _digest(secret)):
        raise ApiKeyRefused("invalid_api_key", "The API key is not valid.")
    if api_key.revoked_at is not None:
        raise ApiKeyRefused("api_key_revoked", "This API key has been revoked.")
    if not api_key.user.is_active:
        raise ApiKeyRefused("user_inactive", "The key's account is disabled.")
    _last_used_touch(api_key)
    return api_key


def _last_used_touch(api_key: ApiKey) -> None:
    now = timezone.now()
    if api_key.last_used_at is None or (
        now - api_key.last_used_at >= LAST_USED_RESOLUTION
    ):
        ApiKey.objects.filter(pk=api_key.pk).update(last_used_at=now)
        api_key.last_used_at = now


def api_keys_for_user(
    *, user: AbstractBaseUser, include_revoked: bool = False
) -> QuerySet[ApiKey]:
    """The user's keys, newest first; only the active ones unless asked."""
    keys = ApiKey.objects.filter(user=user)
    if not include_revoked:
        keys = keys.filter(revoked_at__isnull=True)
    return keys.order_by("-created_at", "-pk")
