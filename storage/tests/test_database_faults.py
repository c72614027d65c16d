"""The database connection lost at or just after the COMMIT of an upload: the
row, read again on a new connection, names an object the store holds, and
the replaced one is deleted only once the commit is known.

The faults are real: the backend is terminated just after the commit
(trading.tests.db_faults), or the answer to the COMMIT is lost on the wire
after PostgreSQL applied it (storage.tests.commit_cut).
"""

import pytest
from django.db import DatabaseError

from accounts.models import DEFAULT_AVATAR, Profile
from accounts.services import avatar_remove, avatar_replace
from conftest import storages_setting
from storage.tests.commit_cut import commit_answer_lost
from tests.factories import jpeg_upload
from trading.tests.db_faults import backend_killed

pytestmark = [
    pytest.mark.postgres,
    pytest.mark.django_db(transaction=True),
    pytest.mark.reliability("store-cleanup"),
]

PROFILE_UPDATE = 'UPDATE "accounts_profile"'


def profile_update(sql: str) -> bool:
    return sql.lstrip().startswith(PROFILE_UPDATE)


@pytest.fixture
def pictured(profile):
    """alice's profile with a picture of her own, which an upload replaces."""
    avatar_replace(profile=profile, upload=jpeg_upload(name="first.jpg"))
    return profile


def test_a_connection_lost_just_after_the_commit_keeps_the_new_picture(
    pictured, any_storage, stored_names
):
    replaced = pictured.avatar.name

    with backend_killed("after_commit", profile_update):
        avatar_replace(profile=pictured, upload=jpeg_upload())

    saved = Profile.objects.get(pk=pictured.pk).avatar.name
    assert saved not in ("", replaced)
    assert stored_names(any_storage, "profile_pics") == [saved]


def test_a_lost_answer_to_the_commit_keeps_the_picture_the_row_names(
    pictured, any_storage, stored_names
):
    replaced = pictured.avatar.name

    with commit_answer_lost(PROFILE_UPDATE), pytest.raises(DatabaseError):
        avatar_replace(profile=pictured, upload=jpeg_upload())

    saved = Profile.objects.get(pk=pictured.pk).avatar.name
    assert saved not in ("", replaced)  # committed, though the app was not told
    assert any_storage.exists(saved)
    # Not knowing the commit, the app deleted nothing: the replaced picture is
    # left for media_orphans.
    assert stored_names(any_storage, "profile_pics") == sorted([replaced, saved])


def test_a_refused_deletion_with_the_connection_lost_after_the_commit_is_no_error(
    settings, alice, use_minio, put_exact, stored_names, caplog
):
    """The store refuses to delete the replaced picture when the connection
    has just been lost: the removal committed, so the caller is not told it
    failed; the picture no row names is left for media_orphans."""
    put_exact(use_minio, DEFAULT_AVATAR, b"default")
    pictured = avatar_replace(profile=alice.profile, upload=jpeg_upload())
    replaced = pictured.avatar.name
    working = settings.STORAGES["default"]
    settings.STORAGES = storages_setting(
        {
            "BACKEND": working["BACKEND"],
            "OPTIONS": {
                **working["OPTIONS"],
                "endpoint": "127.0.0.1:9",
                "max_retries": 0,
            },
        }
    )

    with backend_killed("after_commit", profile_update):
        avatar_remove(profile=pictured)

    assert Profile.objects.get(pk=pictured.pk).avatar.name == DEFAULT_AVATAR
    settings.STORAGES = storages_setting(working)
    assert stored_names(use_minio, "profile_pics") == [replaced]
    assert f"could not queue {replaced} for deletion" in caplog.text
