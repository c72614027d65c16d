from django.core.cache import cache

LIST_VERSION_CACHE_KEY = "tokens:list-version"


def token_list_changed(sender, **kwargs) -> None:
    # A new version makes every cached token list stale at once; the cached
    # pages themselves simply expire.
    try:
        cache.incr(LIST_VERSION_CACHE_KEY)
    except ValueError:
        cache.set(LIST_VERSION_CACHE_KEY, 1, timeout=None)
