"""Writes of the tokens app."""

from __future__ import annotations

from django.core.files.base import File

from storage.images import TOKEN_LOGO, image_ensure_processed
from storage.services import field_file_store
from tokens.models import Token


def token_create(
    *,
    name: str,
    symbol: str,
    decimals: int = 18,
    description: str = "",
    logo: File | None = None,
    is_active: bool = True,
) -> Token:
    """Create a token; its logo, if any, is checked and resized first."""
    token = Token(
        name=name,
        symbol=symbol,
        decimals=decimals,
        description=description,
        is_active=is_active,
    )
    token.full_clean(exclude=["logo"])
    if logo is None:
        token.save()
        return token
    processed = image_ensure_processed(logo, spec=TOKEN_LOGO)
    field_file_store(instance=token, field_name="logo", content=processed)
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
