"""Requests refused at the door, before any view or query runs.

Listed in MIDDLEWARE before the session middleware: a refused request reads
no session and touches no database. What it refuses:

- a NUL character in the path (404), the query string or a page's form
  field (400): no field accepts one, and PostgreSQL refuses any query
  carrying it, which was a 500 wherever a view looked the value up
  (``/markets/%00/``, ``/tokens/?q=%00``, ``/api/v1/markets/%00/ticker/``);
  forms mostly refused it field by field already, now all of them do;
- a body larger than ``MAX_REQUEST_BODY_SIZE`` (413), judged by its
  Content-Length before a byte of it is read; and a chunked body (411),
  which Django cannot read at all (it reads Content-Length bytes, here none)
  and so would take for empty.

Cookies carrying a NUL are dropped, so a forged session cookie is just no
session. JSON bodies are the API's parser's and serializers' (core.parsers).

Every middleware of the project serves both handlers (``AsyncCapable``): the
ASGI process of the live stream builds an all-async chain, so that a request
never parks a thread while it awaits, and the WSGI workers the same
synchronous chain as before.
"""

from __future__ import annotations

import functools
from urllib.parse import unquote_to_bytes

from asgiref.sync import iscoroutinefunction, markcoroutinefunction, sync_to_async
from django.conf import settings
from django.http import Http404, HttpRequest, HttpResponse
from django.utils.log import log_response
from whitenoise.middleware import WhiteNoiseMiddleware

from core.database import UNAVAILABLE, WriteWatch, watch_connection, watching
from core.errors import (
    NullCharacter,
    bad_request,
    database_unavailable,
    page_not_found,
    refusal,
    wants_json,
)

_FORMS = ("application/x-www-form-urlencoded", "multipart/form-data")


class AsyncCapable:
    """Django's pattern for middleware that serves both handlers
    (``MiddlewareMixin``, django/utils/deprecation.py): the handler below
    decides. Under WSGI ``__call__`` runs ``call``; under ASGI the instance
    is a coroutine function running ``acall``, with no thread of its own.
    Subclasses write the two with the same behaviour."""

    sync_capable = True
    async_capable = True

    def __init__(self, get_response) -> None:
        self.get_response = get_response
        self.async_mode = iscoroutinefunction(get_response)
        if self.async_mode:
            markcoroutinefunction(self)

    def __call__(self, request: HttpRequest):
        if self.async_mode:
            return self.acall(request)
        return self.call(request)

    def call(self, request: HttpRequest) -> HttpResponse:
        return self.get_response(request)

    async def acall(self, request: HttpRequest) -> HttpResponse:
        return await self.get_response(request)


class StaticFilesMiddleware(WhiteNoiseMiddleware):
    """WhiteNoise (static files from the app itself), able to serve both
    handlers: whitenoise 6 is synchronous only, and one synchronous
    middleware in the list makes every ASGI request hold a thread while the
    rest of the chain runs, its awaits included (for streams, the thread
    their requests share: crypto_exchange.asgi)."""

    sync_capable = True
    async_capable = True

    def __init__(self, get_response=None, settings=settings) -> None:
        super().__init__(get_response, settings)
        self.async_mode = iscoroutinefunction(get_response)
        if self.async_mode:
            markcoroutinefunction(self)

    def __call__(self, request: HttpRequest):
        if self.async_mode:
            return self.acall(request)
        return super().__call__(request)

    async def acall(self, request: HttpRequest) -> HttpResponse:
        if self.autorefresh:
            # DEBUG: looks on disk.
            static_file = await sync_to_async(self.find_file)(request.path_info)
        else:
            static_file = self.files.get(request.path_info)
        if static_file is not None:
            return await sync_to_async(self.serve)(static_file, request)
        return await self.get_response(request)


class RequestGuardMiddleware(AsyncCapable):
    def call(self, request: HttpRequest) -> HttpResponse:
        refused = self._door(request)
        if refused is not None:
            return refused(request)
        return self.get_response(request)

    async def acall(self, request: HttpRequest) -> HttpResponse:
        refused = self._door(request)
        if refused is not None:
            # The error page may read the database (its template's context).
            return await sync_to_async(refused)(request)
        return await self.get_response(request)

    def _door(self, request: HttpRequest):
        """None when the request may go on, else what answers it."""
        # Answered here, not raised: with DEBUG on (make run) Django would
        # answer a raised one with its HTML debug page, even under /api/.
        if "\x00" in request.path_info:
            return functools.partial(
                _refusal, page_not_found, Http404("NUL in the path")
            )
        if b"\x00" in unquote_to_bytes(request.META.get("QUERY_STRING", "")):
            return functools.partial(
                _refusal, bad_request, NullCharacter("NUL in the query string")
            )
        refused = _body_refusal(request)
        if refused is not None:
            return refused
        request.COOKIES = {
            name: value
            for name, value in request.COOKIES.items()
            if "\x00" not in name and "\x00" not in value
        }
        return None

    def process_view(self, request: HttpRequest, view, args, kwargs):
        # Forms are parsed here, once the URL is known to exist; CSRF's check
        # would parse them next anyway (the same cached request.POST). The API
        # reads JSON only (a form is its 415) and its serializers check fields.
        if wants_json(request):
            return
        if request.content_type in _FORMS and any(
            "\x00" in name or any("\x00" in value for value in values)
            for name, values in request.POST.lists()
        ):
            return _refusal(bad_request, NullCharacter("NUL in a form field"), request)
        return None


def _refusal(handler, exception: Exception, request: HttpRequest) -> HttpResponse:
    """``handler``'s answer to ``exception``, logged with its reason ("NUL in
    the query string: /path"), where Django would log only "Bad Request"."""
    response = handler(request, exception)
    log_response("%s: %s", exception, request.path, response=response, request=request)
    return response


def _body_refusal(request: HttpRequest):
    """None, or a function of the request that renders the refusal."""
    if "chunked" in request.META.get("HTTP_TRANSFER_ENCODING", "").lower():
        return functools.partial(
            refusal,
            status=411,
            code="length_required",
            message="Send the request body with a Content-Length header; "
            "chunked bodies are not accepted.",
        )
    try:
        length = int(request.META.get("CONTENT_LENGTH") or 0)
    except ValueError:
        length = 0  # as Django reads it: no body
    limit = settings.MAX_REQUEST_BODY_SIZE
    if length <= limit:
        return None
    return functools.partial(
        refusal,
        status=413,
        code="request_too_large",
        message=f"The request is larger than the {_megabytes(limit)} MB "
        "the server accepts; nothing was read or changed.",
    )


def _megabytes(size: int) -> str:
    return f"{size / (1024 * 1024):.1f}".removesuffix(".0")


class DatabaseWatchMiddleware(AsyncCapable):
    """Watches what each request sends to the database (core.database), so
    that a lost connection is answered honestly: a 503 saying "nothing was
    changed" only when nothing that writes was sent, else ``outcome_unknown``
    with what to check. View exceptions are answered here (JSON under /api/,
    the 503 page elsewhere); failures in other middleware (the session's
    save) reach ``core.errors.server_error``, which answers the same."""

    def call(self, request: HttpRequest) -> HttpResponse:
        request.database_watch = watch = WriteWatch()
        watch_connection()
        with watching(watch):
            return self.get_response(request)

    async def acall(self, request: HttpRequest) -> HttpResponse:
        request.database_watch = watch = WriteWatch()
        # The thread that runs this request's synchronous parts.
        await sync_to_async(watch_connection)()
        with watching(watch):
            return await self.get_response(request)

    def process_view(self, request: HttpRequest, view, args, kwargs) -> None:
        request.database_watch.start()

    def process_exception(self, request: HttpRequest, exception: Exception):
        if not isinstance(exception, UNAVAILABLE):
            return None
        return database_unavailable(request, exception)
