"""`accounts.backends.SqlModelBackend`: the user row read in SQL is the ORM's
user, refused when Django's ModelBackend would refuse it; everything else is
ModelBackend's."""

from datetime import UTC, datetime

import pytest
from django.conf import settings
from django.contrib.auth import BACKEND_SESSION_KEY, authenticate, get_user_model
from django.contrib.auth.backends import ModelBackend
from django.contrib.auth.models import Group, Permission
from django.db import connection
from django.test.utils import CaptureQueriesContext

from accounts.backends import SQL_MODEL_BACKEND, SqlModelBackend, _user_reader
from accounts.rows import RowReader

pytestmark = pytest.mark.django_db

PROFILE = "/accounts/profile/"


@pytest.fixture
def alice():
    return get_user_model().objects.create_user(
        "alice", email="alice@example.com", password="x-secret-1"
    )


def full_user():
    """A user with every column set to something other than its default."""
    user = get_user_model().objects.create_user(
        "carol",
        email="carol@example.com",
        password="x-secret-1",
        first_name="Carol",
        last_name="Ünïcode O'Brien",
        is_staff=True,
        is_superuser=True,
    )
    user.last_login = datetime(2026, 3, 4, 5, 6, 7, 890123, tzinfo=UTC)
    user.date_joined = datetime(2025, 1, 2, 3, 4, 5, 678901, tzinfo=UTC)
    user.save()
    return user


def test_the_user_read_in_sql_is_the_orms_column_by_column():
    user = full_user()
    expected = get_user_model().objects.get(pk=user.pk)

    loaded = SqlModelBackend().get_user(user.pk)

    assert type(loaded) is type(expected)
    for field in get_user_model()._meta.concrete_fields:
        ours, orms = getattr(loaded, field.attname), getattr(expected, field.attname)
        assert (ours, type(ours)) == (orms, type(orms)), field.name
    assert loaded.last_login.utcoffset() is not None
    assert (loaded._state.db, loaded._state.adding) == ("default", False)
    assert loaded.get_session_auth_hash() == expected.get_session_auth_hash()


def test_the_user_is_read_with_one_precomputed_statement(alice):
    with CaptureQueriesContext(connection) as queries:
        SqlModelBackend().get_user(alice.pk)

    assert len(queries) == 1
    # The statement as built, up to its parameter (which backends log bound).
    sql = _user_reader().sql(connection)
    assert queries[0]["sql"].startswith(sql[: sql.index("%s")])
    assert all(
        connection.ops.quote_name(field.column) in sql
        for field in get_user_model()._meta.concrete_fields
    )


def test_an_inactive_user_is_not_loaded(alice):
    get_user_model().objects.filter(pk=alice.pk).update(is_active=False)

    assert SqlModelBackend().get_user(alice.pk) is None
    assert ModelBackend().get_user(alice.pk) is None


def test_a_deleted_or_unknown_user_is_not_loaded(alice):
    pk = alice.pk
    alice.delete()

    assert SqlModelBackend().get_user(pk) is None
    assert SqlModelBackend().get_user(pk + 1000) is None


def test_an_inactive_user_signed_in_is_signed_out_on_the_next_request(client, alice):
    client.force_login(alice)
    assert client.get(PROFILE).status_code == 200
    get_user_model().objects.filter(pk=alice.pk).update(is_active=False)

    response = client.get(PROFILE)

    assert response.status_code == 302
    assert response["Location"].startswith("/accounts/login/")


def test_a_deleted_user_signed_in_is_signed_out_on_the_next_request(client, alice):
    client.force_login(alice)
    alice.delete()

    assert client.get(PROFILE).status_code == 302


def test_authentication_and_permissions_are_model_backends(alice):
    group = Group.objects.create(name="clerks")
    group.permissions.add(Permission.objects.get(codename="view_user"))
    alice.groups.add(group)
    user = SqlModelBackend().get_user(alice.pk)

    assert authenticate(username="alice", password="x-secret-1") == alice
    assert authenticate(username="alice", password="wrong") is None
    assert user.has_perm("auth.view_user")
    assert not user.has_perm("auth.change_user")


def test_only_this_backend_is_configured():
    # Not Django's ModelBackend as well: every failed login would then hash
    # the password twice. Its old sessions are read as this backend's
    # (accounts/tests/test_sessions.py).
    assert settings.AUTHENTICATION_BACKENDS == [SQL_MODEL_BACKEND]


def test_signing_up_signs_in_with_this_backend(client):
    client.post(
        "/accounts/signup/",
        {
            "username": "newbie",
            "password1": "a-long-pass-2026",
            "password2": "a-long-pass-2026",
        },
    )

    assert client.session[BACKEND_SESSION_KEY] == SQL_MODEL_BACKEND
    assert client.get(PROFILE).status_code == 200


def test_a_reader_refuses_operators_it_does_not_know():
    with pytest.raises(ValueError, match="conditions"):
        RowReader(get_user_model(), ("id", "= 1 OR 1 ="))
