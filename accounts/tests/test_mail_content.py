"""What the mails say, as received by the loopback SMTP server: text that
someone else wrote (a browser's name, an API key's) stays text, and only the
links the app makes are links."""

from __future__ import annotations

import re

import pytest
from django.test import Client

from tests.factories import PASSWORD, sign_up, user_make

pytestmark = pytest.mark.django_db

FIREFOX = "Mozilla/5.0 (X11; Linux x86_64; rv:140.0) Gecko/20100101 Firefox/140.0"
LURE = "Locked! Unlock at https://evil.example/unlock"


def links(html: str) -> list[str]:
    return re.findall(r'<a\s[^>]*href="([^"]*)"', html)


def test_a_sign_in_from_a_browser_named_like_a_message_is_not_quoted_as_one(
    smtp_server, django_capture_on_commit_callbacks
):
    user_make("alice")
    with django_capture_on_commit_callbacks(execute=True):
        Client(HTTP_USER_AGENT=FIREFOX).post(
            "/accounts/login/", {"login": "alice", "password": PASSWORD}
        )
        Client(HTTP_USER_AGENT=LURE).post(
            "/accounts/login/", {"login": "alice", "password": PASSWORD}
        )

    mail = smtp_server.wait_for("New sign-in")
    assert mail.subject == "[Crypto Exchange] New sign-in from Unknown device"
    # Quoted as what it is, the browser's own words, and no link.
    assert f"Browser: {LURE}" in mail.text
    assert links(mail.html) == []


def test_a_notice_dates_the_change_in_utc_as_its_own_text_does(
    client, reauthenticate, smtp_server, django_capture_on_commit_callbacks
):
    alice = user_make("alice")
    client.force_login(alice)
    reauthenticate(client, PASSWORD)

    with django_capture_on_commit_callbacks(execute=True):
        client.post("/api/keys/create/", {"name": "bot", "scopes": ["read"]})

    mail = smtp_server.wait_for("API key")
    [date] = re.findall(r"^- Date: ([^\r\n]*)", mail.text, re.MULTILINE)
    assert re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d UTC", date), date


def test_an_api_key_name_is_text_in_the_body_never_in_the_subject_nor_a_link(
    client, reauthenticate, smtp_server, django_capture_on_commit_callbacks
):
    alice = user_make("alice")
    client.force_login(alice)
    reauthenticate(client, PASSWORD)
    name = "Tom's bot & co https://evil.example"

    with django_capture_on_commit_callbacks(execute=True):
        client.post("/api/keys/create/", {"name": name, "scopes": ["read"]})

    mail = smtp_server.wait_for("API key")
    assert mail.subject == "[Crypto Exchange] API key created"
    assert f'An API key named "{name}"' in mail.text
    assert "Tom&#x27;s bot &amp; co https://evil.example" in mail.html
    assert links(mail.html) == []


def test_a_link_the_app_sends_is_still_a_link(smtp_server):
    sign_up(Client(), "newbie")

    mail = smtp_server.wait_for("Confirm", to="newbie@example.com")
    [confirm] = [word for word in mail.text.split() if "/accounts/confirm" in word]
    assert links(mail.html) == [confirm]
