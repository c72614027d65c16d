"""The API's shapes. Amounts travel as decimal strings both ways, never as
JSON numbers, so no value is ever rounded through a float."""

from __future__ import annotations

import re
from decimal import Decimal

from django.core.validators import RegexValidator
from django.urls import reverse
from drf_spectacular.extensions import OpenApiSerializerFieldExtension
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from trading.addresses import MEMO_MAX_LENGTH
from trading.models import CLIENT_ID, Market, Order, Withdrawal
from trading.money import plain
from trading.selectors import CANDLE_INTERVALS

# A client's own id (trading.models.CLIENT_ID), refused in the field's words.
client_id_characters = RegexValidator(
    f"^{CLIENT_ID.pattern}$",
    'Use letters, digits and ". _ : / -" only.',
    code="invalid",
)

AMOUNT_SCHEMA = {
    "type": "string",
    "format": "decimal",
    "pattern": r"^[0-9]+(\.[0-9]+)?$",
    "example": "0.25",
}


# What a request may send: the answers' form, a sign or a bare decimal point
# (refused or not by the services, with their own codes), or a JSON integer.
AMOUNT_INPUT_PATTERN = r"^[+-]?([0-9]+(\.[0-9]*)?|\.[0-9]+)$"
AMOUNT_INPUT_SCHEMA = {
    "oneOf": [
        {**AMOUNT_SCHEMA, "pattern": AMOUNT_INPUT_PATTERN},
        {"type": "integer"},
    ]
}


class AmountField(serializers.Field):
    """A decimal as a plain string: ``"0.25"`` in, ``"0.25"`` out.

    Input is a string (or a JSON integer) in plain notation, exactly as
    ``AMOUNT_INPUT_SCHEMA`` publishes it (ASCII digits, no spaces); a JSON
    float is refused, as it may already have lost digits. Range and precision
    are left to the services, which know the market's steps.
    """

    default_error_messages = {
        "invalid": 'A decimal number written as a string is required, like "0.25".',
    }
    _PLAIN = re.compile(AMOUNT_INPUT_PATTERN, re.ASCII)
    _MAX_LENGTH = 80

    def to_internal_value(self, data: object) -> Decimal:
        if isinstance(data, bool) or not isinstance(data, str | int):
            self.fail("invalid")
        text = str(data)
        if len(text) > self._MAX_LENGTH or not self._PLAIN.fullmatch(text):
            self.fail("invalid")
        return Decimal(text)

    def to_representation(self, value: Decimal) -> str:
        return plain(value)


class AmountFieldScheme(OpenApiSerializerFieldExtension):
    """Amounts in answers as ``AMOUNT_SCHEMA``, in requests as what the field
    accepts (``AMOUNT_INPUT_SCHEMA``)."""

    target_class = AmountField

    def map_serializer_field(self, auto_schema, direction):
        return AMOUNT_INPUT_SCHEMA if direction == "request" else AMOUNT_SCHEMA


@extend_schema_field({**AMOUNT_SCHEMA, "pattern": r"^-?[0-9]+(\.[0-9]+)?$"})
class SignedAmountField(AmountField):
    pass


@extend_schema_field(
    {**AMOUNT_SCHEMA, "pattern": r"^-?[0-9]+\.[0-9]{2}$", "example": "-1.25"}
)
class PercentField(AmountField):
    """A percentage with exactly two decimals, like ``"10.00"``."""

    def to_representation(self, value: Decimal) -> str:
        return f"{value:f}"


class TextField(serializers.CharField):
    """A JSON string in a request body. DRF's CharField also takes a number
    and turns it into text (``"reference": 7`` would be ``"7"``), which the
    schema, saying ``string``, does not allow."""

    def to_internal_value(self, data: object) -> str:
        if not isinstance(data, str):
            self.fail("invalid")
        return super().to_internal_value(data)


# A destination tag is a number, which a program may well send as one.
MEMO_ERRORS = {"invalid": 'A memo is a JSON string, like "memo": "123".'}


class JsonBooleanField(serializers.BooleanField):
    """``true`` or ``false`` in a request body. DRF's BooleanField also takes
    ``"yes"``, ``1`` or ``"off"`` (HTML forms), which the schema, saying
    ``boolean``, does not allow."""

    def to_internal_value(self, data: object) -> bool:
        if not isinstance(data, bool):
            self.fail("invalid")
        return data


class ErrorDetailSerializer(serializers.Serializer):
    code = serializers.CharField(help_text="Stable, for programs.")
    message = serializers.CharField(help_text="For people; may be reworded.")
    fields = serializers.DictField(
        child=serializers.ListField(child=serializers.CharField()),
        required=False,
        help_text="Validation errors only: each field's messages.",
    )


class ErrorSerializer(serializers.Serializer):
    error = ErrorDetailSerializer()


# -- Public -----------------------------------------------------------------


class MarketSerializer(serializers.Serializer):
    symbol = serializers.CharField()
    base = serializers.CharField(source="base.symbol")
    quote = serializers.CharField(source="quote.symbol")
    price_step = AmountField(help_text="Prices are multiples of this (quote).")
    amount_step = AmountField(help_text="Quantities are multiples of this (base).")
    min_notional = AmountField(help_text="Smallest price x quantity (quote).")
    maker_fee = AmountField(help_text="Rate, e.g. 0.001 for 0.1 %.")
    taker_fee = AmountField(help_text="Rate, e.g. 0.002 for 0.2 %.")
    status = serializers.ChoiceField(
        source="effective_status",
        choices=Market.Status.choices,
        help_text="A halted market accepts cancels only: staff halted it, or "
        "delisted its base or quote token.",
    )


class TickerSerializer(serializers.Serializer):
    market = serializers.CharField(source="market.symbol")
    last_price = AmountField(allow_null=True)
    open_price = AmountField(
        allow_null=True,
        help_text=(
            "The price 24 hours ago: the last trade at or before then (the"
            " first trade since for a market younger than 24 hours); null"
            " without a trade in the last 24 hours."
        ),
    )
    high_price = AmountField(allow_null=True)
    low_price = AmountField(allow_null=True)
    change = SignedAmountField(allow_null=True, help_text="last - open.")
    change_percent = PercentField(
        allow_null=True, help_text="(last - open) / open x 100, two decimals."
    )
    base_volume = AmountField(help_text="Base traded in the last 24 hours.")
    quote_volume = AmountField(help_text="Quote traded in the last 24 hours.")
    best_bid = AmountField(allow_null=True)
    best_ask = AmountField(allow_null=True)


class PriceLevelSerializer(serializers.Serializer):
    price = AmountField()
    quantity = AmountField(help_text="Open quantity at this price (base).")


class DepthSerializer(serializers.Serializer):
    market = serializers.CharField()
    bids = PriceLevelSerializer(many=True, help_text="Best (highest) first.")
    asks = PriceLevelSerializer(many=True, help_text="Best (lowest) first.")


class TradeSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    price = AmountField()
    quantity = AmountField()
    quote_amount = AmountField()
    taker_side = serializers.ChoiceField(
        choices=[("buy", "The taker bought"), ("sell", "The taker sold")]
    )
    created_at = serializers.DateTimeField()


class CandleSerializer(serializers.Serializer):
    open_time = serializers.DateTimeField(source="start")
    open = AmountField()
    high = AmountField()
    low = AmountField()
    close = AmountField()
    volume = AmountField(help_text="Base traded.")


class LimitQuerySerializer(serializers.Serializer):
    limit = serializers.IntegerField(min_value=1, max_value=500, default=50)


class CandleQuerySerializer(serializers.Serializer):
    interval = serializers.ChoiceField(choices=list(CANDLE_INTERVALS), default="1m")
    limit = serializers.IntegerField(min_value=1, max_value=1000, default=100)


# -- Private ----------------------------------------------------------------


class BalanceSerializer(serializers.Serializer):
    token = serializers.CharField(source="token.symbol")
    available = AmountField()
    locked = AmountField(help_text="Reserved by open orders and withdrawals.")


class OrderSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    url = serializers.SerializerMethodField(
        help_text="Where to follow the order (GET)."
    )
    market = serializers.CharField(source="market.symbol")
    side = serializers.ChoiceField(choices=Order.Side.choices)
    type = serializers.ChoiceField(choices=Order.Type.choices)
    time_in_force = serializers.ChoiceField(choices=Order.TimeInForce.choices)
    post_only = serializers.BooleanField()
    self_trade = serializers.ChoiceField(choices=Order.SelfTrade.choices)
    client_order_id = serializers.SerializerMethodField()
    price = AmountField(
        allow_null=True, help_text="The limit price; null for a market order."
    )
    stop_price = AmountField(allow_null=True, help_text="Stop-limit orders only.")
    quantity = AmountField(
        allow_null=True, help_text="null for a market buy by quote amount."
    )
    quote_amount = AmountField(
        allow_null=True, help_text="A market buy by quote amount: what to spend."
    )
    protection_price = AmountField(
        allow_null=True, help_text="A market order never trades beyond it."
    )
    filled_quantity = AmountField()
    remaining = AmountField(allow_null=True)
    executed_value = AmountField(help_text="Quote traded, before fees.")
    fee = AmountField()
    fee_token = serializers.SerializerMethodField()
    locked = AmountField(help_text="Still reserved: quote to buy, base to sell.")
    status = serializers.ChoiceField(
        choices=Order.Status.choices,
        help_text="accepted: not matched yet; waiting: a stop-limit order "
        "waiting for its stop price; open: in the book; filled, cancelled, "
        "rejected: closed.",
    )
    cancel_reason = serializers.SerializerMethodField()
    reject_reason = serializers.SerializerMethodField()
    created_at = serializers.DateTimeField()
    updated_at = serializers.DateTimeField()

    def get_url(self, order: Order) -> str:
        return reverse("api:order", kwargs={"pk": order.pk})

    def get_client_order_id(self, order: Order) -> str | None:
        return order.client_order_id or None

    def get_fee_token(self, order: Order) -> str:
        """The token received, in which the fee is paid."""
        market = order.market
        return (market.base if order.side == Order.Side.BUY else market.quote).symbol

    @extend_schema_field(
        serializers.ChoiceField(
            choices=[c for c in Order.CancelReason.values if c], allow_null=True
        )
    )
    def get_cancel_reason(self, order: Order) -> str | None:
        return order.cancel_reason or None

    @extend_schema_field(
        serializers.ChoiceField(
            choices=[c for c in Order.RejectReason.values if c], allow_null=True
        )
    )
    def get_reject_reason(self, order: Order) -> str | None:
        return order.reject_reason or None


class OrderCreateSerializer(serializers.Serializer):
    market = TextField(max_length=25, help_text="Like BTC-USDT.")
    side = serializers.ChoiceField(choices=Order.Side.choices)
    type = serializers.ChoiceField(choices=Order.Type.choices)
    quantity = AmountField(
        required=False,
        allow_null=True,
        help_text="In base; a multiple of the amount step. A market buy gives "
        "either this (with protection_price) or quote_amount.",
    )
    price = AmountField(
        required=False,
        allow_null=True,
        help_text="Limit and stop-limit orders; a multiple of the price step.",
    )
    stop_price = AmountField(
        required=False,
        allow_null=True,
        help_text="Stop-limit orders: it enters the book as a limit order when "
        "the last trade price reaches this (a buy at or above, a sell at or "
        "below).",
    )
    quote_amount = AmountField(
        required=False,
        allow_null=True,
        help_text="A market buy by amount to spend, in quote: reserves it and "
        "gives back what it does not spend.",
    )
    protection_price = AmountField(
        required=False,
        allow_null=True,
        help_text="A market order never trades beyond this price; required for "
        "a market buy by quantity, which reserves quantity x protection_price.",
    )
    time_in_force = serializers.ChoiceField(
        choices=Order.TimeInForce.choices, default="GTC"
    )
    post_only = JsonBooleanField(default=False)
    self_trade = serializers.ChoiceField(
        choices=Order.SelfTrade.choices,
        default=Order.SelfTrade.CANCEL_NEWEST,
        help_text="When the order meets a resting order of yours.",
    )
    client_order_id = TextField(
        required=False,
        min_length=1,
        max_length=64,
        validators=[client_id_characters],
        help_text="Your id: repeating an order with it returns the first one.",
    )
    response = serializers.ChoiceField(
        choices=[
            ("result", "Wait (briefly) for the matcher's result"),
            ("ack", "Answer as soon as the order is accepted"),
        ],
        default="result",
        help_text="result: the order as matched (or 202 if the matcher takes "
        "longer than the server waits); ack: 202 at once.",
    )

    def validate(self, data: dict) -> dict:
        if data.get("quantity") is None and data.get("quote_amount") is None:
            raise serializers.ValidationError(
                {"quantity": ["This field is required (or quote_amount)."]}
            )
        return data


class OrderAmendSerializer(serializers.Serializer):
    price = AmountField(required=False, allow_null=True)
    quantity = AmountField(
        required=False,
        allow_null=True,
        help_text="The new total, filled part included.",
    )


class CancelAllSerializer(serializers.Serializer):
    market = TextField(
        required=False, max_length=25, help_text="Only this market; all by default."
    )


class CancelAllResultSerializer(serializers.Serializer):
    done = serializers.BooleanField(
        help_text="false: the matcher has not taken every cancel yet."
    )
    cancelled = OrderSerializer(many=True, help_text="The orders cancelled.")


class OrderQuerySerializer(serializers.Serializer):
    status = serializers.ChoiceField(
        choices=["open", "closed"],
        required=False,
        help_text="open: accepted, waiting or open; closed: filled, cancelled "
        "or rejected.",
    )
    market = serializers.CharField(required=False, max_length=25)
    client_order_id = serializers.CharField(
        required=False,
        max_length=64,
        help_text="Only the orders placed with this client order id: how to "
        "find out whether an order whose answer was lost was placed.",
    )


class WithdrawalQuerySerializer(serializers.Serializer):
    reference = serializers.CharField(
        required=False,
        max_length=100,
        help_text="Only the request with this reference: how to find out "
        "whether a request whose answer was lost was made.",
    )


class MarketQuerySerializer(serializers.Serializer):
    market = serializers.CharField(required=False, max_length=25)


class FillSerializer(serializers.Serializer):
    id = serializers.IntegerField(help_text="The trade's id.")
    order_id = serializers.IntegerField()
    market = serializers.CharField(source="market.symbol")
    side = serializers.ChoiceField(choices=Order.Side.choices)
    liquidity = serializers.ChoiceField(choices=["maker", "taker"])
    price = AmountField()
    quantity = AmountField()
    quote_amount = AmountField()
    fee = AmountField()
    fee_token = serializers.CharField()
    created_at = serializers.DateTimeField()


class WithdrawalSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    token = serializers.CharField(source="token.symbol")
    amount = AmountField()
    address = serializers.CharField()
    network = serializers.CharField(
        help_text="The network the coins go out on, like `Ethereum, ERC-20`; "
        "empty for a token without address formats."
    )
    memo = serializers.CharField(
        help_text="The memo (destination tag) sent with the coins; empty when none."
    )
    reference = serializers.CharField()
    status = serializers.ChoiceField(
        choices=Withdrawal.Status.choices,
        help_text="`pending` (you may cancel it), `processing` (staff are "
        "sending the coins: it can no longer be cancelled; the amount stays "
        "locked), then `approved` (sent), `rejected` or `cancelled` (the amount "
        "is available again).",
    )
    created_at = serializers.DateTimeField()
    decided_at = serializers.DateTimeField(
        allow_null=True, help_text="When it was approved, rejected or cancelled."
    )
    reason = serializers.CharField(help_text="Why staff rejected it; empty otherwise.")


class WithdrawalCreateSerializer(serializers.Serializer):
    token = TextField(max_length=12, help_text="Like BTC.")
    amount = AmountField()
    address = TextField(max_length=255)
    network = TextField(
        required=False,
        allow_blank=True,
        max_length=60,
        help_text="The network to send on, like `BNB Smart Chain, BEP-20`. "
        "Needed only when the address is valid on several of the token's "
        "networks (an 0x address on two EVM chains): such a request without it "
        "is refused with `invalid_address`, naming them. Left out: the one "
        "network the address is valid on.",
    )
    memo = TextField(
        required=False,
        allow_blank=True,
        # Only "" says "no memo": spaces alone are refused, not trimmed to it.
        trim_whitespace=False,
        max_length=MEMO_MAX_LENGTH,
        error_messages=MEMO_ERRORS,
        help_text="The memo sent with the coins (the XRP Ledger's destination "
        "tag, Stellar's or Cosmos's memo), which the recipient's exchange needs "
        'to credit them; `""` when the recipient needs none. **Required** '
        "on a network that takes one: left out, the request is refused with "
        "400 `memo_required`, as a forgotten tag loses the coins. A memo on a "
        "network that takes none, or not written as the network writes them, "
        "is refused with 400 `invalid_memo`.",
    )
    reference = TextField(
        max_length=100,
        validators=[client_id_characters],
        help_text="Your idempotency key: repeating a request returns the first.",
    )


class SavedAddressSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    token = serializers.CharField(source="token.symbol")
    address = serializers.CharField()
    memo = serializers.CharField(
        help_text="The memo (destination tag) saved with the address; empty "
        "when none. Under the saved-addresses-only setting a withdrawal must "
        "carry the same memo."
    )
    label = serializers.CharField()
    created_at = serializers.DateTimeField()
    usable_from = serializers.DateTimeField(
        help_text="From then on withdrawals to it pass the saved-addresses-only "
        "setting."
    )


class SavedAddressCreateSerializer(serializers.Serializer):
    token = TextField(max_length=12, help_text="Like BTC.")
    address = TextField(max_length=255)
    memo = TextField(
        required=False,
        allow_blank=True,
        # Only "" says "no memo": spaces alone are refused, not trimmed to it.
        trim_whitespace=False,
        max_length=MEMO_MAX_LENGTH,
        error_messages=MEMO_ERRORS,
        help_text="The recipient's memo (destination tag), if their network "
        "takes one; the same address may be saved with several memos.",
    )
    label = TextField(max_length=60)
