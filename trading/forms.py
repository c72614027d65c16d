from django import forms

from tokens.models import Token
from trading.models import AMOUNT, Order


def _amount_field(label: str, *, required: bool = True) -> forms.DecimalField:
    return forms.DecimalField(
        label=label,
        required=required,
        min_value=0,
        max_digits=AMOUNT["max_digits"],
        decimal_places=AMOUNT["decimal_places"],
        widget=forms.TextInput(attrs={"inputmode": "decimal", "autocomplete": "off"}),
    )


class OrderForm(forms.Form):
    side = forms.ChoiceField(choices=Order.Side.choices, widget=forms.RadioSelect)
    type = forms.ChoiceField(
        choices=Order.Type.choices, initial=Order.Type.LIMIT, widget=forms.RadioSelect
    )
    price = _amount_field("Price", required=False)
    quantity = _amount_field("Amount")
    time_in_force = forms.ChoiceField(
        label="Time in force",
        choices=Order.TimeInForce.choices,
        initial=Order.TimeInForce.GTC,
    )
    post_only = forms.BooleanField(label="Post only (never take)", required=False)

    def clean(self):
        data = super().clean()
        if data.get("type") == Order.Type.LIMIT and data.get("price") is None:
            self.add_error("price", "A limit order needs a price.")
        if data.get("type") == Order.Type.MARKET:
            data["price"] = None
        return data


class WithdrawalForm(forms.Form):
    token = forms.ModelChoiceField(
        queryset=Token.objects.filter(is_active=True), to_field_name="symbol"
    )
    amount = _amount_field("Amount")
    address = forms.CharField(
        label="Destination address",
        max_length=255,
        # The wallet page lists the saved addresses in this datalist.
        widget=forms.TextInput(
            attrs={
                "list": "saved-addresses",
                "autocomplete": "off",
                "spellcheck": "false",
            }
        ),
    )
    # One per form shown: submitting the same form twice withdraws once.
    reference = forms.CharField(widget=forms.HiddenInput, max_length=64)


class SavedAddressForm(forms.Form):
    prefix = "book"

    label = forms.CharField(label="Label", max_length=60)
    token = forms.ModelChoiceField(
        queryset=Token.objects.filter(is_active=True), to_field_name="symbol"
    )
    address = forms.CharField(
        label="Address",
        max_length=255,
        widget=forms.TextInput(attrs={"autocomplete": "off", "spellcheck": "false"}),
    )


class WithdrawalAddressPolicyForm(forms.Form):
    saved_only = forms.BooleanField(
        label="Withdraw only to saved addresses", required=False
    )
