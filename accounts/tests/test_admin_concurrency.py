"""Two staff adding one user at once in the admin: real threads on
PostgreSQL, each request with its own connection (``tests.threads``)."""

from __future__ import annotations

import pytest
from django.contrib.auth import get_user_model

from tests.threads import posts_at_once, refused_page

pytestmark = [pytest.mark.postgres, pytest.mark.django_db(transaction=True)]


@pytest.mark.reliability("race-admin")
@pytest.mark.parametrize("names", [("carol", "carol"), ("carol", "Carol")])
def test_two_staff_adding_one_username_at_once_get_one_user_and_a_form_error(
    staff_clients, names
):
    responses = posts_at_once(
        "/admin/auth/user/add/",
        [
            (client, {"username": name, "usable_password": "false"})
            for client, name in zip(staff_clients(2), names, strict=True)
        ],
        held=get_user_model(),
    )

    assert "A user with that username already exists." in refused_page(responses)
    assert get_user_model().objects.filter(username__iexact="carol").count() == 1
