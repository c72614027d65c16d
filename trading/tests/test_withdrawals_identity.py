"""IDENTITY_REQUIRED_TO_WITHDRAW: withdrawals wait for an approved identity."""

from __future__ import annotations

from decimal import Decimal as D

import pytest
from django.test.html import parse_html

from tests.factories import balance
from trading.models import SavedAddress, Withdrawal
from verification.documents import document_process
from verification.services import (
    verification_approve,
    verification_reject,
    verification_submit,
)
from verification.tests.samples import jpeg_with_gps, pdf, upload

pytestmark = pytest.mark.django_db

FORM = {"token": "BTC", "amount": "1.5", "address": "bc1qexample", "reference": "w-1"}
VERIFICATION_PAGE = "/accounts/verification/"

REFUSALS = {
    None: "Verify your identity before you withdraw: send your ID documents on "
    "the identity verification page (/accounts/verification/); you can withdraw "
    "once staff approve them.",
    "pending": "Your identity documents are under review: you can withdraw once "
    "staff approve them.",
    "rejected": "Your identity verification was rejected: send new documents on "
    "the identity verification page (/accounts/verification/); you can withdraw "
    "once staff approve them.",
}


def identity(user, state: str | None, *, staff) -> None:
    """Give ``user`` a verification in ``state`` (None: none sent), through
    the verification services, as the page and the admin do."""
    if state is None:
        return
    documents = {
        "front": upload("front.jpg", jpeg_with_gps(400, 300), "image/jpeg"),
        "selfie": upload("selfie.pdf", pdf(), "application/pdf"),
    }
    verification = verification_submit(
        user=user,
        documents={kind: document_process(file) for kind, file in documents.items()},
    )
    if state == "approved":
        verification_approve(verification=verification, staff=staff)
    elif state == "rejected":
        verification_reject(
            verification=verification, staff=staff, reason="The photo is blurred."
        )


@pytest.fixture
def identity_required(settings):
    settings.IDENTITY_REQUIRED_TO_WITHDRAW = True


def notice(response):
    """The wallet's notice about identity, as (its text, its link), or None."""
    root = parse_html(response.content.decode())

    def find(node):
        for child in getattr(node, "children", []):
            if getattr(child, "name", None) == "div" and (
                ("id", "identity-required") in child.attributes
            ):
                return child
            if (found := find(child)) is not None:
                return found
        return None

    def words(node) -> str:
        return " ".join(
            child if isinstance(child, str) else words(child) for child in node.children
        )

    found = find(root)
    if found is None:
        return None
    [message, link] = found.children
    [anchor] = link.children
    return words(message), dict(anchor.attributes)["href"]


@pytest.mark.parametrize("state", [None, "pending", "rejected"])
def test_an_unverified_identity_cannot_withdraw_through_the_api(
    identity_required, as_alice, alice, btc, funded, staff, state
):
    identity(alice, state, staff=staff)

    response = as_alice.post("/api/v1/withdrawals/", FORM, format="json")

    assert response.status_code == 403
    assert response.json() == {
        "error": {"code": "identity_unverified", "message": REFUSALS[state]}
    }
    assert not Withdrawal.objects.exists()
    assert balance(alice, btc) == (D("10"), D("0"))


@pytest.mark.parametrize("state", [None, "pending", "rejected"])
def test_an_unverified_identity_cannot_withdraw_on_the_wallet_page(
    identity_required, alice_client, alice, btc, funded, staff, state
):
    identity(alice, state, staff=staff)

    response = alice_client.post("/wallet/", FORM)

    assert response.status_code == 403
    assert notice(response) == (REFUSALS[state], VERIFICATION_PAGE)
    assert b'role="alert"' in response.content
    # The form keeps what was typed, to send once the identity is approved.
    assert response.context["form"]["amount"].value() == "1.5"
    assert not Withdrawal.objects.exists()
    assert balance(alice, btc) == (D("10"), D("0"))


@pytest.mark.parametrize("state", [None, "pending", "rejected"])
def test_the_wallet_says_up_front_that_withdrawing_needs_a_verified_identity(
    identity_required, alice_client, alice, staff, state
):
    identity(alice, state, staff=staff)

    response = alice_client.get("/wallet/")

    assert response.status_code == 200
    assert notice(response) == (REFUSALS[state], VERIFICATION_PAGE)


def test_an_approved_identity_withdraws(
    identity_required, alice_client, as_alice, alice, btc, funded, staff
):
    identity(alice, "approved", staff=staff)

    page = alice_client.get("/wallet/")
    api = as_alice.post("/api/v1/withdrawals/", FORM, format="json")
    web = alice_client.post("/wallet/", {**FORM, "reference": "w-2"}, follow=True)

    assert notice(page) is None
    assert api.status_code == 201
    assert web.redirect_chain == [("/wallet/", 302)]
    assert "Withdrawal requested" in web.content.decode()
    assert Withdrawal.objects.filter(user=alice).count() == 2
    assert balance(alice, btc) == (D("7"), D("3"))


def test_without_the_setting_an_unverified_identity_withdraws(
    alice_client, as_alice, alice, btc, funded
):
    page = alice_client.get("/wallet/")
    api = as_alice.post("/api/v1/withdrawals/", FORM, format="json")
    web = alice_client.post("/wallet/", {**FORM, "reference": "w-2"})

    assert notice(page) is None
    assert (api.status_code, web.status_code) == (201, 302)
    assert balance(alice, btc) == (D("7"), D("3"))


def test_withdrawals_requested_before_the_setting_stay_as_they_are(
    settings, as_alice, alice, btc, funded
):
    first = as_alice.post("/api/v1/withdrawals/", FORM, format="json").json()
    settings.IDENTITY_REQUIRED_TO_WITHDRAW = True

    again = as_alice.post("/api/v1/withdrawals/", FORM, format="json")
    cancelled = as_alice.delete(f"/api/v1/withdrawals/{first['id']}/")

    assert (again.status_code, again.json()["id"]) == (200, first["id"])
    assert (cancelled.status_code, cancelled.json()["status"]) == (200, "cancelled")
    assert balance(alice, btc) == (D("10"), D("0"))


def test_an_unverified_identity_still_saves_withdrawal_addresses(
    identity_required, alice_client, alice, btc
):
    response = alice_client.post(
        "/wallet/addresses/",
        {
            "book-token": "BTC",
            "book-address": "bc1qexample",
            "book-label": "Cold wallet",
        },
    )

    assert response.status_code == 302
    assert SavedAddress.objects.get(user=alice).label == "Cold wallet"


SETTINGS_ENV = {"DJANGO_SETTINGS_MODULE": "crypto_exchange.settings"}
PRINTED = (
    "import django; django.setup(); from django.conf import settings; "
    "print(repr(settings.IDENTITY_REQUIRED_TO_WITHDRAW))"
)


@pytest.mark.parametrize(
    ("variables", "expected"),
    [
        ({}, False),
        ({"IDENTITY_REQUIRED_TO_WITHDRAW": "true"}, True),
        ({"IDENTITY_REQUIRED_TO_WITHDRAW": "false"}, False),
    ],
)
def test_identity_required_to_withdraw_is_off_unless_set(
    run_python, variables, expected
):
    result = run_python(["-c", PRINTED], {**SETTINGS_ENV, **variables})

    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == repr(expected)


def test_a_misspelt_identity_setting_stops_start_up_naming_it(run_python):
    env = {**SETTINGS_ENV, "IDENTITY_REQUIRED_TO_WITHDRAW": "ture"}

    result = run_python(["manage.py", "check"], env)

    assert result.returncode != 0
    error = result.stderr.strip().splitlines()[-1]
    assert error.startswith(
        "django.core.exceptions.ImproperlyConfigured: IDENTITY_REQUIRED_TO_WITHDRAW "
    )
