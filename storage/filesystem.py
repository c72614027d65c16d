"""Files on local disk (``USE_MINIO=false``): MEDIA_ROOT and PRIVATE_MEDIA_ROOT.

Django's ``FileSystemStorage``, except that every save stores under a new
name (``storage.names``), as ``MinIOStorage`` does, and except when a file
cannot be written whole.
Django then leaves what it had written on disk, under a name no row holds,
and raises the ``OSError`` as it is: for a full disk, a server error wherever
a view did not expect it. Here what was written is removed first, and a full
disk or quota (ENOSPC, EDQUOT) is the storage app's own error,
``StorageFull`` (a ``StorageUnavailable``), which the upload views show as a
message. Any other ``OSError`` (an unreadable upload) is raised as itself,
as the storage contract has it.

What ``MinIOStorage`` refuses is refused here too, so that development
fails where production would: opening a stored file in a write mode (it
is served ``immutable``; ``refuse_writing``) and a name longer than object
storage takes (``check_key_length``: 255 bytes a folder or file name, 1024 in
all), refused on save with ``SuspiciousFileOperation``.
"""

from __future__ import annotations

import errno
import logging
import os
from contextvars import ContextVar
from dataclasses import dataclass, field

from django.core.files.base import File
from django.core.files.storage import FileSystemStorage as DjangoFileSystemStorage
from django.utils.deconstruct import deconstructible

from storage.backends import check_key_length, refuse_writing
from storage.exceptions import StorageFull
from storage.names import random_name

logger = logging.getLogger(__name__)

DISK_FULL = frozenset({errno.ENOSPC, errno.EDQUOT})


@dataclass
class _Attempt:
    """The names one ``_save`` tried; ``created``: Django created the last one
    (opened with O_EXCL) and is writing it, so it is ours to remove."""

    names: list[str] = field(default_factory=list)
    created: bool = False


# Per thread and per task: one storage instance serves every request.
_attempt: ContextVar[_Attempt | None] = ContextVar("filesystem_save", default=None)


class _Content(File):
    """The content as Django's ``_save`` streams it. It asks for the chunks
    only once it has created the file, which is how that moment is known; and
    it has no ``temporary_file_path``, so a temporary upload is streamed too
    instead of moved by ``file_move_safe``, which would leave a partial copy
    just the same."""

    def __init__(self, content: File, attempt: _Attempt) -> None:
        super().__init__(content, name=content.name)
        self._content = content
        self._attempt = attempt

    def chunks(self, chunk_size: int | None = None):
        self._attempt.created = True
        return self._content.chunks(chunk_size)


class _StoredFile(File):
    """A stored file, as ``open()`` returns it: a closed one reopened (as
    ``FieldFile.open()`` does) is for reading only too."""

    def open(self, mode: str | None = None) -> _StoredFile:
        if self.closed:
            refuse_writing(mode or self.mode)
        return super().open(mode)


@deconstructible(path="storage.filesystem.FileSystemStorage")
class FileSystemStorage(DjangoFileSystemStorage):
    def _open(self, name: str, mode: str = "rb") -> File:
        refuse_writing(mode)
        return _StoredFile(open(self.path(name), mode))

    def _save(self, name: str, content: File) -> str:
        check_key_length(name)
        attempt = _Attempt(names=[name])
        token = _attempt.set(attempt)
        try:
            return super()._save(name, _Content(content, attempt))
        except OSError as error:
            if attempt.created:
                self._partial_remove(attempt.names[-1])
            if error.errno in DISK_FULL:
                raise self._full(error, name=name) from error
            raise
        finally:
            _attempt.reset(token)

    def get_available_name(self, name: str, max_length: int | None = None) -> str:
        # A new name for every save, as MinIOStorage gives: a name freed by a
        # deletion is not reused, so its one-year immutable URL stays true.
        name = super().get_available_name(
            random_name(name, max_length), max_length=max_length
        )
        # Django's _save asks for another name when the one it was given was
        # taken meanwhile; the file it then creates is under this one.
        attempt = _attempt.get()
        if attempt is not None:
            attempt.names.append(name)
            attempt.created = False
        return name

    def _partial_remove(self, name: str) -> None:
        try:
            os.remove(self.path(name))
        except FileNotFoundError:
            pass
        except OSError:
            logger.exception("could not remove the partial file %s", name)

    def _full(self, error: OSError, *, name: str) -> StorageFull:
        reason = errno.errorcode.get(error.errno or 0, "ENOSPC")
        logger.warning(
            "storage failure",
            extra={
                "operation": "save",
                "key": name,
                "location": str(self.location),
                "reason": reason,
            },
        )
        return StorageFull(
            f"Could not save {name}: the disk of {self.location} is full "
            f"({reason}). Free space there, or move the media to the object "
            "store (USE_MINIO, media_to_bucket).",
            operation="save",
            key=name,
            reason=reason,
        )
