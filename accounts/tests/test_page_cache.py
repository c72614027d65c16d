"""The profile page served again from `accounts.page_cache`: never stale, never
another session's, with a CSRF token that works."""

import io
import re
from importlib import import_module

import pytest
from django.contrib.auth import (
    BACKEND_SESSION_KEY,
    HASH_SESSION_KEY,
    SESSION_KEY,
    get_user_model,
)
from django.core.files.uploadedfile import SimpleUploadedFile
from django.db import connection
from django.http import HttpResponse
from django.test import Client
from django.test.utils import CaptureQueriesContext
from PIL import Image

from accounts.models import DEFAULT_AVATAR
from accounts.page_cache import profile_page_cached, profile_page_store
from trading.api_keys import api_key_authenticate, api_key_create
from trading.models import ApiKey

pytestmark = pytest.mark.django_db

PROFILE = "/accounts/profile/"
TOKEN = re.compile(r'name="csrfmiddlewaretoken" value="([^"]+)"')


def jpeg() -> SimpleUploadedFile:
    buffer = io.BytesIO()
    Image.new("RGB", (400, 300), (30, 60, 90)).save(buffer, "JPEG")
    return SimpleUploadedFile("me.jpg", buffer.getvalue(), "image/jpeg")


def signed_in(user, **kwargs) -> Client:
    client = Client(**kwargs)
    client.force_login(user)
    return client


def view(client: Client) -> tuple[str, bool]:
    """The page, and whether it was rendered (False: it came from the cache)."""
    response = client.get(PROFILE)
    assert response.status_code == 200
    return response.content.decode(), bool(response.templates)


def without_tokens(page: str) -> str:
    return TOKEN.sub("", page)


@pytest.fixture
def alice():
    return get_user_model().objects.create_user(
        "alice", email="alice@example.com", password="x-secret-1"
    )


@pytest.fixture
def bob():
    return get_user_model().objects.create_user("bob", password="x-secret-1")


def test_a_second_view_comes_from_the_cache_without_rendering(alice):
    client = signed_in(alice)
    first, first_rendered = view(client)
    with CaptureQueriesContext(connection) as queries:
        second, second_rendered = view(client)

    assert first_rendered and not second_rendered
    assert without_tokens(second) == without_tokens(first)
    assert "<h1>alice</h1>" in second and "alice@example.com" in second
    # The session, the user, the profile with its keys: nothing for the cache.
    assert len(queries) == 3


def test_every_view_has_a_new_csrf_token_and_a_cached_one_posts(alice):
    client = signed_in(alice, enforce_csrf_checks=True)
    view(client)  # rendered, and sets the CSRF cookie
    page, rendered = view(client)
    again, _ = view(client)
    tokens = TOKEN.findall(page)

    assert not rendered
    assert len(tokens) >= 3 and len(set(tokens)) == 1  # one token, every form
    assert TOKEN.findall(again)[0] != tokens[0]  # masked anew on each view
    assert "\x00" not in page
    created = client.post(
        "/api/keys/create/",
        {"name": "bot", "scopes": ["read"], "csrfmiddlewaretoken": tokens[0]},
    )
    assert created.status_code == 200
    assert ApiKey.objects.filter(user=alice, name="bot").exists()


def test_a_post_without_the_token_is_still_refused(alice):
    client = signed_in(alice, enforce_csrf_checks=True)
    view(client)
    view(client)

    assert client.post("/accounts/profile/avatar/remove/").status_code == 403


def test_a_new_picture_and_its_removal_show_at_once(alice):
    client = signed_in(alice)
    view(client)
    view(client)

    client.post(PROFILE, {"avatar": jpeg()})
    alice.profile.refresh_from_db()
    new_url = alice.profile.avatar.url
    with_message, _ = view(client)
    after, _ = view(client)
    client.post("/accounts/profile/avatar/remove/")
    removed, _ = view(client)
    removed_again, from_render = view(client)

    assert (
        new_url in with_message and "Your profile picture was updated." in with_message
    )
    assert new_url in after and "Your profile picture was updated." not in after
    assert new_url not in removed and "Your profile picture was removed." in removed
    assert from_render  # the page with the message was not kept
    assert new_url not in removed_again
    assert f"/media/{DEFAULT_AVATAR}" in removed_again
    assert "Your profile picture was removed." not in removed_again


def test_api_keys_created_revoked_and_used_show_at_once(alice):
    client = signed_in(alice)
    view(client)
    view(client)

    client.post("/api/keys/create/", {"name": "my bot", "scopes": ["read"]})
    key = ApiKey.objects.get(name="my bot")
    created, _ = view(client)
    cached, rendered = view(client)
    _, secret = api_key_create(user=alice, name="script", scopes=["read"])
    api_key_authenticate(key=secret)  # a program uses it: `last_used_at`
    used, _ = view(client)
    client.post(f"/api/keys/{key.pk}/revoke/")
    view(client)  # with the "was revoked" message
    revoked, _ = view(client)

    assert f"{key.prefix}.…" in created and "my bot" in created
    assert not rendered and without_tokens(cached) == without_tokens(created)
    script_row = re.search(r"<td>script</td>.*?</tr>", used, re.S)[0]
    assert "never" not in script_row
    assert f"{key.prefix}.…" not in revoked and "my bot" not in revoked
    assert "script" in revoked


def test_a_change_made_anywhere_shows_at_once(alice):
    client = signed_in(alice)
    view(client)
    view(client)

    # No save(), no signal: the page still sees it, as it reads what it shows.
    get_user_model().objects.filter(pk=alice.pk).update(
        username="alice2", email="new@example.com"
    )
    page, rendered = view(client)

    assert rendered
    assert "<h1>alice2</h1>" in page and "new@example.com" in page


def test_another_user_never_gets_the_page(alice, bob):
    api_key_create(user=alice, name="alice's bot", scopes=["read"])
    alices = signed_in(alice)
    view(alices)
    view(alices)

    bobs_page, rendered = view(signed_in(bob))

    assert rendered
    assert "<h1>bob</h1>" in bobs_page
    assert "alice" not in bobs_page


def test_a_new_login_renders_its_own_page_and_a_logout_ends_it(alice):
    first = signed_in(alice)
    view(first)
    view(first)

    second = Client(enforce_csrf_checks=True)
    login_page = second.get("/accounts/login/").content.decode()
    second.post(
        "/accounts/login/",
        {
            "username": "alice",
            "password": "x-secret-1",
            "csrfmiddlewaretoken": TOKEN.search(login_page)[1],
        },
    )
    page, rendered = view(second)
    first.post("/accounts/logout/")

    assert rendered
    assert (
        second.post(
            "/accounts/profile/avatar/remove/",
            {"csrfmiddlewaretoken": TOKEN.search(page)[1]},
        ).status_code
        == 302
    )
    assert first.get(PROFILE).status_code == 302  # to the login page


def test_a_page_is_only_served_to_the_session_it_was_rendered_for(alice, settings):
    first = signed_in(alice)
    view(first)
    view(first)
    # A second session of the same user, made without a login (which would
    # change `last_login` in the user row): nothing else tells them apart.
    store = import_module(settings.SESSION_ENGINE).SessionStore()
    store[SESSION_KEY] = str(alice.pk)
    store[BACKEND_SESSION_KEY] = "django.contrib.auth.backends.ModelBackend"
    store[HASH_SESSION_KEY] = alice.get_session_auth_hash()
    store.save()
    second = Client()
    second.cookies[settings.SESSION_COOKIE_NAME] = store.session_key

    page, rendered = view(second)

    assert rendered and "<h1>alice</h1>" in page


def test_a_refused_upload_is_not_kept(alice):
    client = signed_in(alice)
    view(client)

    refused = client.post(PROFILE, {"avatar": SimpleUploadedFile("a.jpg", b"text")})
    page, _ = view(client)

    assert refused.status_code == 400 and "not an image" in refused.content.decode()
    assert "not an image" not in page


def test_responses_are_private_and_never_stored_by_a_cache(alice):
    client = signed_in(alice)

    for _ in range(2):
        response = client.get(PROFILE)
        assert "private" in response["Cache-Control"]
        assert "no-store" in response["Cache-Control"]
        assert "Cookie" in response["Vary"]


def test_a_page_with_a_form_of_another_token_is_not_kept(rf):
    def page(*tokens: str) -> HttpResponse:
        return HttpResponse(
            "".join(
                f'<input type="hidden" name="csrfmiddlewaretoken" value="{token}">'
                for token in tokens
            )
        )

    profile_page_store("mixed", page("a" * 64, "b" * 64), csrf_token="a" * 64)
    profile_page_store("same", page("a" * 64, "a" * 64), csrf_token="a" * 64)

    assert profile_page_cached(rf.get(PROFILE), "mixed") is None
    served = profile_page_cached(rf.get(PROFILE), "same").content.decode()
    assert len(set(TOKEN.findall(served))) == 1
    assert "a" * 64 not in served
