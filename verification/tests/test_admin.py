"""Who may decide a verification, and deleting an approved one's documents."""

import html
import re

import pytest
from django.contrib.admin.models import LogEntry
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Permission
from django.test import Client
from django.utils import timezone

from verification.exceptions import VerificationError
from verification.models import IdentityDocument, IdentityVerification
from verification.services import verification_approve, verification_reject
from verification.tests.test_views import reviewer_client, submit

pytestmark = pytest.mark.django_db

LIST = "/admin/verification/identityverification/"


def messages_of(response) -> list[str]:
    return [
        html.unescape(message)
        for message in re.findall(
            r'<li class="(?:error|success)">(.*?)</li>', response.content.decode()
        )
    ]


def reviewer(mfa_enable, username: str, *, superuser: bool = False) -> Client:
    """A client signed in as staff who may decide verifications (all
    permissions if ``superuser``), with the second factor the admin needs."""
    users = get_user_model().objects
    if superuser:
        user = users.create_superuser(username, password="pw-staff-2026")
    else:
        user = users.create_user(username, password="pw-staff-2026", is_staff=True)
        user.user_permissions.add(
            *Permission.objects.filter(
                codename__in=[
                    "view_identityverification",
                    "change_identityverification",
                ]
            )
        )
    mfa_enable(user)
    client = Client()
    client.force_login(user)
    return client


def decide(client, verification, action: str, **typed):
    return client.post(
        LIST,
        {
            "action": action,
            "_selected_action": [verification.pk],
            "post": "yes",
            **typed,
        },
        follow=True,
    )


@pytest.mark.parametrize("superuser", [False, True])
@pytest.mark.parametrize(
    "action, typed",
    [("approve", {}), ("reject", {"reason": "The photo is too dark."})],
)
def test_staff_cannot_decide_their_own_verification(
    mfa_enable, superuser, action, typed
):
    client = reviewer(mfa_enable, "reviewer", superuser=superuser)
    own = submit(client)  # through the user's page, as anyone sends them

    asked = client.post(LIST, {"action": action, "_selected_action": [own.pk]})
    done = decide(client, own, action, **typed)

    assert (
        "It is your own verification: another reviewer decides it. Will be skipped."
        in asked.content.decode()
    )
    assert '<th scope="col">Sent (UTC)</th>' in asked.content.decode()
    assert f"<td>{own.submitted_at:%Y-%m-%d %H:%M}</td>" in asked.content.decode()
    assert messages_of(done) == [
        f"Verification #{own.pk} of reviewer: It is your own verification: "
        "another reviewer decides it."
    ]
    own.refresh_from_db()
    assert (own.state, own.decided_by) == ("pending", None)
    assert own.documents.count() == 3


def test_a_superuser_cannot_approve_their_own_through_the_service(alice, staff):
    mine = IdentityVerification.objects.create(user=staff)
    with pytest.raises(VerificationError, match="your own"):
        verification_approve(verification=mine, staff=staff)
    with pytest.raises(VerificationError, match="your own"):
        verification_reject(verification=mine, staff=staff, reason="Blurred.")
    assert IdentityVerification.objects.get().state == "pending"


def test_of_a_selection_the_own_row_is_skipped_and_the_others_decided(
    alice_client, mfa_enable
):
    theirs = submit(alice_client)
    client = reviewer(mfa_enable, "reviewer")
    own = IdentityVerification.objects.create(
        user=get_user_model().objects.get(username="reviewer")
    )

    done = client.post(
        LIST,
        {"action": "approve", "_selected_action": [theirs.pk, own.pk], "post": "yes"},
        follow=True,
    )

    assert messages_of(done) == [
        f"Verification #{own.pk} of reviewer: It is your own verification: "
        "another reviewer decides it.",
        "1 approved.",
    ]
    assert dict(
        IdentityVerification.objects.values_list("user__username", "state")
    ) == {
        "alice": "approved",
        "reviewer": "pending",
    }


@pytest.mark.parametrize("colleague_is", ["staff", "superuser"])
def test_only_a_superuser_decides_another_staff_members_verification(
    mfa_enable, colleague_is
):
    colleague = reviewer(mfa_enable, "colleague", superuser=colleague_is == "superuser")
    verification = submit(colleague)
    client = reviewer(mfa_enable, "reviewer")

    asked = client.post(
        LIST, {"action": "approve", "_selected_action": [verification.pk]}
    )
    refused = decide(client, verification, "approve")

    refusal = "It is another staff member's verification: a superuser decides it."
    assert f"{refusal} Will be skipped." in html.unescape(asked.content.decode())
    assert messages_of(refused) == [
        f"Verification #{verification.pk} of colleague: {refusal}"
    ]
    assert IdentityVerification.objects.get().state == "pending"

    superuser = reviewer(mfa_enable, "root", superuser=True)
    assert messages_of(decide(superuser, verification, "approve")) == ["1 approved."]
    verification.refresh_from_db()
    assert (verification.state, verification.decided_by.username) == (
        "approved",
        "root",
    )


def approved(alice_client, mfa_enable) -> tuple[IdentityVerification, Client]:
    verification = submit(alice_client)
    staff = reviewer_client(mfa_enable, may_open=False)
    decide(staff, verification, "approve")
    verification.refresh_from_db()
    assert verification.state == "approved"
    return verification, staff


def test_deleting_an_approved_verifications_documents_keeps_the_decision(
    alice_client, mfa_enable, private_media_root, django_capture_on_commit_callbacks
):
    verification, staff = approved(alice_client, mfa_enable)
    stored = [path for path in private_media_root.rglob("*") if path.is_file()]
    assert len(stored) == 3

    asked = staff.post(
        LIST, {"action": "delete_documents", "_selected_action": [verification.pk]}
    )
    assert "Yes, delete the documents of 1" in asked.content.decode()
    assert IdentityDocument.objects.count() == 3  # nothing before confirming
    with django_capture_on_commit_callbacks(execute=True):
        done = decide(staff, verification, "delete_documents")

    assert messages_of(done) == ["Deleted the documents of 1."]
    assert not IdentityDocument.objects.exists()
    assert [path for path in private_media_root.rglob("*") if path.is_file()] == []
    verification.refresh_from_db()
    assert verification.state == "approved"
    assert verification.decided_by.username == "helper"
    assert verification.documents_deleted_at is not None
    entry = LogEntry.objects.filter(object_id=str(verification.pk)).latest("pk")
    assert (entry.user.username, entry.get_change_message()) == (
        "helper",
        "Deleted the documents; the decision is kept.",
    )
    page = alice_client.get("/accounts/verification/").content.decode()
    deleted_on = f"{timezone.localtime(verification.documents_deleted_at):%-d %b %Y}"
    assert f"Your documents were deleted on {deleted_on} UTC;" in page
    assert "verified" in alice_client.get("/accounts/profile/").content.decode()
    form = staff.get(f"{LIST}{verification.pk}/change/").content.decode()
    deleted_at = f"{verification.documents_deleted_at:%Y-%m-%d %H:%M}"
    assert f"None: deleted on {deleted_at} UTC (" in form


def test_documents_are_deleted_only_of_approved_verifications_and_only_once(
    alice_client, bob, mfa_enable
):
    verification, staff = approved(alice_client, mfa_enable)
    decide(staff, verification, "delete_documents")
    pending = IdentityVerification.objects.create(user=bob)

    again = decide(staff, verification, "delete_documents")
    under_review = decide(staff, pending, "delete_documents")

    verification.refresh_from_db()
    deleted_on = f"{timezone.localdate(verification.documents_deleted_at):%Y-%m-%d}"
    assert messages_of(again) == [
        f"Verification #{verification.pk} of alice: Its documents were already "
        f"deleted on {deleted_on}."
    ]
    assert messages_of(under_review) == [
        f"Verification #{pending.pk} of bob: It is under review, not approved: only "
        "an approved verification's documents are deleted this way."
    ]
    pending.refresh_from_db()
    assert (pending.state, pending.documents_deleted_at) == ("pending", None)


def test_staff_who_may_only_view_verifications_cannot_delete_documents(
    alice_client, mfa_enable
):
    verification, _ = approved(alice_client, mfa_enable)
    viewer = get_user_model().objects.create_user(
        "viewer", password="pw-staff-2026", is_staff=True
    )
    viewer.user_permissions.add(
        Permission.objects.get(codename="view_identityverification")
    )
    mfa_enable(viewer)
    client = Client()
    client.force_login(viewer)

    decide(client, verification, "delete_documents")

    assert IdentityDocument.objects.count() == 3


def test_the_page_says_how_long_documents_are_kept(alice_client):
    page = alice_client.get("/accounts/verification/").content.decode()
    assert "account is closed" not in page  # staff cannot always delete one
    assert (
        "They are deleted if the verification is rejected. Once it is approved they "
        "are kept until staff delete them" in page
    )
