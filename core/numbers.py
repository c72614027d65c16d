"""Decimals written as people write them, shared by every app."""

from __future__ import annotations

from decimal import Decimal


def plain(value: Decimal) -> str:
    """A decimal for messages: no exponent, no trailing zeros (``0.01``, ``10``)."""
    text = f"{value:f}"
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    return text
