"""Two staff saving tokens in the admin at once: real threads on PostgreSQL,
each request with its own connection (``tests.threads``)."""

from __future__ import annotations

import threading

import pytest

from tests.factories import png_upload
from tests.threads import (
    posts_at_once,
    posts_held_after_loading,
    refused_page,
    run_together,
)
from tokens.models import Token
from tokens.services import token_create

pytestmark = [pytest.mark.postgres, pytest.mark.django_db(transaction=True)]

ADD = "/admin/tokens/token/add/"


@pytest.fixture
def loading_held():
    """Posts held once their request has read the token
    (``posts_held_after_loading``)."""
    with posts_held_after_loading(Token) as post:
        yield post


def _add_form() -> dict:
    return {
        "symbol": "RACE",
        "name": "Race",
        "decimals": 8,
        "description": "",
        "is_active": "on",
        "logo": png_upload((400, 300), name="race.png"),
    }


def _change_form(token: Token, **fields) -> dict:
    return {"name": token.name, "description": "", "is_active": "on", **fields}


def _responses(results) -> list:
    assert [status for status, _ in results] == ["ok"] * len(results), results
    return [response for _, response in results]


@pytest.mark.reliability("race-admin")
def test_two_staff_adding_one_symbol_at_once_get_one_token_and_a_form_error(
    staff_clients, any_storage, stored_names
):
    responses = posts_at_once(
        ADD, [(client, _add_form()) for client in staff_clients(2)], held=Token
    )

    assert "Token with this Symbol already exists." in refused_page(responses)
    token = Token.objects.get()
    assert token.logo.name
    assert stored_names(any_storage, "token_logo") == [token.logo.name]


@pytest.mark.reliability("race-admin")
def test_a_rename_saved_while_another_staff_member_replaces_the_logo_keeps_both(
    staff_clients, any_storage, stored_names, loading_held
):
    token = token_create(name="Logo", symbol="LOGO", logo=png_upload(name="first.png"))
    first = token.logo.name
    renamer, uploader = staff_clients(2)
    url = f"/admin/tokens/token/{token.pk}/change/"
    loaded, replaced = threading.Event(), threading.Event()

    def pause() -> None:
        loaded.set()
        replaced.wait(timeout=30)

    rename = loading_held(renamer, url, _change_form(token, name="Renamed"), hold=pause)

    def replace():
        loaded.wait(timeout=30)
        try:
            return uploader.post(
                url, _change_form(token, logo=png_upload(name="second.png"))
            )
        finally:
            replaced.set()

    responses = _responses(run_together(rename, replace))

    assert [response.status_code for response in responses] == [302, 302]
    token.refresh_from_db()
    assert token.name == "Renamed"
    assert token.logo.name != first and "second" in token.logo.name
    assert stored_names(any_storage, "token_logo") == [token.logo.name]


@pytest.mark.reliability("race-admin")
def test_two_staff_replacing_one_logo_at_once_leave_only_the_saved_one(
    staff_clients, any_storage, stored_names, loading_held
):
    token = token_create(name="Logo", symbol="LOGO", logo=png_upload(name="old.png"))
    old = token.logo.name
    url = f"/admin/tokens/token/{token.pk}/change/"
    both_loaded = threading.Barrier(2, timeout=30)

    results = run_together(
        *[
            loading_held(
                client,
                url,
                _change_form(token, logo=png_upload(name=f"new{number}.png")),
                hold=both_loaded.wait,
            )
            for number, client in enumerate(staff_clients(2))
        ]
    )

    assert [response.status_code for response in _responses(results)] == [302, 302]
    token.refresh_from_db()
    assert token.logo.name != old
    assert stored_names(any_storage, "token_logo") == [token.logo.name]
