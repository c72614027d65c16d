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

A key may be made to sign its requests instead of sending its secret: the
request carries the prefix, a timestamp and an HMAC-SHA256 of the request
made with the secret (``request_signature``), so that a leaked log line or a
proxy sees nothing it could reuse. The server needs the secret to check a
signature, so such a key keeps it encrypted with a key derived from
``SECRET_KEY`` (and ``SECRET_KEY_FALLBACKS``, so that rotating it keeps them
working while the old value is listed there).

Each signature accepted is recorded in the database (``ReceivedSignature``),
and its copy is refused by the unique constraint, whichever worker or
instance receives it and whatever Redis does; recorded rows are forgotten
once their timestamp would be refused anyway, a batch every
``SIGNATURES_FORGET_EVERY`` rows recorded.

A key may be tied to addresses or CIDR ranges (``allowed_ips``), must be for
the ``withdraw`` scope, and may expire. A withdraw key's ranges are narrow
(``WITHDRAW_MAX_PREFIX``): its allow-list is what keeps a leaked key from
withdrawing, which a range as wide as the Internet would not; a key that
only reads or trades may be tied to ranges of any width.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import re
import secrets
from collections.abc import Iterable
from datetime import datetime, timedelta

from cryptography.fernet import InvalidToken, MultiFernet
from django.conf import settings
from django.contrib.auth.base_user import AbstractBaseUser
from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.db.models import Q, QuerySet
from django.utils import timezone

from accounts.locks import user_serialize
from core.encryption import secret_fernet
from trading.models import ApiKey, ReceivedSignature

PREFIX_BYTES = 8
SECRET_BYTES = 32
MAX_ACTIVE_KEYS = 20
MAX_ALLOWED_NETWORKS = 20
# The widest range a key that can withdraw may be used from: a /24 of IPv4 (an
# office's or a small hosting block), a /48 of IPv6 (one site's allocation).
WITHDRAW_MAX_PREFIX = {4: 24, 6: 48}
_IPV4_MAPPED = ipaddress.ip_network("::ffff:0:0/96")
# ``last_used_at`` is written at most this often per key, not on every request.
LAST_USED_RESOLUTION = timedelta(minutes=1)
EXPIRY_CHOICES_DAYS = (30, 90, 365)
# Milliseconds since 1970 until past the year 9999.
_TIMESTAMP_MAX_DIGITS = 15
_SIGNATURE_FORMAT = re.compile(r"[0-9a-fA-F]{64}")
# Every this many signatures recorded, at most SIGNATURES_FORGET_BATCH expired
# ones are deleted: more than are recorded meanwhile, so they never pile up.
SIGNATURES_FORGET_EVERY = 100
SIGNATURES_FORGET_BATCH = 1000


class ApiKeyRefused(Exception):
    """The presented key does not authenticate anyone, or not from here;
    ``code`` says why, ``status`` is the HTTP status to answer."""

    def __init__(self, code: str, message: str, *, status: int = 401) -> None:
        self.code = code
        self.message = message
        self.status = status
        super().__init__(message)


def _digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def _fernet() -> MultiFernet:
    return secret_fernet("api-key-signing")


def _scopes_normalize(scopes: Iterable[str]) -> str:
    chosen = set(scopes)
    unknown = chosen - set(ApiKey.Scope.values)
    if unknown:
        raise ValidationError(
            {
                "scopes": f"Unknown scope {sorted(unknown)[0]!r}: use read, "
                "trade or withdraw."
            }
        )
    if not chosen:
        raise ValidationError({"scopes": "Choose at least one scope."})
    # Every key reads; withdraw is never implied by trade, nor trade by it.
    return " ".join(
        scope
        for scope in ("read", "trade", "withdraw")
        if scope == "read" or scope in chosen
    )


def allowed_ips_normalize(text: str, *, withdraw: bool = False) -> str:
    """Addresses or CIDR ranges, separated by commas, spaces or lines, as the
    stored text (one network per line); raises ``ValidationError`` naming the
    first entry that is neither, or, for a key that can ``withdraw``, wider
    than ``WITHDRAW_MAX_PREFIX``."""
    networks: list[str] = []
    for entry in (text or "").replace(",", " ").split():
        try:
            network = ipaddress.ip_network(entry, strict=False)
        except ValueError:
            raise ValidationError(
                {
                    "allowed_ips": f"“{entry[:50]}” is not an IP address or a "
                    "CIDR range such as 203.0.113.0/24."
                }
            ) from None
        if withdraw and _too_wide_to_withdraw(network):
            raise ValidationError(
                {
                    "allowed_ips": f"“{entry[:50]}” is too wide a range for a key "
                    "that can withdraw: list its addresses, or ranges of at most "
                    f"/{WITHDRAW_MAX_PREFIX[4]} (IPv4) or /{WITHDRAW_MAX_PREFIX[6]} "
                    "(IPv6)."
                }
            )
        if network.version == 6 and network.subnet_of(_IPV4_MAPPED):
            # ::ffff:203.0.113.0/120 is 203.0.113.0/24, which matches the
            # client however its socket spells it (address_allowed).
            network = ipaddress.ip_network(
                (network.network_address.ipv4_mapped, network.prefixlen - 96)
            )
        if str(network) not in networks:
            networks.append(str(network))
    if len(networks) > MAX_ALLOWED_NETWORKS:
        raise ValidationError(
            {"allowed_ips": f"At most {MAX_ALLOWED_NETWORKS} addresses or ranges."}
        )
    return "\n".join(networks)


def _too_wide_to_withdraw(
    network: ipaddress.IPv4Network | ipaddress.IPv6Network,
) -> bool:
    if network.version == 6 and network.supernet_of(_IPV4_MAPPED):
        return True  # every IPv4 client, as a dual-stack socket sees them
    if network.version == 6 and network.subnet_of(_IPV4_MAPPED):
        # ::ffff:203.0.113.7 is an IPv4 client as a dual-stack socket sees it.
        return network.prefixlen < 96 + WITHDRAW_MAX_PREFIX[4]
    return network.prefixlen < WITHDRAW_MAX_PREFIX[network.version]


def api_key_create(
    *,
    user: AbstractBaseUser,
    name: str,
    scopes: Iterable[str],
    allowed_ips: str = "",
    expires_in_days: int | None = None,
    require_signature: bool = False,
) -> tuple[ApiKey, str]:
    """Create a key; return it and the full key string, which is never stored
    (only encrypted, when the key must sign its requests).

    Raises ``ValidationError`` for a blank or too long name, unknown or no
    scopes, a malformed allow-list, ``withdraw`` without an allow-list or with
    too wide a range in it, an expiry other than ``EXPIRY_CHOICES_DAYS``, or
    too many usable keys (neither revoked nor expired).
    """
    name = (name or "").strip()
    if not 0 < len(name) <= 100:
        raise ValidationError({"name": "A name of 1 to 100 characters is required."})
    scope_text = _scopes_normalize(scopes)
    withdraw = ApiKey.Scope.WITHDRAW in scope_text.split()
    networks = allowed_ips_normalize(allowed_ips, withdraw=withdraw)
    if withdraw and not networks:
        raise ValidationError(
            {
                "allowed_ips": "A key that can withdraw must be tied to the "
                "addresses it is used from: list them."
            }
        )
    if expires_in_days is not None and expires_in_days not in EXPIRY_CHOICES_DAYS:
        raise ValidationError(
            {"expires_in_days": "A key expires after 30, 90 or 365 days, or never."}
        )
    with transaction.atomic():
        # One creation at a time per user, so keys created at once cannot all
        # count the same keys and pass the limit (accounts.locks.user_serialize).
        user_serialize(user_id=user.pk)
        if api_keys_usable(user=user).count() >= MAX_ACTIVE_KEYS:
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
            allowed_ips=networks,
            signing_secret=(
                _fernet().encrypt(secret.encode()).decode() if require_signature else ""
            ),
            expires_at=(
                timezone.now() + timedelta(days=expires_in_days)
                if expires_in_days
                else None
            ),
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


def api_keys_revoke_all(*, user: AbstractBaseUser) -> int:
    """Revoke every active key of ``user``; return how many were."""
    return ApiKey.objects.filter(user=user, revoked_at__isnull=True).update(
        revoked_at=timezone.now()
    )


def api_key_authenticate(*, key: str, client_ip: str | None = None) -> ApiKey:
    """The active key ``<prefix>.<secret>`` names, with its user loaded.

    Raises ``ApiKeyRefused`` for a malformed, unknown, wrong, revoked or
    expired key, an inactive user, a key that must sign its requests, or a
    client address outside the key's allow-list. Revocation and expiry are
    only revealed to who holds the secret.
    """
    prefix, dot, secret = key.partition(".")
    if not (dot and prefix and secret):
        raise ApiKeyRefused("invalid_api_key", "An API key reads <prefix>.<secret>.")
    api_key = _key_for(prefix)
    if api_key is None or not hmac.compare_digest(api_key.secret_hash, _digest(secret)):
        raise ApiKeyRefused("invalid_api_key", "The API key is not valid.")
    _usable_check(api_key, client_ip)
    if api_key.requires_signature:
        raise ApiKeyRefused(
            "signature_required",
            "This API key only accepts signed requests; see the API docs.",
        )
    _last_used_touch(api_key, client_ip)
    return api_key


def request_signature(
    *, secret: str, timestamp: str, method: str, path: str, query: str, body: bytes
) -> str:
    """The hex HMAC-SHA256, keyed with the key's secret, of
    ``timestamp \\n METHOD \\n path \\n query \\n body`` (query as sent, without
    the ``?``; body as sent). Clients compute the same."""
    message = f"{timestamp}\n{method.upper()}\n{path}\n{query}\n".encode() + body
    return hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()


def api_key_authenticate_signed(
    *,
    prefix: str,
    timestamp: str,
    signature: str,
    method: str,
    path: str,
    query: str,
    body: bytes,
    client_ip: str | None,
    now: datetime | None = None,
) -> ApiKey:
    """The key ``prefix`` names, if ``signature`` signs this request with its
    secret, ``timestamp`` (milliseconds since 1970) is within
    ``API_SIGNATURE_WINDOW_SECONDS`` of now, and the same signature was never
    accepted before (a replay), by any worker or instance. Raises
    ``ApiKeyRefused`` otherwise (also for a timestamp not in plain digits or a
    signature not in hex), and for the reasons ``api_key_authenticate`` gives.

    The signature is recorded last, with the key's last use, in one
    transaction (a savepoint of the caller's): a request refused or failing
    before that leaves it unused."""
    api_key = _key_for(prefix)
    if api_key is None or not api_key.requires_signature:
        raise ApiKeyRefused(
            "invalid_api_key",
            "No API key that signs its requests has this prefix.",
        )
    # int() would also take " 12", "1_000", "+5" or Arabic-Indic digits, and
    # any number of them; a float of the latter overflows.
    if not (
        timestamp.isascii()
        and timestamp.isdigit()
        and len(timestamp) <= _TIMESTAMP_MAX_DIGITS
    ):
        raise ApiKeyRefused(
            "signature_invalid",
            "X-Api-Timestamp is the time in milliseconds since 1970, in digits.",
        )
    if not _SIGNATURE_FORMAT.fullmatch(signature):
        raise ApiKeyRefused(
            "signature_invalid",
            "X-Api-Signature is the request's HMAC-SHA256 as 64 hexadecimal "
            "characters.",
        )
    window = settings.API_SIGNATURE_WINDOW_SECONDS
    now = now or timezone.now()
    now_ms = int(now.timestamp() * 1000)
    if abs(now_ms - int(timestamp)) > window * 1000:
        raise ApiKeyRefused(
            "signature_expired",
            f"The request was signed more than {window} seconds from now: "
            "check the client's clock.",
        )
    try:
        secret = _fernet().decrypt(api_key.signing_secret.encode()).decode()
    except InvalidToken:
        raise ApiKeyRefused(
            "invalid_api_key",
            "This key cannot be checked any more (the server's SECRET_KEY "
            "changed): create a new one.",
        ) from None
    expected = request_signature(
        secret=secret,
        timestamp=timestamp,
        method=method,
        path=path,
        query=query,
        body=body,
    )
    if not hmac.compare_digest(expected, signature.lower()):
        raise ApiKeyRefused(
            "signature_invalid",
            "The signature does not match this request (method, path, query, "
            "body and timestamp are signed).",
        )
    _usable_check(api_key, client_ip)
    try:
        with transaction.atomic():
            # A copy's insert fails on the unique constraint; on PostgreSQL,
            # one sent at the same time waits for this transaction first.
            received = ReceivedSignature.objects.create(
                api_key=api_key,
                signature=expected,
                # As long as its timestamp could be accepted (it may be a
                # window ahead), and a second more.
                forget_after=now + timedelta(seconds=2 * window + 1),
            )
            _last_used_touch(api_key, client_ip)
    except IntegrityError:
        raise ApiKeyRefused(
            "signature_replayed", "This signed request was already received."
        ) from None
    if received.pk % SIGNATURES_FORGET_EVERY == 0:
        received_signatures_forget()
    return api_key


def received_signatures_forget() -> int:
    """Delete up to ``SIGNATURES_FORGET_BATCH`` recorded signatures whose
    timestamp would be refused by now; return how many were."""
    expired = ReceivedSignature.objects.filter(forget_after__lt=timezone.now())
    with transaction.atomic():
        # Rows another worker is deleting at the same time are left to it.
        batch = expired.select_for_update(skip_locked=True).values("pk")
        deleted, _ = ReceivedSignature.objects.filter(
            pk__in=batch[:SIGNATURES_FORGET_BATCH]
        ).delete()
    return deleted


def api_key_usable(*, api_key_id: int, client_ip: str | None) -> bool:
    """Whether a key accepted earlier (a live stream's) still would be: not
    revoked or expired since, its account not disabled, ``client_ip`` still
    allowed."""
    api_key = ApiKey.objects.select_related("user").filter(pk=api_key_id).first()
    if api_key is None:
        return False
    try:
        _usable_check(api_key, client_ip)
    except ApiKeyRefused:
        return False
    return True


def _key_for(prefix: str) -> ApiKey | None:
    return ApiKey.objects.select_related("user").filter(prefix=prefix).first()


def _usable_check(api_key: ApiKey, client_ip: str | None) -> None:
    if api_key.revoked_at is not None:
        raise ApiKeyRefused("api_key_revoked", "This API key has been revoked.")
    if api_key.expires_at is not None and api_key.expires_at <= timezone.now():
        raise ApiKeyRefused("api_key_expired", "This API key has expired.")
    if not api_key.user.is_active:
        raise ApiKeyRefused("user_inactive", "The key's account is disabled.")
    if api_key.allowed_networks and not address_allowed(
        client_ip, api_key.allowed_networks
    ):
        raise ApiKeyRefused(
            "ip_not_allowed",
            f"This API key may not be used from {client_ip or 'this address'}.",
            status=403,
        )


def address_allowed(address: str | None, networks: Iterable[str]) -> bool:
    if not address:
        return False
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    addresses = [ip]
    if ip.version == 6 and ip.ipv4_mapped is not None:
        # A dual-stack socket sees the IPv4 client 203.0.113.7 as ::ffff:203.0.113.7.
        addresses.append(ip.ipv4_mapped)
    return any(
        address in ipaddress.ip_network(network)
        for network in networks
        for address in addresses
    )


def _last_used_touch(api_key: ApiKey, client_ip: str | None) -> None:
    now = timezone.now()
    if (
        api_key.last_used_at is None
        or now - api_key.last_used_at >= LAST_USED_RESOLUTION
        or api_key.last_used_ip != client_ip
    ):
        ApiKey.objects.filter(pk=api_key.pk).update(
            last_used_at=now, last_used_ip=client_ip
        )
        api_key.last_used_at, api_key.last_used_ip = now, client_ip


def api_keys_for_user(
    *, user: AbstractBaseUser, include_revoked: bool = False
) -> QuerySet[ApiKey]:
    """The user's keys, newest first, each with ``expired``; only the ones not
    revoked unless asked."""
    keys = ApiKey.objects.filter(user=user).annotate(
        expired=Q(expires_at__lte=timezone.now())
    )
    if not include_revoked:
        keys = keys.filter(revoked_at__isnull=True)
    return keys.order_by("-created_at", "-pk")


def api_keys_usable(*, user: AbstractBaseUser) -> QuerySet[ApiKey]:
    """The user's keys that still sign in: neither revoked nor expired."""
    return ApiKey.objects.filter(user=user, revoked_at__isnull=True).exclude(
        expires_at__lte=timezone.now()
    )
