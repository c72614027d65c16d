"""What the mails say, as received by the loopback SMTP server: text that
someone else wrote (a browser's name, an API key's) stays text, and only the
links the app makes are links."""

from __future__ import annotations

import re

import pytest
from django.test import Client
from django.utils.html import escape

from tests.factories import PASSWORD, sign_up, user_make

pytestmark = pytest.mark.django_db

FIREFOX = "Mozilla/5.0 (X11; Linux x86_64; rv:140.0) Gecko/20100101 Firefox/140.0"
LURE = "Locked! Unlock at https://evil.example/unlock"
NEW = "a-new-pass-2026"


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


def test_every_mail_has_a_message_id_in_the_domain_it_is_sent_from(
    settings, mailoutbox, django_capture_on_commit_callbacks
):
    settings.DEFAULT_FROM_EMAIL = "Crypto Exchange <no-reply@exchange.example>"
    user_make("alice")
    # The site's own notice (a new browser) and one of allauth's (a reset).
    with django_capture_on_commit_callbacks(execute=True):
        for browser in (FIREFOX, LURE):
            Client(HTTP_USER_AGENT=browser).post(
                "/accounts/login/", {"login": "alice", "password": PASSWORD}
            )
    Client().post("/accounts/password/reset/", {"email": "alice@example.com"})

    assert [mail.subject for mail in mailoutbox] == [
        "[Crypto Exchange] New sign-in from Unknown device",
        "[Crypto Exchange] Password Reset Email",
    ]
    ids = [mail.message()["Message-ID"] for mail in mailoutbox]
    assert all(re.fullmatch(r"<[^@<>]+@exchange\.example>", id_) for id_ in ids), ids
    assert len(set(ids)) == 2


def test_a_link_the_app_sends_is_still_a_link(smtp_server):
    sign_up(Client(), "newbie")

    mail = smtp_server.wait_for("Confirm", to="newbie@example.com")
    [confirm] = [word for word in mail.text.split() if "/accounts/confirm" in word]
    assert links(mail.html) == [confirm]


def mail_to(smtp_server, subject: str):
    """The one mail received with exactly ``subject`` (after the prefix)."""
    [mail] = [
        mail
        for mail in smtp_server.messages
        if mail.subject == f"[Crypto Exchange] {subject}"
    ]
    return mail


def link_in(mail, path: str) -> str:
    return re.search(rf"https?://[^/\s]+({re.escape(path)}[^\s]+/)", mail.text)[1]


def test_a_password_reset_notice_greets_the_user_by_name(client, smtp_server):
    user_make("alice")
    client.post("/accounts/password/reset/", {"email": "alice@example.com"})
    link = link_in(
        smtp_server.wait_for("Password Reset Email"), "/accounts/password/reset/key/"
    )
    form = client.get(link)

    client.post(form["Location"], {"password1": NEW, "password2": NEW})

    smtp_server.wait_for("Password Reset", to="alice@example.com")
    notice = mail_to(smtp_server, "Password Reset")
    assert notice.text.splitlines()[0] == "Hello alice,"
    assert "Hello alice," in notice.html


def test_an_address_change_confirmed_signed_out_greets_the_user_by_name(
    client, reauthenticate, smtp_server
):
    client.force_login(user_make("alice"))
    reauthenticate(client, PASSWORD)
    client.post("/accounts/email/", {"email": "new@example.com", "action_add": ""})
    link = link_in(
        smtp_server.wait_for("Confirm", to="new@example.com"),
        "/accounts/confirm-email/",
    )

    # Opened where alice is not signed in: her phone's mail app.
    assert Client().post(link).status_code == 302

    notice = smtp_server.wait_for("Email Changed", to="alice@example.com")
    assert notice.text.splitlines()[0] == "Hello alice,"
    assert "Hello alice," in notice.html


def test_a_sign_in_from_a_new_browser_is_announced_as_a_sign_in_not_a_change(
    smtp_server, django_capture_on_commit_callbacks
):
    user_make("alice")
    with django_capture_on_commit_callbacks(execute=True):
        for browser in (FIREFOX, "Another browser"):
            Client(HTTP_USER_AGENT=browser).post(
                "/accounts/login/", {"login": "alice", "password": PASSWORD}
            )

    mail = smtp_server.wait_for("New sign-in")
    text = mail.text.replace("\r\n", "\n")
    paragraphs = [part for part in text.split("\n\n") if part.strip()]
    assert paragraphs[:4] == [
        "Hello alice,",
        "You are receiving this mail because someone signed in to your account "
        "from a device we have not seen before:",
        "Unknown device",
        "If this was not you, change your password now and turn on two-factor "
        "authentication. The sign-in came from:",
    ]
    assert "change" not in paragraphs[1]
    # The HTML part says the same, paragraph for paragraph.
    for paragraph in paragraphs:
        assert escape(paragraph).replace("\n", "<br>") in mail.html, paragraph
