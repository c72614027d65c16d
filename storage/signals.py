"""A replaced file that django-cleanup could not delete is queued for later."""

from __future__ import annotations

import logging
from typing import Any

from django.db import DatabaseError

from storage.orphans import pending_deletion_add

logger = logging.getLogger(__name__)


def deletion_failed_queue(
    sender: Any, *, success: bool, error: BaseException | None, file_name: str, **_
) -> None:
    """Runs after the commit that replaced or removed the file: the change is
    made, so a database lost meanwhile is logged, not raised to the caller;
    no row names the file any more, and ``media_orphans`` finds it."""
    if not success and file_name:
        try:
            pending_deletion_add(name=file_name, error=error or "unknown error")
        except DatabaseError:
            logger.exception("could not queue %s for deletion", file_name)
