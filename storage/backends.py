"""MinIOStorage: a Django storage backend on the official ``minio`` client.

It speaks plain S3, so it works against MinIO, SeaweedFS or any S3-compatible
server. Object keys are the relative paths that ``media/`` would use
(``profile_pics/...``, ``token_logo/...``, ``default_avatar.jpg``).

Network calls per operation: ``save`` one PUT (multipart above 5 MiB, or
above 10 MiB for content of unknown length), ``open`` one GET whose body is
streamed (a seek back beyond the first 256 KiB adds a Range GET),
``exists``/``size``/``get_modified_time`` one HEAD, ``delete`` one DELETE,
``url`` and ``endpoint_url`` none. Files open for reading only: see
``refuse_writing``.
"""

from __future__ import annotations

import codecs
import functools
import io
import logging
import mimetypes
import os
import pathlib
import threading
import time
import traceback
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import quote, urlsplit
from xml.etree import ElementTree

import certifi
import urllib3
from django.conf import settings
from django.core.exceptions import SuspiciousFileOperation
from django.core.files.base import File
from django.core.files.storage import Storage
from django.core.signals import setting_changed
from django.utils import timezone
from django.utils.deconstruct import deconstructible
from minio import Minio
from minio.error import InvalidResponseError, MinioException, S3Error, ServerError

from storage import config
from storage.bucket import NotAnS3Api, bucket_ensure
from storage.exceptions import StorageUnavailable
from storage.names import SEGMENT_MAX_BYTES, random_name

logger = logging.getLogger(__name__)

IMMUTABLE_CACHE_CONTROL = "public, max-age=31536000, immutable"
UNKNOWN_CONTENT_TYPE = "binary/octet-stream"
_MISSING_OBJECT_CODES = frozenset({"NoSuchKey", "NoSuchObject", "NoSuchBucket"})
_CREDENTIAL_CODES = frozenset(
    {
        "AccessDenied",
        "InvalidAccessKeyId",
        "SignatureDoesNotMatch",
        "InvalidToken",
        "ExpiredToken",
        "AuthorizationHeaderMalformed",
    }
)
# put_object's multipart threshold and part size for streams of unknown length.
_PART_SIZE = 10 * 1024 * 1024
# The limits of S3 (and of MinIO and SeaweedFS): a key of at most 1024 bytes of
# UTF-8, each of its path segments at most 255 bytes.
KEY_MAX_BYTES = 1024
KEY_SEGMENT_MAX_BYTES = SEGMENT_MAX_BYTES
# An opened object keeps its first bytes, so that going back to them (to the
# start, to a header) costs no request; see ObjectReader.
_REWIND_BYTES = 256 * 1024
# Seeking ahead by at most this much reads on instead of asking for a Range.
_SKIP_BYTES = 256 * 1024
_WRITE_FLAGS = frozenset("wax+")

# (header bytes, MIME type) checked against the first bytes of what is saved,
# so that the stored Content-Type follows the content, not the file name.
_SIGNATURES: tuple[tuple[bytes, str], ...] = (
    (b"\xff\xd8\xff", "image/jpeg"),
    (b"\x89PNG\r\n\x1a\n", "image/png"),
    (b"GIF87a", "image/gif"),
    (b"GIF89a", "image/gif"),
    (b"%PDF-", "application/pdf"),
)


def sniff_content_type(head: bytes, name: str) -> str:
    for signature, content_type in _SIGNATURES:
        if head.startswith(signature):
            return content_type
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "image/webp"
    guessed, _ = mimetypes.guess_type(name)
    # Never let an image type be claimed by a name alone: a file called
    # x.jpg that is not a JPEG is served as bytes, not rendered.
    if guessed and not guessed.startswith("image/"):
        return guessed
    # S3's own default type. Some servers (SeaweedFS) treat the more usual
    # application/octet-stream as "unset" and guess from the extension again.
    return UNKNOWN_CONTENT_TYPE


def normalize_key(name: str) -> str:
    """Turn a storage name into an object key, as media/ would lay it out.

    Backslashes become slashes, leading slashes and ``.`` segments go away,
    and ``..`` anywhere is refused rather than resolved.
    """
    if name is None:
        raise SuspiciousFileOperation("A file name is required.")
    if not isinstance(name, str):
        if not isinstance(name, os.PathLike):
            raise TypeError(
                f"A file name must be a str or a path, not {type(name).__name__}."
            )
        name = pathlib.PurePath(name).as_posix()
    if (
        name
        and name[0] not in "/."
        and name[-1] != "/"
        and "\\" not in name
        and "//" not in name
        and "/." not in name
    ):
        return name  # the common case, on every url(): already a clean key
    parts = _segments(name)
    if any(part == ".." for part in parts):
        raise SuspiciousFileOperation(f"Detected path traversal attempt in '{name}'")
    if not parts:
        raise SuspiciousFileOperation(f"Could not derive an object key from '{name}'")
    return "/".join(parts)


def _segments(name: str) -> list[str]:
    """A name's folder and file names, without empty and ``.`` ones."""
    return [
        part for part in name.replace("\\", "/").split("/") if part not in ("", ".")
    ]


def object_key(name: str) -> str:
    """The key of an object to read, write or delete: ``normalize_key`` of a
    relative name. An absolute name is refused, as ``FileSystemStorage``
    refuses a path outside its location; only ``url()`` drops leading slashes.
    """
    if isinstance(name, os.PathLike):
        name = pathlib.PurePath(name).as_posix()
    if isinstance(name, str) and name.startswith("/"):
        raise SuspiciousFileOperation(
            f"The name '{name[:60]}' is absolute; storage names are relative "
            "to the storage's root."
        )
    refuse_nul(name)
    return normalize_key(name)


def refuse_nul(name: str) -> None:
    """A NUL character is refused with the ValueError FileSystemStorage gets
    from the OS; sent, the server's 400 would read as an outage."""
    if isinstance(name, str) and "\x00" in name:
        raise ValueError(f"The name {name[:60]!r} holds a NUL character.")


@functools.lru_cache(maxsize=8192)
def _quoted_key(name: str) -> str:
    # Pages render the same avatars and logos over and over: url() is on the
    # hot path of every list, so the checked, quoted key is remembered.
    # Quoted as Django's filepath_to_uri() does (encodeURIComponent's set).
    return quote(normalize_key(name), safe="/~!*()'")


def check_key_length(key: str) -> None:
    """Refuse a key the server would refuse, before any request is sent."""
    if len(key) <= KEY_SEGMENT_MAX_BYTES and key.isascii():
        return  # the common case, one byte a character
    encoded = key.encode()
    longest = max(len(segment) for segment in encoded.split(b"/"))
    if len(encoded) > KEY_MAX_BYTES or longest > KEY_SEGMENT_MAX_BYTES:
        raise SuspiciousFileOperation(
            f"The file name '{key[:60]}...' is too long for object storage: "
            f"{len(encoded)} bytes, a folder or file name up to {longest}; the "
            f"limits are {KEY_MAX_BYTES} bytes in all and {KEY_SEGMENT_MAX_BYTES} "
            "for each part. Give the file field a max_length, or a shorter name."
        )


class _DeadlineTimeout(urllib3.Timeout):
    """Connect and read waits that all end by one deadline (monotonic clock).

    urllib3 clones the timeout for every attempt, retries included: each clone
    gets only the time left, so attempts and backoff together never outlast
    the deadline.
    """

    def __init__(self, *, connect: float, read: float, deadline: float) -> None:
        left = max(deadline - time.monotonic(), 0.001)
        super().__init__(connect=min(connect, left), read=min(read, left), total=left)
        self.deadline = deadline

    def clone(self) -> _DeadlineTimeout:
        return _DeadlineTimeout(
            connect=self._connect, read=self._read, deadline=self.deadline
        )


# A retry starts only with at least this many seconds of the deadline left.
_LEAST_ATTEMPT = 0.25


class _StoreRetry(urllib3.Retry):
    """Retries that stop at the call's deadline and never follow a read timeout.

    A store that accepted the request and then went quiet (paused, swamped)
    is not helped by being asked again: each retry would only add another full
    wait. Connection errors (nothing was sent) and 5xx answers are retried.
    """

    def __init__(self, *args: Any, deadline: float | None = None, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.deadline = deadline

    def new(self, **kwargs: Any) -> _StoreRetry:
        retry = super().new(**kwargs)
        retry.deadline = self.deadline
        return retry

    def increment(self, method=None, url=None, response=None, error=None, **kwargs):
        if isinstance(error, urllib3.exceptions.ReadTimeoutError):
            raise error
        return super().increment(method, url, response, error, **kwargs)

    def is_exhausted(self) -> bool:
        # No retry that would start too late to get an answer: it would only
        # turn the store's real failure into a timeout of its own.
        return super().is_exhausted() or (
            self.deadline is not None
            and time.monotonic() + self.get_backoff_time() + _LEAST_ATTEMPT
            >= self.deadline
        )


class _DeadlinePoolManager(urllib3.PoolManager):
    """A pool whose every request, retries and backoff included, ends within
    ``deadline`` seconds of being sent."""

    def __init__(
        self,
        *,
        deadline: float,
        connect_timeout: float,
        read_timeout: float,
        retries: _StoreRetry,
        **kwargs: Any,
    ) -> None:
        super().__init__(retries=retries, **kwargs)
        self.deadline = deadline
        self.connect_timeout = connect_timeout
        self.read_timeout = read_timeout
        self.store_retries = retries

    def urlopen(self, method, url, redirect=True, **kwargs):
        # A redirect comes back here with its call's retries: same deadline.
        if not isinstance(kwargs.get("retries"), _StoreRetry):
            ends = time.monotonic() + self.deadline
            kwargs["timeout"] = _DeadlineTimeout(
                connect=self.connect_timeout, read=self.read_timeout, deadline=ends
            )
            kwargs["retries"] = self.store_retries.new()
            kwargs["retries"].deadline = ends
        return super().urlopen(method, url, redirect=redirect, **kwargs)


@functools.cache
def _client(
    endpoint: str,
    access_key: str,
    secret_key: str,
    secure: bool,
    region: str,
    connect_timeout: float,
    read_timeout: float,
    max_retries: int,
    deadline: float,
) -> Minio:
    # One client (and so one connection pool) per process and configuration.
    # The client's defaults wait five minutes and retry five times; a page
    # must fail fast instead: short timeouts, few retries, and one deadline per
    # request well below gunicorn's worker timeout (gunicorn.conf.py).
    http_client = _DeadlinePoolManager(
        deadline=deadline,
        connect_timeout=connect_timeout,
        read_timeout=read_timeout,
        maxsize=32,
        cert_reqs="CERT_REQUIRED",
        ca_certs=certifi.where(),
        retries=_StoreRetry(
            total=max_retries,
            backoff_factor=0.1,
            backoff_max=1.0,
            status_forcelist=[500, 502, 503, 504],
            # Idempotent requests only (GET, HEAD, PUT, DELETE): a multipart
            # POST is not sent twice. A Retry-After of the store is not obeyed,
            # the deadline decides.
            allowed_methods=urllib3.Retry.DEFAULT_ALLOWED_METHODS,
            respect_retry_after_header=False,
        ),
    )
    # The region is always given so that the client never asks the server
    # for the bucket's location (that would be a request inside url()).
    return Minio(
        endpoint=endpoint,
        access_key=access_key,
        secret_key=secret_key,
        secure=secure,
        region=region,
        http_client=http_client,
    )


@functools.cache
def _signer(public_url: str, access_key: str, secret_key: str, region: str) -> Minio:
    """A client used only to sign URLs for the host browsers reach.

    Signing is local (HMAC over host, path and query), so the public host
    need not be reachable from the app; this client never sends a request.
    """
    parts = urlsplit(public_url)
    return Minio(
        endpoint=parts.netloc,
        access_key=access_key,
        secret_key=secret_key,
        secure=parts.scheme == "https",
        region=region,
    )


def refuse_writing(mode: str) -> None:
    if _WRITE_FLAGS.intersection(mode):
        raise ValueError(
            f"Stored files open for reading only (mode {mode!r}): they never "
            "change, since they are served with an immutable Cache-Control. "
            "Use save(), which stores new content under a new name."
        )


class ObjectReader(io.BufferedIOBase):
    """A seekable, read-only binary stream over one object.

    Sequential reads come straight from one GET response as it arrives, so a
    large object is never held in memory or on disk. The first
    ``_REWIND_BYTES`` read are kept: going back into them (``File.open()``,
    ``chunks()`` after a ``read()``, Pillow and content sniffing reading a
    header and returning to the start) costs nothing, and a small object is
    fetched once however often it is re-read. A seek back beyond them, or far
    ahead, drops the response and the next read asks for the rest with one
    Range request; a short seek ahead reads on and discards the gap. Seeking
    itself never sends a request (``FileResponse`` measures a file by seeking
    to its end and back).

    Spooling the whole body to a temporary file was the alternative: it would
    write every byte of the common sequential read (the media proxy, copies)
    to disk for nothing. Objects are never rewritten (every save gets a new
    name), so the parts fetched by Range requests belong to the same object.
    """

    def __init__(self, storage: MinIOStorage, key: str, response, size: int) -> None:
        super().__init__()
        self._storage = storage
        self._key = key
        self._response = response
        self._response_at = 0
        self._position = 0
        self._size = size
        self._head = bytearray()

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        self._check_open()
        return self._position

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        self._check_open()
        if whence == io.SEEK_SET:
            target = offset
        elif whence == io.SEEK_CUR:
            target = self._position + offset
        elif whence == io.SEEK_END:
            target = self._size + offset
        else:
            raise ValueError(f"invalid whence ({whence})")
        if target < 0:
            raise ValueError(f"negative seek position {target}")
        self._position = target
        return target

    def read(self, size: int | None = -1) -> bytes:
        self._check_open()
        if size is None or size < 0:
            size = self._size
        end = min(self._position + size, self._size)
        parts = []
        if self._position < min(len(self._head), end):
            kept = bytes(self._head[self._position : end])
            parts.append(kept)
            self._position += len(kept)
        if self._position < end:
            parts.append(self._read_body(end - self._position))
        return b"".join(parts)

    def read1(self, size: int = -1) -> bytes:
        return self.read(size if size >= 0 else io.DEFAULT_BUFFER_SIZE)

    def readinto(self, buffer) -> int:
        data = self.read(len(buffer))
        buffer[: len(data)] = data
        return len(data)

    def close(self) -> None:
        self._release()
        super().close()

    def _check_open(self) -> None:
        if self.closed:
            raise ValueError("I/O operation on closed file.")

    def _read_body(self, count: int) -> bytes:
        if self._response is not None and self._response_at != self._position:
            gap = self._position - self._response_at
            if 0 < gap <= _SKIP_BYTES:
                self._read_response(gap)
            else:
                self._release()
        if self._response is None:
            self._response = self._storage._get(self._key, offset=self._position)
            self._response_at = self._position
        data = self._read_response(count)
        self._position += len(data)
        return data

    def _read_response(self, count: int) -> bytes:
        with self._storage.errors("read", self._key):
            data = self._response.read(count)
        room = _REWIND_BYTES - len(self._head)
        if room > 0 and self._response_at == len(self._head):
            self._head += data[:room]
        self._response_at += len(data)
        return data

    def _release(self) -> None:
        response, self._response = self._response, None
        if response is not None:
            try:
                response.close()
            finally:
                response.release_conn()


class MinIOFile(File):
    """A read-only file over one object, as ``open()`` returns it.

    Binary modes read an :class:`ObjectReader`; text modes (``"r"``) decode
    it as UTF-8 with universal newlines, as a local file opened in text mode.
    ``content_type``, ``etag`` and ``last_modified`` come from the headers of
    the one GET, so callers (the media proxy view) need no extra request.
    """

    def __init__(
        self, response, name: str, storage: MinIOStorage, mode: str = "rb"
    ) -> None:
        self._storage = storage
        self._describe(response)
        self._stream = ObjectReader(storage, name, response, self._size)
        super().__init__(self._stream, name)
        self.mode = "rb"
        self._set_mode(mode)

    def _describe(self, response) -> None:
        headers = response.headers
        self.content_type = headers.get("Content-Type", "application/octet-stream")
        self.etag = headers.get("ETag", "")
        self.last_modified = headers.get("Last-Modified", "")
        self.cache_control = headers.get("Cache-Control", "")
        self._size = int(headers.get("Content-Length", 0))

    def _set_mode(self, mode: str) -> None:
        if isinstance(self.file, io.TextIOWrapper):
            self.file.detach()  # keeps the stream open for the new wrapper
        self.file = (
            self._stream
            if "b" in mode
            else io.TextIOWrapper(self._stream, encoding="utf-8", newline=None)
        )
        self.mode = mode

    @property
    def size(self) -> int:
        return self._size

    def open(self, mode: str | None = None) -> MinIOFile:
        """Rewind an open file; fetch a closed one again, in ``mode`` if
        given (File.open() ignores the mode of a file still open, too)."""
        if not self.closed:
            self.seek(0)
            return self
        mode = mode or self.mode
        refuse_writing(mode)
        response = self._storage._get(self.name)
        self._describe(response)
        self._stream = ObjectReader(self._storage, self.name, response, self._size)
        self.file = self._stream
        self._set_mode(mode)
        return self

    def close(self) -> None:
        self.file.close()

    @property
    def closed(self) -> bool:
        return not self.file or self.file.closed


class _ContentError(Exception):
    """An error of the content being saved, carried through the client so that
    it surfaces as itself, never as the storage being unavailable."""

    def __init__(self, error: Exception) -> None:
        super().__init__(str(error))
        self.error = error


class _UploadStream:
    """What put_object reads: the content to save, as bytes from its start.

    Text (``ContentFile("...")``, ``StringIO``, a file opened in text mode) is
    encoded as UTF-8, as FileSystemStorage writes it. ``length`` is known only
    for seekable binary content, measured on the stream; otherwise it is -1
    and the client streams it (one PUT when it fits in one part, a multipart
    upload otherwise). Content that cannot seek is read once; the bytes of its first
    part are kept, so that the upload can start again after the first save
    creates the bucket.
    """

    def __init__(self, content: Any) -> None:
        read = getattr(content, "read", None)
        if not callable(read):
            raise TypeError(
                "The content to save must be a File or a file-like object with "
                f"read(), not {type(getattr(content, 'file', content)).__name__}; "
                "wrap bytes or str in ContentFile."
            )
        self._content = content
        self._seekable = _is_seekable(content)
        self._encoder = None
        self._pending = bytearray()
        self._replay: bytearray | None = None if self._seekable else bytearray()
        self._rewind_source()
        size = self._size_measured() if self._seekable else -1
        first = self._source(content.read, 16)
        self._encoder = (
            codecs.getincrementalencoder("utf-8")() if isinstance(first, str) else None
        )
        self._take(first)
        self.head = bytes(self._pending)
        self.length = size if self._encoder is None else -1

    def rewind(self) -> None:
        if self._seekable:
            self._rewind_source()
            self._pending = bytearray()
            if self._encoder is not None:
                self._encoder.reset()
        elif self._replay is not None:
            self._pending = bytearray(self._replay)
        else:
            raise ValueError("The content cannot seek and was read already.")

    def read(self, size: int = -1) -> bytes:
        if size > 0 and not self._pending and self._encoder is self._replay is None:
            # Binary content with nothing to keep for a replay (a file, an
            # upload): its bytes go to the client as they are, not copied.
            chunk = self._source(self._content.read, size)
            if isinstance(chunk, bytes):
                return chunk
            self._take(chunk)
        while size < 0 or len(self._pending) < size:
            wanted = _PART_SIZE if size < 0 else max(size - len(self._pending), 8192)
            chunk = self._source(self._content.read, wanted)
            if not chunk:
                break
            self._take(chunk)
        if size < 0:
            size = len(self._pending)
        data = bytes(self._pending[:size])
        del self._pending[:size]
        return data

    def _take(self, chunk) -> None:
        if isinstance(chunk, str):
            if self._encoder is None:
                raise TypeError("The content's read() mixed str and bytes.")
            chunk = self._encoder.encode(chunk)
        elif not isinstance(chunk, bytes | bytearray | memoryview):
            raise TypeError(
                f"The content's read() returned {type(chunk).__name__}, not bytes "
                "or str."
            )
        self._pending += chunk
        if self._replay is not None:
            self._replay += chunk
            if len(self._replay) > _PART_SIZE + 1:
                self._replay = None  # the first request went through already

    def _size_measured(self) -> int:
        """The content's length, from the stream itself (-1 if it cannot
        tell), not ``File.size``: that may be another file's, as a GzipFile's
        name is the compressed file's, and a tar member's the archive's."""
        try:
            self._content.seek(0, os.SEEK_END)
            size = self._content.tell()
        except (OSError, ValueError, AttributeError, TypeError):
            size = -1  # a stream that seeks only from its start
        self._rewind_source()
        return size if isinstance(size, int) and size >= 0 else -1

    def _rewind_source(self) -> None:
        if self._seekable:
            self._source(self._content.seek, 0)

    @staticmethod
    def _source(call, *args):
        try:
            return call(*args)
        except Exception as exc:
            raise _ContentError(exc) from exc


def _is_seekable(content: Any) -> bool:
    try:
        return bool(content.seekable())
    except (AttributeError, ValueError, OSError):
        # Not a file object of io's kind: seekable if it can seek at all.
        return callable(getattr(content, "seek", None)) and callable(
            getattr(content, "tell", None)
        )


@deconstructible(path="storage.backends.MinIOStorage")
class MinIOStorage(Storage):
    """Files in an S3 bucket through the ``minio`` client.

    Every option defaults to the ``MINIO_*`` setting of the same meaning and can
    be given in ``STORAGES[alias]["OPTIONS"]``. Constructing the storage
    contacts nothing; the client is built on first use, once per process.
    """

    def __init__(
        self,
        *,
        endpoint: str | None = None,
        access_key: str | None = None,
        secret_key: str | None = None,
        bucket_name: str | None = None,
        use_ssl: bool | None = None,
        region: str | None = None,
        public_url: str | None = None,
        url_mode: str | None = None,
        presigned_expiry: int | None = None,
        cache_control: str = IMMUTABLE_CACHE_CONTROL,
        connect_timeout: float | None = None,
        read_timeout: float | None = None,
        max_retries: int | None = None,
        deadline: float | None = None,
        media_url: str | None = None,
    ) -> None:
        def pick(value, setting, default=None):
            return value if value is not None else getattr(settings, setting, default)

        def source(value, setting: str, option: str) -> str:
            # Errors name what the operator has to fix: the environment
            # variable, or the option in STORAGES when it was given there.
            return setting if value is None else f"STORAGES OPTIONS['{option}']"

        self.endpoint = config.validate_endpoint(
            pick(endpoint, "MINIO_ENDPOINT", "localhost:9000"),
            variable=source(endpoint, "MINIO_ENDPOINT", "endpoint"),
        )
        self.access_key = pick(access_key, "MINIO_ACCESS_KEY", "")
        self.secret_key = pick(secret_key, "MINIO_SECRET_KEY", "")
        config.validate_credentials(self.access_key, self.secret_key)
        self.bucket_name = config.validate_bucket_name(
            pick(bucket_name, "MINIO_BUCKET_NAME", "crypto-exchange"),
            variable=source(bucket_name, "MINIO_BUCKET_NAME", "bucket_name"),
        )
        self.use_ssl = bool(pick(use_ssl, "MINIO_USE_SSL", False))
        self.region = config.validate_region(
            pick(region, "MINIO_REGION", "us-east-1"),
            variable=source(region, "MINIO_REGION", "region"),
        )
        self.url_mode = config.validate_url_mode(
            pick(url_mode, "MINIO_MEDIA_URL_MODE", "public"),
            variable=source(url_mode, "MINIO_MEDIA_URL_MODE", "url_mode"),
        )
        self.public_url = config.validate_public_url(
            pick(public_url, "MINIO_PUBLIC_URL", ""),
            url_mode=self.url_mode,
            variable=source(public_url, "MINIO_PUBLIC_URL", "public_url"),
        ) or (("https://" if self.use_ssl else "http://") + self.endpoint)
        self.presigned_expiry = config.validate_presigned_expiry(
            int(pick(presigned_expiry, "MINIO_PRESIGNED_EXPIRY", 3600)),
            variable=source(
                presigned_expiry, "MINIO_PRESIGNED_EXPIRY", "presigned_expiry"
            ),
        )
        self.cache_control = cache_control
        self.connect_timeout = config.validate_timeout(
            float(pick(connect_timeout, "MINIO_CONNECT_TIMEOUT", 3.0)),
            variable=source(
                connect_timeout, "MINIO_CONNECT_TIMEOUT", "connect_timeout"
            ),
        )
        self.read_timeout = config.validate_timeout(
            float(pick(read_timeout, "MINIO_READ_TIMEOUT", 10.0)),
            variable=source(read_timeout, "MINIO_READ_TIMEOUT", "read_timeout"),
        )
        self.max_retries = config.validate_retries(
            int(pick(max_retries, "MINIO_MAX_RETRIES", 2)),
            variable=source(max_retries, "MINIO_MAX_RETRIES", "max_retries"),
        )
        self.deadline = config.validate_deadline(
            float(pick(deadline, "MINIO_DEADLINE", config.DEFAULT_DEADLINE)),
            variable=source(deadline, "MINIO_DEADLINE", "deadline"),
        )
        self.media_url = pick(media_url, "MEDIA_URL", "/media/")
        if self.media_url and not self.media_url.endswith("/"):
            self.media_url += "/"
        self._url_prefix = (
            self.media_url
            if self.url_mode == "proxy"
            else f"{self.public_url}/{self.bucket_name}/"
        )
        self._bucket_lock = threading.Lock()
        setting_changed.connect(self._setting_changed)

    def _setting_changed(self, *, setting: str, **kwargs: Any) -> None:
        # Options not given explicitly follow the settings, as
        # FileSystemStorage follows MEDIA_ROOT and MEDIA_URL (override_settings).
        if setting == "MEDIA_URL" or setting.startswith("MINIO_"):
            args, options = self._constructor_args
            self.__init__(*args, **options)

    def __getstate__(self) -> dict[str, Any]:
        # Django caches model instances, and with them what they reference.
        state = self.__dict__.copy()
        del state["_bucket_lock"]
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._bucket_lock = threading.Lock()
        setting_changed.connect(self._setting_changed)

    # --- plumbing ----------------------------------------------------------

    @property
    def client(self) -> Minio:
        return _client(
            self.endpoint,
            self.access_key,
            self.secret_key,
            self.use_ssl,
            self.region,
            self.connect_timeout,
            self.read_timeout,
            self.max_retries,
            self.deadline,
        )

    def _unavailable(self, operation: str, name: str, reason: str, hint: str):
        target = f" '{name}'" if name else ""
        return StorageUnavailable(
            f"Object storage ({self.endpoint}, bucket '{self.bucket_name}') could "
            f"not {operation}{target}: {reason}. {hint}",
            operation=operation,
            endpoint=self.endpoint,
            bucket=self.bucket_name,
            key=name,
            reason=reason,
        )

    @contextmanager
    def errors(self, operation: str, name: str = "") -> Iterator[None]:
        """Turn client and transport errors into ``StorageUnavailable``.

        Public, for code that calls ``storage.client`` directly (bucket setup,
        health checks, migrations)::

            with storage.errors("check the bucket"):
                storage.client.bucket_exists(storage.bucket_name)

        ``operation`` and ``name`` go into the message ("could not check the
        bucket"). S3's "no such key/bucket" errors pass through for the caller
        to decide. An answer that is not S3's (a web page where S3's XML
        should be) is ``NotAnS3Api``, saying to check MINIO_ENDPOINT.
        """
        try:
            yield
        except S3Error as exc:
            if exc.code in _MISSING_OBJECT_CODES:
                raise
            if exc.code in _CREDENTIAL_CODES:
                error = self._unavailable(
                    operation,
                    name,
                    f"access refused ({exc.code})",
                    "Check MINIO_ACCESS_KEY and MINIO_SECRET_KEY, and that this "
                    f"key may use bucket '{self.bucket_name}'.",
                )
            else:
                error = self._unavailable(
                    operation,
                    name,
                    f"the server answered {exc.code}: {exc.message}",
                    "Check the bucket and the server's logs.",
                )
        except (ServerError, InvalidResponseError, ValueError, SyntaxError) as exc:
            if isinstance(exc, ValueError | SyntaxError):
                if not _unreadable_answer(exc):
                    raise
                exc = NotAnS3Api("it answered with something other than S3's XML")
            elif isinstance(exc, InvalidResponseError):
                exc = NotAnS3Api(
                    f"it answered {exc._code} with "
                    f"{exc._content_type or 'no Content-Type'}, not S3's XML"
                )
            error = self._unavailable(
                operation,
                name,
                f"unexpected answer from the server ({exc})",
                "Check that MINIO_ENDPOINT points at an S3 API (not the web "
                "console) and the server's logs.",
            )
        except urllib3.exceptions.MaxRetryError as exc:
            reason = exc.reason
            if isinstance(reason, urllib3.exceptions.ResponseError):
                text, hint = (
                    "the server kept answering with errors (5xx)",
                    "Check the server's health and logs.",
                )
            else:
                text, hint = (
                    f"cannot connect ({_describe(reason)})",
                    "Check MINIO_ENDPOINT and MINIO_USE_SSL, and that the server "
                    "is running and reachable from this host.",
                )
            error = self._unavailable(operation, name, text, hint)
        except urllib3.exceptions.ReadTimeoutError:
            error = self._unavailable(
                operation,
                name,
                "the server did not answer in time",
                "It accepts connections but does not answer: check that it is "
                "not paused or overloaded, and its logs.",
            )
        except (urllib3.exceptions.HTTPError, MinioException, OSError) as exc:
            if isinstance(exc, FileNotFoundError):
                raise
            error = self._unavailable(
                operation,
                name,
                _describe(exc),
                "Check MINIO_ENDPOINT and that the server is running.",
            )
        else:
            return
        # One greppable line per failure (settings.LOGGING renders the extra
        # fields as key=value). Credentials never reach it: the reasons are
        # built from error codes and endpoints, not from the client's config.
        logger.warning(
            "storage failure",
            extra={
                "operation": error.operation,
                "key": error.key,
                "bucket": error.bucket,
                "endpoint": error.endpoint,
                "reason": error.reason,
            },
        )
        raise error from None

    def _ensure_bucket(self) -> None:
        with self._bucket_lock, self.errors("create the bucket"):
            bucket_ensure(
                client=self.client, bucket_name=self.bucket_name, url_mode=self.url_mode
            )

    def _get(self, name: str, offset: int = 0) -> urllib3.BaseHTTPResponse:
        return self._object_call(self.client.get_object, "read", name, offset=offset)

    def _stat(self, name: str):
        return self._object_call(self.client.stat_object, "look up", name)

    def _object_call(self, call, operation: str, name: str, **options: Any):
        """Call the client on one object; a missing one is FileNotFoundError."""
        key = object_key(name)
        try:
            check_key_length(key)
        except SuspiciousFileOperation:
            # No object can have such a name: the server would answer 400.
            raise FileNotFoundError(f"No such object: '{key}'") from None
        try:
            with self.errors(operation, key):
                return call(bucket_name=self.bucket_name, object_name=key, **options)
        except S3Error as exc:
            raise FileNotFoundError(f"No such object: '{key}'") from exc

    # --- Django's storage API ------------------------------------------------

    def _open(self, name: str, mode: str = "rb") -> MinIOFile:
        refuse_writing(mode)
        key = object_key(name)
        return MinIOFile(self._get(key), key, self, mode)

    def _save(self, name: str, content: File) -> str:
        key = object_key(name)
        check_key_length(key)
        try:
            body = _UploadStream(content)
            # The stored type follows the content, never the upload's own
            # content_type: a browser's claim could make an avatar HTML.
            content_type = sniff_content_type(body.head, key)

            def put():
                body.rewind()
                return self.client.put_object(
                    bucket_name=self.bucket_name,
                    object_name=key,
                    data=body,
                    length=body.length,
                    content_type=content_type,
                    metadata={"Cache-Control": self.cache_control},
                    part_size=_PART_SIZE if body.length < 0 else 0,
                )

            try:
                with self.errors("save", key):
                    put()
            except S3Error as exc:
                if exc.code != "NoSuchBucket":
                    raise self._unavailable(
                        "save", key, exc.code, "Check the bucket."
                    ) from exc
                # First write to a bucket that does not exist yet: create it
                # once, then write. Checking before every write would cost a
                # request.
                self._ensure_bucket()
                with self.errors("save", key):
                    put()
        except _ContentError as exc:
            raise exc.error from None
        return key

    def get_available_name(self, name: str, max_length: int | None = None) -> str:
        """A new random name every time (``storage.names``); the server is
        never asked, so no HEAD-then-PUT race exists."""
        return random_name(object_key(name), max_length)

    def generate_filename(self, filename: str) -> str:
        return object_key(super().generate_filename(filename))

    def exists(self, name: str) -> bool:
        if isinstance(name, str) and "\x00" in name:
            return False  # as on disk: no file can have such a name
        try:
            self._stat(name)
        except FileNotFoundError:
            return False
        return True

    def delete(self, name: str) -> None:
        if not name:
            raise ValueError("The name must be given to delete().")
        key = object_key(name)
        try:
            with self.errors("delete", key):
                self.client.remove_object(bucket_name=self.bucket_name, object_name=key)
        except S3Error:
            pass  # Missing object or bucket: already gone, as asked.

    def size(self, name: str) -> int:
        return self._stat(name).size

    def get_modified_time(self, name: str) -> datetime:
        modified = self._stat(name).last_modified
        if settings.USE_TZ:
            return modified
        return timezone.make_naive(modified)

    def listdir(self, path: str) -> tuple[list[str], list[str]]:
        if isinstance(path, os.PathLike):
            path = pathlib.PurePath(path).as_posix()
        if path.startswith("/"):
            object_key(path)  # refused, as an absolute name is everywhere
        refuse_nul(path)
        # The root for "", "." or "/./"; ".." or "a/../b" are refused.
        prefix = normalize_key(path) + "/" if _segments(path) else ""
        directories, files = [], []
        try:
            with self.errors("list", prefix):
                for obj in self.client.list_objects(
                    bucket_name=self.bucket_name, prefix=prefix, recursive=False
                ):
                    relative = obj.object_name[len(prefix) :]
                    if not relative.strip("/"):
                        continue  # the folder itself, as some servers list it
                    if obj.is_dir:
                        directories.append(relative.rstrip("/"))
                    else:
                        files.append(relative)
        except S3Error as exc:
            if exc.code == "NoSuchBucket":
                return [], []
            raise
        return directories, files

    def url(self, name: str | None) -> str:
        if name is None or name == "":
            return self._url_prefix  # the base, as FileSystemStorage.url(None)
        if self.url_mode == "presigned":
            return self._presigned_url(normalize_key(name))
        # public and proxy: a fixed prefix and the quoted key.
        return self._url_prefix + _quoted_key(name)

    def _presigned_url(self, key: str) -> str:
        # Round the signing time down to half the expiry: the same URL is
        # handed out for a while, so browsers can cache the image, and each
        # URL still stays valid for at least half the expiry after it is given.
        window = max(self.presigned_expiry // 2, 1)
        now = int(time.time())
        signed_at = datetime.fromtimestamp(now - now % window, tz=UTC)
        return _signer(
            self.public_url, self.access_key, self.secret_key, self.region
        ).presigned_get_object(
            bucket_name=self.bucket_name,
            object_name=key,
            expires=timedelta(seconds=self.presigned_expiry),
            request_date=signed_at,
        )

    def endpoint_url(
        self,
        name: str,
        *,
        expires: int,
        method: str = "GET",
        response_headers: dict[str, str] | None = None,
    ) -> str:
        """A presigned URL for ``MINIO_ENDPOINT`` itself, not the public host:
        for a proxy beside the app that fetches objects on its behalf (nginx
        with MEDIA_ACCEL_REDIRECT). Valid for ``method`` only, for ``expires``
        seconds from now; ``response_headers`` (``response-cache-control``...)
        are signed in, and the store answers with them. Signed locally: no
        request is made.
        """
        key = normalize_key(name)
        check_key_length(key)
        scheme = "https" if self.use_ssl else "http"
        return _signer(
            f"{scheme}://{self.endpoint}", self.access_key, self.secret_key, self.region
        ).get_presigned_url(
            method,
            bucket_name=self.bucket_name,
            object_name=key,
            expires=timedelta(seconds=expires),
            response_headers=response_headers,
        )


# Where the minio client reads an answer's XML: a ValueError raised there
# (an element missing, a body that is not UTF-8) means the answer was not S3's.
_XML_READERS = frozenset({"find", "findtext", "fromxml", "unmarshal"})


def _unreadable_answer(exc: ValueError | SyntaxError) -> bool:
    """Whether the client failed to read a success answer as S3's XML, as it
    does with a web server that answers 200 to everything (MinIO's console):
    ``xml.etree``'s ParseError for a body that is not XML, a ValueError for
    XML without S3's elements. Other ValueErrors (a caller's argument, the
    content being saved) are not."""
    if isinstance(exc, ElementTree.ParseError):
        return True
    if not isinstance(exc, ValueError):
        return False
    in_client = [
        frame.f_code.co_name
        for frame, _line in traceback.walk_tb(exc.__traceback__)
        if frame.f_globals.get("__name__", "").startswith("minio.")
    ]
    if not in_client:
        return False
    innermost = in_client[-1]
    return (
        innermost in _XML_READERS
        or innermost.startswith(("parse_", "from_"))
        or isinstance(exc, UnicodeDecodeError)
    )


def _describe(exc: BaseException | None) -> str:
    if exc is None:
        return "no answer"
    text = str(exc)
    # urllib3 wraps errors as "<object at 0x..>: Failed to establish ... [Errno 111]
    # Connection refused"; the end is the part a person can act on.
    if ": " in text:
        text = text.rsplit(": ", 1)[-1]
    return text or type(exc).__name__
