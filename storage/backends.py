"""MinIOStorage: a Django storage backend on the official ``minio`` client.

It speaks plain S3, so it works against MinIO, SeaweedFS or any S3-compatible
server. Object keys are the relative paths that ``media/`` would use
(``profile_pics/...``, ``token_logo/...``, ``default_avatar.jpg``).

Network calls per operation: ``save`` one PUT (multipart above 5 MiB),
``open`` one GET whose body is streamed, ``exists``/``size``/
``get_modified_time`` one HEAD, ``delete`` one DELETE, ``url`` none.
"""

from __future__ import annotations

import functools
import logging
import mimetypes
import posixpath
import secrets
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import quote, urlsplit

import certifi
import urllib3
from django.conf import settings
from django.core.exceptions import SuspiciousFileOperation
from django.core.files.base import File
from django.core.files.storage import Storage
from django.utils import timezone
from django.utils.deconstruct import deconstructible
from minio import Minio
from minio.error import InvalidResponseError, MinioException, S3Error, ServerError

from storage import config
from storage.exceptions import StorageUnavailable

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
    if (
        name
        and name[0] not in "/."
        and name[-1] != "/"
        and "\\" not in name
        and "//" not in name
        and "/." not in name
    ):
        return name  # the common case, on every url(): already a clean key
    parts = [
        part for part in name.replace("\\", "/").split("/") if part not in ("", ".")
    ]
    if any(part == ".." for part in parts):
        raise SuspiciousFileOperation(f"Detected path traversal attempt in '{name}'")
    if not parts:
        raise SuspiciousFileOperation(f"Could not derive an object key from '{name}'")
    return "/".join(parts)


@functools.lru_cache(maxsize=8192)
def _quoted_key(name: str) -> str:
    # Pages render the same avatars and logos over and over: url() is on the
    # hot path of every list, so the checked, quoted key is remembered.
    return quote(normalize_key(name))


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
) -> Minio:
    # One client (and so one connection pool) per process and configuration.
    # The client's defaults wait five minutes and retry five times; a page
    # must fail fast instead, so the timeouts and retries are short.
    http_client = urllib3.PoolManager(
        timeout=urllib3.Timeout(connect=connect_timeout, read=read_timeout),
        maxsize=32,
        cert_reqs="CERT_REQUIRED",
        ca_certs=certifi.where(),
        retries=urllib3.Retry(
            total=max_retries,
            backoff_factor=0.1,
            status_forcelist=[500, 502, 503, 504],
            allowed_methods=None,
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


class MinIOFile(File):
    """A read-only file whose content streams from one GET response.

    ``content_type``, ``etag`` and ``last_modified`` come from the response
    headers, so callers (the media proxy view) need no extra request.
    """

    def __init__(self, response: urllib3.BaseHTTPResponse, name: str, storage) -> None:
        super().__init__(response, name)
        self._storage = storage
        self.mode = "rb"
        headers = response.headers
        self.content_type = headers.get("Content-Type", "application/octet-stream")
        self.etag = headers.get("ETag", "")
        self.last_modified = headers.get("Last-Modified", "")
        self.cache_control = headers.get("Cache-Control", "")
        self._size = int(headers.get("Content-Length", 0))

    @property
    def size(self) -> int:
        return self._size

    def chunks(self, chunk_size: int | None = None) -> Iterator[bytes]:
        # The body is a network stream: it cannot seek back to the start, so
        # File.chunks()'s rewind is skipped and the stream read in order.
        chunk_size = chunk_size or self.DEFAULT_CHUNK_SIZE
        with self._storage._errors("read", self.name):
            yield from self.file.stream(chunk_size)

    def read(self, *args: Any) -> bytes:
        with self._storage._errors("read", self.name):
            return self.file.read(*args)

    def open(self, mode: str | None = None) -> MinIOFile:
        if self.closed:
            self.file = self._storage._get(self.name)
        return self

    def close(self) -> None:
        try:
            self.file.close()
        finally:
            self.file.release_conn()

    @property
    def closed(self) -> bool:
        return not self.file or self.file.closed


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
        self.region = pick(region, "MINIO_REGION", "us-east-1")
        self.url_mode = config.validate_url_mode(
            pick(url_mode, "MINIO_MEDIA_URL_MODE", "public"),
            variable=source(url_mode, "MINIO_MEDIA_URL_MODE", "url_mode"),
        )
        self.public_url = config.validate_public_url(
            pick(public_url, "MINIO_PUBLIC_URL", ""),
            url_mode=self.url_mode,
            variable=source(public_url, "MINIO_PUBLIC_URL", "public_url"),
        ) or (("https://" if self.use_ssl else "http://") + self.endpoint)
        self.presigned_expiry = int(
            pick(presigned_expiry, "MINIO_PRESIGNED_EXPIRY", 3600)
        )
        self.cache_control = cache_control
        self.connect_timeout = float(
            pick(connect_timeout, "MINIO_CONNECT_TIMEOUT", 3.0)
        )
        self.read_timeout = float(pick(read_timeout, "MINIO_READ_TIMEOUT", 20.0))
        self.max_retries = int(pick(max_retries, "MINIO_MAX_RETRIES", 2))
        self.media_url = pick(media_url, "MEDIA_URL", "/media/")
        self._url_prefix = (
            self.media_url
            if self.url_mode == "proxy"
            else f"{self.public_url}/{self.bucket_name}/"
        )
        self._bucket_lock = threading.Lock()

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
    def _errors(self, operation: str, name: str = "") -> Iterator[None]:
        """Turn client and transport errors into StorageUnavailable.

        S3 'no such key/bucket' errors pass through for the caller to decide.
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
        except (ServerError, InvalidResponseError) as exc:
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
        from storage.bucket import bucket_ensure

        with self._bucket_lock, self._errors("create the bucket"):
            bucket_ensure(
                client=self.client, bucket_name=self.bucket_name, url_mode=self.url_mode
            )

    def _get(self, name: str) -> urllib3.BaseHTTPResponse:
        return self._object_call(self.client.get_object, "read", name)

    def _stat(self, name: str):
        return self._object_call(self.client.stat_object, "look up", name)

    def _object_call(self, call, operation: str, name: str):
        """Call the client on one object; a missing one is FileNotFoundError."""
        key = normalize_key(name)
        try:
            with self._errors(operation, key):
                return call(bucket_name=self.bucket_name, object_name=key)
        except S3Error as exc:
            raise FileNotFoundError(f"No such object: '{key}'") from exc

    # --- Django's storage API ------------------------------------------------

    def _open(self, name: str, mode: str = "rb") -> MinIOFile:
        if any(flag in mode for flag in "wa+x"):
            raise ValueError("MinIOStorage opens files for reading only; use save().")
        return MinIOFile(self._get(name), normalize_key(name), self)

    def _save(self, name: str, content: File) -> str:
        key = normalize_key(name)
        if hasattr(content, "seek") and getattr(content, "seekable", lambda: True)():
            content.seek(0)
            head = content.read(16)
            content.seek(0)
        else:
            head = b""
        content_type = sniff_content_type(head, key)
        try:
            length = content.size
        except (AttributeError, OSError, TypeError):
            length = None
        if length is None:
            length = -1

        def put():
            if hasattr(content, "seek"):
                content.seek(0)
            return self.client.put_object(
                bucket_name=self.bucket_name,
                object_name=key,
                data=content,
                length=length,
                content_type=content_type,
                metadata={"Cache-Control": self.cache_control},
                part_size=_PART_SIZE if length < 0 else 0,
            )

        try:
            with self._errors("save", key):
                put()
        except S3Error as exc:
            if exc.code != "NoSuchBucket":
                raise self._unavailable(
                    "save", key, exc.code, "Check the bucket."
                ) from exc
            # First write to a bucket that does not exist yet: create it once,
            # then write. Checking before every write would cost a request.
            self._ensure_bucket()
            with self._errors("save", key):
                put()
        return key

    def get_available_name(self, name: str, max_length: int | None = None) -> str:
        """Add a random component to every name; never check the server.

        Several app servers may save the same name at the same moment: with a
        random suffix they cannot collide, and no HEAD-then-PUT race exists.
        """
        key = normalize_key(name)
        dir_name, file_name = posixpath.split(key)
        stem, ext = posixpath.splitext(file_name)
        if ext and len(ext) > 16:
            stem, ext = file_name, ""
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
        return f"{prefix}{stem or 'file'}{suffix}{ext}"

    def generate_filename(self, filename: str) -> str:
        return normalize_key(super().generate_filename(filename))

    def exists(self, name: str) -> bool:
        try:
            self._stat(name)
        except FileNotFoundError:
            return False
        return True

    def delete(self, name: str) -> None:
        if not name:
            raise ValueError("The name must be given to delete().")
        key = normalize_key(name)
        try:
            with self._errors("delete", key):
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
        prefix = normalize_key(path) + "/" if path.strip("/\\.") else ""
        directories, files = [], []
        try:
            with self._errors("list", prefix):
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

    def url(self, name: str) -> str:
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


def _describe(exc: BaseException | None) -> str:
    if exc is None:
        return "no answer"
    text = str(exc)
    # urllib3 wraps errors as "<object at 0x..>: Failed to establish ... [Errno 111]
    # Connection refused"; the end is the part a person can act on.
    if ": " in text:
        text = text.rsplit(": ", 1)[-1]
    return text or type(exc).__name__
