"""ASGI entry point: the live stream's process (uvicorn, Procfile ``stream``).

Django's handler, with one difference for views that hold their connection
open (``holds_connection``: the live stream, trading.api.stream). Django runs
each request's synchronous parts (signal receivers, ``sync_to_async`` calls,
middleware hooks) in a thread of the request's own (asgiref's
``ThreadSensitiveContext``), kept until the response ends: for a stream, as
long as the client listens. At 1,000 streams that was 1,000 idle threads,
two thirds of the memory a stream cost (bench/stream.py). Those requests
run their synchronous parts, short and before the first byte, in asgiref's
one shared thread instead (its default outside such a context); what a
stream reads afterwards goes through its few reading threads
(trading.live). With every middleware asynchronous (settings.MIDDLEWARE),
no request keeps that thread while it awaits.
"""

import gc
import os

import django
from django.core.handlers.asgi import ASGIHandler
from django.urls import Resolver404, get_resolver, resolve

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "crypto_exchange.settings")


def _holds_connection(scope) -> bool:
    path = scope["path"].removeprefix(scope.get("root_path", "")) or "/"
    try:
        match = resolve(path)
    except Resolver404:
        return False
    return getattr(match.func, "holds_connection", False)


class Handler(ASGIHandler):
    async def __call__(self, scope, receive, send):
        if scope["type"] == "lifespan":
            await _lifespan(receive, send)
            return
        if scope["type"] == "http" and _holds_connection(scope):
            await self.handle(scope, receive, send)
            return
        await super().__call__(scope, receive, send)


async def _lifespan(receive, send) -> None:
    """The server's start and stop (ASGI lifespan, which Django's handler
    does not take)."""
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            _freeze_what_is_loaded()
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return


def _freeze_what_is_loaded() -> None:
    """What is loaded by now (Django, the apps, every view through the
    URLconf) lives as long as the process: out of the garbage collector's
    sight, a full collection scans the connections' objects only. At 1,000
    streams such a collection paused the event loop, so every event, for
    about half as long (bench/stream.py)."""
    get_resolver().url_patterns  # noqa: B018 (imports every view)
    gc.collect()
    gc.freeze()


django.setup(set_prefix=False)  # as django.core.asgi.get_asgi_application
application = Handler()
