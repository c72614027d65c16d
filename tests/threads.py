"""Calls released at once, each in its own thread and database connection,
as requests of one user arriving together are."""

from __future__ import annotations

import threading

from django.db import connection


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
