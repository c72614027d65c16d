"""Avatars through the service layer, on the local disk and on MinIO alike."""

import io

import pytest
from django.contrib.auth import get_user_model
from django.core.exceptions import ValidationError
from django.core.files.storage import storages
from django.core.files.uploadedfile import SimpleUploadedFile
from PIL import Image

from accounts.models import DEFAULT_AVATAR, Profile
from accounts.services import avatar_remove, avatar_replace
from storage.backends import MinIOStorage
from storage.exceptions import StorageUnavailable
from tests.factories import jpeg_upload

pytestmark = pytest.mark.django_db


def test_every_new_user_gets_a_profile_with_the_default_avatar():
    user = get_user_model().objects.create_user("bob", password="x-secret-1")

    assert Profile.objects.get(user=user).avatar.name == DEFAULT_AVATAR


def test_replacing_the_avatar_stores_a_300_square_jpeg(profile, any_storage):
    avatar_replace(profile=profile, upload=jpeg_upload())

    profile.refresh_from_db()
    assert profile.avatar.name.startswith("profile_pics/")
    assert profile.avatar.name.endswith(".jpg")
    with any_storage.open(profile.avatar.name) as stored:
        image = Image.open(io.BytesIO(stored.read()))
    assert (image.format, image.size) == ("JPEG", (300, 300))


def test_the_old_avatar_is_deleted_only_after_commit(
    profile, any_storage, django_capture_on_commit_callbacks
):
    avatar_replace(profile=profile, upload=jpeg_upload())
    first = profile.avatar.name

    with django_capture_on_commit_callbacks() as callbacks:
        avatar_replace(profile=profile, upload=jpeg_upload())
        assert any_storage.exists(first)
    for callback in callbacks:
        callback()

    assert not any_storage.exists(first)
    assert any_storage.exists(profile.avatar.name)


def test_the_default_avatar_is_never_deleted(
    profile, any_storage, stored_names, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        avatar_replace(profile=profile, upload=jpeg_upload())
    with django_capture_on_commit_callbacks(execute=True):
        avatar_remove(profile=profile)

    profile.refresh_from_db()
    assert profile.avatar.name == DEFAULT_AVATAR
    assert any_storage.exists(DEFAULT_AVATAR)
    assert stored_names(any_storage, "profile_pics") == []


def test_a_refused_upload_leaves_the_row_and_the_storage_as_they_were(
    profile, any_storage, stored_names
):
    svg = SimpleUploadedFile("me.jpg", b"<svg xmlns='http://www.w3.org/2000/svg'/>")

    with pytest.raises(ValidationError) as refused:
        avatar_replace(profile=profile, upload=svg)

    assert refused.value.code == "format_not_allowed"
    profile.refresh_from_db()
    assert profile.avatar.name == DEFAULT_AVATAR
    assert stored_names(any_storage) == [DEFAULT_AVATAR]


@pytest.mark.reliability("store-cleanup")
def test_a_failed_row_update_removes_the_new_object(profile, any_storage, stored_names):
    # The row disappears between loading and saving (another request deleted
    # the user): locking it finds nothing and the upload must not linger.
    stale = Profile.objects.get(pk=profile.pk)
    Profile.objects.filter(pk=profile.pk).delete()

    with pytest.raises(Profile.DoesNotExist):
        avatar_replace(profile=stale, upload=jpeg_upload())

    assert stale.avatar.name == DEFAULT_AVATAR
    assert stored_names(any_storage) == [DEFAULT_AVATAR]


@pytest.mark.reliability("store-refused")
def test_a_storage_outage_raises_storage_unavailable_and_changes_nothing(
    settings, minio_options
):
    settings.STORAGES = {
        **settings.STORAGES,
        "default": {
            "BACKEND": "storage.backends.MinIOStorage",
            "OPTIONS": {**minio_options, "endpoint": "127.0.0.1:9", "max_retries": 0},
        },
    }
    user = get_user_model().objects.create_user("carol", password="x-secret-1")
    assert isinstance(storages["default"], MinIOStorage)

    with pytest.raises(StorageUnavailable):
        avatar_replace(profile=user.profile, upload=jpeg_upload())

    assert Profile.objects.get(pk=user.profile.pk).avatar.name == DEFAULT_AVATAR
