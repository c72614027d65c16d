"""The database connection lost at the COMMIT of a submission: whether or not
the rows committed, the documents they may name stay in the store; those no
row names are left to media_orphans.

The faults are real: the answer to the COMMIT is lost on the wire after
PostgreSQL applied it (storage.tests.commit_cut), or the backend dies at
COMMIT before the commit is done (trading.tests.db_faults).
"""

import io
from datetime import timedelta

import pytest
from django.core.management import call_command
from django.db import DatabaseError
from django.utils import timezone

from storage.tests.commit_cut import commit_answer_lost
from trading.tests.db_faults import backend_dies_at_commit
from verification.models import IdentityVerification
from verification.services import verification_submit
from verification.tests.test_services import processed_set

pytestmark = [
    pytest.mark.postgres,
    pytest.mark.django_db(transaction=True),
    pytest.mark.reliability("store-cleanup"),
]

DOCUMENT_TABLE = "verification_identitydocument"


def test_a_lost_answer_to_the_commit_keeps_the_documents_the_rows_name(
    any_private_storage, alice, stored_names
):
    lost = commit_answer_lost(f'INSERT INTO "{DOCUMENT_TABLE}"')
    with lost, pytest.raises(DatabaseError):
        verification_submit(user=alice, documents=processed_set())

    # Committed, though the app was not told: under review, and staff can
    # open every document.
    verification = IdentityVerification.objects.get(user=alice)
    assert verification.state == "pending"
    names = sorted(document.file.name for document in verification.documents.all())
    assert len(names) == 3
    assert stored_names(any_private_storage, "private") == names


def test_a_commit_that_never_answers_keeps_the_documents_for_media_orphans(
    any_private_storage, alice, stored_names, monkeypatch
):
    with backend_dies_at_commit(DOCUMENT_TABLE), pytest.raises(DatabaseError):
        verification_submit(user=alice, documents=processed_set())

    # Not committed; the app could not know, so it deleted nothing.
    assert not IdentityVerification.objects.exists()
    unnamed = stored_names(any_private_storage, "private")
    assert len(unnamed) == 3
    # Sending them again works.
    verification = verification_submit(user=alice, documents=processed_set())

    # Past the grace period, media_orphans deletes what no row names.
    now = timezone.now
    monkeypatch.setattr(timezone, "now", lambda: now() + timedelta(hours=2))
    call_command("media_orphans", "--delete", stdout=io.StringIO())

    named = sorted(document.file.name for document in verification.documents.all())
    assert stored_names(any_private_storage, "private") == named
