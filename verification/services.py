"""Writes of identity verification: submitting documents, deciding, opening them."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import timedelta
from urllib.parse import quote, urlsplit

from allauth.account.adapter import get_adapter
from django.conf import settings
from django.contrib.auth.base_user import AbstractBaseUser
from django.core.exceptions import PermissionDenied
from django.core.files.base import File
from django.core.files.storage import Storage
from django.db import DatabaseError, IntegrityError, transaction
from django.http import HttpRequest
from django.utils import timezone
from minio import Minio

from storage.backends import MinIOStorage
from storage.exceptions import StorageUnavailable
from storage.orphans import pending_deletion_add, unconfirmed_write_queue
from verification.documents import ProcessedDocument
from verification.exceptions import VerificationError
from verification.models import (
    IdentityDocument,
    IdentityDocumentAccess,
    IdentityVerification,
)

logger = logging.getLogger(__name__)

VIEW_DOCUMENT_PERMISSION = "verification.view_identity_document"
REQUIRED_KINDS = (IdentityDocument.Kind.FRONT, IdentityDocument.Kind.SELFIE)


def verification_submit(
    *, user: AbstractBaseUser, documents: dict[str, ProcessedDocument]
) -> IdentityVerification:
    """Store the documents and open a verification under review.

    The objects are written first, outside any transaction; if the rows then
    cannot be written (another submission won, the database is down) the
    objects are deleted again, so nothing is left that no row names. A
    document the store did not confirm (it may still write it), and one it
    would not delete, are queued for deletion. If the COMMIT itself fails
    (the connection lost while it was sent or answered), the rows may have
    committed: the objects are kept, and media_orphans deletes them after
    its grace period if no row names them.
    """
    missing = [kind.label for kind in REQUIRED_KINDS if kind not in documents]
    if missing:
        raise VerificationError(f"Missing: {', '.join(missing)}.")
    if IdentityVerification.objects.filter(
        user=user, state__in=["pending", "approved"]
    ).exists():
        raise VerificationError(_already_open_message(user))
    verification = IdentityVerification(user=user)
    rows: list[IdentityDocument] = []
    committing = False
    try:
        for kind, content in documents.items():
            row = IdentityDocument(
                verification=verification,
                kind=kind,
                content_type=content.content_type,
                size=content.size,
            )
            row.file.save(content.name, content, save=False)
            rows.append(row)
        with transaction.atomic():
            verification.save()
            for row in rows:
                row.verification = verification
                row.save()
            # From here on what fails is the COMMIT: the rows may be saved.
            committing = True
    except BaseException as error:
        if committing:
            for row in rows:
                logger.warning(
                    "commit outcome unknown, object kept", extra={"key": row.file.name}
                )
            raise
        if isinstance(error, StorageUnavailable):
            unconfirmed_write_queue(error=error)
        for row in rows:
            _object_delete(row.file.storage, row.file.name)
        if isinstance(error, IntegrityError):
            raise VerificationError(_already_open_message(user)) from None
        raise
    return verification


def _already_open_message(user: AbstractBaseUser) -> str:
    approved = IdentityVerification.objects.filter(user=user, state="approved")
    if approved.exists():
        return "Your identity is already verified."
    return "Your documents are already under review."


def _object_delete(storage, name: str) -> None:
    """Delete an object no row will name; if the store refuses, queue it."""
    try:
        storage.delete(name)
    except StorageUnavailable as error:
        try:
            pending_deletion_add(name=name, error=error)
        except DatabaseError:
            logger.exception("could not queue %s for deletion", name)


def verification_decision_refusal(
    *, verification: IdentityVerification, staff: AbstractBaseUser
) -> str:
    """Why ``staff`` may not decide ``verification`` (nor delete its documents),
    or "" when they may. Nobody decides their own; staff who are not
    superusers do not decide another staff member's or a superuser's, as they
    do not change their accounts (``accounts.admin._other_staff``)."""
    user = verification.user
    if user.pk == staff.pk:
        return "It is your own verification: another reviewer decides it."
    if not staff.is_superuser and (user.is_staff or user.is_superuser):
        return "It is another staff member's verification: a superuser decides it."
    return ""


def verification_approve(
    *, verification: IdentityVerification, staff: AbstractBaseUser
) -> IdentityVerification:
    return _decide(verification=verification, staff=staff, approve=True, reason="")


def verification_reject(
    *, verification: IdentityVerification, staff: AbstractBaseUser, reason: str
) -> IdentityVerification:
    """Reject with a reason the user sees; the documents are deleted (their
    objects once the transaction commits, by django-cleanup)."""
    reason = reason.strip()
    if not reason:
        raise VerificationError("A rejection needs a reason for the user.")
    return _decide(verification=verification, staff=staff, approve=False, reason=reason)


def verification_documents_delete(
    *, verification: IdentityVerification, staff: AbstractBaseUser
) -> IdentityVerification:
    """Delete the documents of an approved verification, which stays approved,
    and record when (the admin's history records who). Their objects are
    deleted once the transaction commits, by django-cleanup, as on rejection."""
    with transaction.atomic():
        locked = _locked_for_decision(verification=verification, staff=staff)
        if locked.documents_deleted_at is not None:
            deleted_on = timezone.localdate(locked.documents_deleted_at)
            raise VerificationError(
                f"Its documents were already deleted on {deleted_on:%Y-%m-%d}."
            )
        if locked.state != IdentityVerification.State.APPROVED:
            raise VerificationError(
                f"It is {locked.get_state_display().lower()}, not approved: only "
                "an approved verification's documents are deleted this way."
            )
        _documents_delete(locked)
        locked.documents_deleted_at = timezone.now()
        locked.save(update_fields=["documents_deleted_at"])
    return locked


def _locked_for_decision(
    *, verification: IdentityVerification, staff: AbstractBaseUser
) -> IdentityVerification:
    """The verification, locked, once ``staff`` are shown to be allowed to
    decide it."""
    locked = (
        IdentityVerification.objects.select_for_update(of=("self",))
        .select_related("user")
        .get(pk=verification.pk)
    )
    refusal = verification_decision_refusal(verification=locked, staff=staff)
    if refusal:
        raise VerificationError(refusal)
    return locked


def _documents_delete(verification: IdentityVerification) -> None:
    # One by one, so that post_delete (django-cleanup) sees each file.
    for document in verification.documents.all():
        document.delete()


def _decide(
    *,
    verification: IdentityVerification,
    staff: AbstractBaseUser,
    approve: bool,
    reason: str,
) -> IdentityVerification:
    with transaction.atomic():
        locked = _locked_for_decision(verification=verification, staff=staff)
        if not locked.is_pending:
            raise VerificationError(f"It was already {locked.get_state_display()}.")
        locked.state = (
            IdentityVerification.State.APPROVED
            if approve
            else IdentityVerification.State.REJECTED
        )
        locked.decided_by = staff
        locked.decided_at = timezone.now()
        locked.reason = reason
        locked.save(update_fields=["state", "decided_by", "decided_at", "reason"])
        if not approve:
            _documents_delete(locked)
    return locked


@dataclass(frozen=True)
class DocumentDelivery:
    """How staff get the bytes: a redirect to a short-lived presigned URL, or
    the file streamed by the app (local storage, the bucket in proxy mode,
    which browsers cannot reach, or behind a MINIO_PUBLIC_URL with a path)."""

    access: IdentityDocumentAccess
    presigned_url: str = ""
    # To stream: the file, open; the response that sends it closes it.
    content: File | None = None


def document_open(
    *, request: HttpRequest, document: IdentityDocument
) -> DocumentDelivery:
    """Record that ``request.user`` opens ``document`` and say how to deliver it.

    Refuses anyone without the ``view_identity_document`` permission. The
    file is looked for first (opened to stream, its existence checked to
    presign), so an opening is recorded only for a file there is to deliver:
    raises FileNotFoundError when the object is gone (a restore of the
    database and the bucket from different times), StorageUnavailable when
    the store does not answer.
    """
    staff = request.user
    if not (
        staff.is_active and staff.is_staff and staff.has_perm(VIEW_DOCUMENT_PERMISSION)
    ):
        raise PermissionDenied("Opening identity documents needs a permission.")
    storage = document.file.storage
    presign = _presignable(storage)
    content = None
    if presign:
        if not storage.exists(document.file.name):
            raise FileNotFoundError(document.file.name)
    else:
        content = storage.open(document.file.name, "rb")
    try:
        access = _access_record(request=request, document=document, presign=presign)
    except BaseException:
        if content is not None:
            content.close()
        raise
    if not presign:
        return DocumentDelivery(access=access, content=content)
    return DocumentDelivery(
        access=access,
        presigned_url=document_presigned_url(
            storage=storage,
            key=document.file.name,
            expiry=settings.IDENTITY_DOCUMENT_URL_EXPIRY,
            attachment=document.content_type == "application/pdf",
        ),
    )


def _access_record(
    *, request: HttpRequest, document: IdentityDocument, presign: bool
) -> IdentityDocumentAccess:
    staff = request.user
    return IdentityDocumentAccess.objects.create(
        staff=staff,
        staff_username=staff.get_username(),
        document=document,
        document_description=f"{document} (verification #{document.verification_id})",
        object_key=document.file.name,
        ip_address=_client_ip(request),
        delivery=(
            IdentityDocumentAccess.Delivery.PRESIGNED
            if presign
            else IdentityDocumentAccess.Delivery.STREAM
        ),
    )


def _presignable(storage: Storage) -> bool:
    """Whether staff get a presigned URL for the public host, rather than the
    file streamed by the app.

    Not in ``proxy`` mode, where browsers cannot reach the bucket; nor when
    MINIO_PUBLIC_URL has a path, which ``public`` mode allows (a CDN at
    ``https://cdn.example.com/s3``): a signature covers the path and the
    client signs for a host only, so the prefix cannot be added, and a URL for
    MINIO_ENDPOINT instead may name a host browsers cannot reach. Streaming
    works in every such setup; refusing the path at start-up would stop media
    URLs that work.
    """
    return (
        isinstance(storage, MinIOStorage)
        and storage.url_mode != "proxy"
        and not urlsplit(storage.public_url).path.strip("/")
    )


def document_presigned_url(
    *, storage: MinIOStorage, key: str, expiry: int, attachment: bool = False
) -> str:
    """A GET URL for ``key`` that stops working after ``expiry`` seconds.

    Signed now (not rounded like media URLs, which are meant to be cached),
    for the host browsers reach; the answer says ``no-store`` whatever the
    object's own Cache-Control. Signing is local: no request is made. The
    public URL must have no path (see ``_presignable``).
    """
    parts = urlsplit(storage.public_url)
    if parts.path.strip("/"):
        raise ValueError(
            f"Cannot presign for MINIO_PUBLIC_URL {storage.public_url!r}: a path "
            "added to a signed URL invalidates it; stream the document instead."
        )
    signer = Minio(
        endpoint=parts.netloc,
        access_key=storage.access_key,
        secret_key=storage.secret_key,
        secure=parts.scheme == "https",
        region=storage.region,
    )
    response_headers = {"response-cache-control": "private, no-store"}
    if attachment:
        response_headers["response-content-disposition"] = (
            f"attachment; filename*=UTF-8''{quote(key.rsplit('/', 1)[-1])}"
        )
    return signer.presigned_get_object(
        bucket_name=storage.bucket_name,
        object_name=key,
        expires=timedelta(seconds=expiry),
        response_headers=response_headers,
    )


def _client_ip(request: HttpRequest) -> str | None:
    try:
        return get_adapter(request).get_client_ip(request)
    except PermissionDenied:
        return None
