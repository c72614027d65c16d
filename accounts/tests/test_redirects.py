"""No ``next`` sends a user off the site: signing in, signing up, confirming
the password and signing out go to a page of this site whatever ``next``
says, and still do what they were asked."""

from __future__ import annotations

from urllib.parse import urlsplit

import pytest
from django.contrib.auth import get_user_model
from django.test import Client

from tests.factories import PASSWORD, sign_up

ELSEWHERE = [
    "https://evil.example/",
    "//evil.example/",
    "/\\evil.example/",
    "\\\\evil.example/",
    "https:evil.example",
    "http://testserver@evil.example/",
    "javascript:alert(1)",
    " //evil.example/",
]


def assert_stays_on_the_site(response) -> None:
    assert response.status_code == 302, response.content.decode()[:300]
    location = response["Location"]
    parts = urlsplit(location)
    assert parts.scheme == "" and parts.netloc == "", location
    assert location.startswith("/") and not location.startswith(("//", "/\\"))


@pytest.mark.parametrize("target", ELSEWHERE)
@pytest.mark.reliability("open-redirect")
def test_signing_in_and_out_with_a_next_elsewhere_stays_on_the_site(alice, target):
    client = Client()

    signed_in = client.post(
        f"/accounts/login/?next={target}", {"login": "alice", "password": PASSWORD}
    )
    confirmed = client.post(
        "/accounts/reauthenticate/", {"password": PASSWORD, "next": target}
    )
    signed_out = client.post("/accounts/logout/", {"next": target})

    for response in (signed_in, confirmed, signed_out):
        assert_stays_on_the_site(response)
    assert client.get("/accounts/profile/").status_code == 302  # signed out


@pytest.mark.parametrize("target", ELSEWHERE)
@pytest.mark.reliability("open-redirect")
def test_signing_up_with_a_next_elsewhere_stays_on_the_site(db, target):
    response = sign_up(Client(), "newcomer", next=target)

    assert_stays_on_the_site(response)
    assert get_user_model().objects.filter(username="newcomer").exists()
