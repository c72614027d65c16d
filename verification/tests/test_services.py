import pytest
from django.contrib.auth import get_user_model
from django.core.exceptions import PermissionDenied
from django.db import IntegrityError
from django.test import RequestFactory

from verification.documents import document_process
from verification.exceptions import VerificationError
from verification.models import (
    IdentityDocument,
    IdentityDocumentAccess,
    IdentityVerification,
    PrivateFileUrlRefused,
)
from verification.services import (
    document_open,
    verification_approve,
    verification_documents_delete,
    verification_reject,
    verification_submit,
)
from verification.tests.samples import full_set

pytestmark = pytest.mark.django_db


def processed_set() -> dict:
    return {kind: document_process(upload) for kind, upload in full_set().items()}


def test_submitted_documents_are_stored_under_the_private_prefix(
    any_private_storage, alice, stored_names
):
    verification = verification_submit(user=alice, documents=processed_set())
    assert verification.state == "pending"
    names = sorted(d.file.name for d in verification.documents.all())
    assert len(names) == 3
    assert all(name.startswith(f"private/identity/{alice.pk}/") for name in names)
    assert stored_names(any_private_storage, "private") == names
    assert not any("front" in name or "selfie" in name for name in names)


@pytest.mark.reliability("private-documents")
def test_a_document_never_hands_out_a_url(any_private_storage, alice):
    verification = verification_submit(user=alice, documents=processed_set())
    with pytest.raises(PrivateFileUrlRefused):
        _ = verification.documents.first().file.url


def test_a_second_submission_under_review_is_refused(alice):
    verification_submit(user=alice, documents=processed_set())
    with pytest.raises(VerificationError, match="already under review"):
        verification_submit(user=alice, documents=processed_set())


def test_the_front_and_the_selfie_are_required(alice):
    documents = processed_set()
    del documents["selfie"]
    with pytest.raises(VerificationError, match="Selfie"):
        verification_submit(user=alice, documents=documents)


@pytest.mark.reliability("store-cleanup")
def test_a_failed_row_write_leaves_no_object(
    any_private_storage, alice, stored_names, monkeypatch
):
    def broken_save(self, *args, **kwargs):
        raise IntegrityError("database refused")

    monkeypatch.setattr(IdentityDocument, "save", broken_save)
    with pytest.raises(VerificationError):
        verification_submit(user=alice, documents=processed_set())
    assert stored_names(any_private_storage, "private") == []
    assert not IdentityVerification.objects.exists()


def test_approval_records_who_and_when(alice, staff):
    verification = verification_submit(user=alice, documents=processed_set())
    decided = verification_approve(verification=verification, staff=staff)
    assert (decided.state, decided.decided_by) == ("approved", staff)
    assert decided.decided_at is not None
    assert decided.documents.count() == 3
    with pytest.raises(VerificationError, match="already Approved"):
        verification_reject(verification=verification, staff=staff, reason="late")


def test_rejection_deletes_the_objects_after_commit(
    any_private_storage, alice, staff, stored_names, django_capture_on_commit_callbacks
):
    verification = verification_submit(user=alice, documents=processed_set())
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        decided = verification_reject(
            verification=verification, staff=staff, reason="The photo is blurred."
        )
        # Nothing is deleted before the transaction commits.
        assert len(stored_names(any_private_storage, "private")) == 3
    for callback in callbacks:
        callback()
    assert stored_names(any_private_storage, "private") == []
    assert (decided.state, decided.reason) == ("rejected", "The photo is blurred.")
    assert not IdentityDocument.objects.exists()
    # A new submission is possible after a rejection.
    verification_submit(user=alice, documents=processed_set())


def test_an_approved_verifications_documents_are_deleted_after_commit_kept_approved(
    any_private_storage, alice, staff, stored_names, django_capture_on_commit_callbacks
):
    verification = verification_submit(user=alice, documents=processed_set())
    verification_approve(verification=verification, staff=staff)
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        kept = verification_documents_delete(verification=verification, staff=staff)
        assert len(stored_names(any_private_storage, "private")) == 3
    for callback in callbacks:
        callback()
    assert stored_names(any_private_storage, "private") == []
    assert not IdentityDocument.objects.exists()
    kept.refresh_from_db()
    assert (kept.state, kept.decided_by) == ("approved", staff)
    assert kept.documents_deleted_at is not None
    # Still verified: no new submission.
    with pytest.raises(VerificationError, match="already verified"):
        verification_submit(user=alice, documents=processed_set())


def test_a_rejection_needs_a_reason(alice, staff):
    verification = verification_submit(user=alice, documents=processed_set())
    with pytest.raises(VerificationError, match="reason"):
        verification_reject(verification=verification, staff=staff, reason="  ")


def test_deleting_the_account_deletes_the_documents(
    any_private_storage, alice, stored_names, django_capture_on_commit_callbacks
):
    verification_submit(user=alice, documents=processed_set())
    with django_capture_on_commit_callbacks(execute=True):
        alice.delete()
    assert stored_names(any_private_storage, "private") == []


@pytest.fixture
def reviewer(db):
    """Staff, but not a superuser: permissions are given one by one."""
    return get_user_model().objects.create_user(
        "reviewer", password="pw-staff-2026", is_staff=True
    )


@pytest.mark.reliability("private-documents")
def test_opening_needs_the_permission_and_is_recorded(alice, reviewer):
    from django.contrib.auth.models import Permission

    verification = verification_submit(user=alice, documents=processed_set())
    document = verification.documents.get(kind="front")
    request = RequestFactory().get("/", REMOTE_ADDR="203.0.113.7")
    request.user = reviewer
    with pytest.raises(PermissionDenied):
        document_open(request=request, document=document)
    assert not IdentityDocumentAccess.objects.exists()

    reviewer.user_permissions.add(
        Permission.objects.get(codename="view_identity_document")
    )
    reviewer = get_user_model().objects.get(pk=reviewer.pk)  # no cached permissions
    request.user = reviewer
    delivery = document_open(request=request, document=document)
    delivery.content.close()  # opened to stream (local storage)
    access = IdentityDocumentAccess.objects.get()
    assert access == delivery.access
    assert (access.staff, access.document, access.ip_address) == (
        reviewer,
        document,
        "203.0.113.7",
    )
    assert access.object_key == document.file.name
    assert "Front of the ID of alice" in access.document_description
