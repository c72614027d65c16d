"""The project's middleware under ASGI (the live stream's process) answers as
under WSGI: Django's AsyncClient runs the asynchronous chain, in which every
middleware runs as a coroutine (core.middleware.AsyncCapable)."""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor

import pytest
from allauth.usersessions.models import UserSession
from asgiref.sync import async_to_sync, sync_to_async
from django.contrib.auth import get_user_model
from django.db import connections
from django.test import AsyncClient, Client

from core.database import WriteWatch, watch_connection, watching
from core.tests.answers import api_error, error_page

pytestmark = pytest.mark.django_db


def get(path: str, **extra):
    return async_to_sync(AsyncClient().get)(path, **extra)


def test_a_nul_in_the_path_is_refused_under_asgi(market):
    error_page(get("/markets/%00/"), 404)
    api_error(get("/api/v1/markets/%00/ticker/"), 404, "not_found")


def test_a_nul_in_the_query_is_refused_under_asgi(market):
    error_page(get("/tokens/?q=%00"), 400)
    api_error(get("/api/v1/markets/?q=%00"), 400, "null_character")


def test_bodies_over_the_limit_or_chunked_are_refused_under_asgi(settings):
    settings.MAX_REQUEST_BODY_SIZE = 1000
    post = async_to_sync(AsyncClient().post)

    too_large = post(
        "/accounts/login/",
        "login=alice&password=" + "x" * 1000,
        content_type="application/x-www-form-urlencoded",
    )
    chunked = post(
        "/api/v1/orders/",
        b"",
        content_type="application/json",
        headers={"Transfer-Encoding": "chunked"},
    )

    error_page(too_large, 413)
    api_error(chunked, 411, "length_required")


def test_a_signed_in_answer_is_never_stored_and_its_session_tracked_under_asgi(
    alice, market, funded
):
    client = AsyncClient()
    client.force_login(alice)

    signed_in = async_to_sync(client.get)("/wallet/")
    anonymous = get("/markets/")

    assert signed_in.status_code == 200
    assert {"private", "no-store"} <= _directives(signed_in)
    assert "private" not in _directives(anonymous)
    assert UserSession.objects.filter(user=alice).exists()


def test_static_files_are_served_under_asgi_as_under_wsgi(settings):
    settings.WHITENOISE_USE_FINDERS = True
    settings.WHITENOISE_AUTOREFRESH = False
    path = "/static/js/market.js"

    under_asgi = get(path)
    under_wsgi = Client().get(path)

    assert under_asgi.status_code == under_wsgi.status_code == 200
    body = b"".join(under_asgi.streaming_content)
    assert body == b"".join(under_wsgi.streaming_content)
    assert under_asgi["Content-Type"] == under_wsgi["Content-Type"]


@pytest.mark.django_db(transaction=True)
def test_a_statement_counts_for_the_request_that_sent_it_whichever_thread_sends_it():
    """Two requests whose synchronous parts take turns in one thread (as
    streams' do, crypto_exchange.asgi): each watch sees its own statements."""
    users = get_user_model().objects
    writer, reader = WriteWatch(), WriteWatch()

    def write() -> None:
        watch_connection()
        users.filter(pk=-1).update(last_name="")

    def read() -> None:
        watch_connection()
        users.count()

    async def request(watch: WriteWatch, statement) -> None:
        with watching(watch):
            watch.start()
            for _ in range(3):
                # thread_sensitive: asgiref's one shared thread, in turns.
                await sync_to_async(statement)()

    async def both() -> None:
        try:
            await asyncio.gather(request(writer, write), request(reader, read))
        finally:
            await sync_to_async(connections.close_all)()

    # In a thread of its own: a browser test earlier in the run leaves
    # Playwright's event loop running in this one.
    with ThreadPoolExecutor(1) as pool:
        pool.submit(asyncio.run, both()).result()

    assert writer.may_have_written
    assert not reader.may_have_written


def _directives(response) -> set[str]:
    return {
        part.strip().split("=")[0]
        for part in response.get("Cache-Control", "").split(",")
        if part.strip()
    }
