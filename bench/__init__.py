"""Benchmarks: the storage backends against the raw clients, and image processing.

Run them all with ``python -m bench.run`` (``make bench``) from the repository
root; it writes ``docs/PERFORMANCE.md``.
"""

from __future__ import annotations

import os


def django_setup() -> None:
    """Load the project's settings, as the storage and image modules need them."""
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "crypto_exchange.settings")
    import django

    django.setup()
