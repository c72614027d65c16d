"""Validation of the object-store settings.

``MinIOStorage`` validates its options with these when it is built, without
contacting the store. Every process builds it while its models load: the
identity document's FileField is given the private storage, the same
``MinIOStorage`` with USE_MINIO=true, and Django's FileField looks at it then.
So a bad ``MINIO_*`` value stops ``manage.py``, ``runserver`` and gunicorn at
start-up with an ``ImproperlyConfigured`` naming the variable
(``crypto_exchange/tests/test_settings.py``). This module imports nothing from
Django's app registry so that ``crypto_exchange/settings.py`` can use it while
settings are being loaded.
"""

import os
import re
from pathlib import Path
from urllib.parse import urlsplit

from django.core.exceptions import ImproperlyConfigured

URL_MODES = ("public", "presigned", "proxy")

# The prefixes that hold media shown to browsers. In ``public`` mode these (and
# nothing else) are readable anonymously; the proxy view serves only these.
PUBLIC_MEDIA_PREFIXES = ("profile_pics/", "token_logo/")
PUBLIC_MEDIA_FILES = ("default_avatar.jpg",)
# Private files (identity documents) have keys under this prefix and live in
# a storage of their own, STORAGES["private"] (storage.private): on local disk
# PRIVATE_MEDIA_ROOT, outside MEDIA_ROOT; on S3 the default bucket, where no
# policy covers the prefix. No view serves it.
PRIVATE_MEDIA_PREFIX = "private/"
# The private folders whose rows say which files are still needed; the
# orphan scan (storage.orphans) looks at these and at the public ones only.
PRIVATE_MEDIA_PREFIXES = ("private/identity/",)

# S3 bucket naming rules (lower case, digits, dots, hyphens; 3-63 characters;
# no IP-address shapes); the strictest common subset of S3, MinIO and SeaweedFS.
_BUCKET_RE = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")
_IP_RE = re.compile(r"^\d+\.\d+\.\d+\.\d+$")
_HOST_PORT_RE = re.compile(r"^(\[[0-9a-fA-F:]+\]|[A-Za-z0-9.-]+)(:(\d{1,5}))?$")


def is_public_media_key(key: str) -> bool:
    return key in PUBLIC_MEDIA_FILES or key.startswith(PUBLIC_MEDIA_PREFIXES)


def validate_endpoint(value: str, *, variable: str = "MINIO_ENDPOINT") -> str:
    """Return ``host[:port]``; refuse URLs with a scheme or a path."""
    if not value:
        raise ImproperlyConfigured(f"{variable} is required when USE_MINIO=true.")
    if "://" in value or "/" in value:
        raise ImproperlyConfigured(
            f"{variable} must be host[:port] without scheme or path, e.g. "
            f"'localhost:9000' (got {value!r}); use MINIO_USE_SSL for https."
        )
    match = _HOST_PORT_RE.match(value)
    if not match or (match.group(3) and not 0 < int(match.group(3)) < 65536):
        raise ImproperlyConfigured(
            f"{variable} must be host[:port], e.g. 'localhost:9000' (got {value!r})."
        )
    return value


def validate_bucket_name(value: str, *, variable: str = "MINIO_BUCKET_NAME") -> str:
    if not value or not _BUCKET_RE.match(value) or _IP_RE.match(value) or ".." in value:
        raise ImproperlyConfigured(
            f"{variable} must be a valid S3 bucket name: 3-63 lower-case letters, "
            f"digits, dots or hyphens, starting and ending with a letter or digit "
            f"(got {value!r})."
        )
    return value


def validate_public_url(
    value: str, *, url_mode: str, variable: str = "MINIO_PUBLIC_URL"
) -> str:
    """Return the public base URL without a trailing slash ('' when unset)."""
    if not value:
        return ""
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ImproperlyConfigured(
            f"{variable} must be an absolute http(s) URL such as "
            f"'https://media.example.com' (got {value!r})."
        )
    if parts.query or parts.fragment:
        raise ImproperlyConfigured(f"{variable} must not have a query or fragment.")
    if url_mode == "presigned" and parts.path.strip("/"):
        # A signature covers the path, and the minio client signs for a host
        # only: a path prefix added afterwards would invalidate every URL.
        raise ImproperlyConfigured(
            f"{variable} cannot have a path in presigned mode (got {value!r}); "
            "use a host of its own for the object store."
        )
    return value.rstrip("/")


def validate_private_media_root(value: Path, *, media_root: Path) -> Path:
    """Refuse a PRIVATE_MEDIA_ROOT that is MEDIA_ROOT, inside it or around it.

    A web server is told to serve MEDIA_ROOT as /media/: private files there,
    or in a folder that holds MEDIA_ROOT, would be one forgotten rule away
    from the Internet. Links are followed before comparing.
    """
    private = Path(os.path.realpath(value))
    media = Path(os.path.realpath(media_root))
    if (
        private == media
        or private.is_relative_to(media)
        or media.is_relative_to(private)
    ):
        raise ImproperlyConfigured(
            f"PRIVATE_MEDIA_ROOT ({value}) must be a folder outside MEDIA_ROOT "
            f"({media_root}) that does not contain it either: a web server "
            "serving MEDIA_ROOT as /media/ would serve identity documents."
        )
    return value


def validate_url_mode(value: str, *, variable: str = "MINIO_MEDIA_URL_MODE") -> str:
    if value not in URL_MODES:
        raise ImproperlyConfigured(
            f"{variable} must be one of {', '.join(URL_MODES)} (got {value!r})."
        )
    return value


def validate_credentials(access_key: str, secret_key: str) -> None:
    if not access_key:
        raise ImproperlyConfigured("MINIO_ACCESS_KEY is required when USE_MINIO=true.")
    if not secret_key:
        raise ImproperlyConfigured("MINIO_SECRET_KEY is required when USE_MINIO=true.")


def validate_region(value: str, *, variable: str = "MINIO_REGION") -> str:
    if not value:
        raise ImproperlyConfigured(f"{variable} must not be empty.")
    return value


MAX_PRESIGNED_EXPIRY = 7 * 24 * 3600  # what S3 signatures allow


def validate_presigned_expiry(
    value: int, *, variable: str = "MINIO_PRESIGNED_EXPIRY"
) -> int:
    if not 1 <= value <= MAX_PRESIGNED_EXPIRY:
        raise ImproperlyConfigured(
            f"{variable} must be between 1 and {MAX_PRESIGNED_EXPIRY} seconds "
            f"(7 days; got {value!r})."
        )
    return value


# Seconds one request to the object store may take, retries included. gunicorn
# kills a worker after 30 s (gunicorn.conf.py); an upload makes two or three
# requests (save, delete of the replaced file), so each gets well under that.
DEFAULT_DEADLINE = 10.0
MAX_DEADLINE = 20.0


def validate_deadline(value: float, *, variable: str = "MINIO_DEADLINE") -> float:
    if not 0 < value <= MAX_DEADLINE:
        raise ImproperlyConfigured(
            f"{variable} must be more than 0 and at most {MAX_DEADLINE:g} seconds, "
            f"well below gunicorn's 30 s worker timeout (got {value!r})."
        )
    return value


def validate_timeout(value: float, *, variable: str) -> float:
    """A connect or read timeout: urllib3 refuses 0 and less on every request,
    which would make every upload fail instead of start-up."""
    if not 0 < value <= MAX_DEADLINE:
        raise ImproperlyConfigured(
            f"{variable} must be more than 0 and at most {MAX_DEADLINE:g} seconds "
            f"(got {value!r})."
        )
    return value


def validate_retries(value: int, *, variable: str = "MINIO_MAX_RETRIES") -> int:
    """At least 0; MINIO_DEADLINE bounds the time however many there are."""
    if value < 0:
        raise ImproperlyConfigured(f"{variable} must be 0 or more (got {value!r}).")
    return value


# An nginx location prefix: path segments of URL-safe characters (none starting
# with a dot, so no '..'), slashes around them; nothing that needs quoting.
_ACCEL_PREFIX_RE = re.compile(r"^/(?:[A-Za-z0-9_~-][A-Za-z0-9._~-]*/)+$")


def validate_accel_redirect(
    value: str, *, media_url: str, variable: str = "MEDIA_ACCEL_REDIRECT"
) -> str:
    """Return the internal nginx location media are handed to ('' when off).

    It must be a prefix of its own: under MEDIA_URL the redirect would come
    back to the app, and a location that is not ``internal`` in nginx would
    let anyone fetch any object, private ones included.
    """
    if not value:
        return ""
    if not _ACCEL_PREFIX_RE.match(value):
        raise ImproperlyConfigured(
            f"{variable} must be a location path with a slash at both ends, such "
            f"as '/_media_store/', or empty to turn it off (got {value!r})."
        )
    if value.startswith(media_url) or media_url.startswith(value):
        raise ImproperlyConfigured(
            f"{variable} must not overlap MEDIA_URL ({media_url}): nginx would "
            f"send the redirect back to the app (got {value!r})."
        )
    return value
