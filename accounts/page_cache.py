"""The profile page, rendered once and served again while nothing on it changes.

Rendering the signed-in profile page costs several times what Django itself
spends on a request. Everything the page shows comes from what each view reads
anyway: the session (checked by ``AuthenticationMiddleware`` against the user
row it loads), that user row, and ``profile_page_data`` (one query: the
picture and the active API keys). The cache key is a digest of all of it, the
session key included, so a page is only ever served again to the session it
was rendered for, and only while the user, the profile and the keys are
exactly what they were. Any change, however it is made (a new picture, a key
created, revoked or used, an edit in the admin, a password change), gives a
new key: nothing has to be invalidated, and a change shows on the next view.

Two things differ from one view to the next and are never served from here:

- the CSRF token: stored as a placeholder, replaced on each view by a newly
  masked token of the browser's own secret (``get_token``), as a render does;
- messages ("Your picture was updated."): a view with messages pending is
  rendered, and that page is not stored.

The cache is local memory, one per process: entries addressed by their content
need no invalidation, so nothing has to be shared between app servers, and a
hit costs no network round trip. The templates belong to the process too: a
deploy starts new processes, and in development the autoreloader's file events
empty the cache (see ``AccountsConfig.ready``).
"""

from __future__ import annotations

import hashlib

from django.contrib.messages import get_messages
from django.core.cache.backends.locmem import LocMemCache
from django.http import HttpRequest, HttpResponse
from django.middleware.csrf import get_token
from django.utils import timezone, translation

from accounts.models import Profile
from accounts.selectors import ProfilePageData

_CSRF_PLACEHOLDER = b"\x00csrf-token\x00"
_CSRF_FIELD = b'name="csrfmiddlewaretoken"'
# A page is 5 to 10 KB: at most ~10 MB per process.
_pages = LocMemCache(
    "accounts.page_cache", {"TIMEOUT": 600, "OPTIONS": {"MAX_ENTRIES": 1000}}
)


def profile_page_key(request: HttpRequest, *, data: ProfilePageData) -> str | None:
    """The key of this view of the profile page; None if it must be rendered."""
    if request.method != "GET" or len(get_messages(request)):
        return None
    user = request.user
    shown = (
        request.session.session_key,
        [getattr(user, field.attname) for field in user._meta.concrete_fields],
        data.rows,
        # Built on each view: presigned URLs change with time.
        Profile.avatar.field.storage.url(data.avatar_name),
        translation.get_language(),
        timezone.get_current_timezone_name(),
    )
    return f"profile:{hashlib.sha256(repr(shown).encode()).hexdigest()}"


def profile_page_cached(request: HttpRequest, key: str) -> HttpResponse | None:
    """The stored page with a new CSRF token for this browser, or None."""
    content = _pages.get(key)
    if content is None:
        return None
    return HttpResponse(
        content.replace(_CSRF_PLACEHOLDER, get_token(request).encode("ascii"))
    )


def profile_page_store(key: str, response: HttpResponse, *, csrf_token: str) -> None:
    """Keep a rendered page, if all its forms carry ``csrf_token``.

    A form with another token (one a template made itself) would be served
    again with it, so such a page is not kept.
    """
    if response.status_code != 200:
        return
    content = response.content.replace(csrf_token.encode("ascii"), _CSRF_PLACEHOLDER)
    if content.count(_CSRF_PLACEHOLDER) == content.count(_CSRF_FIELD):
        _pages.set(key, content)


def profile_pages_clear(**kwargs: object) -> None:
    """Forget every stored page (a receiver for settings and file changes)."""
    _pages.clear()
