import logging
from urllib.parse import urlsplit

from csp.middleware import CSPMiddleware, PolicyParts
from django.conf import settings
from django.core.files.storage import storages
from django.shortcuts import render

from core.middleware import AsyncCapable
from storage.exceptions import StorageUnavailable

logger = logging.getLogger(__name__)


def media_origin() -> str | None:
    """The origin browsers load media from when it is not this site: the
    object store's public URL in the ``public`` and ``presigned`` modes."""
    storage = storages["default"]
    if getattr(storage, "url_mode", "proxy") == "proxy":
        return None
    parts = urlsplit(storage.public_url)
    return f"{parts.scheme}://{parts.netloc}"


class MediaOriginCSPMiddleware(CSPMiddleware):
    """django-csp's middleware, with the object store added to img-src and
    the live stream's own origin, if any, to connect-src.

    The origin is read from the default storage rather than from settings, so
    the policy cannot drift from where the storage really sends browsers
    (STORAGES options may override the MINIO_* variables).
    """

    def get_policy_parts(self, request, response, report_only=False) -> PolicyParts:
        parts = super().get_policy_parts(request, response, report_only)
        origin = media_origin()
        if origin is not None and not report_only:
            update = dict(parts.update or {})
            update["img-src"] = [*update.get("img-src", []), origin]
            parts.update = update
        # The live stream on an origin of its own (STREAM_ORIGIN, `make run`).
        if settings.STREAM_ORIGIN and not report_only:
            update = dict(parts.update or {})
            update["connect-src"] = [
                *update.get("connect-src", ["'self'"]),
                settings.STREAM_ORIGIN,
            ]
            parts.update = update
        return parts


class StorageUnavailableMiddleware(AsyncCapable):
    """The last line of defence: an outage of the object store is a 503 page.

    Views handle StorageUnavailable where they can say something better (an
    upload form keeps the user's input and shows a message); anything that
    slips through becomes a page that says what happened, never a traceback.
    """

    def process_exception(self, request, exception):
        if not isinstance(exception, StorageUnavailable):
            return None
        return render(request, "503.html", status=503)
