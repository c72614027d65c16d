"""What staff who are not superusers may do to accounts in the admin: only
what their permissions say. Verifying an address needs the permission to
change addresses; what anyone may do in the admin (superuser, staff, groups,
permissions) is granted by superusers alone."""

from __future__ import annotations

import pytest
from allauth.account.models import EmailAddress
from allauth.mfa.models import Authenticator
from django.contrib.admin.models import LogEntry
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group, Permission
from django.test import Client

from accounts.tests.test_admin_concurrency import user_form
from tests.factories import user_make

pytestmark = pytest.mark.django_db

ADDRESSES = "/admin/account/emailaddress/"
PERMISSION_FIELDS = ["is_superuser", "is_staff", "groups", "user_permissions"]


@pytest.fixture
def clerk_client(mfa_enable):
    """``clerk_client("view_user", ...)``: a client signed in as a staff
    member (not a superuser) with the second factor and those permissions."""

    def make(*codenames: str) -> Client:
        clerk = get_user_model().objects.create_user(
            "clerk", email="clerk@example.com", is_staff=True
        )
        clerk.user_permissions.set(Permission.objects.filter(codename__in=codenames))
        mfa_enable(clerk)
        client = Client()
        client.force_login(clerk)
        return client

    return make


def verify(client: Client, address: EmailAddress):
    return client.post(
        ADDRESSES,
        {"action": "make_verified", "_selected_action": [address.pk]},
        follow=True,
    )


# -- Verifying an address --------------------------------------------------------


def test_staff_who_may_only_view_addresses_cannot_verify_one(clerk_client):
    address = EmailAddress.objects.get(user=user_make("newbie", verified=False))
    clerk = clerk_client("view_emailaddress")

    assert 'value="make_verified"' not in clerk.get(ADDRESSES).content.decode()
    response = verify(clerk, address)

    assert response.status_code == 200
    address.refresh_from_db()
    assert not address.verified


def test_staff_who_may_change_addresses_verify_one_and_the_history_says_who(
    clerk_client,
):
    address = EmailAddress.objects.get(user=user_make("newbie", verified=False))
    clerk = clerk_client("view_emailaddress", "change_emailaddress")

    response = verify(clerk, address)

    assert "Marked newbie@example.com as verified." in response.content.decode()
    address.refresh_from_db()
    assert address.verified
    [entry] = LogEntry.objects.filter(object_id=str(address.pk))
    assert entry.user.username == "clerk"
    assert entry.get_change_message() == "Changed Verified."


# -- Granting permissions ----------------------------------------------------------


def grants(group: Group, withdrawals: Permission) -> dict:
    return {
        "is_superuser": "on",
        "is_staff": "on",
        "groups": [group.pk],
        "user_permissions": [withdrawals.pk],
    }


@pytest.fixture
def withdrawals() -> Permission:
    return Permission.objects.get(codename="change_withdrawal")


@pytest.mark.parametrize("whom", ["themselves", "another user"])
def test_staff_who_may_change_users_cannot_grant_permissions(
    clerk_client, desk, withdrawals, whom
):
    client = clerk_client("view_user", "change_user")
    clerk = get_user_model().objects.get(username="clerk")
    user = clerk if whom == "themselves" else user_make("bob")
    url = f"/admin/auth/user/{user.pk}/change/"

    page = client.get(url).content.decode()
    assert not [name for name in PERMISSION_FIELDS if f'name="{name}"' in page]
    response = client.post(
        url,
        {
            **user_form(user.profile),
            "email": "new@example.com",
            **grants(desk, withdrawals),
        },
    )

    assert response.status_code == 302
    user.refresh_from_db()
    assert user.email == "new@example.com"  # what they may change, changed
    assert user.is_superuser is False
    assert user.is_staff is (whom == "themselves")
    assert not user.groups.exists()
    assert withdrawals not in user.user_permissions.all()


def test_superusers_grant_permissions_and_the_history_says_so(
    staff_client, desk, withdrawals
):
    bob = user_make("bob")

    response = staff_client.post(
        f"/admin/auth/user/{bob.pk}/change/",
        {**user_form(bob.profile), **grants(desk, withdrawals)},
    )

    assert response.status_code == 302
    bob.refresh_from_db()
    assert bob.is_superuser and bob.is_staff
    assert list(bob.groups.all()) == [desk]
    assert list(bob.user_permissions.all()) == [withdrawals]
    [entry] = LogEntry.objects.filter(object_id=str(bob.pk))
    assert entry.user.username == "root"
    changed = entry.get_change_message()
    for field in ["Superuser status", "Staff status", "Groups", "User permissions"]:
        assert field in changed


def test_staff_who_may_change_groups_cannot_grant_permissions_through_one(
    clerk_client, desk, withdrawals
):
    client = clerk_client("view_group", "change_group", "add_group")
    get_user_model().objects.get(username="clerk").groups.add(desk)

    changed = client.post(
        f"/admin/auth/group/{desk.pk}/change/",
        {"name": "desk", "permissions": [withdrawals.pk]},
    )
    added = client.post(
        "/admin/auth/group/add/", {"name": "mine", "permissions": [withdrawals.pk]}
    )

    assert changed.status_code == added.status_code == 403
    assert not desk.permissions.exists()
    assert list(Group.objects.all()) == [desk]
    assert client.get(f"/admin/auth/group/{desk.pk}/change/").status_code == 200


def test_superusers_choose_a_groups_permissions(staff_client, desk, withdrawals):
    response = staff_client.post(
        f"/admin/auth/group/{desk.pk}/change/",
        {"name": "desk", "permissions": [withdrawals.pk]},
    )

    assert response.status_code == 302
    assert list(desk.permissions.all()) == [withdrawals]


@pytest.mark.parametrize("whom", ["root", "another staff member"])
def test_staff_who_may_change_users_cannot_take_over_another_staff_account(
    clerk_client, whom
):
    client = clerk_client("view_user", "change_user", "delete_user")
    if whom == "root":
        target = get_user_model().objects.create_superuser("root", "r@example.com")
    else:
        target = user_make("teller")
        target.is_staff = True
        target.save()
    url = f"/admin/auth/user/{target.pk}/"

    password = client.post(
        f"{url}password/",
        {"password1": "Taken-over-1234", "password2": "Taken-over-1234"},
    )
    changed = client.post(
        f"{url}change/", {**user_form(target.profile), "email": "mine@example.com"}
    )
    deleted = client.post(f"{url}delete/", {"post": "yes"})

    assert password.status_code == changed.status_code == deleted.status_code == 403
    target.refresh_from_db()
    assert not target.check_password("Taken-over-1234")
    assert target.email != "mine@example.com"
    assert client.get(f"{url}change/").status_code == 200  # still seen, read-only


def test_staff_who_may_change_users_still_change_members(clerk_client):
    client = clerk_client("view_user", "change_user")
    bob = user_make("bob")

    response = client.post(
        f"/admin/auth/user/{bob.pk}/password/",
        {"password1": "New-pass-1234!", "password2": "New-pass-1234!"},
    )

    assert response.status_code == 302
    bob.refresh_from_db()
    assert bob.check_password("New-pass-1234!")


def test_staff_cannot_take_over_a_superuser_through_addresses_or_second_factors(
    clerk_client, mfa_enable
):
    """A superuser's address changed to the clerk's, and the second factor
    removed, would let a password reset hand the clerk the account."""
    client = clerk_client(
        "view_emailaddress",
        "change_emailaddress",
        "add_emailaddress",
        "delete_emailaddress",
        "view_authenticator",
        "delete_authenticator",
    )
    root = get_user_model().objects.create_superuser("root", "root@example.com")
    address = EmailAddress.objects.create(
        user=root, email="root@example.com", verified=True, primary=True
    )
    mfa_enable(root)
    [totp] = Authenticator.objects.filter(user=root, type=Authenticator.Type.TOTP)
    mine = {"email": "clerk@evil.example", "verified": "on", "primary": "on"}

    changed = client.post(f"{ADDRESSES}{address.pk}/change/", {**mine, "user": root.pk})
    added = client.post(f"{ADDRESSES}add/", {**mine, "user": root.pk})
    removed = client.post(
        f"/admin/mfa/authenticator/{totp.pk}/delete/", {"post": "yes"}
    )

    assert changed.status_code == removed.status_code == 403
    assert added.status_code == 200  # the form, with the user refused
    assert list(EmailAddress.objects.filter(user=root).values_list("email")) == [
        ("root@example.com",)
    ]
    assert Authenticator.objects.filter(pk=totp.pk).exists()


def test_staff_still_help_a_member_with_their_address_and_lost_phone(
    clerk_client, mfa_enable
):
    client = clerk_client(
        "view_emailaddress",
        "change_emailaddress",
        "view_authenticator",
        "delete_authenticator",
    )
    bob = user_make("bob")
    mfa_enable(bob)
    address = EmailAddress.objects.get(user=bob)
    [totp] = Authenticator.objects.filter(user=bob, type=Authenticator.Type.TOTP)

    changed = client.post(
        f"{ADDRESSES}{address.pk}/change/",
        {"email": "bob@new.example", "user": bob.pk, "verified": "on", "primary": "on"},
    )
    removed = client.post(
        f"/admin/mfa/authenticator/{totp.pk}/delete/", {"post": "yes"}
    )

    assert changed.status_code == removed.status_code == 302
    address.refresh_from_db()
    assert address.email == "bob@new.example"
    assert not Authenticator.objects.filter(pk=totp.pk).exists()


def test_staff_verify_members_addresses_but_not_another_staff_members(clerk_client):
    client = clerk_client("view_emailaddress", "change_emailaddress")
    root = get_user_model().objects.create_superuser("root", "root@example.com")
    roots = EmailAddress.objects.create(user=root, email="root@example.com")
    bobs = EmailAddress.objects.get(user=user_make("bob", verified=False))

    response = client.post(
        ADDRESSES,
        {"action": "make_verified", "_selected_action": [roots.pk, bobs.pk]},
        follow=True,
    )

    told = [str(m) for m in response.context["messages"]]
    assert (
        "root@example.com is another staff member's: only a superuser verifies it."
        in told
    )
    roots.refresh_from_db()
    bobs.refresh_from_db()
    assert (roots.verified, bobs.verified) == (False, True)
