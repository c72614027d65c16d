"""Calls released at once, each in its own thread and database connection,
as requests of one user arriving together are."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Iterator, Sequence

from django.db import connection
from django.db.models import Model
from django.db.models.signals import post_init, pre_save


def run_together(*calls) -> list[tuple[str, object]]:
    """Run each call in its own thread, all released at once by a barrier.

    Returns ("ok", result) or ("error", exception) per call, in order.
    """
    barrier = threading.Barrier(len(calls))
    results: list[tuple[str, object] | None] = [None] * len(calls)

    def work(index: int, call) -> None:
        try:
            barrier.wait(timeout=30)
            results[index] = ("ok", call())
        except Exception as error:  # reported to the test, which fails on it
            results[index] = ("error", error)
        finally:
            connection.close()

    threads = [
        threading.Thread(target=work, args=(index, call))
        for index, call in enumerate(calls)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert not any(thread.is_alive() for thread in threads), "a thread hung"
    return results


@contextlib.contextmanager
def inserts_held_together(
    model: type[Model], *, parties: int = 2, patience: float = 3.0
) -> Iterator[None]:
    """Hold each insert of a ``model`` row, just before it is sent, until
    ``parties`` of them are held: requests arriving together may all pass
    their checks before any inserts. Requests that take turns before their
    checks never all arrive; the one held goes on after ``patience`` seconds.
    """
    barrier = threading.Barrier(parties, timeout=patience)

    def hold(sender, instance, **kwargs) -> None:
        if instance._state.adding:
            with contextlib.suppress(threading.BrokenBarrierError):
                barrier.wait()

    uid = f"inserts_held_together:{model._meta.label}"
    pre_save.connect(hold, sender=model, dispatch_uid=uid, weak=False)
    try:
        yield
    finally:
        pre_save.disconnect(sender=model, dispatch_uid=uid)


# What a request thread does once it has read a row (set per thread).
_after_loading = threading.local()


def _hold_after_loading(sender, instance, **kwargs) -> None:
    hold = getattr(_after_loading, "hold", None)
    if hold is not None:
        _after_loading.hold = None
        hold()


@contextlib.contextmanager
def posts_held_after_loading(model: type[Model]) -> Iterator[Callable]:
    """``post(client, url, data, hold=...)``: a call posting the form that,
    once its request has read a ``model`` row (the admin loads the row
    first), calls ``hold`` before going on, as a slow request would pause
    there."""
    uid = f"posts_held_after_loading:{model._meta.label}"
    post_init.connect(_hold_after_loading, sender=model, dispatch_uid=uid)

    def post(client, url: str, data: dict, *, hold=None):
        def call():
            _after_loading.hold = hold
            return client.post(url, data)

        return call

    try:
        yield post
    finally:
        post_init.disconnect(sender=model, dispatch_uid=uid)


def posts_at_once(
    url: str, posts: Sequence[tuple[object, dict]], *, held: type[Model]
) -> list:
    """Each ``(client, form)`` posted to ``url`` at once, every insert of a
    ``held`` row held until all are (``inserts_held_together``). The
    responses, in order; a request that raised fails the test."""
    with inserts_held_together(held, parties=len(posts)):
        results = run_together(
            *[
                (lambda client=client, form=form: client.post(url, form))
                for client, form in posts
            ]
        )
    assert [status for status, _ in results] == ["ok"] * len(posts), results
    return [response for _, response in results]


def refused_page(responses: list) -> str:
    """The page of the refused one of two adds, the other being added (the
    admin's redirect): the form shown again with its errors."""
    assert sorted(response.status_code for response in responses) == [200, 302]
    return next(
        response for response in responses if response.status_code == 200
    ).content.decode()
