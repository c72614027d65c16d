from core.cache_versions import cache_version_replace

LIST_VERSION_CACHE_KEY = "tokens:list-version"


def token_list_changed(sender, **kwargs) -> None:
    # A new version makes every cached token list stale at once; the cached
    # pages themselves simply expire.
    cache_version_replace(key=LIST_VERSION_CACHE_KEY)
