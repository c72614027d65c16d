import pytest
from django.contrib.auth import get_user_model
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from accounts.models import DEFAULT_AVATAR, Profile
from accounts.selectors import profile_for_user, profile_page_data
from trading.api_keys import (
    api_key_authenticate,
    api_key_create,
    api_key_revoke,
    api_keys_for_user,
)

pytestmark = pytest.mark.django_db

KEY_FIELDS = ("pk", "name", "prefix", "scopes", "created_at", "last_used_at")


@pytest.fixture
def alice():
    return get_user_model().objects.create_user("alice", password="x-secret-1")


def test_the_page_data_is_what_the_orm_reads_in_one_query(alice):
    for name in ("old", "gone", "new"):
        api_key_create(user=alice, name=name, scopes=["read"])
    api_key_revoke(user=alice, api_key=alice.api_keys.get(name="gone"))
    _, used = api_key_create(user=alice, name="used", scopes=["trade"])
    api_key_authenticate(key=used)
    api_key_create(
        user=get_user_model().objects.create_user("bob", password="x-secret-1"),
        name="bob's",
        scopes=["read"],
    )
    user = get_user_model().objects.get(pk=alice.pk)

    with CaptureQueriesContext(connection) as queries:
        data = profile_page_data(user=user)
        profile, api_keys = data.profile, data.api_keys

    assert len(queries) == 1
    stored = Profile.objects.get(user=alice)
    assert (profile.pk, profile.avatar.name, profile.updated_at) == (
        stored.pk,
        DEFAULT_AVATAR,
        stored.updated_at,
    )
    assert profile.user is user and user.profile is profile
    expected = list(api_keys_for_user(user=alice))
    assert [k.name for k in api_keys] == ["used", "new", "old"]
    assert [[getattr(k, f) for f in KEY_FIELDS] for k in api_keys] == [
        [getattr(k, f) for f in KEY_FIELDS] for k in expected
    ]
    assert timezone.is_aware(api_keys[0].last_used_at)
    assert data.avatar_name == DEFAULT_AVATAR


def test_the_page_data_of_a_user_without_keys_has_none(alice):
    data = profile_page_data(user=alice)

    assert data.api_keys == []
    assert data.profile.avatar.name == DEFAULT_AVATAR


def test_an_account_without_a_profile_gets_one(alice):
    Profile.objects.filter(user=alice).delete()
    user = get_user_model().objects.get(pk=alice.pk)

    data = profile_page_data(user=user)

    assert data.profile.pk == Profile.objects.get(user=alice).pk


def test_profile_for_user_reads_the_profile_once(alice):
    user = get_user_model().objects.get(pk=alice.pk)

    with CaptureQueriesContext(connection) as first:
        profile = profile_for_user(user=user)
    with CaptureQueriesContext(connection) as second:
        again = profile_for_user(user=user)

    assert (len(first), len(second)) == (1, 0)
    assert again is profile and profile.user_id == alice.pk


def test_profile_for_user_creates_a_missing_profile(alice):
    Profile.objects.filter(user=alice).delete()
    user = get_user_model().objects.get(pk=alice.pk)

    profile = profile_for_user(user=user)

    assert Profile.objects.get(user=alice) == profile
    assert user.profile is profile
