"""How many images one user may upload, counted in the cache.

Decoding an image costs up to a fraction of a second of CPU even within
`MAX_IMAGE_DECODE_BYTES`; counting every attempt (refused ones cost as much)
per user keeps one account from occupying the workers. The count lives in the
cache, shared by every instance when REDIS_URL is set, like the log-in
throttles.
"""

from __future__ import annotations

import time

from django.conf import settings
from django.core.cache import cache

from storage.exceptions import UploadThrottled


def image_upload_throttle(*, user_id: int) -> None:
    """Count one image upload by the user; raise UploadThrottled past the limit.

    Fixed windows: cheap (one add and one incr, atomic in Redis and in the
    local-memory cache) at the price of allowing up to twice the limit across
    a window's boundary.
    """
    limit = settings.IMAGE_UPLOADS_PER_USER
    window = settings.IMAGE_UPLOAD_WINDOW_MINUTES * 60
    now = time.time()
    window_start = int(now // window) * window
    key = f"image-uploads:{user_id}:{window_start}"
    cache.add(key, 0, timeout=window + 1)
    try:
        count = cache.incr(key)
    except ValueError:
        # The key expired between add and incr: this upload opens a new count.
        cache.add(key, 1, timeout=window + 1)
        count = 1
    if count > limit:
        raise UploadThrottled(retry_after=int(window_start + window - now) + 1)
