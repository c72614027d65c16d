"""Markup typed into any field a user controls is shown as text, never run:
on the owner's pages, on staff's admin pages, in the HTML mails, and when a
request reflects it."""

from __future__ import annotations

import pytest
from allauth.usersessions.models import UserSession
from django.test import Client

from tests.factories import PASSWORD, fund, market_make, token_make, user_make
from trading.api_keys import api_key_create
from trading.models import Withdrawal
from trading.services import saved_address_add

# Closes an attribute and a tag, then runs a script, wherever it lands.
PAYLOAD = '"><script>alert(1)</script>'
SHOWN = "&quot;&gt;&lt;script&gt;alert(1)&lt;/script&gt;"


def assert_shown_as_text(page: str) -> None:
    assert "<script>alert(1)" not in page
    assert SHOWN in page


@pytest.fixture
def token(db):
    market_make(token_make("BTC"), token_make("USDT", decimals=6))
    return token_make("XSS")  # no address formats: any address is accepted


@pytest.fixture
def mallory(token):
    user = user_make("mallory")
    fund(user, token, "10")
    return user


@pytest.fixture
def mallory_client(mallory, reauthenticate):
    # Signed in through the log-in form, so the session records the browser.
    client = Client(HTTP_USER_AGENT=PAYLOAD)
    client.post("/accounts/login/", {"login": "mallory", "password": PASSWORD})
    reauthenticate(client, PASSWORD)
    return client


@pytest.fixture
def withdrawal(mallory_client, token, django_capture_on_commit_callbacks):
    """Requested from the wallet form, to an address that is markup."""
    with django_capture_on_commit_callbacks(execute=True):
        response = mallory_client.post(
            "/wallet/",
            {
                "token": token.symbol,
                "amount": "1",
                "address": PAYLOAD,
                "reference": "w",
            },
        )
    assert response.status_code == 302, response.content.decode()[:500]
    return Withdrawal.objects.get()


@pytest.mark.reliability("xss-fields")
def test_an_api_key_name_is_text_on_the_profile_and_the_revoke_page(
    mallory_client, mallory
):
    key, _ = api_key_create(user=mallory, name=PAYLOAD, scopes=["read"])

    assert_shown_as_text(mallory_client.get("/accounts/profile/").content.decode())
    revoke = mallory_client.get(f"/api/keys/{key.pk}/revoke/")
    assert_shown_as_text(revoke.content.decode())


@pytest.mark.reliability("xss-fields")
def test_the_browser_a_session_signed_in_with_is_text_on_the_session_lists(
    mallory_client,
):
    assert UserSession.objects.get().user_agent == PAYLOAD

    for path in ("/accounts/profile/", "/accounts/sessions/"):
        assert_shown_as_text(mallory_client.get(path).content.decode())


@pytest.mark.reliability("xss-fields")
def test_a_saved_address_and_its_label_are_text_in_the_wallet(
    mallory_client, mallory, token
):
    saved_address_add(user=mallory, token=token, address=PAYLOAD, label=PAYLOAD)

    page = mallory_client.get("/wallet/").content.decode()

    assert_shown_as_text(page)
    assert page.count(SHOWN) >= 3  # the label in the suggestions and the book


@pytest.mark.reliability("xss-fields")
def test_a_withdrawal_address_is_text_on_staffs_admin_pages(staff_client, withdrawal):
    listing = staff_client.get("/admin/trading/withdrawal/")
    detail = staff_client.get(f"/admin/trading/withdrawal/{withdrawal.pk}/change/")
    confirmation = staff_client.post(
        "/admin/trading/withdrawal/",
        {"action": "reject", "_selected_action": [withdrawal.pk]},
    )

    for response in (listing, detail, confirmation):
        assert response.status_code == 200
        assert_shown_as_text(response.content.decode())
    assert Withdrawal.objects.get().status == Withdrawal.Status.PENDING


@pytest.mark.reliability("xss-fields")
def test_a_withdrawal_address_and_staffs_reason_are_text_for_the_user_and_in_mails(
    mallory_client,
    staff_client,
    withdrawal,
    mailoutbox,
    django_capture_on_commit_callbacks,
):
    cancel_page = mallory_client.get(f"/wallet/withdrawals/{withdrawal.pk}/cancel/")
    with django_capture_on_commit_callbacks(execute=True):
        staff_client.post(
            "/admin/trading/withdrawal/",
            {
                "action": "reject",
                "_selected_action": [withdrawal.pk],
                "post": "yes",
                "reason": PAYLOAD,
            },
        )

    assert Withdrawal.objects.get().reason == PAYLOAD
    assert_shown_as_text(cancel_page.content.decode())
    assert_shown_as_text(mallory_client.get("/wallet/").content.decode())
    mails = [
        body
        for mail in mailoutbox
        for body, kind in mail.alternatives
        if kind == "text/html" and "withdrawal" in mail.subject.lower()
    ]
    assert len(mails) == 2  # requested, then rejected
    for html in mails:
        assert_shown_as_text(html)


@pytest.mark.parametrize(
    "path",
    [f"/tokens/?q={PAYLOAD}", f"/tokens/{PAYLOAD}/", f"/markets/{PAYLOAD}/"],
)
@pytest.mark.reliability("xss-reflected")
def test_markup_in_a_search_or_a_url_is_never_reflected_as_markup(client, token, path):
    response = client.get(path)

    assert response.status_code in (200, 404)
    assert "<script>alert(1)" not in response.content.decode()
