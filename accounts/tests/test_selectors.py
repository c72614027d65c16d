import pytest
from django.contrib.auth import get_user_model
from django.db import connection
from django.test.utils import CaptureQueriesContext

from accounts.models import Profile
from accounts.selectors import profile_for_user

pytestmark = pytest.mark.django_db

KEY_FIELDS = ("pk", "name", "prefix", "scopes", "created_at", "last_used_at")


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
