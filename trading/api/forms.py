from __future__ import annotations

from django import forms

from trading.models import ApiKey


class ApiKeyCreateForm(forms.Form):
    """The profile page's "new API key" form: ``name`` and ``scopes``
    (checkboxes, or one select/radio value: ``read`` or ``trade``)."""

    name = forms.CharField(max_length=100, strip=True)
    scopes = forms.MultipleChoiceField(
        choices=ApiKey.Scope.choices,
        initial=[ApiKey.Scope.READ],
        widget=forms.CheckboxSelectMultiple,
        help_text="Trade includes read.",
    )
