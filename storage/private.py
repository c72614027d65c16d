"""The storage of private files (identity documents), ``STORAGES["private"]``.

On local disk it is PRIVATE_MEDIA_ROOT, a folder outside MEDIA_ROOT that no
web server is told to serve; on S3 it is the default storage's bucket, where
no policy covers ``private/``. The keys are the same in both
(``private/identity/...``), so ``media_to_bucket`` copies private files like
any other. Deployments that kept them in ``MEDIA_ROOT/private/`` get them
moved by ``private_files_move`` (run by a migration of ``verification``).
"""

from __future__ import annotations

import contextlib
import errno
import filecmp
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from django.core.files.storage import Storage, storages
from django.utils.functional import LazyObject, empty

PRIVATE_STORAGE_ALIAS = "private"


class _PrivateStorage(LazyObject):
    def _setup(self) -> None:
        self._wrapped = storages[PRIVATE_STORAGE_ALIAS]


_private_storage = _PrivateStorage()


def private_storage() -> Storage:
    """The private storage, for ``FileField(storage=private_storage)``.

    A callable, so that migrations name it instead of capturing settings. It
    returns a lazy object, as Django's ``default_storage`` is, so that fields
    follow STORAGES when it changes (tests, ``override_settings``).
    """
    return _private_storage


def private_storage_reset(*, setting: str, **_: Any) -> None:
    """``setting_changed`` receiver: rebuild the storage from the new STORAGES."""
    if setting == "STORAGES":
        _private_storage._wrapped = empty


@dataclass
class PrivateMoveReport:
    moved: list[str] = field(default_factory=list)
    # (path relative to the source, why it stayed there)
    left: list[tuple[str, str]] = field(default_factory=list)


def private_files_move(*, source: Path, destination: Path) -> PrivateMoveReport:
    """Move every file under ``source`` to the same path under ``destination``.

    Each file is renamed (one atomic step on one file system) or, across file
    systems, copied to a hidden temporary name, flushed to disk, renamed into
    place, and only then removed from ``source``: at every moment a whole copy
    exists, so an interrupted run loses nothing and the next run finishes it
    (a file already at the destination with the same content is just removed
    from ``source``). A file whose destination holds something else, and
    anything but a regular file, stays where it is and is reported. Emptied
    folders of ``source`` are removed.
    """
    report = PrivateMoveReport()
    if not source.is_dir():
        return report
    for directory, folders, names in os.walk(source):
        folders.sort()  # one order every run
        here = Path(directory)
        for name in folders:
            if (here / name).is_symlink():  # os.walk does not enter it
                relative = (here / name).relative_to(source).as_posix()
                report.left.append((f"{relative}/", "a link, not a folder"))
        for name in sorted(names):
            path = here / name
            relative = path.relative_to(source).as_posix()
            if path.is_symlink() or not path.is_file():
                report.left.append((relative, "not a regular file"))
                continue
            target = destination / relative
            if target.exists() or target.is_symlink():
                if target.is_file() and filecmp.cmp(path, target, shallow=False):
                    path.unlink()
                    report.moved.append(relative)
                else:
                    report.left.append(
                        (relative, f"{target} exists with other content")
                    )
                continue
            target.parent.mkdir(parents=True, exist_ok=True)
            _file_move(path, target)
            report.moved.append(relative)
    for directory, _folders, _names in os.walk(source, topdown=False):
        # A folder still holding something left (and reported) stays.
        with contextlib.suppress(OSError):
            os.rmdir(directory)
    return report


def _file_move(path: Path, target: Path) -> None:
    try:
        os.rename(path, target)
    except OSError as exc:
        if exc.errno != errno.EXDEV:
            raise
    else:
        _fsync_folder(target.parent)
        return
    partial = target.with_name(f".{target.name}.moving")
    shutil.copy2(path, partial)
    with partial.open("rb+") as copy:
        os.fsync(copy.fileno())
    os.rename(partial, target)
    _fsync_folder(target.parent)
    path.unlink()


def _fsync_folder(folder: Path) -> None:
    descriptor = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)
