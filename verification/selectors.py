"""Reads of identity verification used by the verification page and the profile."""

from __future__ import annotations

from django.contrib.auth.base_user import AbstractBaseUser

from verification.models import IdentityVerification


def verification_latest(*, user: AbstractBaseUser) -> IdentityVerification | None:
    """The user's latest submission, with its documents; None before the first."""
    if not user.is_authenticated:
        return None
    return (
        IdentityVerification.objects.filter(user=user)
        .prefetch_related("documents")
        .order_by("-submitted_at", "-pk")
        .first()
    )


def verification_can_submit(*, latest: IdentityVerification | None) -> bool:
    """A first submission, or a new one after a rejection."""
    return latest is None or latest.state == IdentityVerification.State.REJECTED


def identity_verification_state(*, user: AbstractBaseUser) -> str | None:
    """The state of the user's latest submission (``IdentityVerification.State``),
    None before the first. An approved one is always the latest: no other can
    be sent after it."""
    if not user.is_authenticated:
        return None
    return (
        IdentityVerification.objects.filter(user=user)
        .order_by("-submitted_at", "-pk")
        .values_list("state", flat=True)
        .first()
    )
