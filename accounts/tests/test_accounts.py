"""Accounts on django-allauth: sign-up, log-in, verification before money
moves, re-authentication, the security log and its e-mails, sessions, and the
admin's second factor. Browser flows and the real SMTP server are in
test_browser_security.py; throttles across instances in test_throttling.py."""

from __future__ import annotations

import itertools
import re
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from allauth.account.models import EmailAddress
from allauth.core import ratelimit
from django.contrib.auth import get_user_model
from django.contrib.sessions.backends.db import SessionStore
from django.test import Client, RequestFactory

from accounts.models import SecurityEvent
from accounts.tests.totp import totp_code
from tests.factories import (
    PASSWORD,
    fund,
    sign_up,
    signed_in,
    user_make,
)
from trading.models import ApiKey, Order, Withdrawal

pytestmark = pytest.mark.django_db

Kind = SecurityEvent.Kind
FIREFOX = "Mozilla/5.0 (X11; Linux x86_64; rv:140.0) Gecko/20100101 Firefox/140.0"
SAFARI = (
    "Mozilla/5.0 (iPhone; CPU iPhone OS 18_0 like Mac OS X) AppleWebKit/605.1.15 "
    "(KHTML, like Gecko) Version/18.0 Mobile/15E148 Safari/604.1"
)


def log_in(login: str, password: str = PASSWORD, *, user_agent: str = FIREFOX):
    client = Client(HTTP_USER_AGENT=user_agent)
    response = client.post("/accounts/login/", {"login": login, "password": password})
    return client, response


def password_change(client: Client):
    return client.post(
        "/accounts/password/change/",
        {
            "oldpassword": PASSWORD,
            "password1": "a-new-pass-2026",
            "password2": "a-new-pass-2026",
        },
    )


# -- Sign-up and log-in ---------------------------------------------------------


def test_sign_up_signs_in_and_mails_a_verification_link(client, mailoutbox):
    response = sign_up(client, "newbie")

    assert response.status_code == 302
    assert signed_in(client)
    address = EmailAddress.objects.get(user__username="newbie")
    assert (address.email, address.verified) == ("newbie@example.com", False)
    [mail] = mailoutbox
    assert mail.to == ["newbie@example.com"]
    assert "/accounts/confirm-email/" in mail.body
    # Every mail has an HTML part in the site's look too.
    html, kind = mail.alternatives[0]
    assert kind == "text/html" and "Crypto Exchange" in html
    profile = client.get("/accounts/profile/").content.decode()
    assert "not verified" in profile and "Send the link again" in profile


def test_a_link_asked_for_again_too_soon_is_not_sent_and_the_page_says_when(
    client, smtp_server
):
    sign_up(client, "newbie")
    smtp_server.wait_for("Confirm", to="newbie@example.com")
    profile = client.get("/accounts/profile/").content.decode()
    assert 'action="/accounts/email/"' in profile  # "Send the link again"
    send_again = {"email": "newbie@example.com", "action_send": ""}

    asked_at = datetime.now(UTC)
    page = client.post("/accounts/email/", send_again, follow=True).content.decode()

    said = re.search(
        r"A confirmation link was sent to newbie@example.com less than 3 minutes "
        r"ago; check your inbox \(and spam\), or ask again after (\d\d:\d\d) UTC\.",
        page,
    )
    assert said, page
    after = datetime.strptime(said[1], "%H:%M").time()
    assert after in {
        (asked_at + timedelta(minutes=minutes)).time().replace(second=0, microsecond=0)
        for minutes in (3, 4)
    }
    assert "Confirmation email sent" not in page
    assert len(smtp_server.messages) == 1

    # Three minutes on, the limit is over: the link is sent, and said so.
    ratelimit.clear(
        RequestFactory().post("/"), action="confirm_email", key="newbie@example.com"
    )
    page = client.post("/accounts/email/", send_again, follow=True).content.decode()

    assert "Confirmation email sent to newbie@example.com." in page
    assert "less than 3 minutes ago" not in page
    smtp_server.wait_for("Confirm", to="newbie@example.com")
    assert len(smtp_server.messages) == 2


def test_sign_up_refuses_a_weak_password_with_the_reason(client):
    response = client.post(
        "/accounts/signup/",
        {
            "username": "x",
            "email": "x@example.com",
            "password1": "123",
            "password2": "123",
        },
    )

    assert response.status_code == 200
    assert b"This password is too short" in response.content
    assert not get_user_model().objects.filter(username="x").exists()


def test_sign_up_with_a_taken_address_is_refused_and_creates_nothing(client):
    # Sign-up says so, as it must for a username; its throttle (stricter than
    # the log-in form's) is what keeps this from being a fast way to probe.
    user_make("alice")

    response = client.post(
        "/accounts/signup/",
        {
            "username": "mallory",
            "email": "alice@example.com",
            "password1": "a-long-pass-2026",
            "password2": "a-long-pass-2026",
        },
    )

    assert response.status_code == 200
    assert b"already registered with this email address" in response.content
    assert not get_user_model().objects.filter(username="mallory").exists()


@pytest.mark.parametrize("login", ["alice", "alice@example.com", "ALICE@example.com"])
def test_log_in_by_username_or_email(login):
    user_make("alice")

    client, response = log_in(login)

    assert response.status_code == 302
    assert signed_in(client)


@pytest.mark.reliability("auth-codes")
def test_a_wrong_password_does_not_sign_in_and_is_logged_for_the_account():
    alice = user_make("alice")

    client, response = log_in("alice", "wrong-password")

    assert response.status_code == 200
    assert b"not correct" in response.content
    assert not signed_in(client)
    event = SecurityEvent.objects.get(user=alice)
    assert (event.kind, event.ip_address) == (Kind.SIGN_IN_FAILED, "127.0.0.1")


@pytest.mark.reliability("throttle-login")
def test_after_too_many_failures_the_right_password_is_refused_with_when(settings):
    user_make("alice")
    for _ in range(settings.LOGIN_FAILURES_PER_ACCOUNT):
        log_in("alice", "wrong-password")

    client, response = log_in("alice")

    assert response.status_code == 200
    assert b"Try again in 15 minutes" in response.content
    assert not signed_in(client)


@pytest.mark.parametrize("login", ["ALICE", "alice@example.com"])
@pytest.mark.reliability("throttle-login")
def test_the_account_lock_holds_whatever_name_or_host_is_sent(settings, login):
    user_make("alice")
    for _ in range(settings.LOGIN_FAILURES_PER_ACCOUNT):
        log_in("alice", "wrong-password")

    client = Client(HTTP_HOST="LOCALHOST")
    response = client.post("/accounts/login/", {"login": login, "password": PASSWORD})

    assert b"Try again in 15 minutes" in response.content
    assert not signed_in(client)


# The Kelvin sign: "k" to allauth's lookup by address (Python's lower()), not
# to the database's case-insensitive match.
KELVIN = "\u212a"
LOCKED = "Too many failed log-in attempts"
WRONG = "password you specified are not correct."
WRONG_PASSWORD = "wrong-password"
_client_addresses = itertools.count(1)


def guess(login: str, password: str = WRONG_PASSWORD) -> tuple[Client, str]:
    """A log-in from a client address of its own, so that no address reaches
    its limit: the client and what the answer says (``LOCKED``, ``WRONG``)."""
    number = next(_client_addresses)
    client = Client(REMOTE_ADDR=f"198.51.{number // 250}.{number % 250 + 1}")
    page = client.post(
        "/accounts/login/", {"login": login, "password": password}
    ).content.decode()
    return client, LOCKED if LOCKED in page else WRONG if WRONG in page else page


def test_failures_through_a_look_alike_address_lock_the_account_and_are_logged(
    settings,
):
    kate = user_make("kate")
    answers = [
        guess(f"{KELVIN}ate@example.com")[1]
        for _ in range(settings.LOGIN_FAILURES_PER_ACCOUNT + 1)
    ]

    assert answers == [WRONG] * settings.LOGIN_FAILURES_PER_ACCOUNT + [LOCKED]
    for login in (f"{KELVIN}ate@example.com", "kate@example.com", "kate"):
        client, answer = guess(login, PASSWORD)
        assert answer == LOCKED
        assert not signed_in(client)
    failed = SecurityEvent.objects.filter(user=kate, kind=Kind.SIGN_IN_FAILED)
    assert failed.count() == settings.LOGIN_FAILURES_PER_ACCOUNT


def test_a_look_alike_username_signs_in_to_no_account_and_locks_none(settings):
    # allauth finds a username by the database's match, which keeps the
    # Kelvin sign apart from "k": no account is tried, none counted.
    kate = user_make("kate")
    for _ in range(settings.LOGIN_FAILURES_PER_ACCOUNT):
        guess(f"{KELVIN}ate")

    client, _ = guess(f"{KELVIN}ate", PASSWORD)
    assert not signed_in(client)
    client, _ = guess("kate", PASSWORD)
    assert signed_in(client)
    assert not SecurityEvent.objects.filter(user=kate, kind=Kind.SIGN_IN_FAILED)


def test_failures_on_an_address_several_accounts_hold_count_on_each(settings):
    # Unverified, an address can be held by several accounts, and allauth
    # checks the password of each.
    kate = user_make("kate", verified=False)
    katie = get_user_model().objects.create_user(
        "katie", email="kate@example.com", password=PASSWORD
    )
    EmailAddress.objects.create(user=katie, email="kate@example.com", primary=True)
    for _ in range(settings.LOGIN_FAILURES_PER_ACCOUNT):
        guess("kate@example.com")

    for user in (kate, katie):
        _, answer = guess(user.username, PASSWORD)
        assert answer == LOCKED
        failed = SecurityEvent.objects.filter(user=user, kind=Kind.SIGN_IN_FAILED)
        assert failed.count() == settings.LOGIN_FAILURES_PER_ACCOUNT


def test_a_stranger_adding_an_unverified_address_can_neither_lock_nor_watch_its_owner(
    settings, reauthenticate
):
    # allauth lets anyone add an address another account holds unverified.
    kate = user_make("kate", verified=False)
    mallory = user_make("mallory")
    stranger = Client()
    stranger.force_login(mallory)
    reauthenticate(stranger, PASSWORD)
    added = stranger.post("/accounts/email/", {"email": kate.email, "action_add": ""})
    assert added.status_code == 302
    for _ in range(settings.LOGIN_FAILURES_PER_ACCOUNT):
        guess("mallory")

    guess(kate.email, "typo")
    signed_in, answer = guess(kate.email, PASSWORD)
    kate_client = Client()
    kate_client.force_login(kate)
    confirmed = kate_client.post("/accounts/reauthenticate/", {"password": PASSWORD})

    assert answer == ""  # redirected, signed in
    assert signed_in.get("/accounts/profile/").status_code == 200
    assert confirmed.status_code == 302
    failed = SecurityEvent.objects.filter(kind=Kind.SIGN_IN_FAILED)
    assert failed.filter(user=kate).count() == 1
    assert failed.filter(user=mallory).count() == settings.LOGIN_FAILURES_PER_ACCOUNT


@pytest.mark.parametrize(
    ("failed", "then", "answer"),
    [
        ("{name}", "{name}", LOCKED),
        ("{name}@example.com", "{NAME}@example.com", LOCKED),
        ("{NAME}", "{name}", LOCKED),
        ("{kelvin_name}@example.com", "{name}@example.com", LOCKED),
        # No username is found with the Kelvin sign: another name.
        ("{name}", "{kelvin_name}", WRONG),
        ("{kelvin_name}", "{name}", WRONG),
    ],
)
def test_the_answer_after_many_failures_does_not_tell_whether_an_account_exists(
    settings, failed, then, answer
):
    # An unknown name is locked after as many failures as an account, under
    # the same variants of it (ACCOUNT_PREVENT_ENUMERATION).
    user_make("kate")
    answers = {}
    for name in ("kate", "kim"):
        spelled = {
            "name": name,
            "NAME": name.upper(),
            "kelvin_name": name.replace("k", KELVIN),
        }
        for _ in range(settings.LOGIN_FAILURES_PER_ACCOUNT):
            guess(failed.format(**spelled))
        answers[name] = guess(then.format(**spelled))[1]

    assert answers == {"kate": answer, "kim": answer}


def test_a_password_reset_by_e_mail_lifts_the_account_lock(
    client, settings, mailoutbox
):
    user_make("alice")
    for _ in range(settings.LOGIN_FAILURES_PER_ACCOUNT):
        log_in("alice", "wrong-password")

    client.post("/accounts/password/reset/", {"email": "alice@example.com"})
    link = next(w for w in mailoutbox[0].body.split() if "/password/reset/key/" in w)
    form = client.get(link[link.index("/accounts/") :], follow=True)
    client.post(
        form.redirect_chain[-1][0],
        {"password1": "a-fresh-pass-2026", "password2": "a-fresh-pass-2026"},
    )

    again, _ = log_in("alice", "a-fresh-pass-2026")
    assert signed_in(again)


def test_log_out_asks_then_signs_out_on_post():
    user_make("alice")
    client, _ = log_in("alice")

    assert client.get("/accounts/logout/").status_code == 200
    assert signed_in(client)
    assert client.post("/accounts/logout/").status_code == 302
    assert not signed_in(client)


def test_a_log_in_name_longer_than_any_account_is_a_form_error(client):
    response = client.post(
        "/accounts/login/", {"login": "a" * 100_000, "password": PASSWORD}
    )

    assert response.status_code == 200
    assert b"Ensure this value has at most 254 characters" in response.content


def test_the_old_log_in_and_admin_forms_lead_to_the_one_log_in(client):
    response = client.get("/admin/login/")

    assert response.status_code == 302
    assert response["Location"].startswith("/accounts/login/?next=")


# -- A verified address before money moves --------------------------------------


@pytest.fixture
def unverified(client, market, reauthenticate):
    user = user_make("newbie", verified=False)
    fund(user, market.quote, "1000")
    client.force_login(user)
    reauthenticate(client, PASSWORD)
    return user


ORDER = {"side": "buy", "type": "limit", "quantity": "0.01", "price": "100"}


@pytest.mark.reliability("access-unverified")
def test_an_unverified_account_cannot_order_from_the_page(client, market, unverified):
    response = client.post(
        f"/markets/{market.symbol}/orders/",
        {**ORDER, "time_in_force": "GTC"},
        follow=True,
    )

    assert b"Verify your e-mail address before you trade" in response.content
    assert not Order.objects.filter(user=unverified).exists()


@pytest.mark.reliability("access-unverified")
def test_an_unverified_account_gets_403_from_the_api(client, market, unverified):
    response = client.post(
        "/api/v1/orders/",
        {**ORDER, "market": market.symbol},
        content_type="application/json",
        HTTP_X_CSRFTOKEN="x",
    )
    withdrawal = client.post(
        "/api/v1/withdrawals/",
        {"token": "USDT", "amount": "1", "address": "a", "reference": "r1"},
        content_type="application/json",
    )

    for answer in (response, withdrawal):
        assert answer.status_code in (403,)
    assert withdrawal.json()["error"]["code"] == "email_unverified"
    assert not Order.objects.filter(user=unverified).exists()
    assert not Withdrawal.objects.filter(user=unverified).exists()


@pytest.mark.reliability("access-unverified")
def test_an_unverified_account_cannot_withdraw_from_the_wallet(
    client, market, unverified
):
    response = client.post(
        "/wallet/",
        {"token": "USDT", "amount": "1", "address": "addr", "reference": "ref-1"},
    )

    assert response.status_code == 400
    assert b"Verify your e-mail address" in response.content
    assert not Withdrawal.objects.filter(user=unverified).exists()


def test_once_verified_the_same_account_can_order(client, market, unverified):
    EmailAddress.objects.filter(user=unverified).update(verified=True)

    client.post(f"/markets/{market.symbol}/orders/", {**ORDER, "time_in_force": "GTC"})

    assert Order.objects.filter(user=unverified).count() == 1


def test_browsing_and_the_profile_work_unverified(client, market, unverified):
    for path in ("/", "/markets/", f"/markets/{market.symbol}/", "/accounts/profile/"):
        assert client.get(path).status_code == 200, path


# -- Re-authentication before sensitive actions ---------------------------------


@pytest.fixture
def alice_signed_in():
    """alice, signed in through the log-in form a moment ago (not asked to
    confirm her password yet)."""
    user_make("alice")
    client, _ = log_in("alice")
    return client


@pytest.mark.reliability("auth-reauth")
def test_creating_an_api_key_asks_for_the_password_then_goes_on(alice_signed_in):
    response = alice_signed_in.post(
        "/api/keys/create/", {"name": "bot", "scopes": ["read"]}
    )

    assert response.status_code == 302
    assert response["Location"].startswith("/accounts/reauthenticate/")
    assert not ApiKey.objects.exists()

    resumed = alice_signed_in.post(
        response["Location"], {"password": PASSWORD}, follow=True
    )

    assert ApiKey.objects.get().name == "bot"
    assert b"only time it is shown" in resumed.content


@pytest.mark.reliability("auth-reauth")
def test_a_wrong_password_at_reauthentication_creates_nothing(alice_signed_in):
    response = alice_signed_in.post(
        "/api/keys/create/", {"name": "bot", "scopes": ["read"]}
    )

    refused = alice_signed_in.post(response["Location"], {"password": "wrong"})

    assert refused.status_code == 200
    assert b"password" in refused.content.lower()
    assert not ApiKey.objects.exists()


@pytest.mark.reliability("auth-reauth")
def test_a_withdrawal_request_asks_for_the_password_first(alice_signed_in, market):
    fund(get_user_model().objects.get(username="alice"), market.quote, "100")

    response = alice_signed_in.post(
        "/wallet/",
        {"token": "USDT", "amount": "1", "address": "addr", "reference": "ref-1"},
    )

    assert response["Location"].startswith("/accounts/reauthenticate/")
    assert not Withdrawal.objects.exists()
    alice_signed_in.post(response["Location"], {"password": PASSWORD})
    assert Withdrawal.objects.get().amount == Decimal("1")


# -- The security log and its e-mails ------------------------------------------


def test_sign_ins_are_logged_and_a_new_device_is_mailed(
    mailoutbox, django_capture_on_commit_callbacks
):
    alice = user_make("alice")

    with django_capture_on_commit_callbacks(execute=True):
        log_in("alice", user_agent=FIREFOX)
        log_in("alice", user_agent=FIREFOX)
    assert mailoutbox == []  # the first sign-in, then a known browser

    with django_capture_on_commit_callbacks(execute=True):
        log_in("alice", user_agent=SAFARI)

    [mail] = mailoutbox
    assert mail.to == ["alice@example.com"]
    assert "Safari on iOS" in mail.subject and "127.0.0.1" in mail.body
    kinds = list(
        SecurityEvent.objects.filter(user=alice).values_list("kind", flat=True)
    )
    assert kinds == [Kind.SIGN_IN] * 3


def test_a_password_change_is_logged_mailed_and_ends_the_other_sessions(mailoutbox):
    alice = user_make("alice")
    elsewhere, _ = log_in("alice", user_agent=SAFARI)
    here, _ = log_in("alice")
    mailoutbox.clear()

    response = password_change(here)

    assert response.status_code == 302
    assert signed_in(here) and not signed_in(elsewhere)
    assert SecurityEvent.objects.filter(user=alice, kind=Kind.PASSWORD_CHANGED).exists()
    assert [mail.subject for mail in mailoutbox] == [
        "[Crypto Exchange] Password Changed"
    ]


def test_the_profile_shows_the_log_and_the_sessions(alice_signed_in):
    log_in("alice", "wrong-password")

    page = alice_signed_in.get("/accounts/profile/").content.decode()

    assert "Recent security activity" in page
    assert "Failed sign-in" in page and "Signed in" in page
    assert "Firefox on Linux" in page and "This browser" in page


def test_the_profile_and_the_sessions_page_say_their_times_are_in_utc(
    alice_signed_in,
):
    from allauth.usersessions.models import UserSession

    from trading.api_keys import api_key_create

    alice = get_user_model().objects.get(username="alice")
    key, _ = api_key_create(user=alice, name="bot", scopes=["read"], expires_in_days=30)
    ApiKey.objects.filter(pk=key.pk).update(
        last_used_at=datetime(2026, 12, 7, 23, 26, tzinfo=UTC),
        last_used_ip="127.0.0.1",
    )

    profile = alice_signed_in.get("/accounts/profile/").content.decode()
    sessions = alice_signed_in.get("/accounts/sessions/").content.decode()

    # Each column of times says so, in its header and, on a phone, its label.
    for column in ("Last seen", "When", "Expires", "Last used"):
        assert f'<th scope="col">{column} (UTC)</th>' in profile
        assert f'data-label="{column} (UTC)"' in profile
    assert '<td data-label="Last used (UTC)">7 Dec 2026 23:26 from' in profile
    # allauth's page shows "3 minutes ago", and the time when pointed at.
    session = UserSession.objects.get(user=alice)
    for moment in (session.created_at, session.last_seen_at):
        assert f'title="{moment:%-d %b %Y %H:%M} UTC"' in sessions


def test_api_key_and_withdrawal_notices_are_logged_and_mailed_once(
    client, market, reauthenticate, mailoutbox, django_capture_on_commit_callbacks
):
    alice = user_make("alice")
    fund(alice, market.quote, "100")
    client.force_login(alice)
    reauthenticate(client, PASSWORD)

    withdrawal = {"token": "USDT", "amount": "2", "address": "a1", "reference": "r-1"}
    with django_capture_on_commit_callbacks(execute=True):
        client.post("/api/keys/create/", {"name": "bot", "scopes": ["read"]})
        client.post("/wallet/", withdrawal)
        client.post("/wallet/", withdrawal)  # the same form sent twice

    assert [mail.subject for mail in mailoutbox] == [
        "[Crypto Exchange] API key created",
        "[Crypto Exchange] Withdrawal of 2 USDT requested",
    ]
    assert set(
        SecurityEvent.objects.filter(user=alice).values_list("kind", flat=True)
    ) == {Kind.SIGN_IN, Kind.API_KEY_CREATED, Kind.WITHDRAWAL_REQUESTED}


# -- Sessions ------------------------------------------------------------------


def test_ending_another_session_signs_it_out_and_keeps_this_one(alice_signed_in):
    elsewhere, _ = log_in("alice", user_agent=SAFARI)
    page = alice_signed_in.get("/accounts/profile/").content.decode()
    assert "Safari on iOS" in page

    from allauth.usersessions.models import UserSession

    other = UserSession.objects.get(user_agent=SAFARI)
    response = alice_signed_in.post(f"/accounts/profile/sessions/{other.pk}/end/")

    assert response.status_code == 302
    assert not signed_in(elsewhere) and signed_in(alice_signed_in)
    assert SecurityEvent.objects.filter(kind=Kind.SESSIONS_ENDED).exists()


@pytest.mark.reliability("access-by-id")
def test_a_session_of_another_user_cannot_be_ended(alice_signed_in):
    user_make("bob")
    bob, _ = log_in("bob")
    from allauth.usersessions.models import UserSession

    bobs = UserSession.objects.get(user__username="bob")

    response = alice_signed_in.post(f"/accounts/profile/sessions/{bobs.pk}/end/")

    assert response.status_code == 404
    assert signed_in(bob)


def test_end_all_other_sessions(alice_signed_in):
    one, _ = log_in("alice", user_agent=SAFARI)
    two, _ = log_in("alice", user_agent="curl/8.0")

    alice_signed_in.post("/accounts/profile/sessions/end-others/")

    assert not signed_in(one) and not signed_in(two)
    assert signed_in(alice_signed_in)


@pytest.mark.parametrize(
    "page", ["/accounts/sessions/", "/accounts/profile/sessions/end-others/"]
)
def test_signing_out_the_other_sessions_is_logged_once(alice_signed_in, page):
    """allauth's Sessions page ("Sign Out Other Sessions") as the profile."""
    elsewhere, _ = log_in("alice", user_agent=SAFARI)

    response = alice_signed_in.post(page)

    assert response.status_code == 302
    assert not signed_in(elsewhere) and signed_in(alice_signed_in)
    [ended] = SecurityEvent.objects.filter(kind=Kind.SESSIONS_ENDED)
    assert ended.detail == "Safari on iOS, 127.0.0.1"
    assert ended.user_agent == FIREFOX  # the browser that ended it
    profile = alice_signed_in.get("/accounts/profile/").content.decode()
    assert "Other sessions ended" in profile


def test_ending_one_session_and_a_password_change_log_each_ending_once(
    alice_signed_in,
):
    from allauth.usersessions.models import UserSession

    log_in("alice", user_agent=SAFARI)
    log_in("alice", user_agent="curl/8.0")
    safari = UserSession.objects.get(user_agent=SAFARI)

    alice_signed_in.post(f"/accounts/profile/sessions/{safari.pk}/end/")
    changed = password_change(alice_signed_in)

    assert changed.status_code == 302
    details = SecurityEvent.objects.filter(kind=Kind.SESSIONS_ENDED).order_by("pk")
    assert [event.detail for event in details] == [
        "Safari on iOS, 127.0.0.1",
        "curl, 127.0.0.1",
    ]


def test_a_session_signed_in_by_the_old_backend_stays_signed_in(client):
    alice = user_make("alice")
    store = SessionStore()
    store["_auth_user_id"] = str(alice.pk)
    store["_auth_user_backend"] = "accounts.backends.SqlModelBackend"
    store["_auth_user_hash"] = alice.get_session_auth_hash()
    store.create()
    client.cookies["sessionid"] = store.session_key

    assert signed_in(client)


@pytest.mark.reliability("auth-reauth")
def test_the_old_backend_authenticates_nobody():
    from accounts.backends import SqlModelBackend

    user_make("alice")

    assert (
        SqlModelBackend().authenticate(None, username="alice", password=PASSWORD)
        is None
    )


@pytest.mark.parametrize("redis_url", ["", "redis://127.0.0.1:6379/9"])
def test_sessions_are_in_djangos_database_store_with_or_without_redis(
    run_python, redis_url
):
    result = run_python(
        [
            "-c",
            "import django; django.setup(); from django.conf import settings; "
            "print(settings.SESSION_ENGINE, *settings.AUTHENTICATION_BACKENDS)",
        ],
        env={
            "DJANGO_SETTINGS_MODULE": "crypto_exchange.settings",
            "REDIS_URL": redis_url,
        },
    )

    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == [
        "django.contrib.sessions.backends.db",
        "allauth.account.auth_backends.AuthenticationBackend",
        "accounts.backends.SqlModelBackend",
    ]


# -- The admin: the site's log-in and a second factor ------------------------


@pytest.mark.reliability("access-staff")
def test_staff_without_a_second_factor_are_refused_the_admin(client, staff):
    client.force_login(staff)

    response = client.get("/admin/", follow=True)

    assert response.status_code == 403
    assert b"Turn on two-factor authentication first" in response.content


def test_staff_with_a_second_factor_use_the_admin(client, staff, mfa_enable):
    mfa_enable(staff)
    client.force_login(staff)

    assert client.get("/admin/").status_code == 200


@pytest.mark.reliability("access-staff")
def test_the_admin_log_in_form_cannot_switch_staff_to_another_account(
    client, staff, mfa_enable
):
    # Django's own admin log-in, posted to by staff already signed in,
    # signed the session in as the other account with its password alone.
    other = get_user_model().objects.create_superuser(
        "second-root", email="second@example.com", password=PASSWORD
    )
    mfa_enable(staff)
    mfa_enable(other)
    client.force_login(staff)

    response = client.post(
        "/admin/login/", {"username": "second-root", "password": PASSWORD}
    )

    assert response.status_code == 302
    assert response["Location"] == "/admin/"
    assert client.get("/admin/").context["user"] == staff


@pytest.mark.reliability("access-staff")
def test_people_who_are_not_staff_are_refused_the_admin(client):
    client.force_login(user_make("alice"))

    assert client.get("/admin/", follow=True).status_code == 403


def test_staff_see_and_filter_the_security_log(client, staff, mfa_enable):
    mfa_enable(staff)
    log_in("root", "wrong-password")
    client.force_login(staff)

    page = client.get("/admin/accounts/securityevent/?kind=sign_in_failed")

    assert page.status_code == 200
    assert b"Failed sign-in" in page.content
    assert client.get("/admin/accounts/securityevent/add/").status_code == 403


def test_a_decided_withdrawal_is_mailed_to_its_owner(
    client, staff, mfa_enable, market, mailoutbox, django_capture_on_commit_callbacks
):
    from trading.services import withdrawal_request

    mfa_enable(staff)
    alice = user_make("alice")
    fund(alice, market.quote, "10")
    withdrawal = withdrawal_request(
        user=alice, token=market.quote, amount=Decimal("3"), address="a", reference="r"
    )
    client.force_login(staff)

    with django_capture_on_commit_callbacks(execute=True):
        client.post(
            "/admin/trading/withdrawal/",
            {
                "action": "reject",
                "_selected_action": [withdrawal.pk],
                "post": "yes",
                "reason": "The address is on a sanctions list.",
            },
        )

    [mail] = mailoutbox
    assert mail.to == ["alice@example.com"]
    assert mail.subject == "[Crypto Exchange] Withdrawal of 3 USDT rejected"
    assert "Reason: The address is on a sanctions list." in mail.body


def test_a_new_address_replaces_the_old_only_once_verified(
    client, reauthenticate, mailoutbox, django_capture_on_commit_callbacks
):
    alice = user_make("alice")
    client.force_login(alice)
    reauthenticate(client, PASSWORD)

    client.post("/accounts/email/", {"email": "new@example.com", "action_add": ""})

    alice.refresh_from_db()
    assert alice.email == "alice@example.com"  # not before the link is opened
    [mail] = mailoutbox
    assert mail.to == ["new@example.com"]
    link = next(w for w in mail.body.split() if "/accounts/confirm-email/" in w)
    path = link[link.index("/accounts/") :]
    with django_capture_on_commit_callbacks(execute=True):
        client.post(path)

    alice.refresh_from_db()
    assert alice.email == "new@example.com"
    assert list(
        EmailAddress.objects.filter(user=alice).values_list("email", flat=True)
    ) == ["new@example.com"]
    event = SecurityEvent.objects.get(user=alice, kind=Kind.EMAIL_CHANGED)
    assert event.detail == "alice@example.com → new@example.com"


@pytest.mark.parametrize(
    ("forwarded_for", "counted"),
    [
        ("127.0.7.9, 127.0.0.1", "127.0.7.9"),  # balancer, then nginx
        ("127.0.8.7, 127.0.7.9, 127.0.0.1", "127.0.7.9"),  # forged first
        ("127.0.0.1", "127.0.0.1"),  # came to nginx without the balancer
    ],
)
@pytest.mark.reliability("throttle-login")
def test_the_client_address_is_read_behind_the_trusted_proxies(
    settings, forwarded_for, counted
):
    settings.ALLAUTH_TRUSTED_PROXY_COUNT = 2
    alice = user_make("alice")
    client = Client(HTTP_X_FORWARDED_FOR=forwarded_for)

    client.post("/accounts/login/", {"login": "alice", "password": "wrong"})

    assert SecurityEvent.objects.get(user=alice).ip_address == counted


@pytest.mark.django_db(transaction=True)  # allauth's notices run on commit
def test_turning_two_factor_on_or_off_ends_the_other_sessions(reauthenticate):
    alice = user_make("alice")
    here, _ = log_in("alice")
    elsewhere, _ = log_in("alice", user_agent=SAFARI)
    reauthenticate(here, PASSWORD)

    form = here.get("/accounts/2fa/totp/activate/").context["form"]
    here.post("/accounts/2fa/totp/activate/", {"code": totp_code(form.secret)})

    assert SecurityEvent.objects.filter(user=alice, kind=Kind.MFA_ENABLED).exists()
    assert signed_in(here) and not signed_in(elsewhere)

    again, _ = log_in("alice", user_agent=SAFARI)  # password, then the code
    again.post("/accounts/2fa/authenticate/", {"code": totp_code(form.secret)})
    assert signed_in(again)
    here.post("/accounts/2fa/totp/deactivate/")

    assert SecurityEvent.objects.filter(user=alice, kind=Kind.MFA_DISABLED).exists()
    assert signed_in(here) and not signed_in(again)


@pytest.mark.reliability("auth-reauth")
def test_with_two_factor_on_a_sensitive_action_asks_for_a_code(client, mfa_enable):
    alice = user_make("alice")
    secret = mfa_enable(alice)
    client.force_login(alice)

    asked = client.post("/api/keys/create/", {"name": "bot", "scopes": ["read"]})

    assert asked["Location"].startswith("/accounts/2fa/reauthenticate/")
    password_only = client.post("/accounts/reauthenticate/", {"password": PASSWORD})
    assert password_only["Location"].startswith("/accounts/2fa/reauthenticate/")
    assert not ApiKey.objects.filter(user=alice).exists()
    client.post(asked["Location"], {"code": totp_code(secret)})
    assert ApiKey.objects.filter(user=alice, name="bot").exists()
