"""Whom the site mails, and how much, as the loopback SMTP server receives it:
security notices only to a verified address, with no typed text in their
subjects; password-reset mails within the address's limit however many
accounts hold the address."""

from __future__ import annotations

import logging
import re
from urllib.parse import urlsplit

import pytest
from allauth.account.models import EmailAddress
from django.test import Client

from tests.factories import PASSWORD, sign_up, user_make
from trading.models import ApiKey

# The notices are sent after real commits, as in production.
pytestmark = pytest.mark.django_db(transaction=True)

STRANGER = "stranger@example.org"
SPAM = "URGENT call +1-555-0100 now"


def notices_not_sent(caplog) -> list[tuple[int, str]]:
    return [
        (record.user, record.notice)
        for record in caplog.records
        if record.levelno == logging.INFO and record.getMessage() == "notice not sent"
    ]


def save_and_remove_address(client, label: str) -> None:
    saved = client.post(
        "/api/v1/addresses/",
        {"token": "BTC", "address": "bc1qexampleaddr", "label": label},
        content_type="application/json",
    )
    assert saved.status_code == 201, saved.content
    removed = client.delete(f"/api/v1/addresses/{saved.json()['id']}/")
    assert removed.status_code == 204, removed.content


def create_and_revoke_key(client, name: str) -> None:
    created = client.post("/api/keys/create/", {"name": name, "scopes": ["read"]})
    assert created.status_code == 200, created.content[:300]
    api_key = ApiKey.objects.get(name=name)
    assert client.post(f"/api/keys/{api_key.pk}/revoke/").status_code == 302


def log_in_from(user_agent: str) -> None:
    login = {"login": "mallory", "password": PASSWORD}
    response = Client(HTTP_USER_AGENT=user_agent).post("/accounts/login/", login)
    assert response.status_code == 302


def test_notices_wait_for_a_verified_address_and_carry_no_typed_text_in_subjects(
    smtp_server, btc, reauthenticate, caplog
):
    caplog.set_level(logging.INFO, logger="accounts.adapter")
    # Anyone may sign up with a stranger's address: signed in at once.
    mallory = Client()
    assert sign_up(mallory, "mallory", email=STRANGER).status_code == 302
    confirmation = smtp_server.wait_for("Confirm Your Email Address", to=STRANGER)
    reauthenticate(mallory, PASSWORD)

    for n in range(3):
        save_and_remove_address(mallory, f"{SPAM} {n}")
        create_and_revoke_key(mallory, f"{SPAM} key {n}")
    log_in_from("curl/8.5.0")  # a browser never seen before

    # Nothing but the link the sign-up sent; each notice left out is logged.
    assert smtp_server.messages == [confirmation]
    user_id = EmailAddress.objects.get(email=STRANGER).user_id
    templates = [
        "accounts/email/address_saved",
        "accounts/email/api_key_created",
        "accounts/email/api_key_revoked",
    ]
    assert notices_not_sent(caplog) == [
        *[(user_id, template) for _ in range(3) for template in templates],
        (user_id, "accounts/email/new_sign_in"),
    ]

    # Once the address is verified, the notices go to it; their subjects name
    # the event, only the text quotes what the user typed.
    link = re.search(r"\S+/accounts/confirm-email/[^/\s]+/", confirmation.text)
    assert mallory.post(urlsplit(link[0]).path).status_code == 302
    assert EmailAddress.objects.get(email=STRANGER).verified
    create_and_revoke_key(mallory, f"{SPAM} key 3")
    log_in_from("Mozilla/5.0 (Windows NT 10.0; Win64; x64) Firefox/128.0")

    notices = smtp_server.messages[1:]
    assert [(mail.envelope_to, mail.subject) for mail in notices] == [
        ([STRANGER], "[Crypto Exchange] API key created"),
        ([STRANGER], "[Crypto Exchange] API key revoked"),
        ([STRANGER], "[Crypto Exchange] New sign-in from Firefox on Windows"),
    ]
    assert f'named "{SPAM} key 3"' in notices[0].text
    assert f'named "{SPAM} key 3"' in notices[1].text
    assert len(notices_not_sent(caplog)) == 10


VICTIM = "victim@example.org"


def test_reset_mails_to_an_address_many_accounts_hold_stay_within_its_limit(
    smtp_server, reauthenticate
):
    # allauth lets any number of accounts add an address unverified, rather
    # than tell them that another account holds it.
    for n in range(5):
        holder = Client()
        holder.force_login(user_make(f"holder{n}"))
        reauthenticate(holder, PASSWORD)
        added = holder.post("/accounts/email/", {"email": VICTIM, "action_add": ""})
        assert added.status_code == 302
    assert EmailAddress.objects.filter(email=VICTIM, verified=False).count() == 5
    # The address's owner signed up after them, and has not verified it yet.
    owner = user_make("owner", verified=False)
    EmailAddress.objects.filter(user=owner).update(email=VICTIM)
    owner.email = VICTIM
    owner.save()
    before = len(smtp_server.messages)

    # Asked from 5 client addresses: the per-client limit plays no part.
    statuses = [
        Client(REMOTE_ADDR=f"10.2.0.{n + 1}")
        .post("/accounts/password/reset/", {"email": VICTIM})
        .status_code
        for n in range(5)
    ]

    resets = smtp_server.messages[before:]
    assert [(mail.envelope_to, mail.subject) for mail in resets] == 3 * [
        ([VICTIM], "[Crypto Exchange] Password Reset Email")
    ]
    # The owner's first, then the oldest; the limit is then full.
    assert [re.search(r"username is (\w+)", mail.text)[1] for mail in resets] == [
        "owner",
        "holder0",
        "holder1",
    ]
    assert statuses == [302, 429, 429, 429, 429]


def test_reset_mails_to_an_address_one_account_holds_are_three_per_request_each(
    smtp_server,
):
    user_make("alice")

    statuses = [
        Client(REMOTE_ADDR=f"10.3.0.{n + 1}")
        .post("/accounts/password/reset/", {"email": "alice@example.com"})
        .status_code
        for n in range(4)
    ]

    assert statuses == [302, 302, 302, 429]
    assert [(mail.envelope_to, mail.subject) for mail in smtp_server.messages] == 3 * [
        (["alice@example.com"], "[Crypto Exchange] Password Reset Email")
    ]
