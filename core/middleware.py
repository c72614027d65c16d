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
"""

from __future__ import annotations

from urllib.parse import unquote_to_bytes

from django.conf import settings
from django.db import connection
from django.http import Http404, HttpRequest, HttpResponse

from core.database import UNAVAILABLE, WriteWatch
from core.errors import NullCharacter, database_unavailable, refusal, wants_json

_FORMS = ("application/x-www-form-urlencoded", "multipart/form-data")


class RequestGuardMiddleware:
    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        if "\x00" in request.path_info:
            raise Http404("NUL in the path")
        if b"\x00" in unquote_to_bytes(request.META.get("QUERY_STRING", "")):
            raise NullCharacter("NUL in the query string")
        refused = _body_refusal(request)
        if refused is not None:
            return refused
        request.COOKIES = {
            name: value
            for name, value in request.COOKIES.items()
            if "\x00" not in name and "\x00" not in value
        }
        return self.get_response(request)

    def process_view(self, request: HttpRequest, view, args, kwargs) -> None:
        # Forms are parsed here, once the URL is known to exist; CSRF's check
        # would parse them next anyway (the same cached request.POST). The API
        # reads JSON only (a form is its 415) and its serializers check fields.
        if wants_json(request):
            return
        if request.content_type in _FORMS and any(
            "\x00" in name or any("\x00" in value for value in values)
            for name, values in request.POST.lists()
        ):
            raise NullCharacter("NUL in a form field")


def _body_refusal(request: HttpRequest) -> HttpResponse | None:
    if "chunked" in request.META.get("HTTP_TRANSFER_ENCODING", "").lower():
        return refusal(
            request,
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
    return refusal(
        request,
        status=413,
        code="request_too_large",
        message=f"The request is larger than the {_megabytes(limit)} MB "
        "the server accepts; nothing was read or changed.",
    )


def _megabytes(size: int) -> str:
    return f"{size / (1024 * 1024):.1f}".removesuffix(".0")


class DatabaseWatchMiddleware:
    """Watches what each request sends to the database (core.database), so
    that a lost connection is answered honestly: a 503 saying "nothing was
    changed" only when nothing that writes was sent, else ``outcome_unknown``
    with what to check. View exceptions are answered here (JSON under /api/,
    the 503 page elsewhere); failures in other middleware (the session's
    save) reach ``core.errors.server_error``, which answers the same."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        request.database_watch = watch = WriteWatch()
        with connection.execute_wrapper(watch):
            return self.get_response(request)

    def process_view(self, request: HttpRequest, view, args, kwargs) -> None:
        request.database_watch.start()

    def process_exception(self, request: HttpRequest, exception: Exception):
        if not isinstance(exception, UNAVAILABLE):
            return None
        return database_unavailable(request, exception)
