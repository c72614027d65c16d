"""Errors answered outside the API's views, in the format the client reads.

The API's views answer their own errors as ``{"error": {"code", "message"}}``
(``error_body``, used by trading.api.exceptions). Django answers the rest
itself: a URL nothing serves, a body too large to read, an exception no view
caught, a request refused by core.middleware. Under /api/ those are JSON in
the same shape too; anywhere else they are the site's error pages
(templates/400.html ...).
crypto_exchange.urls names the handlers below.
"""

from __future__ import annotations

import logging
import sys

from django.core.exceptions import (
    BadRequest,
    RequestDataTooBig,
    TooManyFieldsSent,
    TooManyFilesSent,
)
from django.http import (
    HttpRequest,
    HttpResponse,
    HttpResponseBadRequest,
    JsonResponse,
)
from django.middleware.csrf import get_token
from django.shortcuts import render
from django.template import loader
from django.views import defaults

from core.database import UNAVAILABLE, request_watch, unavailable_error

logger = logging.getLogger(__name__)

# Browser pages that live under /api/ (the API's docs, the profile's API-key
# buttons) answer like every other page.
_PAGES_UNDER_API = ("/api/docs/", "/api/keys/")


def wants_json(request: HttpRequest) -> bool:
    path = request.path_info
    return path.startswith("/api/") and not path.startswith(_PAGES_UNDER_API)


def error_body(code: str, message: str, **extra: object) -> dict:
    """The API's one error shape, for every status and every answerer."""
    return {"error": {"code": code, "message": message, **extra}}


def api_error(*, status: int, code: str, message: str) -> JsonResponse:
    # Compact, as DRF's JSONRenderer writes the API's own errors.
    return JsonResponse(
        error_body(code, message),
        status=status,
        json_dumps_params={"separators": (",", ":")},
    )


class NullCharacter(BadRequest):
    """A NUL character in the query or a form field: no field accepts one,
    and PostgreSQL refuses any query that carries it."""


_BAD_REQUESTS = {
    NullCharacter: (
        "null_character",
        "The request contains a NUL character, which no field accepts.",
    ),
    RequestDataTooBig: (
        "too_large",
        "The request's fields are larger than the server accepts.",
    ),
    TooManyFieldsSent: ("too_many_fields", "The request has too many fields."),
    TooManyFilesSent: ("too_many_files", "The request has too many files."),
}


MALFORMED_REQUEST = "The request is malformed."


def bad_request_reason(exception: Exception) -> tuple[str, str | None]:
    """The API's code for a request found malformed, and what to tell the
    client: None when there is no more to say than ``MALFORMED_REQUEST``."""
    known = (a for cls, a in _BAD_REQUESTS.items() if isinstance(exception, cls))
    return next(known, ("bad_request", None))


def bad_request(request: HttpRequest, exception: Exception) -> HttpResponse:
    code, message = bad_request_reason(exception)
    if wants_json(request):
        return api_error(status=400, code=code, message=message or MALFORMED_REQUEST)
    # Without the request, as Django renders it: what made the request bad
    # (its Host header, say) must not break the page that says so.
    page = loader.get_template("400.html").render({"message": message})
    return HttpResponseBadRequest(page)


def permission_denied(request: HttpRequest, exception: Exception) -> HttpResponse:
    if not wants_json(request):
        return defaults.permission_denied(request, exception)
    return api_error(
        status=403,
        code="permission_denied",
        message="You do not have permission to perform this action.",
    )


def page_not_found(request: HttpRequest, exception: Exception) -> HttpResponse:
    if not wants_json(request):
        return defaults.page_not_found(request, exception)
    return api_error(
        status=404, code="not_found", message="There is no such API endpoint."
    )


def server_error(request: HttpRequest) -> HttpResponse:
    # Django calls this while handling the exception, which it does not pass:
    # a lost database in a middleware (a session's save) is a 503 too.
    exception = sys.exc_info()[1]
    if isinstance(exception, UNAVAILABLE):
        return database_unavailable(request, exception)
    if not wants_json(request):
        return defaults.server_error(request)
    message = "An error on our side stopped this request; it has been logged."
    if request.method in ("GET", "HEAD", "OPTIONS"):
        message += " Please try again in a moment."
    else:
        # Where it stopped is not known here: never "nothing was changed".
        message += (
            " It may have taken effect: check before sending it again, or send"
            " it again with the same client_order_id or reference, which never"
            " acts twice."
        )
    return api_error(status=500, code="server_error", message=message)


def refusal(
    request: HttpRequest, *, status: int, code: str, message: str
) -> HttpResponse:
    """A request refused before any view ran (core.middleware): JSON under
    /api/, else the error page of that status (400.html when it has none of
    its own) saying ``message``."""
    if wants_json(request):
        return api_error(status=status, code=code, message=message)
    template = "413.html" if status == 413 else "400.html"
    context = {"status": status, "message": message}
    return render(request, template, context, status=status)


# Seconds a client should wait before trying again after a lost database.
DATABASE_RETRY_AFTER = "5"


def database_unavailable(request: HttpRequest, exception: Exception) -> HttpResponse:
    """503 for a database failure during ``request``: ``unavailable`` ("nothing
    was changed") when nothing that writes was sent, else ``outcome_unknown``
    saying what to check (core.database). The page needs no database: it is
    rendered without the request's context (no user to load), and offers to
    send the same form again when the view says that is safe."""
    code, message = unavailable_error(request)
    logger.warning(
        "database unavailable",
        extra={
            "code": code,
            "method": request.method,
            "reason": f"{type(exception).__name__}: {exception}".strip(),
        },
    )
    if wants_json(request):
        response = api_error(status=503, code=code, message=message)
    else:
        watch = request_watch(request)
        resend = None
        if request.method == "POST" and watch is not None and watch.resend:
            resend = {
                "action": request.get_full_path(),
                "fields": [
                    (name, value)
                    for name, values in request.POST.lists()
                    if name != "csrfmiddlewaretoken"
                    for value in values
                ],
            }
        context = {
            "message": message,
            "resend": resend,
            "csrf_token": get_token(request) if resend else None,
        }
        page = loader.get_template("503.html").render(context)
        response = HttpResponse(page, status=503)
    response["Retry-After"] = DATABASE_RETRY_AFTER
    response["Cache-Control"] = "no-store"
    return response
