from django.conf import settings
from django.core.cache import cache
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, render
from django.utils.cache import patch_vary_headers

from core.cache_versions import cache_version
from tokens.models import Token
from tokens.selectors import token_list
from tokens.signals import LIST_VERSION_CACHE_KEY

# Several app servers with a per-process cache may each serve an older list
# for this long after a change; with a shared cache (Redis) a change shows at once.
TOKEN_LIST_PAGE_TTL = 30


def token_index(request: HttpRequest) -> HttpResponse:
    query = request.GET.get("q", "")[:50]
    if query or not _anonymous_without_state(request):
        return render(
            request,
            "tokens/token_list.html",
            {"tokens": token_list(query=query), "query": query},
        )
    # The full list for visitors without a session looks the same for all of
    # them: it is rendered once per change of any token and then served from
    # the cache (one cache read, no query, no template).
    key = f"tokens:list-page:{cache_version(key=LIST_VERSION_CACHE_KEY)}"
    content = cache.get(key)
    if content is None:
        page = render(
            request, "tokens/token_list.html", {"tokens": token_list(), "query": ""}
        )
        cache.set(key, page.content, TOKEN_LIST_PAGE_TTL)
        return page
    response = HttpResponse(content)
    patch_vary_headers(response, ["Cookie"])
    return response


def _anonymous_without_state(request: HttpRequest) -> bool:
    """No session and no pending messages: the page can show nothing personal."""
    return (
        settings.SESSION_COOKIE_NAME not in request.COOKIES
        and "messages" not in request.COOKIES
    )


def token_detail(request: HttpRequest, symbol: str) -> HttpResponse:
    token = get_object_or_404(Token, symbol=symbol.upper(), is_active=True)
    return render(
        request,
        "tokens/token_detail.html",
        {"token": token},
    )
