from allauth.usersessions.middleware import UserSessionsMiddleware
from django.conf import settings
from django.core.cache import cache
from django.http import HttpRequest
from django.utils.cache import patch_cache_control

# How stale "last seen" on the session list may be.
SEEN_EVERY_SECONDS = 60


class SessionActivityMiddleware(UserSessionsMiddleware):
    """allauth's session tracking (address, browser, last seen), written at
    most once a minute per session instead of on every request: one cache
    operation per request rather than a read and a write in the database."""

    def __call__(self, request: HttpRequest):
        session = getattr(request, "session", None)
        key = session.session_key if session is not None else None
        if key and cache.add(f"usersessions:seen:{key}", True, SEEN_EVERY_SECONDS):
            return super().__call__(request)
        return self.get_response(request)


class PrivateResponseMiddleware:
    """``Cache-Control: private, no-store`` on every answer to a signed-in
    request, page or API (an API key signs in too: DRF sets request.user).

    One rule rather than a decorator per view: every page a signed-in user
    sees carries something of theirs (the navigation's name, balances, orders,
    allauth's e-mail, 2FA and session pages), and a view added later is
    covered without anyone remembering to. Answers that declare themselves
    ``public`` (the immutable media files) keep their caching, and so do
    media handed to nginx (``X-Accel-Redirect``): the object store's answer
    carries their Cache-Control, and nginx would keep this one beside it.
    Anonymous pages are left cacheable, as before.
    """

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request: HttpRequest):
        response = self.get_response(request)
        if (
            "public" not in response.get("Cache-Control", "")
            and "X-Accel-Redirect" not in response
            and _signed_in(request)
        ):
            patch_cache_control(response, private=True, no_store=True)
        return response


def _signed_in(request: HttpRequest) -> bool:
    # Only a request carrying credentials can be signed in. Asking about the
    # others would read nothing, yet mark answers that are the same for
    # everyone (health checks, a visitor's pages) as varying by cookie.
    if (
        settings.SESSION_COOKIE_NAME not in request.COOKIES
        and "HTTP_AUTHORIZATION" not in request.META
    ):
        return False
    user = getattr(request, "user", None)
    return bool(user is not None and user.is_authenticated)
