"""Every form the site shows carries a CSRF token, and its action refuses a
post without one: the forms are found by reading the pages, signed in (with
an order, a withdrawal, a saved address, an API key and another session,
so that their buttons show) and anonymous."""

from __future__ import annotations

from decimal import Decimal
from html.parser import HTMLParser
from urllib.parse import urljoin, urlsplit

import pytest
from django.test import Client

from tests.factories import (
    PASSWORD,
    buy,
    fund,
    market_make,
    token_make,
    user_make,
)
from trading.api_keys import api_key_create
from trading.models import ApiKey, Order, SavedAddress, Withdrawal
from trading.services import saved_address_add, withdrawal_request

ANONYMOUS_PAGES = ["/accounts/login/", "/accounts/signup/", "/accounts/password/reset/"]
SIGNED_IN_PAGES = [
    "/markets/BTC-USDT/",
    "/wallet/",
    "/wallet/withdrawals/{withdrawal}/cancel/",
    "/accounts/profile/",
    "/api/keys/{key}/revoke/",
    "/api/keys/revoke-all/",
    "/accounts/verification/",
    "/accounts/email/",
    "/accounts/password/change/",
    "/accounts/2fa/",
    "/accounts/2fa/totp/activate/",
    "/accounts/sessions/",
    "/accounts/reauthenticate/",
    "/accounts/logout/",
]


class Forms(HTMLParser):
    """The POST forms of a page: their action and whether a token is inside."""

    def __init__(self, page_url: str) -> None:
        super().__init__()
        self.page_url = page_url
        self.forms: list[dict] = []
        self._open: dict | None = None

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "form" and (attrs.get("method") or "get").lower() == "post":
            action = urljoin(self.page_url, attrs.get("action") or self.page_url)
            self._open = {"action": urlsplit(action).path, "token": False}
            self.forms.append(self._open)
        elif (
            tag == "input"
            and self._open is not None
            and attrs.get("name") == "csrfmiddlewaretoken"
            and attrs.get("value")
        ):
            self._open["token"] = True

    def handle_endtag(self, tag):
        if tag == "form":
            self._open = None


def post_forms(client: Client, path: str) -> list[dict]:
    response = client.get(path)
    assert response.status_code == 200, path
    parser = Forms(path)
    parser.feed(response.content.decode())
    return [dict(form, page=path) for form in parser.forms]


@pytest.fixture
def member(db):
    market = market_make(token_make("BTC"), token_make("USDT", decimals=6))
    user = user_make("member")
    fund(user, market.quote, "1000")
    buy(user, market, "1", "50.00")
    saved_address_add(user=user, token=market.quote, address="T-1", label="mine")
    withdrawal = withdrawal_request(
        user=user, token=market.quote, amount=Decimal(1), address="T-1", reference="w"
    )
    key, _ = api_key_create(user=user, name="bot", scopes=["read"])
    # Signed in elsewhere too, so that the buttons ending sessions show.
    Client().post("/accounts/login/", {"login": "member", "password": PASSWORD})
    return {"withdrawal": withdrawal.pk, "key": key.pk}


@pytest.mark.reliability("csrf-forms")
def test_every_form_carries_a_token_and_is_refused_without_it(member, reauthenticate):
    signed_in = Client(enforce_csrf_checks=True)
    # Signing in and confirming the password post with the page's token.
    for path, data in (
        ("/accounts/login/", {"login": "member", "password": PASSWORD}),
        ("/accounts/reauthenticate/", {"password": PASSWORD}),
    ):
        signed_in.get(path)
        token = signed_in.cookies["csrftoken"].value
        answer = signed_in.post(path, {**data, "csrfmiddlewaretoken": token})
        assert answer.status_code == 302, path
    forms = [
        form
        for path in SIGNED_IN_PAGES
        for form in post_forms(signed_in, path.format(**member))
    ]
    anonymous = Client(enforce_csrf_checks=True)
    forms += [form for path in ANONYMOUS_PAGES for form in post_forms(anonymous, path)]

    assert [form for form in forms if not form["token"]] == []
    actions = {form["action"] for form in forms}
    assert len(actions) >= 20, actions  # the crawl sees the site's forms
    for form in forms:
        client = anonymous if form["page"] in ANONYMOUS_PAGES else signed_in
        response = client.post(form["action"], {})
        assert response.status_code == 403, form
    assert Order.objects.get().is_open
    assert Withdrawal.objects.get().status == Withdrawal.Status.PENDING
    assert SavedAddress.objects.exists()
    assert ApiKey.objects.get().revoked_at is None
    assert signed_in.get("/accounts/profile/").status_code == 200
