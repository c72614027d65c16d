"""Identity verification: a user's documents, staff's decision, every view of them.

Documents live under ``private/identity/<user id>/`` in the private storage
(``storage.private``): on local disk PRIVATE_MEDIA_ROOT, outside MEDIA_ROOT;
on S3 the bucket, under a prefix outside ``storage.config.PUBLIC_MEDIA_PREFIXES``
that no bucket policy grants. The public media view refuses it, and its files
have no URL (``PrivateFieldFile.url`` raises). Staff open them through the
admin only.
"""

from __future__ import annotations

import posixpath
import secrets

from django.conf import settings
from django.db import models
from django.db.models.fields.files import FieldFile

from storage.private import private_storage

PRIVATE_IDENTITY_PREFIX = "private/identity/"


class PrivateFileUrlRefused(Exception):
    """A private file was asked for its URL; only the staff view may hand one out."""


class PrivateFieldFile(FieldFile):
    @property
    def url(self) -> str:
        # In presigned mode the storage would sign any key: a template that
        # rendered {{ document.file.url }} would leak the file. Refuse loudly.
        raise PrivateFileUrlRefused(
            f"'{self.name}' is private: open it through the staff view."
        )


class PrivateFileField(models.FileField):
    """A file field whose files never get a URL from the storage."""

    attr_class = PrivateFieldFile


def identity_document_upload_to(instance: IdentityDocument, filename: str) -> str:
    """``private/identity/<user id>/<random>.<ext>``: nothing of the upload's name
    is kept but the extension the processing chose."""
    extension = posixpath.splitext(filename)[1].lower()
    if extension not in (".jpg", ".pdf"):
        extension = ""
    user_id = instance.verification.user_id
    return f"{PRIVATE_IDENTITY_PREFIX}{user_id}/{secrets.token_urlsafe(16)}{extension}"


class IdentityVerification(models.Model):
    """One submission of identity documents and staff's decision on it."""

    class State(models.TextChoices):
        PENDING = "pending", "Under review"
        APPROVED = "approved", "Approved"
        REJECTED = "rejected", "Rejected"

    user = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.CASCADE,
        related_name="identity_verifications",
    )
    state = models.CharField(max_length=10, choices=State.choices, default="pending")
    submitted_at = models.DateTimeField(auto_now_add=True, db_index=True)
    decided_at = models.DateTimeField(null=True, blank=True)
    decided_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="+",
    )
    reason = models.CharField(
        max_length=500, blank=True, help_text="Why it was rejected; the user sees it."
    )
    documents_deleted_at = models.DateTimeField(
        null=True,
        blank=True,
        help_text="When staff deleted the documents of this approved verification.",
    )

    class Meta:
        ordering = ["-submitted_at", "-pk"]
        constraints = [
            models.CheckConstraint(
                condition=models.Q(state__in=["pending", "approved", "rejected"]),
                name="identity_verification_state_valid",
            ),
            models.CheckConstraint(
                condition=models.Q(state="pending", decided_at__isnull=True)
                | (~models.Q(state="pending") & models.Q(decided_at__isnull=False)),
                name="identity_verification_decided_when_not_pending",
            ),
            models.CheckConstraint(
                condition=~models.Q(state="rejected") | ~models.Q(reason=""),
                name="identity_verification_rejection_has_reason",
            ),
            # A rejection deletes them itself; one under review needs them.
            models.CheckConstraint(
                condition=models.Q(documents_deleted_at__isnull=True)
                | models.Q(state="approved"),
                name="identity_verification_documents_deleted_when_approved",
            ),
            # A user has at most one submission under review or approved.
            models.UniqueConstraint(
                fields=["user"],
                condition=models.Q(state__in=["pending", "approved"]),
                name="identity_verification_one_open_per_user",
            ),
        ]

    def __str__(self) -> str:
        return f"Verification #{self.pk} of {self.user}"

    @property
    def is_pending(self) -> bool:
        return self.state == self.State.PENDING


class IdentityDocument(models.Model):
    class Kind(models.TextChoices):
        FRONT = "front", "Front of the ID"
        BACK = "back", "Back of the ID"
        SELFIE = "selfie", "Selfie with the ID"

    verification = models.ForeignKey(
        IdentityVerification, on_delete=models.CASCADE, related_name="documents"
    )
    kind = models.CharField(max_length=10, choices=Kind.choices)
    file = PrivateFileField(
        upload_to=identity_document_upload_to, storage=private_storage, max_length=255
    )
    content_type = models.CharField(max_length=40)
    size = models.PositiveIntegerField()
    uploaded_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["verification", "kind"]
        permissions = [("view_identity_document", "Can open identity documents")]
        constraints = [
            models.UniqueConstraint(
                fields=["verification", "kind"],
                name="identity_document_one_per_kind",
            ),
            models.CheckConstraint(
                condition=models.Q(kind__in=["front", "back", "selfie"]),
                name="identity_document_kind_valid",
            ),
            models.CheckConstraint(
                condition=models.Q(file__startswith=PRIVATE_IDENTITY_PREFIX),
                name="identity_document_under_private_prefix",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.get_kind_display()} of {self.verification.user}"


class IdentityDocumentAccess(models.Model):
    """One opening of an identity document by staff: who, when, from where.

    Kept when the document, its owner or the staff account is deleted.
    """

    class Delivery(models.TextChoices):
        PRESIGNED = "presigned", "Presigned URL"
        STREAM = "stream", "Streamed by the app"

    staff = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.SET_NULL,
        null=True,
        related_name="+",
    )
    staff_username = models.CharField(max_length=150)
    document = models.ForeignKey(
        IdentityDocument,
        on_delete=models.SET_NULL,
        null=True,
        related_name="accesses",
    )
    document_description = models.CharField(max_length=200)
    object_key = models.CharField(max_length=255)
    accessed_at = models.DateTimeField(auto_now_add=True, db_index=True)
    ip_address = models.GenericIPAddressField(null=True, blank=True)
    delivery = models.CharField(max_length=10, choices=Delivery.choices)

    class Meta:
        ordering = ["-accessed_at", "-pk"]
        verbose_name_plural = "identity document accesses"

    def __str__(self) -> str:
        return f"{self.staff_username} opened {self.document_description}"
