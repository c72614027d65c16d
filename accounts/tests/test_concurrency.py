"""Security notices raised several times at once, log-in guesses and sign-ups
sent at once: real threads on PostgreSQL, each with its own connection,
released together (``tests.threads``)."""

from __future__ import annotations

import asyncio
import re
import threading
import time
from functools import partial

import pytest
from allauth.account.models import EmailAddress
from django.contrib.auth import get_user_model
from django.test import Client, RequestFactory

from accounts.models import SecurityEvent
from accounts.services import security_notice, sign_in_record
from accounts.tests.totp import current_code
from tests.factories import PASSWORD, user_make
from tests.threads import posts_at_once, refused_page, run_together

pytestmark = [pytest.mark.postgres, pytest.mark.django_db(transaction=True)]

FIREFOX = "Mozilla/5.0 (X11; Linux x86_64; rv:140.0) Gecko/20100101 Firefox/140.0"
CHROME = (
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 "
    "(KHTML, like Gecko) Chrome/150.0.0.0 Safari/537.36"
)
MISMATCH = "The username and/or password you specified are not correct."
INCORRECT_CODE = "Incorrect code."
LOCKED = "Too many failed log-in attempts for this account or from your address."


def _request(user_agent: str = FIREFOX):
    return RequestFactory().post(
        "/", REMOTE_ADDR="127.0.0.1", HTTP_USER_AGENT=user_agent
    )


def _mails_settle(smtp_server, subject: str) -> list[str]:
    """The subjects received, once the first mail with ``subject`` is in and
    any other would have been sent too."""
    smtp_server.wait_for(subject)
    time.sleep(1)
    return [mail.subject for mail in smtp_server.messages]


@pytest.mark.reliability("race-notices")
def test_a_withdrawal_notice_raised_many_times_at_once_is_logged_and_mailed_once(
    smtp_server,
):
    alice, request = user_make("alice"), _request()

    def notice() -> None:
        security_notice(
            request=request,
            user=alice,
            kind=SecurityEvent.Kind.WITHDRAWAL_REQUESTED,
            template="accounts/email/withdrawal_requested",
            context={"amount": "1", "token": "BTC", "address": "bc1q"},
            detail="1 BTC (reference w-1)",
            once=True,
        )

    results = run_together(*[notice for _ in range(8)])

    assert all(status == "ok" for status, _ in results), results
    subjects = _mails_settle(smtp_server, "Withdrawal of 1 BTC requested")
    assert len(subjects) == 1, subjects
    assert SecurityEvent.objects.filter(user=alice).count() == 1


@pytest.mark.reliability("race-notices")
def test_sign_ins_from_one_new_browser_at_once_send_one_new_sign_in_mail(
    smtp_server,
):
    alice = user_make("alice")
    sign_in_record(request=_request(FIREFOX), user=alice)  # the first: no mail

    results = run_together(
        *[
            (lambda: sign_in_record(request=_request(CHROME), user=alice))
            for _ in range(8)
        ]
    )

    assert all(status == "ok" for status, _ in results), results
    subjects = _mails_settle(smtp_server, "New sign-in")
    assert len(subjects) == 1, subjects
    assert "Chrome" in subjects[0]
    signed_in = SecurityEvent.objects.filter(
        user=alice, kind=SecurityEvent.Kind.SIGN_IN
    )
    assert signed_in.count() == 9


@pytest.fixture
def cache_on_redis(settings, redis_server):
    """The cache the instances share in production, where the log-in
    throttles count: a Redis server."""
    settings.CACHES = {
        "default": {
            "BACKEND": "core.cache.RedisCache",
            "LOCATION": redis_server.url,
            "KEY_PREFIX": "crypto-exchange",
        }
    }


def _page_text(response) -> str:
    return " ".join(re.sub(r"<[^>]+>", " ", response.content.decode()).split())


def _answers(results) -> list[str]:
    assert all(status == "ok" for status, _ in results), results
    assert all(response.status_code == 200 for _, response in results), results
    return [_page_text(response) for _, response in results]


@pytest.mark.reliability("throttle-login")
def test_wrong_passwords_sent_at_once_from_many_addresses_stop_at_the_account_limit(
    settings, cache_on_redis
):
    # Production's hasher: the slower a password is checked, the more
    # guesses are in flight together.
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.PBKDF2PasswordHasher"]
    alice = user_make("alice")
    limit = settings.LOGIN_FAILURES_PER_ACCOUNT

    def guess(number: int):
        return Client(REMOTE_ADDR=f"198.51.100.{number + 1}").post(
            "/accounts/login/", {"login": "alice", "password": f"wrong-{number}"}
        )

    answers = _answers(run_together(*[partial(guess, n) for n in range(2 * limit)]))

    checked = [text for text in answers if MISMATCH in text]
    refused = [text for text in answers if LOCKED in text]
    assert (len(checked), len(refused)) == (limit, limit), answers
    failures = SecurityEvent.objects.filter(
        user=alice, kind=SecurityEvent.Kind.SIGN_IN_FAILED
    )
    assert failures.count() == limit
    owner = Client(REMOTE_ADDR="203.0.113.9")
    response = owner.post("/accounts/login/", {"login": "alice", "password": PASSWORD})
    assert LOCKED in _page_text(response)
    assert "_auth_user_id" not in owner.session


@pytest.mark.reliability("auth-codes")
def test_wrong_codes_sent_at_once_from_many_addresses_stop_at_the_account_limit(
    settings, cache_on_redis, mfa_enable
):
    alice = user_make("alice")
    secret = mfa_enable(alice)
    limit = settings.LOGIN_FAILURES_PER_ACCOUNT
    owner = Client(REMOTE_ADDR="203.0.113.9")
    response = owner.post("/accounts/login/", {"login": "alice", "password": PASSWORD})
    assert response["Location"] == "/accounts/2fa/authenticate/"
    right = current_code(secret)
    wrong = f"{(int(right) + 1) % 10**6:06d}"

    def guess(number: int):
        # The password step's session, from addresses of their own.
        guesser = Client(REMOTE_ADDR=f"198.51.100.{number + 1}")
        guesser.cookies = owner.cookies
        return guesser.post("/accounts/2fa/authenticate/", {"code": wrong})

    answers = _answers(run_together(*[partial(guess, n) for n in range(2 * limit)]))

    checked = [text for text in answers if INCORRECT_CODE in text]
    refused = [text for text in answers if LOCKED in text]
    assert (len(checked), len(refused)) == (limit, limit), answers
    response = owner.post("/accounts/2fa/authenticate/", {"code": right})
    assert LOCKED in _page_text(response)
    assert "_auth_user_id" not in owner.session


SIGN_UP = "/accounts/signup/"
NAME_TAKEN = "A user with that username already exists."
ADDRESS_TAKEN = "A user is already registered with this email address."


def _sign_up_form(username: str, email: str) -> dict:
    return {
        "username": username,
        "email": email,
        "password1": "a-long-pass-2026",
        "password2": "a-long-pass-2026",
    }


@pytest.mark.reliability("race-signup")
@pytest.mark.parametrize(
    ("second", "refusal"),
    [
        (("alice", "other@example.com"), NAME_TAKEN),
        (("Alice", "other@example.com"), NAME_TAKEN),
        # PostgreSQL's case-insensitive match reads a dotless i as an i.
        (("al\u0131ce", "other@example.com"), NAME_TAKEN),
        (("dave", "Alice@Example.com"), ADDRESS_TAKEN),
    ],
)
def test_two_visitors_signing_up_as_one_account_at_once_get_one_and_a_form_error(
    second, refusal
):
    first = ("alice", "alice@example.com")

    responses = posts_at_once(
        SIGN_UP,
        [(Client(), _sign_up_form(*first)), (Client(), _sign_up_form(*second))],
        held=get_user_model(),
    )

    assert refusal in refused_page(responses)
    user = get_user_model().objects.get()
    assert [address.user for address in EmailAddress.objects.all()] == [user]


def test_a_sign_up_is_committed_before_its_confirmation_mail_is_sent(
    smtp_server, monkeypatch
):
    """A slow mail server holds neither the new account nor its name: while
    the confirmation is being handed over, the account is there for others
    (another visitor asking for the name is told at once that it is taken)."""
    handing_over, release = threading.Event(), threading.Event()
    receive = smtp_server.handle_DATA

    async def held(server, session, envelope):
        handing_over.set()
        await asyncio.to_thread(release.wait, 30)
        return await receive(server, session, envelope)

    monkeypatch.setattr(smtp_server, "handle_DATA", held)
    signing_up = threading.Thread(
        target=lambda: Client().post(
            SIGN_UP, _sign_up_form("carol", "carol@example.com")
        )
    )
    signing_up.start()
    try:
        assert handing_over.wait(30)
        assert get_user_model().objects.filter(username="carol").exists()
        second = Client().post(SIGN_UP, _sign_up_form("Carol", "c2@example.com"))
        assert NAME_TAKEN in second.content.decode()
    finally:
        release.set()
        signing_up.join(60)
    assert smtp_server.wait_for("Confirm").to == "carol@example.com"


def test_the_change_of_address_sent_twice_at_once_adds_it_once(settings, smtp_server):
    """A double click on "Change e-mail": both requests find the address new;
    neither is a server error, the account has one pending address, and its
    confirmation is sent."""
    settings.ACCOUNT_REAUTHENTICATION_REQUIRED = False
    carol = user_make("carol")
    clients = [Client(), Client()]
    for client in clients:
        client.force_login(carol)
    form = {"action_add": "", "email": "new@example.com"}

    responses = posts_at_once(
        "/accounts/email/", [(client, form) for client in clients], held=EmailAddress
    )

    assert [response.status_code for response in responses] == [302, 302]
    assert sorted(
        EmailAddress.objects.filter(user=carol).values_list("email", "verified")
    ) == [("carol@example.com", True), ("new@example.com", False)]
    assert smtp_server.wait_for("Confirm").to == "new@example.com"
