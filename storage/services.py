"""Operations on the object store as a whole (bootstrap and checks)."""

from __future__ import annotations

import contextlib
import io
import logging
import secrets
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from django.conf import settings
from django.core.files.base import File
from django.db import transaction
from django.db.models import Model
from django_cleanup import cleanup
from minio import Minio
from minio.error import S3Error

from storage.backends import MinIOStorage, sniff_content_type
from storage.bucket import (
    BucketPolicyUnsafe,
    NotAnS3Api,
    bucket_ensure,
    bucket_lifecycle_apply,
    bucket_policy_apply,
)
from storage.config import PUBLIC_MEDIA_FILES
from storage.exceptions import StorageUnavailable

logger = logging.getLogger(__name__)

DEFAULT_AVATAR_NAME = PUBLIC_MEDIA_FILES[0]
# The default avatar keeps its name for ever, so browsers may cache it only
# for a while: replacing the file must show within a day.
DEFAULT_AVATAR_CACHE_CONTROL = "public, max-age=86400"
# Keys of the objects setup_minio writes and removes again to test the store,
# and of the one the readiness check asks for, which is never written.
PROBE_PREFIX = ".setup-check/"


@dataclass
class BucketReport:
    lines: list[str] = field(default_factory=list)

    def add(self, check: str, outcome: str) -> None:
        self.lines.append(f"{check:<14} {outcome}")


class BucketSetupFailed(Exception):
    """The store answers, but setup cannot finish as it is: the message says
    what to fix. ``report`` holds what was checked before."""

    def __init__(self, message: str, *, report: BucketReport) -> None:
        super().__init__(message)
        self.report = report


class DefaultAvatarMissing(BucketSetupFailed):
    """The bucket has no default avatar and there is no file to upload:
    every user without a picture of their own would show a broken image."""


def default_avatar_files() -> list[Path]:
    """Where the default avatar to upload is looked for, in order: MEDIA_ROOT
    (what the app served from local disk), then the checkout's ``media/``,
    which ships one."""
    shipped = Path(settings.BASE_DIR) / "media" / DEFAULT_AVATAR_NAME
    in_media_root = Path(settings.MEDIA_ROOT) / DEFAULT_AVATAR_NAME
    return [in_media_root] if in_media_root == shipped else [in_media_root, shipped]


def bucket_setup(
    *, storage: MinIOStorage, default_avatar: Path | Sequence[Path]
) -> BucketReport:
    """Check the connection, credentials and bucket; create what is missing.

    Once the store has shown it is an S3 API (the test object), a lifecycle
    rule has it abort multipart uploads left unfinished
    (``bucket_lifecycle_apply``). The default avatar is uploaded from the
    first of ``default_avatar`` that exists, unless the bucket holds one
    stored with the app's Content-Type and Cache-Control.
    Idempotent. Raises StorageUnavailable with an actionable message when
    the server is unreachable, refuses the credentials, cannot make the
    bucket or does not answer as an S3 API does;
    BucketSetupFailed when a statement of the bucket policy lets anyone reach
    private files (in every URL mode; nothing is changed then), and its
    DefaultAvatarMissing when neither the bucket nor the disk has the avatar.
    """
    report = BucketReport()
    client = storage.client
    bucket = storage.bucket_name
    report.add(
        "endpoint", f"{storage.endpoint} (ssl {'on' if storage.use_ssl else 'off'})"
    )

    with storage.errors("check the bucket"):
        existed = client.bucket_exists(bucket_name=bucket)
    report.add("connection", "ok, credentials accepted")
    if existed:
        report.add("bucket", f"{bucket} exists")
    else:
        with storage.errors("create the bucket"):
            created = bucket_ensure(
                client=client, bucket_name=bucket, url_mode=storage.url_mode
            )
        report.add("bucket", f"{bucket} {'created' if created else 'exists'}")

    try:
        with storage.errors("set the bucket policy"):
            policy = bucket_policy_apply(
                client=client, bucket_name=bucket, url_mode=storage.url_mode
            )
    except BucketPolicyUnsafe as exc:
        report.add(
            "access",
            f"{storage.url_mode} URLs; the bucket policy makes private files "
            "public: nothing changed",
        )
        raise BucketSetupFailed(str(exc), report=report) from exc
    report.add("access", f"{storage.url_mode} URLs; {policy}")

    _write_probe(storage)
    report.add("write", "ok (test object written, read back and removed)")

    with storage.errors("set the lifecycle rule"):
        uploads = bucket_lifecycle_apply(client=client, bucket_name=bucket)
    report.add("uploads", uploads)

    candidates = (
        [default_avatar] if isinstance(default_avatar, Path) else list(default_avatar)
    )
    outcome = _default_avatar_upload(storage, candidates)
    if outcome is None:
        report.add("default avatar", f"{DEFAULT_AVATAR_NAME} missing")
        raise DefaultAvatarMissing(
            f"The bucket '{storage.bucket_name}' has no {DEFAULT_AVATAR_NAME}, and "
            f"there is none to upload ({' or '.join(map(str, candidates))} not "
            "found): every user without a picture of their own would show a "
            f"broken image. Put {DEFAULT_AVATAR_NAME} in MEDIA_ROOT (the "
            "repository ships one in media/) and run this again.",
            report=report,
        )
    report.add("default avatar", outcome)
    return report


def _write_probe(storage: MinIOStorage) -> None:
    """Write a test object, read it back and remove it (PUT, GET, DELETE).

    Reading it back is what tells an S3 API from a web server that answers
    200 to every method (MINIO_ENDPOINT on MinIO's console port): that one
    takes the PUT and the DELETE as well.
    """
    client = storage.client
    bucket = storage.bucket_name
    probe = f"{PROBE_PREFIX}{secrets.token_hex(8)}"
    payload = secrets.token_hex(8).encode()
    with storage.errors("write a test object"):
        written = client.put_object(
            bucket_name=bucket,
            object_name=probe,
            data=io.BytesIO(payload),
            length=len(payload),
        )
        if not written.etag:
            raise NotAnS3Api("it answered a PUT without an ETag")
    try:
        with storage.errors("read the test object back"):
            if _object_read(client, bucket, probe, limit=len(payload) + 1) != payload:
                raise NotAnS3Api("the test object read back is not what was written")
    except StorageUnavailable:
        # Best effort: the error to report is the one above.
        with contextlib.suppress(StorageUnavailable):
            _probe_remove(storage, probe)
        raise
    _probe_remove(storage, probe)


def _object_read(client: Minio, bucket: str, key: str, *, limit: int) -> bytes:
    """Up to ``limit`` bytes of an object (one GET)."""
    try:
        answer = client.get_object(bucket_name=bucket, object_name=key)
    except S3Error as exc:
        if exc.code not in ("NoSuchKey", "NoSuchBucket"):
            raise
        raise NotAnS3Api("the test object just written is not there") from None
    try:
        return answer.read(limit)
    finally:
        answer.close()
        answer.release_conn()


def _probe_remove(storage: MinIOStorage, probe: str) -> None:
    with storage.errors("remove the test object"):
        storage.client.remove_object(bucket_name=storage.bucket_name, object_name=probe)


def _default_avatar_upload(storage: MinIOStorage, sources: list[Path]) -> str | None:
    """What was done about the default avatar; None when the bucket has none
    and none of ``sources`` exists.

    One the bucket holds is uploaded again when its Content-Type or
    Cache-Control is not what the app gives it (``mc cp`` of media/ leaves
    none, or a generic type): browsers would fetch it on every page.
    """
    client = storage.client
    source = next((path for path in sources if path.is_file()), None)
    try:
        with storage.errors("look up", DEFAULT_AVATAR_NAME):
            stored = client.stat_object(
                bucket_name=storage.bucket_name, object_name=DEFAULT_AVATAR_NAME
            )
    except S3Error:
        stored = None
    if stored is None and source is None:
        return None
    head = b""
    if source is not None:
        with source.open("rb") as avatar:
            head = avatar.read(16)
    wanted = {
        # What media_to_bucket gives it too, from the content.
        "Content-Type": sniff_content_type(head, DEFAULT_AVATAR_NAME),
        "Cache-Control": DEFAULT_AVATAR_CACHE_CONTROL,
    }
    if stored is not None:
        found = {
            "Content-Type": stored.content_type or "",
            "Cache-Control": (stored.metadata or {}).get("Cache-Control") or "",
        }
        if source is None:  # no content to tell its type from
            del wanted["Content-Type"]
        wrong = ", ".join(
            f"{name} {found[name] or 'not set'}, not {value}"
            for name, value in wanted.items()
            if found[name] != value
        )
        if not wrong:
            return f"{DEFAULT_AVATAR_NAME} present"
        if source is None:
            return (
                f"{DEFAULT_AVATAR_NAME} present, but its headers are wrong "
                f"({wrong}): put {DEFAULT_AVATAR_NAME} in MEDIA_ROOT and run "
                "this again to upload it with the right ones"
            )
    with storage.errors("upload", DEFAULT_AVATAR_NAME), source.open("rb") as avatar:
        client.put_object(
            bucket_name=storage.bucket_name,
            object_name=DEFAULT_AVATAR_NAME,
            data=avatar,
            length=source.stat().st_size,
            content_type=wanted["Content-Type"],
            metadata={"Cache-Control": wanted["Cache-Control"]},
        )
    if stored is not None:
        return (
            f"{DEFAULT_AVATAR_NAME} headers fixed ({wrong}): uploaded again "
            f"from {source}"
        )
    return f"{DEFAULT_AVATAR_NAME} uploaded from {source}"


def field_file_store(
    *,
    instance: Model,
    field_name: str,
    content: File,
    update_fields: list[str] | None = None,
) -> None:
    """Upload ``content`` to ``instance.<field_name>`` and save the row.

    The object is written first (one PUT, no lock held): if the store is down
    the row is untouched, and an object the store may still write (it did not
    answer in time) is queued for deletion. The row is then locked and
    re-read, so that of two uploads at once each replaces what the other
    committed, and django-cleanup deletes exactly that after commit (a
    deletion the store refuses is queued).
    If a statement fails, the row is not saved and the new object would be an
    orphan, so it is deleted and the instance put back as it was. If the
    COMMIT itself fails (the connection lost while it was sent or answered),
    the row may have committed, naming the new object: that is kept, and the
    instance names it; if the row did not commit, media_orphans deletes it
    after its grace period.
    """
    from storage.orphans import (
        pending_deletion_add,
        pending_deletions_retry_after_write,
        unconfirmed_write_queue,
    )

    field_file = getattr(instance, field_name)
    previous = field_file.name
    try:
        field_file.save(content.name, content, save=False)
    except StorageUnavailable as error:
        unconfirmed_write_queue(error=error)
        raise
    stored = field_file.name
    committing = False
    try:
        with transaction.atomic():
            if instance.pk is None:
                instance.save(update_fields=update_fields)
            else:
                field_file_set(
                    instance=instance,
                    field_name=field_name,
                    name=stored,
                    update_fields=update_fields,
                )
            transaction.on_commit(pending_deletions_retry_after_write, robust=True)
            # From here on what fails is the COMMIT, or a hook after it: the
            # row may be saved.
            committing = True
    except BaseException:
        if committing:
            logger.warning("commit outcome unknown, object kept", extra={"key": stored})
            raise
        try:
            field_file.storage.delete(stored)
        except StorageUnavailable as error:
            logger.exception("could not remove %s after a failed save", stored)
            pending_deletion_add(name=stored, error=error)
        setattr(instance, field_name, previous)
        raise


def field_file_set(
    *,
    instance: Model,
    field_name: str,
    name: str,
    update_fields: list[str] | None = None,
) -> None:
    """Point the saved row's ``<field_name>`` at ``name``, an object stored.

    The row is locked and re-read first, and saved through that copy: the
    file django-cleanup deletes after commit is the one really replaced, not
    the one ``instance`` was loaded with (another upload may have replaced
    that meanwhile). ``instance`` then shows the saved values. Call it inside
    a transaction.
    """
    locked = type(instance)._default_manager.select_for_update().get(pk=instance.pk)
    setattr(locked, field_name, name)
    fields = update_fields or [field_name]
    locked.save(update_fields=fields)
    for saved in fields:
        attname = instance._meta.get_field(saved).attname
        setattr(instance, attname, getattr(locked, attname))
    setattr(instance, field_name, name)
    # What the row now holds is what a later save of ``instance`` replaces.
    cleanup.refresh(instance)
