"""Lost database connections during orders and withdrawals, through the API
and the web forms: the answer says "nothing was changed" only when nothing
that writes was sent; a lost commit is ``outcome_unknown`` with what to
check; a lost re-read after the commit is still a success; and sending the
same request again (same ``client_order_id`` or ``reference``) acts once.

The faults are real (trading.tests.db_faults): the backend serving the
test's requests is terminated, before anything is sent, at the COMMIT, or
just after it.
"""

from __future__ import annotations

import html
import re
from decimal import Decimal as D

import pytest
from django.test import Client
from rest_framework.test import APIClient

from tests.factories import PASSWORD, balance
from trading.api_keys import api_key_create
from trading.models import Order, Withdrawal
from trading.tests.db_faults import (
    backend_dies_at_commit,
    backend_killed,
    first_statement,
    order_first_write,
    order_insert,
    withdrawal_insert,
)

pytestmark = [pytest.mark.postgres, pytest.mark.django_db(transaction=True)]

V1 = "/api/v1"


@pytest.fixture
def bot(alice, market, funded):
    """Alice's program: an API key that trades and withdraws."""
    _, key = api_key_create(
        user=alice,
        name="bot",
        scopes=["read", "trade", "withdraw"],
        allowed_ips="127.0.0.1",
    )
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Api-Key {key}")
    return client


@pytest.fixture
def site_client(alice, market, funded, reauthenticate):
    # As a real server does, answer what the app answers: the test client
    # would raise a failure in a middleware that the app answered with 503.
    client = Client(raise_request_exception=False)
    client.force_login(alice)
    reauthenticate(client, PASSWORD)
    return client


def order(client_order_id: str | None = "bot-1") -> dict:
    body = {
        "market": "BTC-USDT",
        "side": "buy",
        "type": "limit",
        "price": "100",
        "quantity": "1",
    }
    if client_order_id is not None:
        body["client_order_id"] = client_order_id
    return body


def withdrawal(reference: str = "payout-1") -> dict:
    return {
        "token": "BTC",
        "amount": "2",
        "address": "bc1qexample",
        "reference": reference,
    }


def error(response) -> tuple[str, str]:
    body = response.json()["error"]
    return body["code"], body["message"]


def orders_named(bot, client_order_id: str) -> list[dict]:
    response = bot.get(f"{V1}/orders/", {"client_order_id": client_order_id})
    assert response.status_code == 200
    return response.json()["results"]


# -- The API ----------------------------------------------------------------------


@pytest.mark.reliability("db-lost-before-write")
def test_an_order_lost_before_anything_is_sent_says_nothing_was_changed(bot, alice):
    with backend_killed("before", first_statement):
        response = bot.post(f"{V1}/orders/", order(), format="json")

    assert response.status_code == 503
    assert response["Retry-After"]
    code, message = error(response)
    assert code == "unavailable"
    assert "nothing was changed" in message
    assert not Order.objects.filter(user=alice).exists()

    again = bot.post(f"{V1}/orders/", order(), format="json")  # no restart
    assert again.status_code == 201, again.json()


@pytest.mark.reliability("outcome-unknown")
def test_an_order_whose_commit_is_lost_is_outcome_unknown_and_safe_to_retry(
    bot, alice, usdt
):
    with backend_dies_at_commit("trading_order"):
        response = bot.post(f"{V1}/orders/", order("bot-7"), format="json")

    assert response.status_code == 503
    code, message = error(response)
    assert code == "outcome_unknown"
    assert "nothing was changed" not in message
    assert "/api/v1/orders/?client_order_id=bot-7" in message
    assert "same order again with client_order_id 'bot-7'" in message
    # What the message says to check answers the question.
    assert orders_named(bot, "bot-7") == []

    retried = bot.post(f"{V1}/orders/", order("bot-7"), format="json")
    repeated = bot.post(f"{V1}/orders/", order("bot-7"), format="json")

    assert retried.status_code == 201
    assert repeated.status_code == 200
    assert repeated.json()["id"] == retried.json()["id"]
    assert [o["id"] for o in orders_named(bot, "bot-7")] == [retried.json()["id"]]
    assert balance(alice, usdt) == (D("9900"), D("100"))


@pytest.mark.reliability("outcome-unknown")
def test_an_order_without_client_order_id_whose_commit_is_lost_warns_of_a_second(
    bot, alice
):
    with backend_dies_at_commit("trading_order"):
        response = bot.post(f"{V1}/orders/", order(None), format="json")

    assert response.status_code == 503
    code, message = error(response)
    assert code == "outcome_unknown"
    assert "no client_order_id, so sending it again may place a second order" in (
        message
    )


@pytest.mark.reliability("outcome-unknown")
def test_an_order_lost_at_its_write_is_answered_as_what_happened(bot, alice):
    """Killed just before the first write is sent: whether the write runs in
    a transaction (nothing can be committed: "nothing was changed") or alone
    (autocommit: unknown), the answer matches the database, and a retry with
    the same client_order_id leaves one order."""
    with backend_killed("before", order_first_write):
        response = bot.post(f"{V1}/orders/", order("bot-3"), format="json")

    assert response.status_code == 503
    code, message = error(response)
    placed = list(Order.objects.filter(user=alice, client_order_id="bot-3"))
    if code == "unavailable":
        assert "nothing was changed" in message
        assert placed == []
    else:
        assert code == "outcome_unknown"
        assert "client_order_id=bot-3" in message

    retried = bot.post(f"{V1}/orders/", order("bot-3"), format="json")

    assert retried.status_code in (200, 201)
    assert Order.objects.filter(user=alice, client_order_id="bot-3").count() == 1


@pytest.mark.reliability("db-lost-after-commit")
def test_an_order_committed_before_the_connection_is_lost_is_accepted(bot, alice):
    with backend_killed("after_commit", order_insert):
        response = bot.post(f"{V1}/orders/", order("bot-9"), format="json")

    assert response.status_code == 202
    body = response.json()
    assert body["status"] == "accepted"
    assert body["client_order_id"] == "bot-9"
    assert response["Location"] == body["url"] == f"{V1}/orders/{body['id']}/"
    assert bot.get(body["url"]).json()["id"] == body["id"]
    repeated = bot.post(f"{V1}/orders/", order("bot-9"), format="json")
    assert (repeated.status_code, repeated.json()["id"]) == (200, body["id"])
    assert Order.objects.filter(user=alice).count() == 1


@pytest.mark.reliability("db-lost-before-write")
def test_a_read_lost_says_try_again_and_the_next_one_works(bot):
    with backend_killed("before", first_statement):
        response = bot.get(f"{V1}/balances/")

    assert response.status_code == 503
    code, message = error(response)
    assert code == "unavailable"
    assert "try again" in message
    assert bot.get(f"{V1}/balances/").status_code == 200


@pytest.mark.reliability("outcome-unknown")
def test_a_withdrawal_whose_commit_is_lost_is_outcome_unknown_and_safe_to_retry(
    bot, alice, btc
):
    with backend_dies_at_commit("trading_withdrawal"):
        response = bot.post(f"{V1}/withdrawals/", withdrawal(), format="json")

    assert response.status_code == 503
    code, message = error(response)
    assert code == "outcome_unknown"
    assert "/api/v1/withdrawals/?reference=payout-1" in message
    looked_up = bot.get(f"{V1}/withdrawals/", {"reference": "payout-1"})
    assert looked_up.json()["results"] == []

    retried = bot.post(f"{V1}/withdrawals/", withdrawal(), format="json")
    repeated = bot.post(f"{V1}/withdrawals/", withdrawal(), format="json")

    assert (retried.status_code, repeated.status_code) == (201, 200)
    looked_up = bot.get(f"{V1}/withdrawals/", {"reference": "payout-1"})
    assert [w["id"] for w in looked_up.json()["results"]] == [retried.json()["id"]]
    assert balance(alice, btc) == (D("8"), D("2"))


@pytest.mark.reliability("db-lost-after-commit")
def test_a_withdrawal_committed_before_the_connection_is_lost_is_created(
    bot, alice, btc
):
    with backend_killed("after_commit", withdrawal_insert):
        response = bot.post(f"{V1}/withdrawals/", withdrawal(), format="json")

    assert response.status_code == 201
    assert response.json()["reference"] == "payout-1"
    assert Withdrawal.objects.filter(user=alice).count() == 1
    assert balance(alice, btc) == (D("8"), D("2"))


# -- The pages -------------------------------------------------------------------

HIDDEN = re.compile(r'<input type="hidden" name="([^"]+)" value="([^"]*)">')


def resend_form(response) -> dict[str, str]:
    """The fields of the page's "Send the same request again" form."""
    page = response.content.decode()
    assert "Send the same request again" in page
    return {name: html.unescape(value) for name, value in HIDDEN.findall(page)}


def order_form(site_client) -> dict[str, str]:
    page = site_client.get("/markets/BTC-USDT/").content.decode()
    [client_order_id] = re.findall(r'name="client_order_id" value="([^"]+)"', page)
    fields = {"side": "buy", "type": "limit", "price": "100", "quantity": "1"}
    return {**fields, "time_in_force": "GTC", "client_order_id": client_order_id}


@pytest.mark.reliability("db-lost-before-write")
def test_the_order_form_lost_before_anything_is_sent_says_nothing_was_changed(
    site_client, alice
):
    fields = order_form(site_client)
    with backend_killed("before", first_statement):
        response = site_client.post("/markets/BTC-USDT/orders/", fields)

    assert response.status_code == 503
    assert "nothing was changed" in response.content.decode()
    assert not Order.objects.filter(user=alice).exists()


@pytest.mark.reliability("outcome-unknown")
def test_the_order_form_whose_commit_is_lost_offers_to_send_it_again_safely(
    site_client, alice, usdt
):
    fields = order_form(site_client)
    with backend_dies_at_commit("trading_order"):
        response = site_client.post("/markets/BTC-USDT/orders/", fields)

    assert response.status_code == 503
    page = response.content.decode()
    assert "may or may not have taken effect" in page
    assert "nothing was changed" not in page
    assert "never placed twice" in page
    again = resend_form(response)
    assert again["client_order_id"] == fields["client_order_id"]

    for _ in range(2):  # sent again, and once more by mistake
        resent = site_client.post("/markets/BTC-USDT/orders/", again)
        assert resent.status_code == 302

    assert Order.objects.filter(user=alice).count() == 1
    assert balance(alice, usdt) == (D("9900"), D("100"))


@pytest.mark.reliability("db-lost-after-commit")
def test_the_order_form_committed_before_the_connection_is_lost_says_accepted(
    site_client, alice
):
    fields = order_form(site_client)
    with backend_killed("after_commit", order_insert):
        response = site_client.post("/markets/BTC-USDT/orders/", fields)

    assert response.status_code == 302
    page = site_client.get(response["Location"]).content.decode()
    assert "accepted, and waiting for the matcher" in page
    assert Order.objects.filter(user=alice).count() == 1


@pytest.mark.reliability("outcome-unknown")
def test_the_withdrawal_form_whose_commit_is_lost_offers_to_send_it_again_safely(
    site_client, alice, btc
):
    form = site_client.get("/wallet/").content.decode()
    [reference] = re.findall(r'name="reference" value="([^"]+)"', form)
    fields = {**withdrawal(reference), "amount": "2"}
    with backend_dies_at_commit("trading_withdrawal"):
        response = site_client.post("/wallet/", fields)

    assert response.status_code == 503
    page = response.content.decode()
    assert "may or may not have taken effect" in page
    assert reference in page
    again = resend_form(response)
    assert again["reference"] == reference

    for _ in range(2):
        assert site_client.post("/wallet/", again).status_code == 302

    assert Withdrawal.objects.filter(user=alice).count() == 1
    assert balance(alice, btc) == (D("8"), D("2"))
