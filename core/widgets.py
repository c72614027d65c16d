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
    """A hidden input holding an amount as ``PlainNumberInput`` shows it.

    Read back, a value that is no finite number reads as empty: a forged
    ``sNaN`` would make comparing it with the amount raise (a 500), where
    an empty one counts as changed."""

    def value_from_datadict(self, data, files, name):
        value = super().value_from_datadict(data, files, name)
        try:
            finite = Decimal(value).is_finite()
        except (TypeError, ValueError, ArithmeticError):
            return value
        return value if finite else ""

    def format_value(self, value):
        if isinstance(value, Decimal):
            return plain(value)
        return super().format_value(value)
