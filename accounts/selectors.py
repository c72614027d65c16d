from __future__ import annotations

from dataclasses import dataclass

from allauth.account.models import EmailAddress
from allauth.mfa.utils import is_mfa_enabled
from allauth.usersessions.models import UserSession
from django.contrib.auth.models import AbstractBaseUser

from accounts.devices import device_describe
from accounts.models import Profile, SecurityEvent


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


def security_overview(*, user: AbstractBaseUser, events: int = 20) -> SecurityOverview:
    """What the profile shows about the account's security: the e-mail and
    second-factor state, the live sessions (oldest first, each with a
    ``device`` name) and the latest entries of the security log."""
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
