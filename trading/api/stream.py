"""``GET /api/v1/markets/<symbol>/stream/``: the market's live events as
Server-Sent Events (``trading.live``), for the market page and for bots.

An async view: it runs in the ASGI process (uvicorn, ``stream`` in the
Procfile and docker-compose.yml), where a connection held open for hours costs
a coroutine, never a worker. Who is calling is decided as on the REST API: an
API key in ``Authorization`` (any scope reads), else the browser session;
anyone else gets the market's public events only. The stream checks that
the key or session still signs the user in before each of their own events
and at every heartbeat (``trading.live``).
"""

from __future__ import annotations

import functools
from collections.abc import AsyncIterator, Callable
from importlib import import_module

from asgiref.sync import sync_to_async
from django.conf import settings
from django.contrib.auth import get_user
from django.contrib.sessions.backends.signed_cookies import (
    SessionStore as DetachedSession,
)
from django.core.handlers.asgi import ASGIRequest
from django.http import HttpRequest, HttpResponse, StreamingHttpResponse
from django.views.decorators.csrf import csrf_exempt
from rest_framework import exceptions
from rest_framework.request import Request

from accounts.adapter import client_address
from core.errors import api_error
from trading import live
from trading.api.authentication import KEYWORD, ApiKeyAuthentication
from trading.api_keys import api_key_usable
from trading.models import ApiKey, Market
from trading.selectors import market_get

_UNAVAILABLE_RETRY_SECONDS = 5


def _api_key_user(request: HttpRequest) -> tuple[object, ApiKey] | None:
    """The key's user and the key, None without a key; raises DRF's
    refusals."""
    return ApiKeyAuthentication().authenticate(Request(request))


def _session_signs_in(*, session_key: str, user_id: int) -> bool:
    """Whether the session still signs in ``user_id``, as the next request
    would find: not ended or expired, the account active, the password (and
    so the session's hash) unchanged."""
    stored = import_module(settings.SESSION_ENGINE).SessionStore(session_key)
    probe = HttpRequest()
    # A detached copy: what get_user writes (a flush, a new key after
    # SECRET_KEY rotated) must not reach the stored session, whose browser
    # would never get the new key.
    probe.session = DetachedSession()
    probe.session.update(dict(stored.items()))
    return get_user(probe).pk == user_id


def _credential_check(request: HttpRequest, user, api_key) -> Callable[[], bool]:
    """What tells the stream whether ``user`` is still signed in."""
    if api_key is not None:
        return functools.partial(
            api_key_usable, api_key_id=api_key.pk, client_ip=client_address(request)
        )
    return functools.partial(
        _session_signs_in, session_key=request.session.session_key, user_id=user.pk
    )


def _cors(request: HttpRequest, response: HttpResponse) -> HttpResponse:
    """Pages of another origin (``make run``: the site on :8000, the stream
    on :8001) may read the stream with their cookies, when listed."""
    origin = request.headers.get("Origin", "")
    if origin and origin in settings.STREAM_CORS_ORIGINS:
        response["Access-Control-Allow-Origin"] = origin
        response["Access-Control-Allow-Credentials"] = "true"
        response["Vary"] = "Origin"
    return response


async def _no_events() -> AsyncIterator[bytes]:
    """HEAD's body: none, under the headers of a GET."""
    for chunk in ():
        yield chunk


# Only read: a write is refused with the API's JSON 405 (CSRF's would be a
# page of HTML), whoever sends it.
@csrf_exempt
async def market_stream_view(request: HttpRequest, symbol: str) -> HttpResponse:
    if request.method not in ("GET", "HEAD"):
        response = api_error(
            status=405,
            code="method_not_allowed",
            message=f"Method {request.method} is not allowed here: GET it.",
        )
        response["Allow"] = "GET, HEAD"
        return response
    if not isinstance(request, ASGIRequest):
        # A WSGI worker (gunicorn, runserver) would be held for as long as
        # the client listens: the proxy routes this path to the ASGI process.
        return api_error(
            status=503,
            code="stream_unavailable",
            message="The stream is served by the stream process (uvicorn), "
            "not by this one.",
        )
    try:
        found = await sync_to_async(_api_key_user)(request)
    except exceptions.AuthenticationFailed as refusal:
        response = api_error(
            status=401, code=refusal.get_codes(), message=str(refusal.detail)
        )
        response["WWW-Authenticate"] = KEYWORD
        return _cors(request, response)
    except exceptions.PermissionDenied as refusal:
        response = api_error(
            status=403, code=refusal.get_codes(), message=str(refusal.detail)
        )
        return _cors(request, response)
    # As DRF does for the REST API: the middleware sees who it is
    # (accounts.middleware.PrivateResponseMiddleware) without reading it again.
    user, api_key = found or (None, None)
    if user is None:
        request.user = await request.auser()
        user = request.user if request.user.is_authenticated else None
    else:
        request.user = user
    try:
        market = await sync_to_async(market_get)(symbol=symbol)
    except Market.DoesNotExist:
        return _cors(
            request,
            api_error(
                status=404,
                code="not_found",
                message=f"There is no market {symbol!r}.",
            ),
        )
    if not settings.REDIS_URL or not await live.hub().ready(settings.REDIS_TIMEOUT):
        response = api_error(
            status=503,
            code="stream_unavailable",
            message="Live updates are unavailable for a moment; the REST API "
            "still answers. Try again shortly.",
        )
        response["Retry-After"] = str(_UNAVAILABLE_RETRY_SECONDS)
        return _cors(request, response)
    if request.method == "HEAD":
        # The stream's headers, and an end: the connection may serve the
        # client's next request.
        events = _no_events()
    else:
        events = live.MarketStream(
            market=market,
            user=user,
            last_event_id=request.headers.get("Last-Event-ID", ""),
            signed_in=_credential_check(request, user, api_key) if user else None,
        ).events()
    response = StreamingHttpResponse(
        events, content_type="text/event-stream; charset=utf-8"
    )
    response["Cache-Control"] = "no-cache"
    # nginx passes each event on at once (deploy/nginx.conf says so too).
    response["X-Accel-Buffering"] = "no"
    return _cors(request, response)


# Its synchronous parts run in a shared thread, not one held per stream
# (crypto_exchange.asgi).
market_stream_view.holds_connection = True
