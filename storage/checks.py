"""System checks of the storage app (``manage.py check``, and every start of
``runserver`` and ``migrate``)."""

from __future__ import annotations

import os
from pathlib import Path

from django.conf import settings
from django.core import checks


@checks.register(checks.Tags.files)
def private_files_left_on_disk(app_configs, **kwargs) -> list[checks.CheckMessage]:
    """With USE_MINIO=true, identity documents still in PRIVATE_MEDIA_ROOT
    are not in the bucket: staff could not open them. Copying ``media/`` alone
    (``mc cp --recursive media/ ...``) leaves them behind, so say so."""
    if not settings.USE_MINIO:
        return []
    folder = Path(settings.PRIVATE_MEDIA_ROOT) / "private"
    if not _holds_a_file(folder):
        return []
    return [
        checks.Warning(
            f"Identity documents are still on disk in {folder} while "
            "USE_MINIO=true: staff cannot open them from the bucket.",
            hint=(
                "Copy them with `python manage.py media_to_bucket` (or `mc cp "
                f"--recursive {folder}/ <alias>/<bucket>/private/`), then "
                "delete the folder."
            ),
            id="storage.W001",
        )
    ]


def _holds_a_file(folder: Path) -> bool:
    # Stops at the first file: free when the folder is empty or missing.
    return any(names for _directory, _folders, names in os.walk(folder))
