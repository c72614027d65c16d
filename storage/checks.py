"""System checks of the storage app (``manage.py check``, and every start of
``runserver`` and ``migrate``)."""

from __future__ import annotations

import os
import shlex
from pathlib import Path

from django.conf import settings
from django.core import checks


@checks.register(checks.Tags.files)
def private_files_left_on_disk(app_configs, **kwargs) -> list[checks.CheckMessage]:
    """With USE_MINIO=true, identity documents in PRIVATE_MEDIA_ROOT are read
    from the bucket only: one never copied there cannot be opened. Copying
    ``media/`` alone (``mc cp --recursive media/ ...``) leaves them behind, so
    say so.

    Whether each one is in the bucket would take a database query and a
    request to the store per document at every start; the warning asks for
    the folder to be emptied instead, and says that it stays until then.
    """
    if not settings.USE_MINIO:
        return []
    folder = Path(settings.PRIVATE_MEDIA_ROOT) / "private"
    if not _holds_a_file(folder):
        return []
    return [
        checks.Warning(
            f"Files are left on disk in {folder} while USE_MINIO=true: the app "
            "reads identity documents from the bucket only, so staff cannot "
            "open a document that was not copied there.",
            hint=(
                "Copy them with `python manage.py media_to_bucket` (it skips "
                "those already in the bucket, and those of rejected "
                "verifications and deleted accounts), then delete the folder: "
                "this warning stays until it is empty."
            ),
            id="storage.W001",
        )
    ]


@checks.register(checks.Tags.files)
def default_avatar_missing_on_disk(app_configs, **kwargs) -> list[checks.CheckMessage]:
    """With USE_MINIO=false every user without a picture is shown
    MEDIA_ROOT's default avatar. The checkout's ``media/`` ships it, a new
    folder (a production MEDIA_ROOT, a volume mounted over the image's
    ``media/``) does not, and nothing else puts it there (``setup_minio``
    uploads it to the bucket only): every such avatar was a broken image."""
    from storage.services import DEFAULT_AVATAR_NAME

    if settings.USE_MINIO:
        return []
    media_root = Path(settings.MEDIA_ROOT)
    if (media_root / DEFAULT_AVATAR_NAME).is_file():
        return []
    shipped = Path(settings.BASE_DIR) / "media" / DEFAULT_AVATAR_NAME
    target = shlex.quote(f"{media_root}/")
    if shipped.is_file():
        hint = (
            "Copy the one the repository ships: "
            f"`cp {shlex.quote(str(shipped))} {target}`"
        )
    else:
        # MEDIA_ROOT is the checkout's media/, or a volume mounted over it
        # (the Docker image's /app/media) that hides the shipped file.
        hint = (
            "Copy the one the repository ships, from a checkout of it: "
            f"`cp media/{DEFAULT_AVATAR_NAME} {target}`"
        )
    return [
        checks.Warning(
            f"{DEFAULT_AVATAR_NAME} is missing from MEDIA_ROOT ({media_root}): "
            "every user without a picture of their own is shown a broken image.",
            hint=hint,
            id="storage.W002",
        )
    ]


def _holds_a_file(folder: Path) -> bool:
    """Whether a file is under ``folder``, links followed (the private storage
    opens names through them, and media_to_bucket copies through them).

    Stops at the first file: free when the folder is empty or missing. Each
    real folder is looked into once, so links leading back cannot loop.
    """
    seen = set()
    for directory, folders, names in os.walk(folder, followlinks=True):
        if names:
            return True
        real = os.path.realpath(directory)
        if real in seen:
            folders[:] = []
        seen.add(real)
    return False
