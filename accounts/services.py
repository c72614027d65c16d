"""Writes of the accounts app."""

from __future__ import annotations

from django.core.files.base import File
from django.db import transaction

from accounts.models import DEFAULT_AVATAR, Profile
from storage.images import AVATAR, image_ensure_processed
from storage.services import field_file_store


def avatar_replace(*, profile: Profile, upload: File) -> Profile:
    """Store a new profile picture (300x300, metadata stripped) for a profile.

    The upload is checked and resized in memory before anything is written:
    a refused image raises ValidationError with the row and the storage
    untouched. The old picture is deleted only after the transaction commits,
    the default avatar never.
    """
    processed = image_ensure_processed(upload, spec=AVATAR)
    field_file_store(
        instance=profile,
        field_name="avatar",
        content=processed,
        update_fields=["avatar", "updated_at"],
    )
    return profile


def avatar_remove(*, profile: Profile) -> Profile:
    """Go back to the default avatar; the custom picture is deleted on commit."""
    if profile.avatar.name == DEFAULT_AVATAR:
        return profile
    with transaction.atomic():
        profile.avatar = DEFAULT_AVATAR
        profile.save(update_fields=["avatar", "updated_at"])
    return profile
