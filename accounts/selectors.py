from __future__ import annotations

from dataclasses import dataclass

from allauth.account import app_settings as account_settings
from allauth.account.app_settings import LoginMethod
from allauth.account.internal.userkit import (
    filter_users_by_email,
    get_user_by_username,
)
from allauth.account.models import EmailAddress
from allauth.mfa.utils import is_mfa_enabled
from allauth.usersessions.models import UserSession
from django.contrib.auth.models import AbstractBaseUser
from django.core.cache import cache

from accounts.devices import device_describe
from accounts.models import Profile, SecurityEvent
from core.cache_versions import cache_version, cache_version_replace


def profile_for_user(*, user: AbstractBaseUser) -> Profile:
    """The user's profile (one query at most), created if an old account has none.

    Every new user gets a profile from a signal, so the fallback is for
    accounts made before it, or by fixtures without one.
    """
    try:
        return user.profile
    except Profile.DoesNotExist:
        profile, _ = Profile.objects.get_or_create(user=user)
        user.profile = profile  # the navigation reads it: no second query
        return profile


def email_verified(*, user: AbstractBaseUser) -> bool:
    """Whether the user has a verified e-mail address (needed before the
    first order or withdrawal; browsing and the profile work without)."""
    return EmailAddress.objects.filter(user_id=user.pk, verified=True).exists()


@dataclass(frozen=True)
class SecurityOverview:
    email_verified: bool
    mfa_enabled: bool
    sessions: list[UserSession]
    events: list[SecurityEvent]


# The overview is read from the cache until something it shows changes
# (accounts.signals bumps the version); sessions that merely expire leave it
# within this many seconds.
SECURITY_OVERVIEW_SECONDS = 300


def security_overview(*, user: AbstractBaseUser, events: int = 20) -> SecurityOverview:
    """What the profile shows about the account's security: the e-mail and
    second-factor state, the live sessions (oldest first, each with a
    ``device`` name) and the latest entries of the security log.

    Listing live sessions costs a few queries per session, so the result is
    cached per user under a version that every change to what it shows
    replaces (``security_overview_changed``).
    """
    version = cache_version(key=_version_key(user.pk))
    key = f"accounts:security:{user.pk}:{events}:{version}"
    overview = cache.get(key)
    if overview is None:
        overview = _security_overview_read(user=user, events=events)
        cache.set(key, overview, SECURITY_OVERVIEW_SECONDS)
    return overview


def security_overview_changed(*, user_id: int) -> None:
    """Drop the user's cached overview, now and again after the current
    transaction commits (a read in between would cache what was there
    before the commit)."""
    cache_version_replace(key=_version_key(user_id))


def _version_key(user_id: int) -> str:
    return f"accounts:security-version:{user_id}"


def _security_overview_read(*, user: AbstractBaseUser, events: int) -> SecurityOverview:
    sessions = sorted(
        UserSession.objects.purge_and_list(user), key=lambda s: s.created_at
    )
    latest = list(SecurityEvent.objects.filter(user=user)[:events])
    for item in [*sessions, *latest]:
        item.device = device_describe(item.user_agent)
    return SecurityOverview(
        email_verified=email_verified(user=user),
        mfa_enabled=is_mfa_enabled(user),
        sessions=sessions,
        events=latest,
    )


def users_for_login(
    *, username: str | None = None, email: str | None = None
) -> list[AbstractBaseUser]:
    """Every account a log-in with this username or e-mail address can sign
    in to, by primary key: found with the lookups of allauth's
    ``AuthenticationBackend`` (its username first tried as an address too),
    so the lock counts whatever account the backend checks the password of.

    A case-insensitive match in the database would miss some: the Kelvin sign
    (U+212A) is "k" to allauth's lookup by address (``lower()``), not to the
    database. Several accounts can hold one unverified address.
    """
    users = []
    if LoginMethod.EMAIL in account_settings.LOGIN_METHODS:
        for login in dict.fromkeys(name for name in (username, email) if name):
            users += filter_users_by_email(login, prefer_verified=True, for_login=True)
    if (
        username
        and LoginMethod.USERNAME in account_settings.LOGIN_METHODS
        and account_settings.USER_MODEL_USERNAME_FIELD
    ):
        users.append(get_user_by_username(username))
    by_pk = {user.pk: user for user in users if user is not None}
    return [by_pk[pk] for pk in sorted(by_pk)]
