import hashlib

from allauth.usersessions.internal import usersessionkit
from asgiref.sync import sync_to_async
from django.conf import settings
from django.contrib.auth import SESSION_KEY
from django.core.cache import cache
from django.http import HttpRequest
from django.utils.cache import patch_cache_control

from core.middleware import AsyncCapable

# How stale "last seen" on the session list may be.
SEEN_EVERY_SECONDS = 60


class SessionActivityMiddleware(AsyncCapable):
    """allauth's session tracking (address, browser, last seen), written at
    most once a minute per session instead of on every request: one cache
    operation per signed-in request rather than a read and a write in the
    database. It replaces allauth's ``UserSessionsMiddleware``, which is
    synchronous only, and tracks as it does.

    Only a signed-in request is tracked: a made-up ``sessionid`` loads as no
    session, so nobody can fill the cache with keys of their own choosing.
    The cache key holds the session key's digest: a fixed length, whatever
    the cookie's, and no secret in the cache's key space."""

    def call(self, request: HttpRequest):
        user = getattr(request, "user", None)
        if user is not None and user.is_authenticated:
            self._track(request, user)
        return self.get_response(request)

    async def acall(self, request: HttpRequest):
        auser = getattr(request, "auser", None)
        # The user the view reads too (auser caches it): loaded once.
        user = await auser() if auser is not None else None
        if user is not None and user.is_authenticated:
            await sync_to_async(self._track)(request, user)
        return await self.get_response(request)

    def _track(self, request: HttpRequest, user) -> None:
        key = request.session.session_key
        if not key:
            return
        seen = "usersessions:seen:" + hashlib.sha256(key.encode()).hexdigest()
        if cache.add(seen, True, SEEN_EVERY_SECONDS):
            usersessionkit.track_activity(request, user=user, session=request.session)


class PrivateResponseMiddleware(AsyncCapable):
    """``Cache-Control: private, no-store`` on every answer to a signed-in
    request, page or API: a session holding a user, or an API key (any
    ``Authorization`` header), whether or not the view looked at them.

    One rule rather than a decorator per view: every page a signed-in user
    sees carries something of theirs (the navigation's name, balances, orders,
    allauth's e-mail, 2FA and session pages), and a view added later is
    covered without anyone remembering to. Answers that declare themselves
    ``public`` (the immutable media files) keep their caching, and so do
    media handed to nginx (``X-Accel-Redirect``): the object store's answer
    carries their Cache-Control, and nginx would keep this one beside it.
    Anonymous pages are left cacheable, as before.
    """

    def call(self, request: HttpRequest):
        response = self.get_response(request)
        if (
            _may_be_shared(response)
            and _has_credentials(request)
            and _signed_in(request)
        ):
            patch_cache_control(response, private=True, no_store=True)
        return response

    async def acall(self, request: HttpRequest):
        response = await self.get_response(request)
        # The user, unless a view already has it, is read from the database:
        # in a thread.
        if (
            _may_be_shared(response)
            and _has_credentials(request)
            and await sync_to_async(_signed_in)(request)
        ):
            patch_cache_control(response, private=True, no_store=True)
        return response


def _may_be_shared(response) -> bool:
    return (
        "public" not in response.get("Cache-Control", "")
        and "X-Accel-Redirect" not in response
    )


def _has_credentials(request: HttpRequest) -> bool:
    # Only a request carrying credentials can be signed in. Asking about the
    # others would read nothing, yet mark answers that are the same for
    # everyone (health checks, a visitor's pages) as varying by cookie.
    return (
        settings.SESSION_COOKIE_NAME in request.COOKIES
        or "HTTP_AUTHORIZATION" in request.META
    )


def _signed_in(request: HttpRequest) -> bool:
    # What the request carries, not request.user alone: a public API view
    # authenticates nobody, and DRF then sets request.user to AnonymousUser
    # for a signed-in browser and an API key alike. Any Authorization header
    # counts, whether or not a view checked it. Reading the session adds
    # Vary: Cookie, as a private answer should have.
    if "HTTP_AUTHORIZATION" in request.META:
        return True
    session = getattr(request, "session", None)
    if session is not None and SESSION_KEY in session:
        return True
    user = getattr(request, "user", None)
    return bool(user is not None and user.is_authenticated)
