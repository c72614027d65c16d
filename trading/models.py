"""Balances, markets, orders, trades and the double-entry ledger.

Every amount is a ``DecimalField(**AMOUNT)``; nothing here is ever a float.
Rows are written only by ``trading.services``, ``trading.orders`` (the
request side of orders) and ``trading.batch`` (the matcher's writes).
"""

from __future__ import annotations

import re
from decimal import Decimal

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.validators import MinValueValidator
from django.db import models
from django.db.models import F, Q

from tokens.models import Token
from trading.addresses import MEMO_MAX_LENGTH, address_pattern_validate
from trading.money import exact, plain, unit

# What a client's own id of an order or a withdrawal (``client_order_id``,
# ``reference``) may be made of: the characters of ids and keys (a UUID,
# "bot-17", "2026-12-07:1"), none that a spreadsheet opening an export splits
# a cell on (";" in many locales), so that no part of one becomes a cell of
# its own, read as a formula (trading.exports).
CLIENT_ID = re.compile(r"[A-Za-z0-9._:/-]+")

AMOUNT = {"max_digits": 36, "decimal_places": 18}
FEE_RATE = {"max_digits": 7, "decimal_places": 6}


class Balance(models.Model):
    """What a user holds of a token: free to use, and reserved.

    A cached projection of the ledger (``user_available`` and ``user_locked``
    entries), locked and written only through ``trading.locks`` and the
    services' journal.
    """

    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="balances"
    )
    token = models.ForeignKey(Token, on_delete=models.PROTECT, related_name="+")
    available = models.DecimalField(**AMOUNT, default=Decimal(0))
    locked = models.DecimalField(**AMOUNT, default=Decimal(0))
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["user", "token"], name="balance_one_per_user_and_token"
            ),
            models.CheckConstraint(
                condition=Q(available__gte=0), name="balance_available_not_negative"
            ),
            models.CheckConstraint(
                condition=Q(locked__gte=0), name="balance_locked_not_negative"
            ),
        ]

    def __str__(self) -> str:
        return (
            f"{self.user} {self.token.symbol}: "
            f"{plain(self.available)} + {plain(self.locked)}"
        )

    @property
    def total(self) -> Decimal:
        return self.available + self.locked


class Market(models.Model):
    class Status(models.TextChoices):
        OPEN = "open", "Open"
        HALTED = "halted", "Halted (cancels only)"

    # The markets whose effective_status is open: those taking orders.
    TAKING_ORDERS = Q(status=Status.OPEN, base__is_active=True, quote__is_active=True)

    base = models.ForeignKey(
        Token, on_delete=models.PROTECT, related_name="markets_as_base"
    )
    quote = models.ForeignKey(
        Token, on_delete=models.PROTECT, related_name="markets_as_quote"
    )
    symbol = models.CharField(max_length=25, unique=True, editable=False)
    price_step = models.DecimalField(
        **AMOUNT, help_text="Prices are whole multiples of this (in quote)."
    )
    amount_step = models.DecimalField(
        **AMOUNT, help_text="Quantities are whole multiples of this (in base)."
    )
    min_notional = models.DecimalField(
        **AMOUNT,
        default=Decimal(0),
        # Also checked by market_steps_positive; checked on its own because
        # the admin's change form has no steps (fixed once the market exists)
        # and Django checks a constraint only with all its fields in the form.
        validators=[MinValueValidator(Decimal(0))],
        help_text="Smallest order value, price x quantity, in quote.",
    )
    maker_fee = models.DecimalField(
        **FEE_RATE, default=Decimal(0), help_text="Rate, e.g. 0.001 for 0.1 %."
    )
    taker_fee = models.DecimalField(
        **FEE_RATE, default=Decimal(0), help_text="Rate, e.g. 0.002 for 0.2 %."
    )
    status = models.CharField(
        max_length=10, choices=Status.choices, default=Status.OPEN
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["symbol"]
        constraints = [
            models.UniqueConstraint(
                fields=["base", "quote"], name="market_one_per_token_pair"
            ),
            models.CheckConstraint(
                condition=~Q(base=F("quote")), name="market_base_is_not_quote"
            ),
            models.CheckConstraint(
                condition=Q(price_step__gt=0, amount_step__gt=0, min_notional__gte=0),
                name="market_steps_positive",
            ),
            models.CheckConstraint(
                condition=Q(maker_fee__gte=0, maker_fee__lt=1)
                & Q(taker_fee__gte=0, taker_fee__lt=1),
                name="market_fee_rates_in_range",
            ),
        ]

    def __str__(self) -> str:
        return self.symbol

    @staticmethod
    def symbol_for(base: Token, quote: Token) -> str:
        return f"{base.symbol}-{quote.symbol}"

    @property
    def effective_status(self) -> Market.Status:
        # TAKING_ORDERS is the same rule in SQL.
        """The status traders meet: halted also while staff have delisted
        either token (``Token.is_active`` off), since ``trading.orders`` then
        refuses the market's orders as it refuses a halted market's."""
        if not (self.base.is_active and self.quote.is_active):
            return self.Status.HALTED
        return self.Status(self.status)

    @exact
    def clean(self) -> None:
        # Every notional (price x quantity) must be a whole number of quote
        # units, so that what the buyer pays is exactly what the seller gets:
        # only fees are ever rounded.
        if not (self.base_id and self.quote_id):
            return
        errors = {}
        if self.base_id == self.quote_id:
            errors["quote"] = "The quote token must differ from the base token."
        base_unit, quote_unit = unit(self.base.decimals), unit(self.quote.decimals)
        if self.amount_step is not None and self.amount_step % base_unit:
            errors["amount_step"] = (
                f"Must be a whole number of {self.base.symbol} units "
                f"({plain(base_unit)})."
            )
        if (
            self.price_step is not None
            and self.amount_step is not None
            and (self.price_step * self.amount_step) % quote_unit
        ):
            errors["price_step"] = (
                f"Price step x amount step must be a whole number of "
                f"{self.quote.symbol} units ({plain(quote_unit)})."
            )
        if self.min_notional is not None and self.min_notional % quote_unit:
            errors["min_notional"] = (
                f"Must be a whole number of {self.quote.symbol} units."
            )
        if errors:
            raise ValidationError(errors)


class Order(models.Model):
    """An order as the matcher last wrote it (see ``trading.orders`` for its
    states). The request side inserts it ``accepted`` with its reservation in
    ``locked``; from then on only the market's matcher changes it."""

    class Side(models.TextChoices):
        BUY = "buy", "Buy"
        SELL = "sell", "Sell"

    class Type(models.TextChoices):
        LIMIT = "limit", "Limit"
        MARKET = "market", "Market"
        STOP_LIMIT = "stop_limit", "Stop-limit"

    class TimeInForce(models.TextChoices):
        GTC = "GTC", "Good till cancelled"
        IOC = "IOC", "Immediate or cancel"
        FOK = "FOK", "Fill or kill"

    class Status(models.TextChoices):
        ACCEPTED = "accepted", "Accepted (waiting for the matcher)"
        WAITING = "waiting", "Waiting for its stop price"
        OPEN = "open", "Open"
        FILLED = "filled", "Filled"
        CANCELLED = "cancelled", "Cancelled"
        REJECTED = "rejected", "Rejected"

    # Statuses that still reserve funds and may still change.
    LIVE = (Status.ACCEPTED, Status.WAITING, Status.OPEN)

    class CancelReason(models.TextChoices):
        NONE = "", "—"
        USER = "user", "Cancelled by the user"
        UNFILLED = "unfilled", "Remainder of an immediate order"
        SELF_TRADE = "self_trade", "Would have traded with the user's own order"

    class RejectReason(models.TextChoices):
        """Why the matcher refused a placement (the engine's ``Reject``
        codes; ``balance_limit`` for a trade that would take a balance to
        10^18 or more, which the engine cannot know; ``matcher_error`` for a
        command it could not apply)."""

        NONE = "", "—"
        INVALID_ORDER = "invalid_order", "Options that do not go together"
        INVALID_AMOUNT = "invalid_amount", "An amount that is not valid"
        PRECISION_TOO_HIGH = "precision_too_high", "Off the market's steps"
        BELOW_MIN_NOTIONAL = "below_min_notional", "Below the minimum value"
        RESERVATION_MISMATCH = "reservation_mismatch", "Wrong reservation"
        INSUFFICIENT_RESERVATION = "insufficient_reservation", "Too little reserved"
        POST_ONLY_WOULD_TAKE = "post_only_would_take", "Post-only would trade"
        FILL_OR_KILL_NOT_FILLED = "fill_or_kill_not_filled", "Could not fill at once"
        ORDER_NOT_FOUND = "order_not_found", "No such order"
        ORDER_NOT_OPEN = "order_not_open", "Not open"
        BALANCE_LIMIT = "balance_limit", "A balance would reach 10^18"
        MATCHER_ERROR = "matcher_error", "The matcher could not apply it"

    class SelfTrade(models.TextChoices):
        CANCEL_NEWEST = "cancel_newest", "Cancel the incoming order"
        CANCEL_OLDEST = "cancel_oldest", "Cancel the resting order"
        CANCEL_BOTH = "cancel_both", "Cancel both"
        DECREMENT_AND_CANCEL = "decrement_and_cancel", "Decrement and cancel"

    # Indexed by order_user_status and order_client_id, which start with it.
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.PROTECT,
        related_name="orders",
        db_index=False,
    )
    market = models.ForeignKey(Market, on_delete=models.PROTECT, related_name="orders")
    side = models.CharField(max_length=4, choices=Side.choices)
    type = models.CharField(max_length=10, choices=Type.choices)
    time_in_force = models.CharField(max_length=3, choices=TimeInForce.choices)
    post_only = models.BooleanField(default=False)
    self_trade = models.CharField(
        max_length=20,
        choices=SelfTrade.choices,
        default=SelfTrade.CANCEL_NEWEST,
        help_text="What happens when it meets a resting order of the same user.",
    )
    client_order_id = models.CharField(max_length=64, blank=True, default="")
    # The request as sent with its client order id (a digest), which a repeat
    # is compared with: matching and amends change quantity and price. The
    # database default lets the code before the column insert orders while a
    # rolling upgrade runs.
    client_request = models.CharField(
        max_length=64, blank=True, default="", db_default="", editable=False
    )
    price = models.DecimalField(
        **AMOUNT, null=True, blank=True, help_text="Limit price (limit, stop-limit)."
    )
    quantity = models.DecimalField(
        **AMOUNT,
        null=True,
        blank=True,
        help_text="In base; empty for a market buy by quote amount.",
    )
    quote_amount = models.DecimalField(
        **AMOUNT,
        null=True,
        blank=True,
        help_text="A market buy by quote amount: the quote to spend.",
    )
    protection_price = models.DecimalField(
        **AMOUNT,
        null=True,
        blank=True,
        help_text="A market order never trades beyond it (required for a "
        "market buy by quantity).",
    )
    stop_price = models.DecimalField(
        **AMOUNT,
        null=True,
        blank=True,
        help_text="A stop-limit order enters the book when the last trade "
        "price reaches it.",
    )
    filled_quantity = models.DecimalField(**AMOUNT, default=Decimal(0))
    executed_value = models.DecimalField(
        **AMOUNT, default=Decimal(0), help_text="Quote traded, before fees."
    )
    fee = models.DecimalField(
        **AMOUNT, default=Decimal(0), help_text="Paid in the token received."
    )
    locked = models.DecimalField(
        **AMOUNT,
        default=Decimal(0),
        help_text="Still reserved: quote for a buy, base for a sell.",
    )
    status = models.CharField(
        max_length=9, choices=Status.choices, default=Status.ACCEPTED
    )
    cancel_reason = models.CharField(
        max_length=10, choices=CancelReason.choices, default="", blank=True
    )
    reject_reason = models.CharField(
        max_length=24, choices=RejectReason.choices, default="", blank=True
    )
    # Time priority, (sequence, rank), assigned by the matcher: the sequence
    # of the command that queued the order at its place (see trading.engine).
    priority_sequence = models.BigIntegerField(null=True, blank=True, editable=False)
    priority_rank = models.IntegerField(default=0, editable=False)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [
            models.CheckConstraint(
                condition=Q(quantity__gt=0, quote_amount__isnull=True)
                | Q(
                    quantity__isnull=True,
                    quote_amount__gt=0,
                    type="market",
                    side="buy",
                ),
                name="order_sized_by_quantity_or_quote_amount",
            ),
            models.CheckConstraint(
                condition=Q(filled_quantity__gte=0)
                & (Q(quantity__isnull=True) | Q(filled_quantity__lte=F("quantity"))),
                name="order_filled_within_quantity",
            ),
            models.CheckConstraint(
                condition=Q(quote_amount__isnull=True)
                | Q(executed_value__lte=F("quote_amount")),
                name="order_spent_within_quote_amount",
            ),
            models.CheckConstraint(
                condition=Q(locked__gte=0, executed_value__gte=0, fee__gte=0),
                name="order_amounts_not_negative",
            ),
            models.CheckConstraint(
                condition=Q(type="limit", price__gt=0, stop_price__isnull=True)
                | Q(type="stop_limit", price__gt=0, stop_price__gt=0)
                | Q(type="market", price__isnull=True, stop_price__isnull=True),
                name="order_prices_fit_its_type",
            ),
            models.CheckConstraint(
                condition=Q(protection_price__isnull=True)
                | Q(type="market", protection_price__gt=0),
                name="order_protection_price_is_for_market_orders",
            ),
            models.CheckConstraint(
                condition=~Q(
                    status="accepted",
                    type="market",
                    side="buy",
                    quote_amount__isnull=True,
                )
                | Q(protection_price__isnull=False),
                name="order_market_buy_by_quantity_is_protected",
            ),
            models.CheckConstraint(
                condition=Q(status__in=["accepted", "waiting", "open"]) | Q(locked=0),
                name="order_closed_reserves_nothing",
            ),
            models.CheckConstraint(
                condition=~Q(status="filled")
                | Q(quantity__isnull=True)
                | Q(filled_quantity=F("quantity")),
                name="order_filled_means_all_filled",
            ),
            models.CheckConstraint(
                condition=~Q(status="open")
                | Q(type__in=["limit", "stop_limit"], time_in_force="GTC"),
                name="order_only_gtc_limit_rests",
            ),
            models.CheckConstraint(
                condition=~Q(status="waiting") | Q(type="stop_limit"),
                name="order_only_stops_wait",
            ),
            models.CheckConstraint(
                condition=~Q(status__in=["waiting", "open"])
                | Q(priority_sequence__isnull=False),
                name="order_in_the_book_has_a_priority",
            ),
            models.CheckConstraint(
                condition=Q(post_only=False) | Q(type="limit", time_in_force="GTC"),
                name="order_post_only_is_gtc_limit",
            ),
            models.CheckConstraint(
                condition=Q(status="rejected", reject_reason__gt="")
                | (~Q(status="rejected") & Q(reject_reason="")),
                name="order_rejected_has_a_reason",
            ),
            models.UniqueConstraint(
                fields=["user", "client_order_id"],
                condition=Q(status__in=["accepted", "waiting", "open"])
                & ~Q(client_order_id=""),
                name="order_client_id_unique_among_live",
            ),
        ]
        indexes = [
            # The two sides of the book, each in price order.
            models.Index(
                fields=["market", "-price", "id"],
                condition=Q(status="open", side="buy"),
                name="order_book_bids",
            ),
            models.Index(
                fields=["market", "price", "id"],
                condition=Q(status="open", side="sell"),
                name="order_book_asks",
            ),
            # What a matcher rebuilds its book from, in priority order.
            models.Index(
                fields=["market", "priority_sequence", "priority_rank"],
                condition=Q(status__in=["waiting", "open"]),
                name="order_held_by_matcher",
            ),
            models.Index(fields=["user", "status"], name="order_user_status"),
            models.Index(  # most orders have no client order id
                fields=["user", "client_order_id"],
                condition=~Q(client_order_id=""),
                name="order_client_id",
            ),
        ]

    def __str__(self) -> str:
        price = f" @ {plain(self.price)}" if self.price is not None else ""
        size = (
            plain(self.quantity)
            if self.quantity is not None
            else f"for {plain(self.quote_amount)}"
        )
        return f"#{self.pk} {self.side} {size} {self.market}{price}"

    @property
    def remaining(self) -> Decimal | None:
        """Base still to trade; None for a market buy by quote amount."""
        if self.quantity is None:
            return None
        return self.quantity - self.filled_quantity

    @property
    def is_open(self) -> bool:
        return self.status == self.Status.OPEN

    @property
    def is_live(self) -> bool:
        """Accepted, waiting or open: it may still trade or be cancelled."""
        return self.status in self.LIVE


class OrderCommand(models.Model):
    """An accepted request waiting for its market's matcher: a placement, a
    cancel, an amend or a cancel-all. The matcher takes them in id order,
    gives each its sequence, and deletes them in the transaction that writes
    their results; the table stays small. ``reserved`` is what an amend's
    request reserved beyond what the order held."""

    class Kind(models.TextChoices):
        PLACE = "place", "Place"
        CANCEL = "cancel", "Cancel"
        AMEND = "amend", "Amend"
        CANCEL_ALL = "cancel_all", "Cancel all"

    # One index, the queue's: every request inserts a row and every batch
    # deletes them, and the table stays small enough to scan otherwise.
    market = models.ForeignKey(
        Market, on_delete=models.PROTECT, related_name="+", db_index=False
    )
    kind = models.CharField(max_length=10, choices=Kind.choices)
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.PROTECT,
        related_name="+",
        db_index=False,
    )
    order = models.ForeignKey(
        Order,
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="+",
        db_index=False,
    )
    price = models.DecimalField(**AMOUNT, null=True, blank=True)
    quantity = models.DecimalField(**AMOUNT, null=True, blank=True)
    reserved = models.DecimalField(**AMOUNT, default=Decimal(0))
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.CheckConstraint(
                condition=Q(kind="cancel_all", order__isnull=True)
                | (~Q(kind="cancel_all") & Q(order__isnull=False)),
                name="order_command_names_its_order",
            ),
            models.CheckConstraint(
                condition=Q(reserved__gte=0) & (Q(kind="amend") | Q(reserved=0)),
                name="order_command_reserves_only_for_amends",
            ),
        ]
        indexes = [models.Index(fields=["market", "id"], name="order_command_queue")]

    def __str__(self) -> str:
        return f"{self.kind} #{self.pk} on {self.market_id}"


class CommandRefusal(models.Model):
    """A cancel or an amend the matcher refused (``code`` is the engine's
    ``Reject``): its request, which waits for the command's row to go,
    reads its answer here. A refused placement is its order, rejected."""

    command_id = models.BigIntegerField(unique=True)
    kind = models.CharField(max_length=10, choices=OrderCommand.Kind.choices)
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+"
    )
    order = models.ForeignKey(
        Order, on_delete=models.PROTECT, null=True, blank=True, related_name="+"
    )
    code = models.CharField(max_length=24, choices=Order.RejectReason.choices)
    created_at = models.DateTimeField(auto_now_add=True)

    def __str__(self) -> str:
        return f"{self.kind} #{self.command_id}: {self.code}"


class MatcherState(models.Model):
    """What a market's matcher carries from one batch to the next: the
    sequence of the last command applied, the last book level update's
    number (gapless, for the events) and the last trade price (stops
    trigger on it). Written in each batch's transaction."""

    market = models.OneToOneField(
        Market,
        on_delete=models.PROTECT,
        primary_key=True,
        related_name="matcher_state",
    )
    sequence = models.BigIntegerField(default=0)
    book_sequence = models.BigIntegerField(default=0)
    last_price = models.DecimalField(**AMOUNT, null=True, blank=True)
    updated_at = models.DateTimeField(auto_now=True)

    def __str__(self) -> str:
        return f"{self.market_id}: command {self.sequence}"


class Trade(models.Model):
    """One match: ``quantity`` base at the maker's ``price``.

    Each side pays its fee in the token it receives: the buyer in base, the
    seller in quote.
    """

    market = models.ForeignKey(Market, on_delete=models.PROTECT, related_name="trades")
    maker_order = models.ForeignKey(
        Order, on_delete=models.PROTECT, related_name="maker_trades"
    )
    taker_order = models.ForeignKey(
        Order, on_delete=models.PROTECT, related_name="taker_trades"
    )
    taker_side = models.CharField(max_length=4, choices=Order.Side.choices)
    price = models.DecimalField(**AMOUNT)
    quantity = models.DecimalField(**AMOUNT)
    quote_amount = models.DecimalField(**AMOUNT, help_text="price x quantity")
    maker_fee = models.DecimalField(**AMOUNT)
    taker_fee = models.DecimalField(**AMOUNT)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.CheckConstraint(
                condition=Q(price__gt=0, quantity__gt=0, quote_amount__gt=0),
                name="trade_amounts_positive",
            ),
            models.CheckConstraint(
                condition=Q(maker_fee__gte=0, taker_fee__gte=0),
                name="trade_fees_not_negative",
            ),
            models.CheckConstraint(
                condition=~Q(maker_order=F("taker_order")),
                name="trade_between_two_orders",
            ),
        ]
        indexes = [
            models.Index(fields=["market", "id"], name="trade_market_id"),
            models.Index(fields=["market", "created_at"], name="trade_market_time"),
        ]

    def __str__(self) -> str:
        return f"{self.market} {plain(self.quantity)} @ {plain(self.price)}"


class Deposit(models.Model):
    """Coins received outside the application, credited by staff."""

    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="deposits"
    )
    token = models.ForeignKey(Token, on_delete=models.PROTECT, related_name="+")
    amount = models.DecimalField(**AMOUNT)
    reference = models.CharField(
        max_length=100, unique=True, help_text="External id, e.g. the tx hash."
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.CheckConstraint(
                condition=Q(amount__gt=0), name="deposit_amount_positive"
            ),
        ]

    def __str__(self) -> str:
        return f"Deposit {self.reference}: {plain(self.amount)} {self.token.symbol}"


class Withdrawal(models.Model):
    """A user's request to send coins out; its funds stay locked until decided.

    Staff start sending it (processing: from then on its owner can no longer
    cancel it, and no one else starts sending it too), then approve it (the
    coins were sent) or reject it (they were not); its owner may cancel it
    while it is pending. ``processing_by`` is who started sending it,
    ``decided_by`` who ended it (the owner for a cancel), ``reason`` what staff
    told the owner.
    """

    class Status(models.TextChoices):
        PENDING = "pending", "Pending"
        PROCESSING = "processing", "Being sent"
        APPROVED = "approved", "Approved"
        REJECTED = "rejected", "Rejected"
        CANCELLED = "cancelled", "Cancelled"

    # Not ended yet: the amount is still locked.
    OPEN = (Status.PENDING, Status.PROCESSING)

    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="withdrawals"
    )
    token = models.ForeignKey(Token, on_delete=models.PROTECT, related_name="+")
    amount = models.DecimalField(**AMOUNT)
    address = models.CharField(max_length=255)
    # The database default lets the code before the column insert withdrawals
    # while a rolling upgrade runs.
    network = models.CharField(
        max_length=60,
        blank=True,
        default="",
        db_default="",
        help_text="The address format's network the coins go out on, as named "
        "when requested; empty when the token had no formats.",
    )
    memo = models.CharField(
        max_length=MEMO_MAX_LENGTH,
        blank=True,
        default="",
        db_default="",
        help_text="The memo or destination tag sent with the coins, which the "
        "recipient's exchange needs to credit them; empty when none.",
    )
    reference = models.CharField(
        max_length=100, help_text="The user's idempotency key for the request."
    )
    status = models.CharField(
        max_length=10, choices=Status.choices, default=Status.PENDING
    )
    created_at = models.DateTimeField(auto_now_add=True)
    processing_at = models.DateTimeField(
        null=True, blank=True, help_text="When staff started sending the coins."
    )
    processing_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="+",
        help_text="The staff member who started sending the coins.",
    )
    decided_at = models.DateTimeField(null=True, blank=True)
    decided_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="+",
        help_text="The staff member who approved or rejected it, or its owner "
        "who cancelled it.",
    )
    reason = models.TextField(
        blank=True, help_text="Why it was rejected, as the owner is told."
    )

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["user", "reference"], name="withdrawal_reference_per_user"
            ),
            models.CheckConstraint(
                condition=Q(amount__gt=0), name="withdrawal_amount_positive"
            ),
            models.CheckConstraint(
                condition=Q(
                    status__in=["pending", "processing"], decided_at__isnull=True
                )
                | (
                    ~Q(status__in=["pending", "processing"])
                    & Q(decided_at__isnull=False)
                ),
                name="withdrawal_decided_has_time",
            ),
            models.CheckConstraint(
                condition=~Q(status__in=["pending", "processing"])
                | Q(decided_by__isnull=True),
                name="withdrawal_pending_has_no_decider",
            ),
            models.CheckConstraint(
                condition=~Q(status="pending")
                | Q(processing_at__isnull=True, processing_by__isnull=True),
                name="withdrawal_pending_not_processing",
            ),
            models.CheckConstraint(
                condition=~Q(status="processing")
                | Q(processing_at__isnull=False, processing_by__isnull=False),
                name="withdrawal_processing_has_sender",
            ),
        ]
        indexes = [
            # The daily limit sums a user's withdrawals of a token since midnight.
            models.Index(
                fields=["user", "token", "created_at"], name="withdrawal_user_day"
            ),
        ]

    def __str__(self) -> str:
        return f"Withdrawal {self.reference}: {plain(self.amount)} {self.token.symbol}"


class LedgerTransaction(models.Model):
    """One service call's worth of ledger entries; they sum to zero per token."""

    class Kind(models.TextChoices):
        DEPOSIT = "deposit", "Deposit"
        WITHDRAWAL_REQUEST = "withdrawal_request", "Withdrawal requested"
        WITHDRAWAL_APPROVE = "withdrawal_approve", "Withdrawal approved"
        WITHDRAWAL_REJECT = "withdrawal_reject", "Withdrawal rejected"
        WITHDRAWAL_CANCEL = "withdrawal_cancel", "Withdrawal cancelled"
        ORDER_PLACE = "order_place", "Order placed (funds reserved)"
        ORDER_AMEND = "order_amend", "Order amended (funds reserved)"
        ORDER_MATCH = "order_match", "Order matched"
        ORDER_CANCEL = "order_cancel", "Order cancelled"

    kind = models.CharField(max_length=20, choices=Kind.choices)
    order = models.ForeignKey(
        Order, on_delete=models.PROTECT, null=True, blank=True, related_name="+"
    )
    # Most transactions are an order's: these two are indexed where set only.
    deposit = models.ForeignKey(
        Deposit,
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="+",
        db_index=False,
    )
    withdrawal = models.ForeignKey(
        Withdrawal,
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="+",
        db_index=False,
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        indexes = [
            models.Index(
                fields=["deposit"],
                condition=Q(deposit__isnull=False),
                name="ledger_transaction_deposit",
            ),
            models.Index(
                fields=["withdrawal"],
                condition=Q(withdrawal__isnull=False),
                name="ledger_transaction_withdrawal",
            ),
        ]

    def __str__(self) -> str:
        return f"#{self.pk} {self.get_kind_display()}"


class LedgerEntry(models.Model):
    """A signed change of one account's holding of one token.

    User accounts (``user_available``, ``user_locked``) belong to a user and
    add up to that user's ``Balance`` row. ``fees`` collects every fee.
    ``custody`` mirrors the coins held outside the application: a deposit
    moves from it, an approved withdrawal back to it, so its balance is minus
    (deposits - withdrawals).
    """

    class Account(models.TextChoices):
        USER_AVAILABLE = "user_available", "User available"
        USER_LOCKED = "user_locked", "User locked"
        FEES = "fees", "Fees"
        CUSTODY = "custody", "Custody"

    USER_ACCOUNTS = (Account.USER_AVAILABLE, Account.USER_LOCKED)

    transaction = models.ForeignKey(
        LedgerTransaction, on_delete=models.PROTECT, related_name="entries"
    )
    token = models.ForeignKey(Token, on_delete=models.PROTECT, related_name="+")
    account = models.CharField(max_length=14, choices=Account.choices)
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="ledger_entries",
        db_index=False,  # ledger_user_token starts with it
    )
    amount = models.DecimalField(**AMOUNT)
    # The user's order this entry is for, where the transaction's order may
    # be another user's: the matcher's entries, as a match holds the taker's
    # and its makers'. Null elsewhere: the transaction's order is the user's.
    order = models.ForeignKey(
        Order,
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="+",
        db_index=False,  # read through the user's entries only
    )

    class Meta:
        verbose_name_plural = "ledger entries"
        constraints = [
            models.CheckConstraint(
                condition=~Q(amount=0), name="ledger_entry_amount_not_zero"
            ),
            models.CheckConstraint(
                condition=Q(
                    account__in=["user_available", "user_locked"], user__isnull=False
                )
                | Q(account__in=["fees", "custody"], user__isnull=True),
                name="ledger_entry_user_iff_user_account",
            ),
        ]
        indexes = [models.Index(fields=["user", "token"], name="ledger_user_token")]

    def __str__(self) -> str:
        return f"{self.account} {plain(self.amount)} {self.token_id}"


class ApiKey(models.Model):
    """A credential a program sends instead of the user's session.

    The full key is ``<prefix>.<secret>``: ``prefix`` finds the row, and only a
    SHA-256 digest of ``secret`` is stored (see ``trading.api_keys``), except
    for a key that signs its requests, whose secret is kept encrypted so that
    signatures can be checked. ``scopes`` is a space-separated list as in
    OAuth 2.0: ``read`` reads the user's balances, orders, fills and
    withdrawals; ``trade`` also places and cancels orders; ``withdraw`` also
    requests and cancels withdrawals. Every key reads; ``withdraw`` is never
    implied by another scope and needs an address allow-list.
    """

    class Scope(models.TextChoices):
        READ = "read", "Read"
        TRADE = "trade", "Trade"
        WITHDRAW = "withdraw", "Withdraw"

    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="api_keys"
    )
    name = models.CharField(max_length=100)
    prefix = models.CharField(max_length=16, unique=True, editable=False)
    secret_hash = models.CharField(max_length=64, editable=False)
    scopes = models.CharField(max_length=20, default="read")
    # Addresses or CIDR ranges, one per line, normalised; empty: anywhere.
    allowed_ips = models.TextField(blank=True, default="")
    # Fernet token of the secret, for keys that must sign their requests.
    signing_secret = models.TextField(blank=True, default="", editable=False)
    created_at = models.DateTimeField(auto_now_add=True)
    expires_at = models.DateTimeField(null=True, blank=True)
    last_used_at = models.DateTimeField(null=True, blank=True, editable=False)
    last_used_ip = models.GenericIPAddressField(null=True, blank=True, editable=False)
    revoked_at = models.DateTimeField(null=True, blank=True, editable=False)

    class Meta:
        verbose_name = "API key"
        constraints = [
            models.CheckConstraint(
                condition=Q(
                    scopes__in=[
                        "read",
                        "read trade",
                        "read withdraw",
                        "read trade withdraw",
                    ]
                ),
                name="api_key_scopes_known",
            ),
            models.CheckConstraint(
                condition=~Q(scopes__contains="withdraw") | ~Q(allowed_ips=""),
                name="api_key_withdraw_needs_allowed_ips",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.name} ({self.prefix})"

    @property
    def scope_list(self) -> list[str]:
        return self.scopes.split()

    @property
    def can_trade(self) -> bool:
        return self.Scope.TRADE in self.scope_list

    @property
    def can_withdraw(self) -> bool:
        return self.Scope.WITHDRAW in self.scope_list

    @property
    def requires_signature(self) -> bool:
        return bool(self.signing_secret)

    @property
    def allowed_networks(self) -> list[str]:
        return self.allowed_ips.split()

    @property
    def is_active(self) -> bool:
        return self.revoked_at is None


class ReceivedSignature(models.Model):
    """A signed API request already received: the unique constraint refuses
    its copy on every worker and instance (``trading.api_keys``). Once
    ``forget_after`` has passed, its timestamp would be refused anyway and the
    row may go."""

    # Found through the unique constraint's index, which starts with it.
    api_key = models.ForeignKey(
        ApiKey, on_delete=models.CASCADE, related_name="+", db_index=False
    )
    # The request's HMAC-SHA256, lower-case hex (not a secret: it was sent).
    signature = models.CharField(max_length=64)
    forget_after = models.DateTimeField()

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["api_key", "signature"], name="received_signature_once"
            ),
        ]
        indexes = [
            models.Index(fields=["forget_after"], name="received_signature_forget")
        ]

    def __str__(self) -> str:
        return f"{self.signature[:12]}… (key {self.api_key_id})"


class AddressFormat(models.Model):
    """What a destination address of a token looks like on one network.

    A withdrawal address (or a saved one) must fit one of its token's formats:
    ``pattern`` matches the whole address, and ``checksum``, when set, is then
    verified (see ``trading.addresses``). A token without formats accepts any
    address.
    """

    class Checksum(models.TextChoices):
        NONE = "", "None (the pattern alone)"
        SEGWIT = "segwit", "SegWit Bech32/Bech32m (BIP-173, BIP-350)"
        BECH32 = "bech32", "Bech32, any length (Cardano)"
        BASE58CHECK = "base58check", "Base58Check (Bitcoin, Litecoin, Dogecoin)"
        BASE58CHECK_XRP = "base58check_xrp", "Base58Check, XRP alphabet"
        SS58 = "ss58", "SS58 (Polkadot)"
        EIP55 = "eip55", "EIP-55 mixed case (Ethereum and EVM chains)"

    token = models.ForeignKey(
        Token, on_delete=models.CASCADE, related_name="address_formats"
    )
    network = models.CharField(
        max_length=60, help_text="Shown to users, e.g. Bitcoin (SegWit)."
    )
    pattern = models.CharField(
        max_length=500,
        validators=[address_pattern_validate],
        help_text="A Python regular expression the whole address must match "
        r"(no ^ or $ needed), e.g. 0x[0-9a-fA-F]{40}. (?i) at the start ignores "
        "case. Addresses have at most 255 characters.",
    )
    checksum = models.CharField(
        max_length=16, choices=Checksum.choices, blank=True, default=""
    )
    description = models.CharField(
        max_length=150,
        help_text="How the address looks, completing “it should be …” in the "
        "message a wrong address gets, e.g. 0x followed by 40 hex digits.",
    )
    # The database defaults let the code before these columns add formats
    # while a rolling upgrade runs.
    memo_name = models.CharField(
        max_length=40,
        blank=True,
        default="",
        db_default="",
        help_text="For a network whose transactions carry a memo that tells the "
        "recipient's exchange or custodian which customer to credit: its name "
        "there, e.g. Destination tag (XRP Ledger) or Memo (Stellar, Cosmos). "
        "Users then give one with each withdrawal, or say that the recipient "
        "needs none. Empty: this network takes no memo.",
    )
    memo_pattern = models.CharField(
        max_length=500,
        blank=True,
        default="",
        db_default="",
        validators=[address_pattern_validate],
        help_text="A Python regular expression the whole memo must match, e.g. "
        "[0-9]{1,10} for XRP Ledger destination tags. Empty: any printable "
        f"ASCII text up to {MEMO_MAX_LENGTH} characters. Needs a memo name.",
    )
    memo_description = models.CharField(
        max_length=150,
        blank=True,
        default="",
        db_default="",
        help_text="How the memo looks, completing “a destination tag is …” in "
        "the message a wrong memo gets, e.g. a number of 1 to 10 digits. "
        "Empty: the message quotes the memo pattern.",
    )

    class Meta:
        ordering = ["token__symbol", "pk"]
        constraints = [
            models.UniqueConstraint(
                fields=["token", "network"], name="address_format_network_per_token"
            ),
            models.CheckConstraint(
                condition=~Q(memo_name="") | Q(memo_pattern=""),
                name="address_format_memo_pattern_named",
                violation_error_message="A memo pattern needs a memo name: name "
                "the memo (like Destination tag), or leave the pattern empty.",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.token.symbol} on {self.network}"


class SavedAddress(models.Model):
    """An entry of a user's address book; withdrawals to it are allowed from
    ``usable_from`` on when the user allows only saved addresses."""

    user = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.CASCADE,
        related_name="saved_addresses",
    )
    token = models.ForeignKey(Token, on_delete=models.PROTECT, related_name="+")
    address = models.CharField(max_length=255)
    # Two customers of one exchange share its address, each with their memo.
    memo = models.CharField(
        max_length=MEMO_MAX_LENGTH,
        blank=True,
        default="",
        db_default="",
        help_text="The memo or destination tag saved with the address; empty "
        "when none.",
    )
    label = models.CharField(max_length=60)
    created_at = models.DateTimeField(auto_now_add=True)
    usable_from = models.DateTimeField()

    class Meta:
        verbose_name_plural = "saved addresses"
        ordering = ["token__symbol", "label", "pk"]
        constraints = [
            models.UniqueConstraint(
                fields=["user", "token", "address", "memo"],
                name="saved_address_unique",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.label}: {self.token.symbol} {self.address}"


class WithdrawalAddressPolicy(models.Model):
    """A user's choice to withdraw only to saved addresses.

    Turning it on takes effect at once; turning it off only after the
    address delay (``saved_only_ends_at``), so that someone who took over the
    session cannot switch the protection off and withdraw at once.
    """

    user = models.OneToOneField(
        settings.AUTH_USER_MODEL,
        on_delete=models.CASCADE,
        related_name="withdrawal_address_policy",
    )
    saved_only = models.BooleanField(default=False)
    saved_only_ends_at = models.DateTimeField(null=True, blank=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        verbose_name_plural = "withdrawal address policies"
        constraints = [
            models.CheckConstraint(
                condition=Q(saved_only=True) | Q(saved_only_ends_at__isnull=True),
                name="withdrawal_policy_ends_only_when_on",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.user}: {'saved only' if self.saved_only else 'any address'}"

    def saved_only_at(self, moment) -> bool:
        return self.saved_only and (
            self.saved_only_ends_at is None or moment < self.saved_only_ends_at
        )
