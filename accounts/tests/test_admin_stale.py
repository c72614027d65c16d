"""A user's or profile's admin page opened before another staff member's save,
then saved: only what was changed on that page is written."""

from __future__ import annotations

import pytest
from django.contrib.admin.models import LogEntry
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group, Permission
from django.test import Client

from tests.factories import jpeg_upload, user_make
from tests.forms import form_values

pytestmark = pytest.mark.django_db


def _user_url(user) -> str:
    return f"/admin/auth/user/{user.pk}/change/"


def _last_change_message(client: Client) -> str:
    user = client.session["_auth_user_id"]
    return LogEntry.objects.filter(user_id=user).latest("pk").get_change_message()


def _suspend(values: dict) -> None:
    del values["is_active"]


def _staff_status_off(values: dict) -> None:
    del values["is_staff"]


def _out_of_groups(values: dict) -> None:
    del values["groups"]


@pytest.mark.parametrize(
    "other_save",
    [_suspend, _staff_status_off, _out_of_groups],
    ids=["suspended", "staff status off", "out of groups"],
)
def test_a_user_saved_from_a_page_opened_before_another_staff_save_keeps_that_save(
    staff_clients, desk, other_save
):
    teller = user_make("teller")
    teller.is_staff = True
    teller.save()
    teller.groups.add(desk)
    url = _user_url(teller)
    first, second = staff_clients(2)
    opened_by_first = form_values(first.get(url))
    changing = form_values(second.get(url))
    other_save(changing)
    assert second.post(url, changing).status_code == 302

    response = first.post(url, {**opened_by_first, "first_name": "Tess"})

    assert response.status_code == 302
    teller.refresh_from_db()
    assert teller.first_name == "Tess"
    assert teller.is_active is (other_save is not _suspend)
    assert teller.is_staff is (other_save is not _staff_status_off)
    assert list(teller.groups.all()) == ([] if other_save is _out_of_groups else [desk])
    assert _last_change_message(first) == "Changed First name."


def test_groups_changed_on_a_stale_page_change_only_what_was_changed_there(
    staff_clients, desk
):
    vault = Group.objects.create(name="vault")
    teller = user_make("teller")
    teller.groups.add(desk)
    url = _user_url(teller)
    first, second = staff_clients(2)
    opened_by_first = form_values(first.get(url))
    removing = form_values(second.get(url))
    del removing["groups"]
    assert second.post(url, removing).status_code == 302

    # The first adds the vault to the desk the page still shows.
    response = first.post(url, {**opened_by_first, "groups": [desk.pk, vault.pk]})

    assert response.status_code == 302
    assert list(teller.groups.all()) == [vault]
    assert _last_change_message(first) == "Changed Groups."


def test_staff_can_still_undo_on_their_page_what_they_see_there(staff_client, desk):
    bob = user_make("bob")
    bob.groups.add(desk)
    url = _user_url(bob)
    opened = form_values(staff_client.get(url))
    del opened["is_active"]
    del opened["groups"]

    response = staff_client.post(url, opened)

    assert response.status_code == 302
    bob.refresh_from_db()
    assert bob.is_active is False
    assert not bob.groups.exists()
    assert _last_change_message(staff_client) == "Changed Active and Groups."


def test_a_clerk_saving_a_stale_page_keeps_a_suspension_and_grants_nothing(
    staff_client, mfa_enable, desk
):
    clerk = get_user_model().objects.create_user(
        "clerk", email="clerk@example.com", is_staff=True
    )
    clerk.user_permissions.set(
        Permission.objects.filter(codename__in=["view_user", "change_user"])
    )
    mfa_enable(clerk)
    clerk_client = Client()
    clerk_client.force_login(clerk)
    bob = user_make("bob")
    bob.groups.add(desk)
    url = _user_url(bob)
    opened_by_clerk = form_values(clerk_client.get(url))
    suspending = form_values(staff_client.get(url))
    del suspending["is_active"]
    del suspending["groups"]
    assert staff_client.post(url, suspending).status_code == 302

    response = clerk_client.post(
        url,
        {
            **opened_by_clerk,
            "last_name": "Builder",
            "is_superuser": "on",
            "initial-groups": str(desk.pk),
            "groups": str(desk.pk),
        },
    )

    assert response.status_code == 302
    bob.refresh_from_db()
    assert bob.last_name == "Builder"
    assert bob.is_active is False
    assert bob.is_superuser is False
    assert not bob.groups.exists()


def test_a_user_page_shows_no_password_hash_and_still_links_to_the_password_page(
    staff_client,
):
    bob = user_make("bob")

    page = staff_client.get(_user_url(bob)).content.decode()

    assert bob.password not in page
    assert 'href="../password/"' in page


def test_a_profile_saved_from_a_page_opened_before_another_staff_save_keeps_it(
    staff_clients, profile
):
    moved_to = user_make("bob")
    moved_to.profile.delete()
    url = f"/admin/accounts/profile/{profile.pk}/change/"
    first, second = staff_clients(2)
    opened_by_first = form_values(first.get(url))
    moving = form_values(second.get(url))
    moving["user"] = str(moved_to.pk)
    assert second.post(url, moving).status_code == 302

    response = first.post(
        url, {**opened_by_first, "avatar": jpeg_upload(name="staff.jpg")}
    )

    assert response.status_code == 302
    profile.refresh_from_db()
    assert profile.user == moved_to
    assert "staff" in profile.avatar.name
