"""A replaced file that django-cleanup could not delete is queued for later."""

from __future__ import annotations

from typing import Any

from storage.orphans import pending_deletion_add


def deletion_failed_queue(
    sender: Any, *, success: bool, error: BaseException | None, file_name: str, **_
) -> None:
    if not success and file_name:
        pending_deletion_add(name=file_name, error=error or "unknown error")
