"""No orphans: concurrent uploads, removals during an outage, media_orphans."""

import io
import os
from datetime import timedelta

import pytest
from django.contrib.auth import get_user_model
from django.core.files.base import ContentFile
from django.core.management import CommandError, call_command
from django.utils import timezone

from accounts.models import DEFAULT_AVATAR, Profile
from accounts.services import avatar_remove, avatar_replace
from conftest import storages_setting
from storage.filesystem import FileSystemStorage
from storage.models import PendingDeletion
from tests.factories import jpeg_upload
from tests.threads import run_together

pytestmark = pytest.mark.django_db


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
@pytest.mark.reliability("race-uploads")
def test_concurrent_uploads_by_one_user_leave_exactly_the_referenced_object(
    profile, any_storage, stored_names
):
    # Each request loaded the profile before any of them saved, as ten
    # requests of one user arriving together do.
    stale = [Profile.objects.get(pk=profile.pk) for _ in range(10)]

    def upload(instance: Profile):
        return lambda: avatar_replace(profile=instance, upload=jpeg_upload())

    results = run_together(*[upload(instance) for instance in stale])

    assert [status for status, _ in results] == ["ok"] * 10, results
    profile.refresh_from_db()
    assert profile.avatar.name.startswith("profile_pics/")
    assert stored_names(any_storage, "profile_pics") == [profile.avatar.name]
    assert not PendingDeletion.objects.exists()


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
@pytest.mark.reliability("race-uploads")
def test_concurrent_uploads_and_a_removal_leave_no_unreferenced_object(
    profile, any_storage, stored_names
):
    stale = [Profile.objects.get(pk=profile.pk) for _ in range(6)]
    calls = [
        (lambda p=p: avatar_replace(profile=p, upload=jpeg_upload())) for p in stale
    ]
    calls.append(lambda: avatar_remove(profile=Profile.objects.get(pk=profile.pk)))

    results = run_together(*calls)
    assert [status for status, _ in results] == ["ok"] * 7, results

    profile.refresh_from_db()
    expected = [] if profile.avatar.name == DEFAULT_AVATAR else [profile.avatar.name]
    assert stored_names(any_storage, "profile_pics") == expected


@pytest.mark.reliability("store-cleanup")
def test_a_removal_during_an_outage_is_finished_when_the_store_returns(
    settings, use_minio, put_exact, stored_names, django_capture_on_commit_callbacks
):
    put_exact(use_minio, DEFAULT_AVATAR, b"default")
    profile = get_user_model().objects.create_user("bob", password="x").profile
    with django_capture_on_commit_callbacks(execute=True):
        avatar_replace(profile=profile, upload=jpeg_upload())
    replaced = profile.avatar.name
    working = settings.STORAGES
    settings.STORAGES = storages_setting(
        {
            "BACKEND": "storage.backends.MinIOStorage",
            "OPTIONS": {
                **working["default"]["OPTIONS"],
                "endpoint": "127.0.0.1:9",
                "max_retries": 0,
            },
        }
    )

    with django_capture_on_commit_callbacks(execute=True):
        avatar_remove(profile=profile)

    assert list(PendingDeletion.objects.values_list("name", flat=True)) == [replaced]
    settings.STORAGES = working
    assert stored_names(use_minio, "profile_pics") == [replaced]

    # The next successful write, whoever makes it, finishes the deletion.
    other = get_user_model().objects.create_user("carol", password="x").profile
    with django_capture_on_commit_callbacks(execute=True):
        avatar_replace(profile=other, upload=jpeg_upload())

    assert stored_names(use_minio, "profile_pics") == [other.avatar.name]
    assert not PendingDeletion.objects.exists()


def test_a_queued_deletion_is_finished_by_the_command(any_storage, stored_names):
    name = any_storage.save("profile_pics/old.jpg", ContentFile(b"x"))
    PendingDeletion.objects.create(name=name, attempts=1)

    call_command("media_orphans", "--delete", stdout=io.StringIO())

    assert stored_names(any_storage, "profile_pics") == []
    assert not PendingDeletion.objects.exists()


def test_a_queued_name_that_a_row_references_again_is_kept(
    profile, any_storage, stored_names, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        avatar_replace(profile=profile, upload=jpeg_upload())
    PendingDeletion.objects.create(name=profile.avatar.name)

    call_command("media_orphans", "--delete", stdout=io.StringIO())

    assert stored_names(any_storage, "profile_pics") == [profile.avatar.name]
    assert not PendingDeletion.objects.exists()


def orphans(*args: str) -> str:
    out = io.StringIO()
    call_command("media_orphans", *args, stdout=out)
    return out.getvalue()


@pytest.fixture
def two_hours_later(monkeypatch):
    """The command runs two hours after the test wrote its objects: past the
    default grace period (the store's Last-Modified cannot be set back)."""
    now = timezone.now
    monkeypatch.setattr(timezone, "now", lambda: now() + timedelta(hours=2))


@pytest.fixture
def media(profile, any_storage, django_capture_on_commit_callbacks):
    """One referenced avatar, one orphan in each media folder, one private file."""
    with django_capture_on_commit_callbacks(execute=True):
        avatar_replace(profile=profile, upload=jpeg_upload())
    return {
        "referenced": profile.avatar.name,
        "orphans": [
            any_storage.save("profile_pics/lost.jpg", ContentFile(b"x")),
            any_storage.save("token_logo/nested/lost.png", ContentFile(b"x")),
        ],
        "private": any_storage.save("private/notes.txt", ContentFile(b"x")),
    }


def test_the_command_lists_unreferenced_objects_and_deletes_nothing(
    media, any_storage, two_hours_later
):
    report = orphans()

    for name in media["orphans"]:
        assert f"unreferenced    {name}" in report
    assert media["referenced"] not in report
    assert "scanned 3, referenced 1, younger than 60 min 0, unreferenced 2" in report
    assert "Nothing was deleted" in report
    assert all(any_storage.exists(name) for name in media["orphans"])


def test_delete_removes_only_old_unreferenced_media(
    media, any_storage, two_hours_later
):
    dry = orphans("--delete", "--dry-run")
    assert all(any_storage.exists(name) for name in media["orphans"])
    assert "deleted 0" in dry

    report = orphans("--delete")

    assert "deleted 2, failed 0" in report
    assert not any(any_storage.exists(name) for name in media["orphans"])
    assert any_storage.exists(media["referenced"])
    assert any_storage.exists(media["private"])
    assert any_storage.exists(DEFAULT_AVATAR)


def test_objects_younger_than_the_grace_period_are_left_alone(media, any_storage):
    # An upload writes its object before its row commits: a young unreferenced
    # object may be one in flight.
    report = orphans("--delete")

    assert "younger than 60 min 2, unreferenced 0, deleted 0" in report
    assert all(any_storage.exists(name) for name in media["orphans"])


@pytest.mark.parametrize("minutes", ["0", "4"])
def test_a_grace_period_shorter_than_an_upload_can_take_is_refused(
    media, any_storage, minutes
):
    # media's objects were written a moment ago, as an upload in flight
    # (its row not committed yet) writes its object.
    with pytest.raises(CommandError, match="--grace-minutes must be at least 5: "):
        orphans("--delete", "--grace-minutes", minutes)

    assert all(any_storage.exists(name) for name in media["orphans"])


class ListingThenRemovingStorage(FileSystemStorage):
    """Local media where each file of profile_pics/ named ``replaced*`` is
    removed right after it is listed: an avatar replaced while the command
    walks the folder."""

    def listdir(self, path):
        directories, files = super().listdir(path)
        for name in files:
            if name.startswith("replaced"):
                os.remove(self.path(f"{path}/{name}"))
        return directories, files


def test_a_file_removed_while_the_folder_is_walked_is_skipped(
    settings, media_root, two_hours_later
):
    settings.STORAGES = storages_setting(
        {
            "BACKEND": f"{__name__}.ListingThenRemovingStorage",
            "OPTIONS": {"location": media_root, "base_url": "/media/"},
        }
    )
    from django.core.files.storage import default_storage

    lost = default_storage.save("profile_pics/lost.jpg", ContentFile(b"x"))
    default_storage.save("profile_pics/replaced.jpg", ContentFile(b"x"))

    report = orphans("--delete")

    assert f"deleted         {lost}" in report
    assert "replaced" not in report
    assert "scanned 1, referenced 0, younger than 60 min 0, unreferenced 1" in report
    assert "deleted 1, failed 0" in report
    assert list((media_root / "profile_pics").iterdir()) == []


@pytest.mark.parametrize("args", [[], ["--delete"]], ids=["list", "delete"])
@pytest.mark.reliability("store-errors")
def test_an_endpoint_that_is_not_an_s3_api_stops_the_command_saying_so(
    settings, minio_options, web_server, args
):
    # MINIO_ENDPOINT on MinIO's console port: 200 and a page to everything,
    # so a queued deletion would seem done and a listing has no S3 in it.
    settings.STORAGES = storages_setting(
        {
            "BACKEND": "storage.backends.MinIOStorage",
            "OPTIONS": {**minio_options, "endpoint": web_server(), "max_retries": 0},
        }
    )
    PendingDeletion.objects.create(name="profile_pics/queued.jpg")

    with pytest.raises(CommandError) as stopped:
        orphans(*args)

    assert "the endpoint does not look like an S3 API" in str(stopped.value)
    assert "MINIO_ENDPOINT" in str(stopped.value)
    assert PendingDeletion.objects.filter(name="profile_pics/queued.jpg").exists()


@pytest.mark.reliability("store-cleanup")
def test_a_failed_deletion_is_queued_and_the_command_fails(
    media, monkeypatch, any_storage, two_hours_later
):
    from storage.exceptions import StorageUnavailable

    def refuse(name):
        raise StorageUnavailable("down")

    monkeypatch.setattr(type(any_storage._wrapped), "delete", lambda self, n: refuse(n))

    with pytest.raises(CommandError, match="queued"):
        orphans("--delete")

    assert sorted(PendingDeletion.objects.values_list("name", flat=True)) == sorted(
        media["orphans"]
    )


# --- private files: identity documents in the private storage -------------------


def identity_documents_submit(username: str) -> list[str]:
    from verification.documents import document_process
    from verification.services import verification_submit
    from verification.tests.samples import full_set

    user = get_user_model().objects.create_user(username, password="x")
    documents = {kind: document_process(file) for kind, file in full_set().items()}
    verification = verification_submit(user=user, documents=documents)
    return sorted(document.file.name for document in verification.documents.all())


def test_identity_documents_are_referenced_and_lost_ones_are_found(
    any_private_storage, media_root, two_hours_later
):
    documents = identity_documents_submit("dora")
    lost = any_private_storage.save("private/identity/999/lost.jpg", ContentFile(b"x"))

    report = orphans()

    assert f"unreferenced    {lost}" in report
    assert not any(name in report for name in documents)
    assert "scanned 4, referenced 3, younger than 60 min 0, unreferenced 1" in report

    deleted = orphans("--delete")

    assert "deleted 1, failed 0" in deleted
    assert not any_private_storage.exists(lost)
    assert all(any_private_storage.exists(name) for name in documents)


def test_a_queued_deletion_of_a_private_file_is_finished_in_the_private_storage(
    any_private_storage, stored_names
):
    name = any_private_storage.save("private/identity/5/old.jpg", ContentFile(b"x"))
    PendingDeletion.objects.create(name=name, attempts=1)

    call_command("media_orphans", "--delete", stdout=io.StringIO())

    assert stored_names(any_private_storage, "private") == []
    assert not PendingDeletion.objects.exists()
