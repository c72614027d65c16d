"""Serving media through Django, for storages that browsers cannot reach.

Used in development (local ``media/``) and in the MinIO ``proxy`` URL mode,
where the bucket stays private and Django streams each object: one GET to the
store per request, the body never held in memory.
"""

import logging
import mimetypes

from django.conf import settings
from django.core.exceptions import SuspiciousFileOperation
from django.core.files.storage import default_storage
from django.http import FileResponse, Http404, HttpResponse
from django.utils.cache import get_conditional_response, patch_cache_control
from django.utils.http import http_date, parse_http_date_safe, quote_etag
from django.views.decorators.http import require_safe

from storage.config import is_public_media_key
from storage.exceptions import StorageUnavailable

logger = logging.getLogger(__name__)

# Image types may render inline; anything else is offered as a download so
# that an unexpected HTML or SVG object can never run as a page of this site.
_INLINE_TYPES = frozenset({"image/jpeg", "image/png", "image/webp", "image/gif"})


@require_safe
def media_serve(request, path: str):
    if not settings.MEDIA_SERVE or not is_public_media_key(path):
        raise Http404("Not a media file.")
    try:
        media = default_storage.open(path, "rb")
    except (FileNotFoundError, IsADirectoryError, SuspiciousFileOperation):
        raise Http404("No such media file.") from None
    except StorageUnavailable:
        # Logged by the storage; a media request must not become a 500.
        return HttpResponse(
            "Media storage is unavailable.", status=503, content_type="text/plain"
        )

    etag, last_modified, content_type = _validators(media, path)
    not_modified = get_conditional_response(
        request, etag=etag, last_modified=last_modified
    )
    if not_modified is not None:
        media.close()
        not_modified.headers["Cache-Control"] = "public, max-age=31536000, immutable"
        return not_modified

    response = FileResponse(media, content_type=content_type)
    response["Content-Length"] = str(media.size)
    if etag:
        response["ETag"] = etag
    if last_modified:
        response["Last-Modified"] = http_date(last_modified)
    response["X-Content-Type-Options"] = "nosniff"
    if content_type not in _INLINE_TYPES:
        response["Content-Disposition"] = "attachment"
    patch_cache_control(response, public=True, max_age=31536000, immutable=True)
    return response


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
