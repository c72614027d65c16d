"""`accounts.sessions` and `accounts.sessions_cached`: the session row read in
SQL behaves as Django's database sessions do, through the real views."""

import logging
import uuid
from datetime import timedelta
from importlib import import_module

import pytest
import redis
from django.conf import settings
from django.contrib.auth import (
    BACKEND_SESSION_KEY,
    HASH_SESSION_KEY,
    SESSION_KEY,
    get_user_model,
)
from django.contrib.sessions.backends import db as django_db
from django.contrib.sessions.backends.cached_db import KEY_PREFIX as CACHED_DB_PREFIX
from django.contrib.sessions.models import Session
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from accounts import sessions, sessions_cached
from accounts.backends import DJANGO_MODEL_BACKEND, SQL_MODEL_BACKEND, _user_reader

pytestmark = pytest.mark.django_db

PROFILE = "/accounts/profile/"
PASSWORD = "x-secret-1"
REDIS_URL = "redis://127.0.0.1:6379/13"


@pytest.fixture
def alice():
    return get_user_model().objects.create_user(
        "alice", email="alice@example.com", password=PASSWORD
    )


def signed_in(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


def session_key_of(client: Client) -> str:
    return client.cookies[settings.SESSION_COOKIE_NAME].value


def is_signed_in(client: Client) -> bool:
    response = client.get(PROFILE)
    assert response.status_code in (200, 302)
    return response.status_code == 200


def session_of(user, *, backend: str, auth_hash: str | None = None) -> Client:
    """A client whose session was written without a login, as an older
    release of the site would have written it."""
    store = import_module(settings.SESSION_ENGINE).SessionStore()
    store[SESSION_KEY] = str(user.pk)
    store[BACKEND_SESSION_KEY] = backend
    store[HASH_SESSION_KEY] = auth_hash or user.get_session_auth_hash()
    store.save()
    client = Client()
    client.cookies[settings.SESSION_COOKIE_NAME] = store.session_key
    return client


def test_the_settings_use_these_stores():
    assert settings.SESSION_ENGINE == "accounts.sessions"
    assert import_module(settings.SESSION_ENGINE).SessionStore is (
        sessions.SessionStore
    )


def test_the_session_read_in_sql_is_the_orms(alice):
    key = session_key_of(signed_in(alice))
    expected = Session.objects.get(session_key=key)

    row = sessions._session_reader(Session).get(key, timezone.now())

    for field in Session._meta.concrete_fields:
        ours, orms = getattr(row, field.attname), getattr(expected, field.attname)
        assert (ours, type(ours)) == (orms, type(orms)), field.name
    assert row.expire_date.utcoffset() is not None
    assert sessions.SessionStore(key).load() == django_db.SessionStore(key).load()


def test_sessions_of_djangos_store_and_of_this_one_read_each_other():
    theirs = django_db.SessionStore()
    theirs["colour"] = "blue"
    theirs.save()
    ours = sessions.SessionStore()
    ours["colour"] = "red"
    ours.save()

    assert sessions.SessionStore(theirs.session_key).load() == {"colour": "blue"}
    assert django_db.SessionStore(ours.session_key).load() == {"colour": "red"}


def test_a_session_is_read_with_one_precomputed_statement(alice):
    key = session_key_of(signed_in(alice))

    with CaptureQueriesContext(connection) as queries:
        sessions.SessionStore(key).load()

    sql = sessions._session_reader(Session).sql(connection)
    assert len(queries) == 1
    assert queries[0]["sql"].startswith(sql[: sql.index("%s")])


def test_an_expired_session_is_not_loaded(alice):
    client = signed_in(alice)
    key = session_key_of(client)
    Session.objects.filter(pk=key).update(
        expire_date=timezone.now() - timedelta(seconds=1)
    )
    store = sessions.SessionStore(key)

    assert store.load() == {}
    assert store.session_key is None
    assert not is_signed_in(client)


def test_a_session_that_expires_later_is_loaded(alice):
    client = signed_in(alice)
    Session.objects.filter(pk=session_key_of(client)).update(
        expire_date=timezone.now() + timedelta(seconds=30)
    )

    assert is_signed_in(client)


@pytest.mark.parametrize("damage", ["garbage", "payload", "signature"])
def test_tampered_session_data_signs_out_without_an_error(alice, caplog, damage):
    client = signed_in(alice)
    key = session_key_of(client)
    data = Session.objects.get(pk=key).session_data
    payload, _, signature = data.rpartition(":")
    tampered = {
        "garbage": "not a session at all",
        "payload": payload.replace(payload[1], "A" if payload[1] != "A" else "B")
        + ":"
        + signature,
        "signature": f"{payload}:{signature[::-1]}",
    }[damage]
    Session.objects.filter(pk=key).update(session_data=tampered)

    with caplog.at_level(logging.WARNING, logger="django.security"):
        response = client.get(PROFILE)

    assert response.status_code == 302  # to the login page, not a 500
    assert response["Location"].startswith("/accounts/login/")
    assert "Session data corrupted" in caplog.text


def test_an_unknown_session_key_gives_a_new_empty_session():
    unknown = "nosuchsession0123456789abcdefghi"
    store = sessions.SessionStore(unknown)

    assert store.load() == {}
    assert store.session_key is None
    store["colour"] = "blue"
    store.save()
    assert store.session_key not in (None, unknown)
    assert not Session.objects.filter(pk=unknown).exists()


def test_a_session_key_is_a_parameter_not_sql(alice):
    key = session_key_of(signed_in(alice))

    for hostile in (f"{key}' OR '1'='1", "x' OR 1=1 --", '"; DROP TABLE x; --'):
        store = sessions.SessionStore(hostile)
        assert store.load() == {}
    assert Session.objects.filter(pk=key).exists()


def test_logging_in_and_out_through_the_views(alice):
    client = Client()
    response = client.post(
        "/accounts/login/", {"username": "alice", "password": PASSWORD}
    )
    key = session_key_of(client)

    assert response.status_code == 302
    assert response["Location"] == "/accounts/profile/"
    assert Session.objects.get(pk=key).get_decoded()[BACKEND_SESSION_KEY] == (
        SQL_MODEL_BACKEND
    )
    assert is_signed_in(client)

    assert client.post("/accounts/logout/").status_code == 302
    assert not Session.objects.filter(pk=key).exists()
    assert not is_signed_in(client)
    replay = Client()
    replay.cookies[settings.SESSION_COOKIE_NAME] = key
    assert not is_signed_in(replay)


def test_a_wrong_password_does_not_sign_in(alice):
    client = Client()

    response = client.post("/accounts/login/", {"username": "alice", "password": "no"})

    assert response.status_code == 200
    assert not is_signed_in(client)


def test_logging_in_gives_the_session_a_new_key_and_keeps_its_data(alice):
    client = Client()
    anonymous = client.session
    anonymous["basket"] = "BTC"
    anonymous.save()
    before = anonymous.session_key

    client.post("/accounts/login/", {"username": "alice", "password": PASSWORD})

    after = session_key_of(client)
    assert after != before
    assert not Session.objects.filter(pk=before).exists()
    assert Session.objects.get(pk=after).get_decoded()["basket"] == "BTC"
    assert is_signed_in(client)


def test_changing_the_password_signs_out_the_other_sessions(alice):
    changer, other = signed_in(alice), signed_in(alice)
    other_key = session_key_of(other)

    response = changer.post(
        "/accounts/password/",
        {
            "old_password": PASSWORD,
            "new_password1": "a-new-long-pass-2026",
            "new_password2": "a-new-long-pass-2026",
        },
    )

    assert response.status_code == 302
    assert is_signed_in(changer)
    assert not is_signed_in(other)
    assert not Session.objects.filter(pk=other_key).exists()  # flushed


def test_a_session_signed_in_with_djangos_model_backend_stays_signed_in(alice):
    client = session_of(alice, backend=DJANGO_MODEL_BACKEND)
    key = session_key_of(client)

    with CaptureQueriesContext(connection) as queries:
        assert is_signed_in(client)

    user_sql = _user_reader().sql(connection)
    assert any(q["sql"].startswith(user_sql[: user_sql.index("%s")]) for q in queries)
    # Reading it does not write it: the old name stays until a save.
    stored = Session.objects.get(pk=key).get_decoded()
    assert stored[BACKEND_SESSION_KEY] == DJANGO_MODEL_BACKEND


def test_a_session_of_djangos_model_backend_is_still_checked_against_the_password(
    alice,
):
    client = session_of(alice, backend=DJANGO_MODEL_BACKEND, auth_hash="0" * 64)
    key = session_key_of(client)

    assert not is_signed_in(client)
    assert not Session.objects.filter(pk=key).exists()  # flushed by Django


def test_a_session_of_a_backend_no_longer_configured_is_signed_out(alice):
    client = session_of(alice, backend="accounts.backends.RemovedBackend")

    assert not is_signed_in(client)


def test_djangos_model_backend_reads_its_own_sessions_when_configured(alice, settings):
    settings.AUTHENTICATION_BACKENDS = [SQL_MODEL_BACKEND, DJANGO_MODEL_BACKEND]
    client = session_of(alice, backend=DJANGO_MODEL_BACKEND)

    assert sessions.SessionStore(session_key_of(client)).load()[
        BACKEND_SESSION_KEY
    ] == (DJANGO_MODEL_BACKEND)
    assert is_signed_in(client)


# --- cached_db, with the shared cache on a real Redis --------------------------


@pytest.fixture
def redis_sessions(settings):
    """Sessions in the database, read through Redis (database 13, keys under a
    prefix of this test's own, deleted at the end)."""
    prefix = f"test-sessions-{uuid.uuid4().hex}"
    settings.CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": REDIS_URL,
            "KEY_PREFIX": prefix,
        }
    }
    settings.SESSION_ENGINE = "accounts.sessions_cached"
    from django.core.cache import cache

    yield cache
    client = redis.Redis.from_url(REDIS_URL)
    keys = list(client.scan_iter(match=f"{prefix}:*"))
    if keys:
        client.delete(*keys)
    client.close()


def test_cached_sessions_are_read_from_redis_then_from_the_database(
    alice, redis_sessions
):
    client = signed_in(alice)
    key = session_key_of(client)
    cached = redis_sessions.get(CACHED_DB_PREFIX + key)

    assert import_module(settings.SESSION_ENGINE).SessionStore is (
        sessions_cached.SessionStore
    )
    assert cached[SESSION_KEY] == str(alice.pk)
    with CaptureQueriesContext(connection) as queries:
        assert sessions_cached.SessionStore(key).load() == cached
    assert len(queries) == 0  # from the cache alone

    redis_sessions.delete(CACHED_DB_PREFIX + key)
    with CaptureQueriesContext(connection) as queries:
        assert sessions_cached.SessionStore(key).load() == cached
    sql = sessions._session_reader(Session).sql(connection)
    assert [q["sql"].startswith(sql[: sql.index("%s")]) for q in queries] == [True]
    assert redis_sessions.get(CACHED_DB_PREFIX + key) == cached  # cached again
    assert is_signed_in(client)


def test_cached_sessions_log_in_and_out_through_the_views(alice, redis_sessions):
    client = Client()
    client.post("/accounts/login/", {"username": "alice", "password": PASSWORD})
    key = session_key_of(client)

    assert is_signed_in(client)
    assert redis_sessions.get(CACHED_DB_PREFIX + key) is not None

    client.post("/accounts/logout/")
    assert redis_sessions.get(CACHED_DB_PREFIX + key) is None
    assert not Session.objects.filter(pk=key).exists()
    replay = Client()
    replay.cookies[settings.SESSION_COOKIE_NAME] = key
    assert not is_signed_in(replay)


def test_a_cached_session_missing_from_the_cache_and_expired_is_not_loaded(
    alice, redis_sessions
):
    client = signed_in(alice)
    key = session_key_of(client)
    redis_sessions.delete(CACHED_DB_PREFIX + key)
    Session.objects.filter(pk=key).update(
        expire_date=timezone.now() - timedelta(seconds=1)
    )

    assert sessions_cached.SessionStore(key).load() == {}
    assert not is_signed_in(client)


def test_a_cached_session_of_djangos_model_backend_stays_signed_in(
    alice, redis_sessions
):
    client = session_of(alice, backend=DJANGO_MODEL_BACKEND)

    assert is_signed_in(client)
    redis_sessions.delete(CACHED_DB_PREFIX + session_key_of(client))
    assert is_signed_in(client)


def test_a_password_change_signs_out_other_cached_sessions(alice, redis_sessions):
    changer, other = signed_in(alice), signed_in(alice)
    assert is_signed_in(other)

    changer.post(
        "/accounts/password/",
        {
            "old_password": PASSWORD,
            "new_password1": "a-new-long-pass-2026",
            "new_password2": "a-new-long-pass-2026",
        },
    )

    assert is_signed_in(changer)
    assert not is_signed_in(other)
