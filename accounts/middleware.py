from allauth.usersessions.middleware import UserSessionsMiddleware
from django.core.cache import cache
from django.http import HttpRequest

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
