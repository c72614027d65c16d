"""Serving media through Django, for storages that browsers cannot reach.

Used in development (local ``media/``) and in the MinIO ``proxy`` URL mode,
where the bucket stays private and Django streams each object: one GET to the
store per request, the body never held in memory. With MEDIA_ACCEL_REDIRECT
the view only checks the path and signs a short-lived GET for the store's own
endpoint; nginx fetches the object with it (``X-Accel-Redirect``), so no worker
waits on the store or on the browser.
"""

import errno
import logging
import mimetypes
import posixpath
from urllib.parse import urlsplit

from django.conf import settings
from django.core.exceptions import SuspiciousFileOperation
from django.core.files.storage import default_storage
from django.http import FileResponse, Http404, HttpResponse
from django.utils.cache import get_conditional_response
from django.utils.http import http_date, parse_http_date_safe, quote_etag
from django.views.decorators.http import require_safe

from storage.backends import MinIOStorage
from storage.config import PUBLIC_MEDIA_FILES, is_public_media_key
from storage.exceptions import StorageUnavailable
from storage.services import DEFAULT_AVATAR_CACHE_CONTROL

logger = logging.getLogger(__name__)

# Image types may render inline; anything else is offered as a download so
# that an unexpected HTML or SVG object can never run as a page of this site.
_INLINE_TYPES = frozenset({"image/jpeg", "image/png", "image/webp", "image/gif"})
# No stored name is longer (the file fields' max_length); a longer path names
# nothing, and a file system refuses components over 255 bytes with an error.
MEDIA_KEY_MAX_LENGTH = 255
# What a local path continuing past a file (profile_pics/a.jpg/x), too long
# a component or a link loop raise: no such file, as the object store says.
_NO_SUCH_PATH = frozenset({errno.ENOTDIR, errno.ENAMETOOLONG, errno.ELOOP})
# Seconds the URL handed to nginx stays valid. nginx uses it at once: it only
# has to outlast a difference between the clocks of the app and the store.
ACCEL_URL_EXPIRY = 60


@require_safe
def media_serve(request, path: str):
    key = _media_key(path)
    if not settings.MEDIA_SERVE or key is None or not is_public_media_key(key):
        raise Http404("Not a media file.")
    if settings.MEDIA_ACCEL_REDIRECT and _proxied_store():
        return _accel_redirect(request, key)
    path = key
    try:
        media = default_storage.open(path, "rb")
    except (FileNotFoundError, IsADirectoryError, SuspiciousFileOperation):
        raise Http404("No such media file.") from None
    except OSError as error:
        if error.errno not in _NO_SUCH_PATH:
            raise
        raise Http404("No such media file.") from None
    except StorageUnavailable:
        # Logged by the storage; a media request must not become a 500. It
        # came within MINIO_DEADLINE; the browser may ask again a little later,
        # and nobody (nginx, a CDN, the browser) keeps the error.
        unavailable = HttpResponse(
            "Media storage is unavailable.", status=503, content_type="text/plain"
        )
        unavailable["Retry-After"] = "10"
        unavailable["Cache-Control"] = "no-store"
        return unavailable

    etag, last_modified, content_type = _validators(media, path)
    conditional = get_conditional_response(
        request, etag=etag, last_modified=last_modified
    )
    if conditional is not None:
        media.close()
        # A 304 carries the validators a 200 would (RFC 9110, 15.4.5). A 412
        # (If-Match, If-Unmodified-Since) gets none: with the year of caching
        # a shared cache could answer every later request with it.
        if conditional.status_code == 304:
            if etag:
                conditional.headers["ETag"] = etag
            conditional.headers["Cache-Control"] = _cache_control(path)
        return conditional

    response = FileResponse(media, content_type=content_type)
    response["Content-Length"] = str(media.size)
    if etag:
        response["ETag"] = etag
    if last_modified:
        response["Last-Modified"] = http_date(last_modified)
    response["X-Content-Type-Options"] = "nosniff"
    if content_type not in _INLINE_TYPES:
        response["Content-Disposition"] = "attachment"
    response["Cache-Control"] = _cache_control(path)
    return response


def _proxied_store() -> bool:
    storage = default_storage
    return isinstance(storage, MinIOStorage) and storage.url_mode == "proxy"


def _accel_redirect(request, key: str) -> HttpResponse:
    """An empty answer telling nginx to fetch ``key`` from the store itself.

    nginx carries Content-Type, Cache-Control, Content-Disposition and
    Set-Cookie of this answer over the redirect, onto its own error pages too
    (a 503 while the store is down would be cached for a year): none of them
    is sent. The Cache-Control is signed into the URL instead, and the store
    answers with it, on success only; Content-Type, Content-Length, ETag and
    Last-Modified come from the store's answer, which also handles
    If-None-Match and Range; nginx adds nosniff and, for anything but an
    image, Content-Disposition: attachment (deploy/nginx.conf).
    """
    try:
        url = default_storage.endpoint_url(
            key,
            expires=ACCEL_URL_EXPIRY,
            # HEAD stays HEAD through the redirect, and the signature covers it.
            method=request.method,
            response_headers={"response-cache-control": _cache_control(key)},
        )
    except SuspiciousFileOperation:
        raise Http404("No such media file.") from None
    signed = urlsplit(url)
    response = HttpResponse()
    del response["Content-Type"]
    response["X-Accel-Redirect"] = (
        f"{settings.MEDIA_ACCEL_REDIRECT}{signed.path.lstrip('/')}?{signed.query}"
    )
    return response


def _media_key(path: str) -> str | None:
    """The storage key a media path names, or None for a path never served.

    The path is normalised before the allowed prefixes are checked, so that
    ``profile_pics/../secret.txt`` is judged as ``secret.txt``. A NUL byte or a
    name longer than any stored one never reaches the storage: the file system
    would raise ValueError or OSError, the object store a failure to log.
    """
    if "\x00" in path or len(path.encode()) > MEDIA_KEY_MAX_LENGTH:
        return None
    key = posixpath.normpath(path)
    if key.startswith(("/", "../")) or key in (".", ".."):
        return None
    return key


def _cache_control(key: str) -> str:
    # Uploaded media get a fresh random name whenever they change; the default
    # avatar keeps its name for ever, so it may be cached only for a while.
    if key in PUBLIC_MEDIA_FILES:
        return DEFAULT_AVATAR_CACHE_CONTROL
    return "public, max-age=31536000, immutable"


def _validators(media, path: str) -> tuple[str | None, int | None, str]:
    """ETag, Last-Modified (epoch seconds) and Content-Type of an open file."""
    etag = getattr(media, "etag", None)
    if etag is not None:
        # Straight from the object store's answer to the one GET.
        last_modified = parse_http_date_safe(media.last_modified or "")
        return (quote_etag(etag) if etag else None), last_modified, media.content_type
    modified = default_storage.get_modified_time(path).timestamp()
    size = default_storage.size(path)
    content_type = mimetypes.guess_type(path)[0] or "application/octet-stream"
    return f'"{int(modified * 1000):x}-{size:x}"', int(modified), content_type
