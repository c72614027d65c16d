"""The storage app's system checks (``manage.py check``) about MEDIA_ROOT.
The check about identity documents left on disk is in test_private.py."""

from __future__ import annotations

import re
import shlex
import subprocess

from django.core import checks


def _storage_warnings() -> dict[str, checks.CheckMessage]:
    return {
        message.id: message for message in checks.run_checks(tags=[checks.Tags.files])
    }


def test_a_media_root_without_the_default_avatar_is_reported_with_the_fix(
    settings, media_root
):
    """The autouse ``media_root``: a new, empty folder, as in production."""
    warning = _storage_warnings()["storage.W002"]

    assert f"MEDIA_ROOT ({media_root})" in warning.msg
    command = re.search(r"`(cp [^`]+)`", warning.hint)[1]
    subprocess.run(shlex.split(command), check=True)  # the hint, as given

    assert (media_root / "default_avatar.jpg").read_bytes()[:2] == b"\xff\xd8"
    assert "storage.W002" not in _storage_warnings()


def test_the_default_avatar_is_not_looked_for_on_disk_with_minio(settings):
    settings.USE_MINIO = True

    assert "storage.W002" not in _storage_warnings()
