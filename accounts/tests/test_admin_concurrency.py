"""Two staff adding one user at once in the admin, a profile's picture
changed in the admin while its user changes it, and a user deleted while a
deposit is credited to them: real threads on PostgreSQL, each request with
its own connection (``tests.threads``)."""

from __future__ import annotations

import threading

import pytest
from django.contrib.admin.models import DELETION, LogEntry
from django.contrib.auth import get_user_model
from django.db import connection
from django.db.models.signals import pre_delete, pre_save
from django.test import Client
from django.utils import timezone

from accounts.models import Profile
from accounts.services import avatar_replace
from tests.factories import fund, jpeg_upload, user_make
from tests.threads import (
    posts_at_once,
    posts_held_after_loading,
    refused_page,
    run_together,
)
from trading.models import Deposit

pytestmark = [pytest.mark.postgres, pytest.mark.django_db(transaction=True)]


@pytest.mark.reliability("race-admin")
@pytest.mark.parametrize(
    "names", [("carol", "carol"), ("carol", "Carol"), ("alice", "al\u0131ce")]
)
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
    assert get_user_model().objects.filter(username__iexact=names[0]).count() == 1


@pytest.mark.reliability("race-admin")
def test_two_staff_adding_a_profile_for_one_user_at_once_get_one_and_a_form_error(
    profile, any_storage, stored_names, staff_clients
):
    user = profile.user
    profile.delete()  # a user left without one (a profile deleted by hand)

    responses = posts_at_once(
        "/admin/accounts/profile/add/",
        [
            (client, {"user": user.pk, "avatar": jpeg_upload(name=f"{n}.jpg")})
            for n, client in enumerate(staff_clients(2))
        ],
        held=Profile,
    )

    assert "Profile with this User already exists." in refused_page(responses)
    [added] = Profile.objects.filter(user=user)
    assert stored_names(any_storage, "profile_pics") == [added.avatar.name]


# -- Avatars saved from the admin while someone else changes them ---------------


@pytest.fixture
def profile_loading_held():
    """Posts held once their request has read the profile
    (``posts_held_after_loading``)."""
    with posts_held_after_loading(Profile) as post:
        yield post


def _signed_in(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


def _profile_form(profile: Profile, **fields) -> dict:
    return {"user": profile.user_id, **fields}


def user_form(profile: Profile, **inline) -> dict:
    """The user's change page as posted: the user's fields unchanged, and the
    profile inline with ``inline`` (its avatar)."""
    user = profile.user
    joined = timezone.localtime(user.date_joined)
    return {
        "username": user.username,
        "email": user.email,
        "is_active": "on",
        "date_joined_0": joined.strftime("%Y-%m-%d"),
        "date_joined_1": joined.strftime("%H:%M:%S"),
        "profile-TOTAL_FORMS": "1",
        "profile-INITIAL_FORMS": "1",
        "profile-MIN_NUM_FORMS": "0",
        "profile-MAX_NUM_FORMS": "1",
        "profile-0-id": profile.pk,
        "profile-0-user": user.pk,
        **{f"profile-0-{name}": value for name, value in inline.items()},
    }


def _while_paused(staff_save, user_upload):
    """Run ``staff_save`` (from ``profile_loading_held``, holding with the
    ``pause`` given) and ``user_upload`` so that the upload is committed while
    the staff request has the row read and not yet saved."""
    loaded, uploaded = threading.Event(), threading.Event()

    def pause() -> None:
        loaded.set()
        uploaded.wait(timeout=30)

    def upload():
        loaded.wait(timeout=30)
        try:
            return user_upload()
        finally:
            uploaded.set()

    results = run_together(staff_save(pause), upload)
    assert [status for status, _ in results] == ["ok", "ok"], results
    return [response for _, response in results]


def _avatar_stored_alone(profile: Profile, storage, stored_names) -> str:
    """The profile's avatar, after checking that it is stored and that no
    other picture is."""
    profile.refresh_from_db()
    assert profile.avatar.name.startswith("profile_pics/")
    assert stored_names(storage, "profile_pics") == [profile.avatar.name]
    return profile.avatar.name


@pytest.mark.reliability("race-admin")
def test_a_profile_saved_in_the_admin_while_its_user_uploads_keeps_the_new_picture(
    profile, any_storage, stored_names, staff_clients, profile_loading_held
):
    avatar_replace(profile=profile, upload=jpeg_upload(name="first.jpg"))
    [staff] = staff_clients(1)
    url = f"/admin/accounts/profile/{profile.pk}/change/"

    responses = _while_paused(
        lambda pause: profile_loading_held(
            staff, url, _profile_form(profile), hold=pause
        ),
        lambda: _signed_in(profile.user).post(
            "/accounts/profile/", {"avatar": jpeg_upload(name="second.jpg")}
        ),
    )

    assert [response.status_code for response in responses] == [302, 302]
    assert "second" in _avatar_stored_alone(profile, any_storage, stored_names)


@pytest.mark.reliability("race-admin")
@pytest.mark.parametrize("page", ["profile", "user"])
def test_a_picture_uploaded_in_the_admin_while_its_user_uploads_one_leaves_one_stored(
    profile, any_storage, stored_names, staff_clients, profile_loading_held, page
):
    avatar_replace(profile=profile, upload=jpeg_upload(name="first.jpg"))
    [staff] = staff_clients(1)
    staff_avatar = {"avatar": jpeg_upload(name="staff.jpg")}
    if page == "profile":
        url = f"/admin/accounts/profile/{profile.pk}/change/"
        form = _profile_form(profile, **staff_avatar)
    else:
        url = f"/admin/auth/user/{profile.user_id}/change/"
        form = user_form(profile, **staff_avatar)

    responses = _while_paused(
        lambda pause: profile_loading_held(staff, url, form, hold=pause),
        lambda: _signed_in(profile.user).post(
            "/accounts/profile/", {"avatar": jpeg_upload(name="user.jpg")}
        ),
    )

    assert [response.status_code for response in responses] == [302, 302]
    # The staff member's, saved last, replaced the user's.
    assert "staff" in _avatar_stored_alone(profile, any_storage, stored_names)


# -- A user deleted while a deposit is credited to them --------------------------


def _credited_meanwhile(user, token, *, at: str):
    """A signal receiver that credits ``user`` a deposit, in a connection of
    its own, committed before the staff request goes on: ``at`` "check"
    right after the admin checked for rows that keep the user (its history
    entry is being written), "delete" right before the user's row is deleted.
    Django's delete then finds the deposit (``ProtectedError``), or, on
    PostgreSQL, the foreign key refuses at commit."""
    done = threading.Event()

    def credit(sender, instance, **kwargs) -> None:
        about_user = (
            str(instance.object_id) == str(user.pk)
            if at == "check"
            else instance.pk == user.pk
        )
        if not about_user or done.is_set():
            return
        done.set()

        def work() -> None:
            try:
                fund(user, token, "1")
            finally:
                connection.close()

        thread = threading.Thread(target=work)
        thread.start()
        thread.join(timeout=30)

    return credit


@pytest.fixture
def credit_while_deleting(btc):
    """``credit_while_deleting(user, at=...)``: for the test, a deposit is
    credited to ``user`` at that point of a delete (``_credited_meanwhile``)."""
    connected = []

    def connect(user, *, at: str) -> None:
        receiver = _credited_meanwhile(user, btc, at=at)
        signal, sender = (
            (pre_save, LogEntry) if at == "check" else (pre_delete, get_user_model())
        )
        signal.connect(receiver, sender=sender, weak=False)
        connected.append((signal, receiver, sender))

    yield connect
    for signal, receiver, sender in connected:
        signal.disconnect(receiver, sender=sender)


@pytest.mark.reliability("race-admin")
@pytest.mark.parametrize("at", ["check", "delete"])
@pytest.mark.parametrize("where", ["page", "list"])
def test_a_user_credited_while_staff_delete_them_is_kept_and_staff_are_told(
    staff_clients, credit_while_deleting, where, at
):
    [staff] = staff_clients(1)
    victim = user_make("victim")
    if where == "page":
        url = back = f"/admin/auth/user/{victim.pk}/delete/"
        form = {"post": "yes"}
        said = "this user: a deposit, an order or another record that must be kept "
        said += "was added for them"
    else:
        url = back = "/admin/auth/user/"
        form = {"action": "delete_selected", "_selected_action": [victim.pk]}
        form["post"] = "yes"
        said = "the selected users: a deposit, an order or another record that "
        said += "must be kept was added for one of them"
    credit_while_deleting(victim, at=at)

    response = staff.post(url, form, follow=True)

    assert response.redirect_chain == [(back, 302)]
    page = response.content.decode()
    assert (
        f"Cannot delete {said} while you were confirming. Nothing was deleted." in page
    )
    assert "Successfully deleted" not in page
    if where == "page":
        # The usual page for a user with money on the books: what keeps them.
        assert "Cannot delete user" in page and "<li>deposit</li>" in page
    assert get_user_model().objects.filter(pk=victim.pk).exists()
    assert Deposit.objects.filter(user=victim).count() == 1
    assert not LogEntry.objects.filter(
        object_id=str(victim.pk), action_flag=DELETION
    ).exists()
