"""A token's admin page opened before another staff member's save, then saved,
and a token in use that staff try to delete."""

from __future__ import annotations

from decimal import Decimal as D

import pytest
from django.contrib.admin.models import LogEntry

from tests.factories import fund, market_make, png_upload, token_make
from tests.forms import form_values
from tokens.models import Token
from tokens.services import token_create

pytestmark = pytest.mark.django_db


def _last_change_message(client) -> str:
    user = client.session["_auth_user_id"]
    return LogEntry.objects.filter(user_id=user).latest("pk").get_change_message()


def test_a_save_from_a_page_opened_before_another_staff_save_keeps_that_save(
    staff_clients, any_storage
):
    token = token_create(name="Stale", symbol="STL", logo=png_upload(name="old.png"))
    url = f"/admin/tokens/token/{token.pk}/change/"
    first, second = staff_clients(2)
    opened_by_first = form_values(first.get(url))

    # The second suspends withdrawals, delists the token, renames it and
    # gives it another logo.
    delisting = form_values(second.get(url))
    del delisting["is_active"]
    delisting.update(name="Stale (delisted)", withdrawal_daily_limit="0")
    delisting["logo"] = png_upload(name="new.png")
    assert second.post(url, delisting).status_code == 302
    token.refresh_from_db()
    new_logo = token.logo.name
    # The first, on the page opened before, fixes only the description.
    response = first.post(url, {**opened_by_first, "description": "A typo fixed"})

    assert response.status_code == 302
    token.refresh_from_db()
    assert token.description == "A typo fixed"
    assert token.name == "Stale (delisted)"
    assert token.is_active is False
    assert token.withdrawal_daily_limit == D(0)
    assert token.logo.name == new_logo and "new" in new_logo
    assert _last_change_message(first) == "Changed Description."


def test_a_stale_page_shown_again_with_an_error_still_keeps_the_other_save(
    staff_client, staff_clients
):
    token = token_make("STL")
    url = f"/admin/tokens/token/{token.pk}/change/"
    opened = form_values(staff_client.get(url))
    (other,) = staff_clients(1)
    delisting = form_values(other.get(url))
    del delisting["is_active"]
    assert other.post(url, delisting).status_code == 302

    refused = staff_client.post(
        url, {**opened, "description": "Typo fixed", "withdrawal_daily_limit": "-1"}
    )
    shown_again = form_values(refused)
    response = staff_client.post(url, {**shown_again, "withdrawal_daily_limit": "5"})

    assert response.status_code == 302
    token.refresh_from_db()
    assert token.is_active is False
    assert (token.description, token.withdrawal_daily_limit) == ("Typo fixed", D(5))


def test_staff_can_still_undo_on_their_page_what_they_see_there(staff_client):
    token = token_make("STL")
    url = f"/admin/tokens/token/{token.pk}/change/"
    opened = form_values(staff_client.get(url))
    del opened["is_active"]

    response = staff_client.post(url, opened)

    assert response.status_code == 302
    token.refresh_from_db()
    assert token.is_active is False
    assert _last_change_message(staff_client) == "Changed Is active."


def test_deleting_a_token_in_use_says_what_uses_it_and_deletes_nothing(
    staff_client, alice, bob, market, btc
):
    fund(alice, btc, "1")
    fund(bob, btc, "2")
    url = f"/admin/tokens/token/{btc.pk}/delete/"

    page = staff_client.get(url).content.decode()
    confirmed = staff_client.post(url, {"post": "yes"})

    assert (
        "BTC is used by 2 balances, 1 market, 2 deposits and 4 ledger entries." in page
    )
    assert "untick “Is active”" in page
    assert "permission" not in page
    assert confirmed.status_code == 200
    assert Token.objects.filter(pk=btc.pk).exists()


def test_deleting_selected_tokens_names_each_in_use_and_deletes_none(
    staff_client, market, btc, usdt
):
    unused = token_make("IDLE")
    eth = token_make("ETH")
    market_make(eth, usdt)
    form = {
        "action": "delete_selected",
        "_selected_action": [btc.pk, usdt.pk, unused.pk],
        "post": "yes",
    }

    response = staff_client.post("/admin/tokens/token/", form)

    page = response.content.decode()
    assert response.status_code == 200
    assert "Nothing was deleted" in page
    assert "<li>BTC is used by 1 market.</li>" in page
    assert "<li>USDT is used by 2 markets.</li>" in page
    assert "IDLE" not in page and "permission" not in page
    assert Token.objects.count() == 4


def test_a_token_nothing_uses_is_deleted_after_the_usual_confirmation(
    staff_client,
):
    unused = token_make("IDLE")
    url = f"/admin/tokens/token/{unused.pk}/delete/"

    page = staff_client.get(url).content.decode()
    response = staff_client.post(url, {"post": "yes"})

    assert "Are you sure you want to delete" in page
    assert response.status_code == 302
    assert not Token.objects.filter(pk=unused.pk).exists()
