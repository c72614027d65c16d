from __future__ import annotations

from django import forms

from trading.api_keys import EXPIRY_CHOICES_DAYS
from trading.models import ApiKey


class ApiKeyCreateForm(forms.Form):
    """The profile page's "new API key" form. Every key reads; ``trade`` and
    ``withdraw`` are chosen separately, and ``withdraw`` needs an allow-list
    (``trading.api_keys.api_key_create`` checks the rules)."""

    name = forms.CharField(max_length=100, strip=True)
    scopes = forms.MultipleChoiceField(
        choices=[
            (ApiKey.Scope.READ, "Read (every key reads)"),
            (ApiKey.Scope.TRADE, "Trade: place and cancel orders"),
            (ApiKey.Scope.WITHDRAW, "Withdraw: request and cancel withdrawals"),
        ],
        required=False,
        initial=[ApiKey.Scope.READ],
        widget=forms.CheckboxSelectMultiple,
        help_text="Every key can read your balances, orders, fills and "
        "withdrawals. Withdraw is never included by trade.",
    )
    allowed_ips = forms.CharField(
        label="Allowed addresses",
        required=False,
        max_length=2000,
        widget=forms.Textarea(attrs={"rows": 2}),
        help_text="IP addresses or CIDR ranges the key may be used from, one "
        "per line; empty: anywhere. Required for withdraw, with ranges of at "
        "most /24 (IPv4) or /48 (IPv6).",
    )
    expires_in_days = forms.TypedChoiceField(
        label="Expires",
        choices=[("", "Never"), *((d, f"After {d} days") for d in EXPIRY_CHOICES_DAYS)],
        coerce=int,
        empty_value=None,
        required=False,
        initial=90,
    )
    require_signature = forms.BooleanField(
        label="Sign every request (HMAC) instead of sending the secret",
        required=False,
    )

    def scope_list(self) -> list[str]:
        return [ApiKey.Scope.READ, *self.cleaned_data["scopes"]]
