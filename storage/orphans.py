"""Media objects that no row references, and deletions the store refused.

Public media are looked for in the default storage, private files (identity
documents) in the private one (`storage.private`), each under the folders the
app writes; a queued deletion goes to the storage its name belongs to.

An upload writes its object before the row that references it commits, so a
young unreferenced object may be an upload in flight: objects younger than the
grace period are never touched, and the grace period is never shorter than
``MIN_GRACE_MINUTES``. Deletions that fail while the store is down
are queued as `PendingDeletion` rows and finished when it answers again, and
so are the objects of saves the store did not confirm (it may still write
them when it wakes up).

On local disk a file is looked at only under its real folder: links to
folders inside the media folders are not followed (they are reported), since
under a link's path a referenced file looks unreferenced, and deleting there
deletes the real file, wherever the link leads.
"""

from __future__ import annotations

import itertools
import logging
import os
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from django.apps import apps
from django.core.files.storage import Storage, default_storage
from django.db import DatabaseError, models, transaction
from django.utils import timezone
from minio.error import S3Error

from storage.backends import MinIOStorage
from storage.bucket import bucket_exists
from storage.config import (
    PRIVATE_MEDIA_PREFIX,
    PRIVATE_MEDIA_PREFIXES,
    PUBLIC_MEDIA_PREFIXES,
)
from storage.exceptions import StorageFull, StorageUnavailable
from storage.models import PendingDeletion
from storage.private import private_storage

logger = logging.getLogger(__name__)

DEFAULT_GRACE_MINUTES = 60
# An upload commits its row within the request that wrote its object, and
# gunicorn kills a request after 30 s (``timeout`` in gunicorn.conf.py; a killed
# request's transaction never commits). Five minutes is ten times that: room
# for a timeout raised through GUNICORN_CMD_ARGS, and for the store's clock
# (it stamps Last-Modified) running behind or ahead of this host's.
MIN_GRACE_MINUTES = 5
# A century, "never" in practice; much more and the cut-off date would fall
# before the year 1.
MAX_GRACE_MINUTES = 100 * 365 * 24 * 60
_RETRIES_AFTER_A_WRITE = 20


def _file_fields() -> Iterator[tuple[type[models.Model], str]]:
    for model in apps.get_models():
        for model_field in model._meta.concrete_fields:
            if isinstance(model_field, models.FileField):
                yield model, model_field.name


def _referencing_rows(model: type[models.Model], field_name: str) -> models.QuerySet:
    return model._default_manager.exclude(**{field_name: ""})


def referenced_names(*, prefix: str = "") -> set[str]:
    """Every file name a row of any model references (starting with ``prefix``)."""
    names: set[str] = set()
    for model, field_name in _file_fields():
        rows = _referencing_rows(model, field_name)
        if prefix:
            rows = rows.filter(**{f"{field_name}__startswith": prefix})
        names.update(rows.values_list(field_name, flat=True).iterator())
    return names


def is_referenced(name: str) -> bool:
    return any(
        model._default_manager.filter(**{field_name: name}).exists()
        for model, field_name in _file_fields()
    )


def _storage_of(name: str, default: Storage) -> Storage:
    """The storage a stored name lives in: the private one for private keys."""
    return private_storage() if name.startswith(PRIVATE_MEDIA_PREFIX) else default


def pending_deletion_add(*, name: str, error: BaseException | str) -> None:
    """Queue a file whose deletion failed, to be retried later."""
    pending, _ = PendingDeletion.objects.get_or_create(name=name)
    PendingDeletion.objects.filter(pk=pending.pk).update(
        attempts=models.F("attempts") + 1, last_error=str(error)[:300]
    )
    logger.warning("deletion queued", extra={"key": name})


def unconfirmed_write_queue(*, error: StorageUnavailable) -> None:
    """Queue for deletion the object a refused save was writing.

    A store that took the request but did not answer in time (paused,
    overloaded) may still finish the write when it wakes up, after the upload
    was refused; no row will ever name that key (each one is random), so it is
    deleted with the queued deletions once the store answers again. A full
    local disk (``StorageFull``) has already removed what it wrote.
    """
    if isinstance(error, StorageFull) or error.operation != "save" or not error.key:
        return
    try:
        pending_deletion_add(name=error.key, error=error)
    except DatabaseError:
        # The storage error the caller raises next is what the user sees.
        logger.exception("could not queue %s for deletion", error.key)


def pending_deletions_retry(
    *, storage: Storage | None = None, limit: int | None = None
) -> tuple[int, int]:
    """Delete queued files again; return (finished, still pending).

    ``storage`` stands for the default storage; private names are deleted
    from the private one. Stops at the first failure: the store is down
    again, and every other attempt would only wait for its timeout.
    """
    storage = storage or default_storage
    finished = 0
    queue = PendingDeletion.objects.order_by("created_at", "pk")
    for pending in queue[:limit] if limit else queue:
        if not is_referenced(pending.name):
            try:
                _storage_of(pending.name, storage).delete(pending.name)
            except (StorageUnavailable, OSError) as error:
                PendingDeletion.objects.filter(pk=pending.pk).update(
                    attempts=models.F("attempts") + 1, last_error=str(error)[:300]
                )
                break
        pending.delete()
        finished += 1
    return finished, PendingDeletion.objects.count()


def pending_deletions_retry_after_write() -> None:
    """After a write succeeded the store is up: finish a few queued deletions.

    Run from `transaction.on_commit`, after the write committed: nothing
    here may fail that write, not even the database lost meanwhile (the
    caller would take the committed row for unsaved, and delete its object).
    """
    try:
        if PendingDeletion.objects.exists():
            pending_deletions_retry(limit=_RETRIES_AFTER_A_WRITE)
    except Exception:
        logger.exception("retrying queued deletions failed")


class MediaFoldersUnsafe(Exception):
    """The media folders on disk cannot be walked safely (a folder cannot be
    listed, or two media folders are one through a link); nothing was deleted."""


@dataclass
class OrphanReport:
    scanned: int = 0
    referenced: int = 0
    recent: int = 0
    orphans: list[str] = field(default_factory=list)
    deleted: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)
    pending_finished: int = 0
    pending_left: int = 0
    # Links to folders found on local disk, not followed.
    links: list[str] = field(default_factory=list)


def media_orphans_collect(
    *,
    delete: bool,
    grace_minutes: int = DEFAULT_GRACE_MINUTES,
    storage: Storage | None = None,
) -> OrphanReport:
    """Find (and with ``delete``, remove) media objects no row references.

    Only the media folders and the private folders are looked at (public
    ones in ``storage``, the default storage; private ones in the private
    storage); objects younger than
    ``grace_minutes`` (at least ``MIN_GRACE_MINUTES``, the longest an upload
    takes from writing its object to committing its row, with room) are
    counted as recent and left alone, and every name is checked again just
    before it is deleted.

    Raises StorageUnavailable when the bucket cannot be listed (or does not
    exist), MediaFoldersUnsafe when a media folder on disk cannot be.
    """
    if not MIN_GRACE_MINUTES <= grace_minutes <= MAX_GRACE_MINUTES:
        raise ValueError(
            f"grace_minutes must be between {MIN_GRACE_MINUTES} and {MAX_GRACE_MINUTES}"
        )
    storage = storage or default_storage
    report = OrphanReport()
    _stores_check(storage)
    if delete:
        report.pending_finished, report.pending_left = pending_deletions_retry(
            storage=storage
        )
    cutoff = timezone.now() - timedelta(minutes=grace_minutes)
    referenced = referenced_names()
    for name, modified in _media_objects(storage, report):
        report.scanned += 1
        if name in referenced:
            report.referenced += 1
        elif modified > cutoff:
            report.recent += 1
        else:
            report.orphans.append(name)
    if not delete:
        return report
    for name in report.orphans:
        holder = _storage_of(name, storage)
        if is_referenced(name) or _through_a_link(holder, name):
            continue
        try:
            holder.delete(name)
        except (StorageUnavailable, OSError) as error:
            report.failed.append(name)
            pending_deletion_add(name=name, error=error)
        else:
            report.deleted.append(name)
    return report


def _stores_check(storage: Storage) -> None:
    """Refuse to start on a bucket that does not exist (deleting from it
    "succeeds", so queued deletions would look finished), or on media folders
    that are one another through a link (a referenced file would look
    unreferenced under the other folder's name, and be deleted)."""
    stores = [
        (storage, PUBLIC_MEDIA_PREFIXES),
        (private_storage(), PRIVATE_MEDIA_PREFIXES),
    ]
    checked = set()
    for store, _prefixes in stores:
        if isinstance(store, MinIOStorage) and store.bucket_name not in checked:
            checked.add(store.bucket_name)
            with store.errors("check the bucket"):
                exists = bucket_exists(
                    client=store.client, bucket_name=store.bucket_name
                )
            if not exists:
                raise _no_such_bucket(store)
    folders = [
        (prefix, os.path.realpath(path))
        for store, prefixes in stores
        for prefix in prefixes
        if (path := _local_path(store, prefix)) is not None
    ]
    for (one, real_one), (other, real_other) in itertools.combinations(folders, 2):
        if os.path.commonpath([real_one, real_other]) in (real_one, real_other):
            raise MediaFoldersUnsafe(
                f"{one} and {other} are the same folder on disk, or one is inside "
                f"the other, through a link ({real_one}, {real_other}): their "
                "files cannot be told apart. Replace the link with the folder; "
                "nothing was deleted."
            )


def _no_such_bucket(storage: MinIOStorage) -> StorageUnavailable:
    return StorageUnavailable(
        f"Object storage ({storage.endpoint}) has no bucket "
        f"'{storage.bucket_name}'. Check MINIO_BUCKET_NAME, or create the "
        "bucket with `python scripts/setup_minio.py`.",
        operation="list",
        endpoint=storage.endpoint,
        bucket=storage.bucket_name,
        reason="NoSuchBucket",
    )


def _media_objects(
    storage: Storage, report: OrphanReport
) -> Iterator[tuple[str, datetime]]:
    """(name, last modified) of every object under the media folders of
    ``storage`` and the private folders of the private storage."""
    yield from _objects_under(storage, PUBLIC_MEDIA_PREFIXES, report)
    yield from _objects_under(private_storage(), PRIVATE_MEDIA_PREFIXES, report)


def _objects_under(
    storage: Storage, prefixes: tuple[str, ...], report: OrphanReport
) -> Iterator[tuple[str, datetime]]:
    for prefix in prefixes:
        if isinstance(storage, MinIOStorage):
            try:
                with storage.errors("list", prefix):
                    for obj in storage.client.list_objects(
                        bucket_name=storage.bucket_name, prefix=prefix, recursive=True
                    ):
                        if not obj.is_dir:
                            yield obj.object_name, obj.last_modified
            except S3Error as exc:  # the bucket went away meanwhile
                raise _no_such_bucket(storage) from exc
        else:
            yield from _walk(storage, prefix.rstrip("/"), report)


def _walk(
    storage: Storage, folder: str, report: OrphanReport
) -> Iterator[tuple[str, datetime]]:
    """The files under ``folder``, links to folders left out (reported)."""
    try:
        directories, files = storage.listdir(folder)
    except FileNotFoundError:
        return
    except OSError as error:
        raise MediaFoldersUnsafe(
            f"The folder {_local_path(storage, folder) or folder} cannot be "
            f"listed ({error.strerror or error}): fix it and run the command "
            "again; no unreferenced file was deleted."
        ) from error
    for name in files:
        path = f"{folder}/{name}"
        try:
            modified = storage.get_modified_time(path)
        except FileNotFoundError:
            continue  # removed since the listing (an avatar replaced meanwhile)
        if timezone.is_naive(modified):
            modified = timezone.make_aware(modified)
        yield path, modified
    for directory in directories:
        path = f"{folder}/{directory}"
        if _is_link(storage, path):
            report.links.append(path)
        else:
            yield from _walk(storage, path, report)


def _local_path(storage: Storage, name: str) -> str | None:
    try:
        return storage.path(name)
    except NotImplementedError:  # not on local disk
        return None


def _is_link(storage: Storage, name: str) -> bool:
    path = _local_path(storage, name)
    return path is not None and os.path.islink(path)


def _through_a_link(storage: Storage, name: str) -> bool:
    """Whether a folder between ``name``'s media folder and the file is a link
    (on local disk): a folder replaced by a link since the walk."""
    prefix = next(
        (
            p
            for p in PUBLIC_MEDIA_PREFIXES + PRIVATE_MEDIA_PREFIXES
            if name.startswith(p)
        ),
        "",
    )
    folder = prefix.rstrip("/")
    for part in name[len(prefix) :].split("/")[:-1]:
        folder = f"{folder}/{part}" if folder else part
        if _is_link(storage, folder):
            return True
    return False


# --- Rows whose file is gone --------------------------------------------------


@dataclass(frozen=True)
class MissingFile:
    """A row whose file field names an object the storage does not hold."""

    model: str  # app_label.ModelName
    pk: object
    field_name: str
    name: str
    row: str  # the row as the admin names it
    advice: str  # what --repair does, or what to do about it
    repairable: bool = False


@dataclass
class MissingReport:
    checked: int = 0
    missing: list[MissingFile] = field(default_factory=list)
    repaired: list[MissingFile] = field(default_factory=list)
    # Default files (the default avatar) missing, with how many rows use them.
    defaults_missing: dict[str, int] = field(default_factory=dict)


# (model label, field) -> (the service that makes a row whole without its
# file, what it does). Built by the caller, which knows the apps that build on
# storage (media_orphans, in the exchange app).
MissingRepairs = Mapping[tuple[str, str], tuple[Callable[[models.Model], object], str]]


_MISSING_ADVICE = {
    "verification.IdentityDocument": "ask the user to send their documents again",
}


def media_missing_collect(
    *, repair: bool, repairs: MissingRepairs, storage: Storage | None = None
) -> MissingReport:
    """Find the rows whose file field names an object that does not exist
    (after restoring the database and the bucket from different times); with
    ``repair``, make the rows that can do without their file whole again
    through the services ``repairs`` names (an avatar goes back to the
    default, a token logo is cleared). Other rows (identity documents) are
    only listed: only their user can send them again.

    Rows naming their field's default (the default avatar) are not listed
    one by one: the default object is checked once. Every object under the
    media folders is listed first; a name missing from that listing is
    looked up again (an upload may have written it since). Raises
    StorageUnavailable when the bucket cannot be listed (or does not exist),
    MediaFoldersUnsafe when a media folder on disk cannot be.
    """
    storage = storage or default_storage
    _stores_check(storage)
    listed = {name for name, _ in _media_objects(storage, OrphanReport())}
    looked_up: dict[str, bool] = {}

    def exists(name: str) -> bool:
        if name in listed:
            return True
        if name not in looked_up:
            looked_up[name] = _storage_of(name, storage).exists(name)
        return looked_up[name]

    report = MissingReport()
    for model, field_name in _file_fields():
        label = model._meta.label
        default = model._meta.get_field(field_name).default
        default = default if isinstance(default, str) else ""
        rows = _referencing_rows(model, field_name).values_list("pk", field_name)
        for pk, name in rows.order_by("pk").iterator():
            report.checked += 1
            if exists(name):
                continue
            if name == default:
                report.defaults_missing[name] = report.defaults_missing.get(name, 0) + 1
                continue
            row = model._default_manager.filter(pk=pk).first()
            fix, done = repairs.get((label, field_name), (None, ""))
            item = MissingFile(
                model=label,
                pk=pk,
                field_name=field_name,
                name=name,
                row=str(row) if row is not None else f"{label} #{pk}",
                advice=done if fix else _MISSING_ADVICE.get(label, ""),
                repairable=fix is not None,
            )
            report.missing.append(item)
            if repair and fix and _missing_repair(model, pk, field_name, name, fix):
                report.repaired.append(item)
    return report


def _missing_repair(
    model: type[models.Model], pk: object, field_name: str, name: str, fix: Callable
) -> bool:
    """Repair the row if it still names the missing file: its owner may have
    uploaded a new one since it was read, which must be kept."""
    with transaction.atomic():
        row = (
            model._default_manager.select_for_update()
            .filter(pk=pk, **{field_name: name})
            .first()
        )
        if row is None:
            return False
        fix(row)
    return True
