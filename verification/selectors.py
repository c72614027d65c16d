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
