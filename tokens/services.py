"""Writes of the tokens app."""

from __future__ import annotations

from collections.abc import Mapping
from decimal import Decimal
from typing import Any

from django.core.files.base import File
from django.db import transaction

from core.locks import unique_value_serialize
from storage.images import TOKEN_LOGO, image_ensure_processed
from storage.services import field_file_set, field_file_store
from tokens.models import Token


def token_create(
    *,
    name: str,
    symbol: str,
    decimals: int = 18,
    description: str = "",
    logo: File | None = None,
    is_active: bool = True,
    withdrawal_daily_limit: Decimal | None = None,
) -> Token:
    """Create a token; its logo, if any, is checked and resized first.

    A symbol already taken, even by a token added at the same moment, raises
    ValidationError. The logo is stored with the row, never without it.
    """
    token = Token(
        name=name,
        symbol=symbol,
        decimals=decimals,
        description=description,
        is_active=is_active,
        withdrawal_daily_limit=withdrawal_daily_limit,
    )
    token.full_clean(exclude=["logo"], validate_unique=False)
    processed = None if logo is None else image_ensure_processed(logo, spec=TOKEN_LOGO)
    with transaction.atomic():
        # Held until commit, also while the logo is written: another claim of
        # this symbol waits, then finds it taken.
        unique_value_serialize(model=Token, symbol=symbol)
        token.validate_unique()
        if processed is None:
            token.save()
        else:
            field_file_store(instance=token, field_name="logo", content=processed)
    return token


def token_update(*, token: Token, changes: Mapping[str, Any]) -> Token:
    """Save ``changes`` (field name: new value) to the token, and only them.

    Of two staff saving one token at once, each saves what they changed, not
    the values of other fields as they were when their page was loaded: the
    row is locked and re-read first. ``logo`` is a new image (stored as
    ``token_logo_replace`` does) or None to remove the logo; either way the
    file deleted after commit is the one the row held, not the one ``token``
    was loaded with.
    """
    fields = {name: value for name, value in changes.items() if name != "logo"}
    for name, value in fields.items():
        setattr(token, name, value)
    token.full_clean(exclude=["logo"])
    with transaction.atomic():
        if "logo" in changes:
            if changes["logo"] is None:
                token_logo_remove(token=token)
            else:
                token_logo_replace(token=token, upload=changes["logo"])
        if fields:
            locked = Token.objects.select_for_update().get(pk=token.pk)
            for name, value in fields.items():
                setattr(locked, name, value)
            locked.save(update_fields=[*fields, "updated_at"])
            token.updated_at = locked.updated_at
    return token


def token_logo_replace(*, token: Token, upload: File) -> Token:
    """Store a new logo (200x200, transparency kept as PNG) for a token.

    Same guarantees as ``accounts.services.avatar_replace``: nothing is
    written for a refused image, the old logo goes only after commit.
    """
    processed = image_ensure_processed(upload, spec=TOKEN_LOGO)
    field_file_store(
        instance=token,
        field_name="logo",
        content=processed,
        update_fields=["logo", "updated_at"],
    )
    return token


def token_logo_remove(*, token: Token) -> Token:
    """The token shows no logo; the file it had is deleted after commit."""
    with transaction.atomic():
        field_file_set(
            instance=token,
            field_name="logo",
            name="",
            update_fields=["logo", "updated_at"],
        )
    return token
