"""Copy a local media folder into the bucket, keeping its layout as the keys.

This is the ``mc cp --recursive media/ <bucket>/`` step of the move to object
storage, done through the app's own settings and client. Each file is hashed
(streaming, MD5) and looked up in the bucket; an object of the same size and
checksum, with the Content-Type and Cache-Control the app gives it, is left
alone; one whose headers differ (copied by another tool) is uploaded again for
them, and anything else is uploaded; every upload is then checked again.

Resuming needs no state file: a second run finds the objects the first one
finished identical and skips them. An object is never half-written under its
final key, because S3 makes a PUT visible only once its whole body has
arrived, and a multipart upload only when it is completed (an interrupted one
is aborted by the client, or left invisible until the server expires it).

Private files (identity documents) are copied too, from PRIVATE_MEDIA_ROOT:
their keys there are the same (``private/...``) as in the bucket, where no
policy covers them. Only those a row still references are: staff may have
rejected a document since the first copy, and its object was deleted from the
bucket then; copying it again from the disk would bring it back. The same
holds for the folders the app writes avatars and logos to (``profile_pics/``,
``token_logo/``): a replaced avatar, a removed logo or a deleted account's
picture was deleted from the bucket, and the copy left in media/ must not come
back as a public object (``report.unreferenced``).

Links are followed, as the app on local disk follows them (FileSystemStorage
opens a name through any link): a folder reached through a link is copied
under the link's path, wherever it is, and so is a file. A link to a folder
it is in would repeat for ever and is left out. Nothing a row references is
ever left out quietly: such a file is a failure (see
``_referenced_left_out``).
"""

from __future__ import annotations

import hashlib
import math
import os
import stat
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import BinaryIO

from django.core.exceptions import SuspiciousFileOperation
from minio.datatypes import Object
from minio.error import S3Error
from minio.helpers import MAX_MULTIPART_COUNT, MIN_PART_SIZE

from storage.backends import MinIOStorage, normalize_key, sniff_content_type
from storage.bucket import bucket_ensure, bucket_exists
from storage.config import PRIVATE_MEDIA_PREFIX, PUBLIC_MEDIA_PREFIXES
from storage.exceptions import StorageUnavailable
from storage.orphans import referenced_names
from storage.services import DEFAULT_AVATAR_CACHE_CONTROL, DEFAULT_AVATAR_NAME

# Stored with every upload: the ETag of a multipart object is not the MD5 of
# its content, so this is what later runs compare such objects against.
MD5_METADATA = "x-amz-meta-md5"
MAX_KEY_BYTES = 1024  # S3's limit on an object key
_READ_CHUNK = 1024 * 1024

HIDDEN = "hidden"
UNREFERENCED = (
    "no row references it any more (a rejected document, or a deleted "
    "account's): not copied"
)


class Outcome(StrEnum):
    COPIED = "copied"  # in a dry run: would be copied
    IDENTICAL = "identical"
    # The same content under other headers, uploaded again for them (in a dry
    # run: would be).
    HEADERS_FIXED = "headers fixed"
    FAILED = "failed"


@dataclass(frozen=True)
class MediaFile:
    key: str
    path: Path  # the real path, links resolved
    size: int


@dataclass(frozen=True)
class FileResult:
    key: str
    size: int
    outcome: Outcome
    reason: str = ""


@dataclass
class MigrationReport:
    source: Path
    endpoint: str
    bucket: str
    dry_run: bool
    files: list[MediaFile] = field(default_factory=list)
    # (path relative to the source, why it is not copied); not failures.
    ignored: list[tuple[str, str]] = field(default_factory=list)
    # The part of ``ignored`` the app serves on local disk (hidden, odd or
    # looping names): a row referencing a file there makes it a failure.
    left_out: list[tuple[str, str]] = field(default_factory=list)
    results: list[FileResult] = field(default_factory=list)
    bucket_missing: bool = False
    bucket_created: bool = False
    stopped: str = ""  # why the run ended early, if it did
    # Keys under the app's public folders (profile_pics/, token_logo/) no row
    # references: deleted by the app, not copied; not failures.
    unreferenced: list[str] = field(default_factory=list)
    private_source: Path | None = None  # where private files came from

    @property
    def total_bytes(self) -> int:
        return sum(file.size for file in self.files)

    def with_outcome(self, outcome: Outcome) -> list[FileResult]:
        return sorted(
            (result for result in self.results if result.outcome == outcome),
            key=lambda result: result.key,
        )

    @property
    def bytes_copied(self) -> int:
        return sum(result.size for result in self.with_outcome(Outcome.COPIED))

    @property
    def not_reached(self) -> int:
        done = {result.key for result in self.results}
        return sum(1 for file in self.files if file.key not in done)


@dataclass(frozen=True)
class _Digest:
    size: int
    md5: str
    etag: str  # what S3 answers for this content uploaded in part_size parts
    part_size: int
    head: bytes  # the first bytes, to tell the content type


class _SourceChanged(Exception):
    """The local file changed between hashing and uploading."""


class _LocalReadError(Exception):
    """Reading the local file failed while the client was uploading it.

    Not an OSError, so that the storage's error translation does not take it
    for a network failure.
    """


def media_scan(*, source: Path, private_source: Path | None = None) -> MigrationReport:
    """List the files under ``source`` that become objects, and what is left out.

    Links are followed (a folder through a link is listed under the link's
    path); hidden files and folders, names that cannot be object keys, what
    is not a regular file and links to a folder they are in are left out; a
    folder that cannot be listed is a failure, since its files would
    silently be missing from the bucket.

    With ``private_source`` (PRIVATE_MEDIA_ROOT) its files under ``private/``
    are listed too, under the same keys; nothing else of it is copied, so no
    stray file there can become, say, a public ``profile_pics/`` object. A key
    found in both folders is copied from ``private_source``.
    """
    root = source.resolve(strict=True)
    report = MigrationReport(source=root, endpoint="", bucket="", dry_run=False)
    _scan(report, root)
    if private_source is None:
        return report
    private = MigrationReport(
        source=private_source.resolve(strict=True),
        endpoint="",
        bucket="",
        dry_run=False,
    )
    _scan(private, private.source, only=PRIVATE_MEDIA_PREFIX)
    # A link in the media folder into the private one would make an identity
    # document a public object (profile_pics/... is public in public mode).
    linked_in = [
        file
        for file in report.files
        if file.path.is_relative_to(private.source)
        and not file.key.startswith(PRIVATE_MEDIA_PREFIX)
    ]
    for file in linked_in:
        reason = f"a link into {private.source}: never copied under a public key"
        report.ignored.append((file.key, reason))
        report.left_out.append((file.key, reason))
    report.files = [file for file in report.files if file not in linked_in]
    private_keys = {file.key for file in private.files}
    report.ignored += [
        (file.key, "also in the private folder, copied from there")
        for file in report.files
        if file.key in private_keys
    ]
    report.files = [file for file in report.files if file.key not in private_keys]
    report.files += private.files
    report.ignored += private.ignored
    report.left_out += private.left_out
    report.results += private.results
    report.private_source = private.source
    return report


def _scan(report: MigrationReport, root: Path, *, only: str = "") -> None:
    """Add the files under ``root`` (keys starting with ``only``) to ``report``."""

    def unreadable(error: OSError) -> None:
        relative = Path(error.filename).relative_to(root).as_posix()
        report.results.append(
            FileResult(f"{relative}/", 0, Outcome.FAILED, _read_error(error))
        )

    def leave_out(relative: str, reason: str) -> None:
        report.ignored.append((relative, reason))
        report.left_out.append((relative, reason))

    # The real paths of the folders from the root down to each one walked:
    # a link back to one of them would be walked again and again.
    chains = {root: (root,)}
    for directory, folders, names in os.walk(
        root, onerror=unreadable, followlinks=True
    ):
        here = Path(directory)
        chain = chains.pop(here)
        kept = []
        for name in sorted(folders):
            relative = (here / name).relative_to(root).as_posix()
            real = Path(os.path.realpath(here / name))
            if name.startswith("."):
                leave_out(f"{relative}/", HIDDEN)
            elif not _may_hold(f"{relative}/", only):
                report.ignored.append((f"{relative}/", _outside(only)))
            elif real in chain:
                leave_out(
                    f"{relative}/",
                    f"a link to {real}, a folder it is in: it would repeat for ever",
                )
            else:
                kept.append(name)
                chains[here / name] = (*chain, real)
        folders[:] = kept  # os.walk descends only into these

        for name in sorted(names):
            path = here / name
            relative = path.relative_to(root).as_posix()
            real = Path(os.path.realpath(path))
            if not relative.startswith(only):
                report.ignored.append((relative, _outside(only)))
                continue
            problem = HIDDEN if name.startswith(".") else _key_problem(relative)
            if problem:
                leave_out(relative, problem)
                continue
            try:
                info = real.stat()
            except OSError:
                # A dangling link or a file deleted meanwhile: copying it
                # fails and says why.
                report.files.append(MediaFile(relative, real, 0))
                continue
            if not stat.S_ISREG(info.st_mode):
                leave_out(relative, "not a regular file")
                continue
            report.files.append(MediaFile(relative, real, info.st_size))


def _may_hold(folder: str, prefix: str) -> bool:
    """Whether keys under ``folder`` (ending in /) may start with ``prefix``."""
    return prefix.startswith(folder) or folder.startswith(prefix)


def _outside(prefix: str) -> str:
    return f"not under {prefix}: only private files are copied from there"


def media_migrate(
    *,
    storage: MinIOStorage,
    source: Path,
    private_source: Path | None = None,
    dry_run: bool = False,
    workers: int = 4,
    on_result: Callable[[FileResult, MigrationReport], None] | None = None,
) -> MigrationReport:
    """Copy every file under ``source`` to ``storage``'s bucket, same keys,
    and the private files under ``private_source`` (see ``media_scan``).

    Objects already identical (size, MD5 and headers) are skipped; every
    upload is checked afterwards. Private files no row references are left
    out (``UNREFERENCED``), and so are files under the app's public folders
    (``report.unreferenced``), so this reads the database when there are any.
    ``on_result`` is called in the calling thread, in completion order. The
    run stops early, keeping what is done, on Ctrl+C or when the store itself
    fails (``report.stopped`` says why); a failure of one file (unreadable,
    changed meanwhile, verification) is recorded and the run goes on. Raises
    StorageUnavailable if the bucket cannot be reached, or the endpoint does
    not answer as an S3 API.
    """
    report = media_scan(source=source, private_source=private_source)
    _unreferenced_files_leave(report)
    _referenced_left_out(report)
    report.endpoint, report.bucket = storage.endpoint, storage.bucket_name
    report.dry_run = dry_run

    with storage.errors("check the bucket"):
        exists = bucket_exists(client=storage.client, bucket_name=storage.bucket_name)
    report.bucket_missing = not exists
    if not exists and not dry_run and report.files:
        with storage.errors("create the bucket"):
            report.bucket_created = bucket_ensure(
                client=storage.client,
                bucket_name=storage.bucket_name,
                url_mode=storage.url_mode,
            )

    pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="media-copy")
    futures: dict[Future, MediaFile] = {}
    recorded: set[Future] = set()

    def record(future: Future) -> FileResult:
        recorded.add(future)
        file = futures[future]
        try:
            result = future.result()
        except StorageUnavailable as exc:
            result = FileResult(file.key, file.size, Outcome.FAILED, str(exc))
            report.stopped = report.stopped or str(exc)
        report.results.append(result)
        return result

    try:
        for file in report.files:
            future = pool.submit(
                _file_copy,
                storage=storage,
                file=file,
                dry_run=dry_run,
                bucket_missing=report.bucket_missing,
            )
            futures[future] = file
        for future in as_completed(futures):
            result = record(future)
            if report.stopped:
                break
            if on_result is not None:
                on_result(result, report)
    except KeyboardInterrupt:
        report.stopped = "interrupted"
    finally:
        # Files being copied finish (each upload is all or nothing); the
        # queued ones are dropped, for the next run to pick up.
        pool.shutdown(wait=True, cancel_futures=True)
    for future in futures:
        if future not in recorded and future.done() and not future.cancelled():
            record(future)
    return report


def _unreferenced_files_leave(report: MigrationReport) -> None:
    """Take the files no row references out of ``report.files``, among the
    private ones and those under the app's public folders.

    The app deletes what it no longer needs (a document staff rejected, a
    replaced avatar, a removed logo, a deleted account's files) from the
    bucket, or never put it there; the copy still on disk must not bring it
    back, where no row would ever name it again. Other files (the default
    avatar, anything else in the media folder) are copied as they are.
    """
    managed = (PRIVATE_MEDIA_PREFIX, *PUBLIC_MEDIA_PREFIXES)
    candidates = [file for file in report.files if file.key.startswith(managed)]
    if not candidates:
        return  # no database query for other files alone
    referenced = referenced_names()
    left = {file.key for file in candidates if file.key not in referenced}
    private = sorted(key for key in left if key.startswith(PRIVATE_MEDIA_PREFIX))
    report.ignored += [(key, UNREFERENCED) for key in private]
    report.unreferenced += sorted(left.difference(private))
    report.files = [file for file in report.files if file.key not in left]


def _referenced_left_out(report: MigrationReport) -> None:
    """Record as failed each file a row references that the scan left out
    (a hidden name, one that cannot be a key, a looping link): after the
    switch the app would not find it, so the run must not end in success.
    """
    if not report.left_out:
        return  # no database query when nothing was left out
    copied = {file.key for file in report.files}
    referenced = sorted(referenced_names() - copied)
    failed: set[str] = set()
    for path, reason in report.left_out:
        for name in referenced:
            if name in failed:
                continue
            if name == path or (path.endswith("/") and name.startswith(path)):
                failed.add(name)
                report.results.append(
                    FileResult(
                        name,
                        0,
                        Outcome.FAILED,
                        f"a row references it, but {path} is not copied: {reason}",
                    )
                )


def _file_copy(
    *, storage: MinIOStorage, file: MediaFile, dry_run: bool, bucket_missing: bool
) -> FileResult:
    key = file.key

    def failed(reason: str) -> FileResult:
        return FileResult(key, file.size, Outcome.FAILED, reason)

    try:
        with file.path.open("rb") as handle:
            before = os.fstat(handle.fileno())
            if not stat.S_ISREG(before.st_mode):
                return failed("not a regular file")
            digest = _digest(handle, before.st_size)
            headers = _headers(storage, key, digest)
            stored = None if bucket_missing else _stat(storage, key)
            outcome = Outcome.COPIED
            if stored is not None and not _difference(stored, digest):
                if not _headers_difference(stored, headers):
                    return FileResult(key, digest.size, Outcome.IDENTICAL)
                outcome = Outcome.HEADERS_FIXED
            if dry_run:
                return FileResult(key, digest.size, outcome)
            handle.seek(0)
            reader = _HashingReader(handle, digest.size)
            _upload(storage, key, reader, digest, headers)
            after = os.fstat(handle.fileno())
            if reader.md5.hexdigest() != digest.md5 or (
                after.st_size,
                after.st_mtime_ns,
            ) != (before.st_size, before.st_mtime_ns):
                raise _SourceChanged
    except _SourceChanged:
        return failed(
            "the file changed while it was being copied; run again to copy "
            "its current content"
        )
    except _LocalReadError as exc:
        return failed(_read_error(exc.__cause__))
    except OSError as exc:
        return failed(_read_error(exc))

    stored = _stat(storage, key)
    if stored is None:
        return failed("verification failed: the object is missing after the upload")
    if problem := _difference(stored, digest) or _headers_difference(stored, headers):
        return failed(f"verification failed: {problem}")
    return FileResult(key, digest.size, outcome)


@dataclass(frozen=True)
class _Headers:
    content_type: str
    cache_control: str


def _headers(storage: MinIOStorage, key: str, digest: _Digest) -> _Headers:
    """The headers the app stores this content with: the Content-Type the
    storage reads from the content, its Cache-Control (a day for the default
    avatar, whose name never changes, as setup_minio stores it)."""
    return _Headers(
        content_type=sniff_content_type(digest.head, key),
        cache_control=(
            DEFAULT_AVATAR_CACHE_CONTROL
            if key == DEFAULT_AVATAR_NAME
            else storage.cache_control
        ),
    )


def _headers_difference(stored: Object, headers: _Headers) -> str:
    """Which of the object's headers are not the app's ('' when none)."""
    found = {
        "Content-Type": stored.content_type or "",
        "Cache-Control": (stored.metadata or {}).get("Cache-Control") or "",
    }
    wanted = {
        "Content-Type": headers.content_type,
        "Cache-Control": headers.cache_control,
    }
    return ", ".join(
        f"{name} is {found[name] or 'not set'}, not {wanted[name]}"
        for name in wanted
        if found[name] != wanted[name]
    )


def _upload(
    storage: MinIOStorage, key: str, data: BinaryIO, digest: _Digest, headers: _Headers
) -> None:
    with storage.errors("upload", key):
        storage.client.put_object(
            bucket_name=storage.bucket_name,
            object_name=key,
            data=data,
            length=digest.size,
            content_type=headers.content_type,
            metadata={
                "Cache-Control": headers.cache_control,
                MD5_METADATA: digest.md5,
            },
            # The part size fixes the multipart ETag computed in _digest.
            part_size=digest.part_size,
            # Files are copied in parallel already; one part in memory per
            # worker, and no more connections than workers.
            num_parallel_uploads=1,
        )


def _stat(storage: MinIOStorage, key: str) -> Object | None:
    try:
        with storage.errors("look up", key):
            return storage.client.stat_object(
                bucket_name=storage.bucket_name, object_name=key
            )
    except S3Error:  # no such key or bucket; other codes became StorageUnavailable
        return None


def _difference(stored: Object, digest: _Digest) -> str:
    """Why the object is not a copy of the file ('' when it is)."""
    if stored.size != digest.size:
        return f"{stored.size} bytes in the bucket, {digest.size} here"
    etag = (stored.etag or "").strip('"')
    if etag == digest.etag:
        return ""
    if "-" not in etag:
        return "different content (the ETag is not this file's MD5)"
    # A multipart object uploaded with other part sizes (by mc, say): only
    # the MD5 this command stored can tell.
    recorded = (stored.metadata or {}).get(MD5_METADATA)
    if recorded is None:
        return "multipart object without an MD5 to compare"
    return "" if recorded == digest.md5 else "different content (MD5 differs)"


def _part_size(size: int) -> int:
    # What the minio client picks for a known length, given explicitly so that
    # the multipart ETag can be computed before uploading.
    per_part = math.ceil(size / MAX_MULTIPART_COUNT)
    return max(math.ceil(per_part / MIN_PART_SIZE), 1) * MIN_PART_SIZE


def _digest(handle: BinaryIO, size: int) -> _Digest:
    """MD5 and S3 ETag of the file, in one streaming pass."""
    part_size = _part_size(size)
    multipart = size > part_size
    whole = hashlib.md5(usedforsecurity=False)
    part = hashlib.md5(usedforsecurity=False)
    part_digests: list[bytes] = []
    in_part = read = 0
    head = b""
    while chunk := handle.read(_READ_CHUNK):
        if len(head) < 16:
            head += chunk[: 16 - len(head)]
        read += len(chunk)
        whole.update(chunk)
        if not multipart:
            continue
        view = memoryview(chunk)
        while view:
            take = min(len(view), part_size - in_part)
            part.update(view[:take])
            in_part += take
            view = view[take:]
            if in_part == part_size:
                part_digests.append(part.digest())
                part = hashlib.md5(usedforsecurity=False)
                in_part = 0
    if read != size:
        raise _SourceChanged
    md5 = whole.hexdigest()
    etag = md5
    if multipart:
        if in_part:
            part_digests.append(part.digest())
        combined = hashlib.md5(b"".join(part_digests), usedforsecurity=False)
        etag = f"{combined.hexdigest()}-{len(part_digests)}"
    return _Digest(size=size, md5=md5, etag=etag, part_size=part_size, head=head)


class _HashingReader:
    """The file as put_object reads it, hashing exactly the bytes sent."""

    def __init__(self, handle: BinaryIO, size: int) -> None:
        self._handle = handle
        self._size = size
        self._read = 0
        self.md5 = hashlib.md5(usedforsecurity=False)

    def read(self, size: int = -1) -> bytes:
        try:
            data = self._handle.read(size)
        except OSError as exc:
            raise _LocalReadError from exc
        if not data and self._read < self._size:
            raise _SourceChanged  # shorter than when it was hashed
        self._read += len(data)
        self.md5.update(data)
        return data


def _key_problem(relative: str) -> str:
    try:
        encoded = relative.encode("utf-8")
    except UnicodeEncodeError:
        return "the name is not valid UTF-8"
    if len(encoded) > MAX_KEY_BYTES:
        return f"the key would be longer than {MAX_KEY_BYTES} bytes"
    try:
        if normalize_key(relative) == relative:
            return ""
    except SuspiciousFileOperation:
        pass
    return "the name cannot be an object key (backslash or dots)"


def _read_error(exc: BaseException | None) -> str:
    if isinstance(exc, OSError) and exc.strerror:
        return f"cannot read: {exc.strerror}"
    return f"cannot read: {exc}"
