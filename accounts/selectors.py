from __future__ import annotations

from dataclasses import dataclass, replace

from allauth.account.models import EmailAddress
from allauth.mfa.utils import is_mfa_enabled
from allauth.usersessions.models import UserSession
from django.contrib.auth import get_user_model
from django.contrib.auth.models import AbstractBaseUser
from django.core.cache import cache
from django.db.models import Q

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


def email_verified_elsewhere(*, user: AbstractBaseUser, email: str) -> bool:
    """Whether another account verified ``email`` (in any case) first: no
    link can confirm it for ``user`` any more."""
    return (
        EmailAddress.objects.filter(email__iexact=email, verified=True)
        .exclude(user_id=user.pk)
        .exists()
    )


def _email_address_shown(*, user: AbstractBaseUser) -> str:
    """The address the profile names: the primary one, else the newest one
    the user added. allauth deletes an unverified primary address when the
    user changes it, and leaves the new one unverified and not primary."""
    primary_first = EmailAddress.objects.filter(user_id=user.pk).order_by(
        "-primary", "-pk"
    )
    return primary_first.values_list("email", flat=True).first() or ""


@dataclass(frozen=True)
class SecurityOverview:
    email_verified: bool
    mfa_enabled: bool
    sessions: list[UserSession]
    events: list[SecurityEvent]
    # The primary address, else the newest added; "" without any.
    email_address: str = ""
    # Another account verified ``email_address`` first (read uncached: that
    # is the other account's row).
    email_taken: bool = False


# The overview is read from the cache until something it shows changes
# (accounts.signals bumps the version); sessions that merely expire leave it
# within this many seconds.
SECURITY_OVERVIEW_SECONDS = 300


def security_overview(*, user: AbstractBaseUser, events: int = 20) -> SecurityOverview:
    """What the profile shows about the account's security: the address, its
    state (verified, or verified by another account first) and the
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
    if overview.email_address and not overview.email_verified:
        taken = email_verified_elsewhere(user=user, email=overview.email_address)
        overview = replace(overview, email_taken=taken)
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
        email_address=_email_address_shown(user=user),
        mfa_enabled=is_mfa_enabled(user),
        sessions=sessions,
        events=latest,
    )


def users_for_login(
    *, username: str | None = None, email: str | None = None
) -> list[AbstractBaseUser]:
    """The accounts a log-in names as their own, by primary key: the one
    whose username it is (any case), and those whose address it is, read as
    allauth's backend reads an address (``lower()``: the Kelvin sign U+212A
    is "k" to it, not to the database's case-insensitive match).

    An address nobody verified can be several accounts' own. An account
    holding it only as an unverified second address (a change not
    confirmed) is not counted: anyone can add anyone's address so.
    Reauthentication sends the username and the address (the log-in form
    sends an address as both): its account is the username's alone.
    """
    User = get_user_model()
    by_username = f"{User.USERNAME_FIELD}__iexact"
    if username and email and username != email:
        names = Q(**{by_username: username})
    else:
        login = (email or username or "").strip()
        if not login:
            return []
        names = Q(**{by_username: login}) | Q(email__iexact=login.lower())
    return list(User._default_manager.filter(names).order_by("pk"))
