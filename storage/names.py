"""New names for saved files, the same on local disk and in the bucket.

Every save stores under a name never used before: the media view and the
bucket serve each file with a one-year ``immutable`` Cache-Control, and
several app servers may save the same name at the same moment.
"""

from __future__ import annotations

import pathlib
import posixpath
import secrets

from django.core.exceptions import SuspiciousFileOperation

# A file name (one path segment) of at most this many bytes of UTF-8: the
# limit of S3 servers and of common file systems.
SEGMENT_MAX_BYTES = 255


def random_name(name: str, max_length: int | None = None) -> str:
    """``name`` with a random part added to its file name.

    The random part goes before all the extensions (``x_<random>.tar.gz``),
    as Django's does, as long as they are short enough to be extensions. The
    result fits ``max_length`` characters, and its file name fits
    ``SEGMENT_MAX_BYTES`` if the given one did (a longer one is refused
    later, as a disk refuses it).
    """
    dir_name, file_name = posixpath.split(name)
    ext = ""
    for suffix in reversed(pathlib.PurePosixPath(file_name).suffixes):
        if len(suffix + ext) > 16:
            break
        ext = suffix + ext
    stem = file_name.removesuffix(ext)
    suffix = "_" + secrets.token_urlsafe(8)  # 11 characters, 64 random bits
    prefix = f"{dir_name}/" if dir_name else ""
    if max_length is not None:
        room = max_length - len(prefix) - len(suffix) - len(ext)
        if room < 1:
            raise SuspiciousFileOperation(
                f"Storage can not find an available filename for '{name}'. "
                "Please make sure that the corresponding file field allows "
                f"sufficient 'max_length' ({max_length})."
            )
        stem = stem[:room]
    if len(file_name.encode()) <= SEGMENT_MAX_BYTES:
        room = SEGMENT_MAX_BYTES - len((suffix + ext).encode())
        stem = stem.encode()[:room].decode(errors="ignore")
    return f"{prefix}{stem or 'file'}{suffix}{ext}"
