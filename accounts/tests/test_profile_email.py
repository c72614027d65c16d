"""The profile's address and its "Send the link again", for an address not
verified yet: changed before it was verified (allauth deletes the old one),
named by no address of the user's, or verified by another account first. As
the loopback SMTP server receives the mails."""

from __future__ import annotations

import re
from urllib.parse import urlsplit

import pytest
from allauth.core import ratelimit
from django.contrib.auth import get_user_model
from django.test import Client, RequestFactory

from tests.factories import PASSWORD, sign_up, user_make

pytestmark = pytest.mark.django_db


def link_limit_over(address: str) -> None:
    """The ``confirm_email`` limit (one link every 3 minutes) over for
    ``address``, as it is 3 minutes after its last link."""
    ratelimit.clear(RequestFactory().post("/"), action="confirm_email", key=address)


def send_again_form(profile: str) -> dict[str, str]:
    """What the profile's "Send the link again" posts."""
    form = re.search(
        r'<form method="post" action="/accounts/email/"[^>]*>(.*?)</form>',
        profile,
        re.S,
    )
    assert form, profile
    [email] = re.findall(r'name="email" value="([^"]*)"', form[1])
    assert 'name="action_send"' in form[1]
    return {"email": email, "action_send": ""}


def messages_on(page: str) -> str:
    return " ".join(re.findall(r'<p class="message [^"]*">(.*?)</p>', page, re.S))


def test_an_address_changed_before_it_was_verified_is_the_one_shown_and_sent_again(
    client, smtp_server, reauthenticate
):
    sign_up(client, "rita")
    smtp_server.wait_for("Confirm", to="rita@example.com")
    reauthenticate(client, PASSWORD)
    client.post("/accounts/email/", {"email": "rita.two@example.com", "action_add": ""})
    smtp_server.wait_for("Confirm", to="rita.two@example.com")
    # allauth deleted the old, unverified address, and the user's with it.
    assert get_user_model().objects.get(username="rita").email == ""

    profile = client.get("/accounts/profile/").content.decode()

    assert 'rita.two@example.com <span class="badge badge-warn">not verified' in (
        profile
    )
    assert "open the link we sent to rita.two@example.com." in profile
    send_again = send_again_form(profile)
    assert send_again["email"] == "rita.two@example.com"

    link_limit_over("rita.two@example.com")
    page = client.post("/accounts/email/", send_again, follow=True).content.decode()

    assert "Confirmation email sent to rita.two@example.com." in messages_on(page)
    assert [mail.envelope_to for mail in smtp_server.messages] == [
        ["rita@example.com"],
        ["rita.two@example.com"],
        ["rita.two@example.com"],
    ]


@pytest.mark.parametrize("address", ["", "someone@example.com"])
def test_send_again_naming_no_address_of_the_users_says_so_and_sends_nothing(
    client, smtp_server, address
):
    sign_up(client, "rita")
    smtp_server.wait_for("Confirm", to="rita@example.com")
    client.get("/accounts/profile/")  # the sign-up's messages shown

    response = client.post(
        "/accounts/email/", {"email": address, "action_send": ""}, follow=True
    )

    assert response.redirect_chain == [("/accounts/email/", 302)]
    assert messages_on(response.content.decode()) == (
        "No confirmation link was sent: that address is not on your account. "
        "Your address is shown below; change it there if it is not the right one."
    )
    assert len(smtp_server.messages) == 1


def test_a_user_without_any_address_is_asked_to_add_one(client):
    client.force_login(get_user_model().objects.create_user("nomail"))

    profile = client.get("/accounts/profile/").content.decode()

    assert (
        '<a href="/accounts/email/">Add an e-mail address</a> and verify it' in profile
    )
    assert "Send the link again" not in profile


def test_an_address_another_account_verified_first_is_said_taken_and_no_link_sent(
    smtp_server, reauthenticate
):
    pete = Client()
    sign_up(pete, "pete", email="shared@example.com")
    smtp_server.wait_for("Confirm", to="shared@example.com")
    quinn = Client()
    quinn.force_login(user_make("quinn"))
    reauthenticate(quinn, PASSWORD)
    link_limit_over("shared@example.com")
    quinn.post("/accounts/email/", {"email": "shared@example.com", "action_add": ""})
    [link] = re.findall(
        r"\S+/accounts/confirm-email/\S+/", smtp_server.messages[-1].text
    )
    assert quinn.post(urlsplit(link).path).status_code == 302
    sent = len(smtp_server.messages)

    profile = pete.get("/accounts/profile/").content.decode()

    assert (
        "shared@example.com now belongs to another account, which confirmed it "
        "first, so it can no longer be confirmed for yours. "
        '<a href="/accounts/email/">Change your e-mail address</a> to one of '
        "your own to trade and withdraw." in profile
    )
    assert "open the link we sent" not in profile
    assert "Send the link again" not in profile

    # The e-mail page's "Re-send Verification", or a profile still open from
    # before, asks for the link all the same.
    link_limit_over("shared@example.com")
    page = pete.post(
        "/accounts/email/",
        {"email": "shared@example.com", "action_send": ""},
        follow=True,
    ).content.decode()

    assert messages_on(page) == (
        "No link was sent: shared@example.com now belongs to another account, "
        "which confirmed it first, so it can no longer be confirmed for yours. "
        "Change your e-mail address to one of your own below."
    )
    assert len(smtp_server.messages) == sent
