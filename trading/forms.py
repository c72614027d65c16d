import re
from decimal import Decimal

from django import forms
from django.contrib.auth.base_user import AbstractBaseUser
from django.core.exceptions import ValidationError
from django.db.models import Q

from tokens.models import Token
from trading.addresses import MEMO_MAX_LENGTH, memo_name_in_text
from trading.models import AMOUNT, AddressFormat, Market, Order, Withdrawal

_PLAIN_AMOUNT = r"([0-9]+(\.[0-9]*)?|\.[0-9]+)"


class PlainAmountField(forms.DecimalField):
    """An amount written as the API takes it: ASCII digits and at most one
    decimal point, above 0. Django's field reads anything Python's Decimal
    does (``1e2``, ``+1``, ``1_0``, other scripts' digits), which the market
    page's estimate cannot: an order would be placed for an amount the trader
    never saw written out."""

    default_error_messages = {
        "invalid": "Write the amount in digits with one decimal point, like 0.25 "
        "(no commas, spaces, signs or exponents).",
        "not_positive": "Enter an amount greater than 0.",
    }
    _plain = re.compile(_PLAIN_AMOUNT, re.ASCII)
    _negative = re.compile(f"-{_PLAIN_AMOUNT}", re.ASCII)

    def to_python(self, value: object) -> Decimal | None:
        text = "" if value is None else str(value).strip()
        if not text:
            return None
        if self._plain.fullmatch(text):
            return Decimal(text)
        code = "not_positive" if self._negative.fullmatch(text) else "invalid"
        raise ValidationError(self.error_messages[code], code=code)

    def validate(self, value: Decimal | None) -> None:
        super().validate(value)
        if value is not None and value <= 0:
            raise ValidationError(
                self.error_messages["not_positive"], code="not_positive"
            )


def _amount_field(label: str, *, required: bool = True) -> PlainAmountField:
    return PlainAmountField(
        label=label,
        required=required,
        max_digits=AMOUNT["max_digits"],
        decimal_places=AMOUNT["decimal_places"],
        widget=forms.TextInput(attrs={"inputmode": "decimal", "autocomplete": "off"}),
    )


class OrderForm(forms.Form):
    side = forms.ChoiceField(choices=Order.Side.choices, widget=forms.RadioSelect)
    type = forms.ChoiceField(
        # "Stop", not "Stop-limit": the label "Limit" names one choice only.
        choices=[
            (Order.Type.LIMIT, "Limit"),
            (Order.Type.MARKET, "Market"),
            (Order.Type.STOP_LIMIT, "Stop"),
        ],
        initial=Order.Type.LIMIT,
        widget=forms.RadioSelect,
    )
    price = _amount_field("Price", required=False)
    stop_price = _amount_field("Trigger at (stop orders)", required=False)
    quantity = _amount_field("Amount", required=False)
    quote_amount = _amount_field("Or spend (market)", required=False)
    protection_price = _amount_field("Pay at most per unit (market)", required=False)
    time_in_force = forms.ChoiceField(
        label="Time in force",
        choices=Order.TimeInForce.choices,
        initial=Order.TimeInForce.GTC,
        required=False,  # good till cancelled when not sent
    )
    post_only = forms.BooleanField(label="Post only (never take)", required=False)
    # A new one with each form shown: sending the same form again (after a
    # lost answer) returns the order it placed instead of placing another.
    client_order_id = forms.CharField(
        widget=forms.HiddenInput, required=False, max_length=64
    )

    def __init__(self, *args, market: Market | None = None, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        if market is not None:  # the labels name the tokens
            base, quote = market.base.symbol, market.quote.symbol
            for name, label in (
                ("price", f"Price ({quote})"),
                ("stop_price", f"Stop: trigger at ({quote})"),
                ("quantity", f"Amount ({base})"),
                ("quote_amount", f"Or spend ({quote})"),
                ("protection_price", f"Pay at most per unit ({quote})"),
            ):
                self.fields[name].label = label

    def clean(self):
        data = super().clean()
        kind = data.get("type")

        def missing(*names: str) -> bool:
            # A field that failed its own checks already says what is wrong.
            return all(
                data.get(name) is None and name not in self.errors for name in names
            )

        data["time_in_force"] = data.get("time_in_force") or Order.TimeInForce.GTC
        # The page hides the fields an order type does not use (a market
        # order has no price, time in force or post-only); whatever they
        # still hold is left out, never sent on unseen.
        if kind != Order.Type.LIMIT:
            data["post_only"] = False
        elif data.get("post_only") and data.get("time_in_force") != (
            Order.TimeInForce.GTC
        ):
            self.add_error(
                "post_only",
                "A post-only order waits in the book: choose good till cancelled.",
            )
        if kind in (Order.Type.LIMIT, Order.Type.STOP_LIMIT):
            if missing("price"):
                self.add_error("price", "A limit order needs a price.")
            data["quote_amount"] = data["protection_price"] = None
        if kind != Order.Type.STOP_LIMIT:
            data["stop_price"] = None
        elif missing("stop_price"):
            self.add_error("stop_price", "A stop-limit order needs a stop price.")
        if kind == Order.Type.MARKET:
            data["price"] = None
            data["time_in_force"] = Order.TimeInForce.GTC
            if data.get("side") == Order.Side.SELL:
                data["quote_amount"] = data["protection_price"] = None
            if data.get("quote_amount") is not None:
                # A market buy by the amount to spend; no quantity, no cap.
                data["quantity"] = data["protection_price"] = None
            elif data.get("side") == Order.Side.BUY and missing(
                "protection_price", "quote_amount"
            ):
                self.add_error(
                    "protection_price",
                    "A market buy by amount needs the highest price you accept "
                    "(or give the quote amount to spend instead).",
                )
        if missing("quantity", "quote_amount"):
            self.add_error("quantity", "Give the amount to trade.")
        return data


MEMO_LABEL = "Memo / destination tag"


def _memo_field_label(fields: dict, *, only_if_taken: tuple[str, ...]) -> None:
    """Name the memo field as the networks that take one do, and say which
    they are; without such a network, remove ``only_if_taken``."""
    taking = list(
        AddressFormat.objects.filter(token__is_active=True)
        .exclude(memo_name="")
        .values_list("token__symbol", "network", "memo_name")
    )
    if not taking:
        for name in only_if_taken:
            del fields[name]
        return
    names = {memo_name for _, _, memo_name in taking}
    if len(names) == 1:
        fields["memo"].label = names.pop()
        where = ", ".join(f"{network} ({symbol})" for symbol, network, _ in taking)
    else:
        where = "; ".join(
            f"{network} ({symbol}): {memo_name_in_text(memo_name)}"
            for symbol, network, memo_name in taking
        )
    fields["memo"].help_text = (
        f"Only for networks that need one: {where}. Copy it from the "
        "recipient's deposit instructions."
    )


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
    network = forms.ChoiceField(
        label="Network",
        required=False,
        help_text="Needed only when the address is valid on several of the "
        "token's networks (like an 0x address): the coins are sent on this one.",
    )
    memo = forms.CharField(
        label=MEMO_LABEL,
        required=False,
        max_length=MEMO_MAX_LENGTH,
        widget=forms.TextInput(attrs={"autocomplete": "off", "spellcheck": "false"}),
    )
    no_memo = forms.BooleanField(
        label="The recipient needs no memo",
        required=False,
        help_text="A personal wallet needs none; an exchange or custodian "
        "usually does, to credit the coins to the right customer.",
    )
    # One per form shown: submitting the same form twice withdraws once.
    reference = forms.CharField(widget=forms.HiddenInput, max_length=64)

    def __init__(self, *args, user: AbstractBaseUser | None = None, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        _memo_field_label(self.fields, only_if_taken=("memo", "no_memo"))
        # The tokens with more than one network, each with its networks; the
        # service refuses a network that is not the token's or the address's.
        networks: dict[str, list[str]] = {}
        for symbol, network in AddressFormat.objects.filter(
            token__is_active=True
        ).values_list("token__symbol", "network"):
            networks.setdefault(symbol, []).append(network)
        choices = [
            (symbol, [(network, network) for network in names])
            for symbol, names in networks.items()
            if len(names) > 1
        ]
        if choices:
            only = ("", "The address's only network")
            self.fields["network"].choices = [only, *choices]
        else:
            del self.fields["network"]
        if user is None or not self.is_bound:
            return
        # The form sent again after staff delisted its token must still find
        # the withdrawal its reference made (the service compares the rest).
        reference = str(self.data.get(self.add_prefix("reference"), "")).strip()
        earlier = (
            Withdrawal.objects.filter(user=user, reference=reference)
            .values_list("token_id", flat=True)
            .first()
        )
        if earlier is not None:
            self.fields["token"].queryset = Token.objects.filter(
                Q(is_active=True) | Q(pk=earlier)
            )

    def clean(self):
        data = super().clean()
        if "memo" not in self.fields:
            return data  # no network takes one: none
        if data.get("memo") and data.get("no_memo"):
            self.add_error(
                "memo",
                "Give the memo, or tick “The recipient needs no memo”, not both.",
            )
        elif not data.get("memo") and not data.get("no_memo"):
            data["memo"] = None  # not said: refused if the network takes one
        return data


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
    memo = forms.CharField(
        label=MEMO_LABEL,
        required=False,
        max_length=MEMO_MAX_LENGTH,
        widget=forms.TextInput(attrs={"autocomplete": "off", "spellcheck": "false"}),
    )

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        _memo_field_label(self.fields, only_if_taken=("memo",))


class WithdrawalAddressPolicyForm(forms.Form):
    saved_only = forms.BooleanField(
        label="Withdraw only to saved addresses", required=False
    )
