"""Form widgets shared by the apps' admin pages and forms."""

from __future__ import annotations

from decimal import Decimal

from django import forms

from core.numbers import plain


class PlainNumberInput(forms.NumberInput):
    """A number input showing a stored amount without exponent or trailing
    zeros (``0.00000001``, not ``1E-8``); what staff typed is shown back as
    typed."""

    def format_value(self, value):
        if isinstance(value, Decimal):
            return plain(value)
        return super().format_value(value)


class PlainHiddenInput(forms.HiddenInput):
    """A hidden input holding an amount as ``PlainNumberInput`` shows it."""

    def format_value(self, value):
        if isinstance(value, Decimal):
            return plain(value)
        return super().format_value(value)
