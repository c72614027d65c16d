"""Staff tools: markets, deposits credited, withdrawals decided, orders cancelled.

Money moves only through ``trading.services`` and ``trading.orders``. Those
own a durable transaction, so they are called from admin actions and from the
deposit credit view, never from ``save_model`` (the admin's change form runs
inside its own transaction). Balances, orders, trades and the ledger are read-only.
Amounts show as people write them (``1.25``, not ``1.250000000000000000``) in
lists, on detail pages and in inputs.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence

from django import forms
from django.contrib import admin, messages
from django.contrib.admin.widgets import AutocompleteSelect
from django.contrib.auth import get_user_model
from django.core.exceptions import (
    NON_FIELD_ERRORS,
    FieldDoesNotExist,
    PermissionDenied,
    ValidationError,
)
from django.db import models
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect
from django.template.response import TemplateResponse
from django.utils import timezone
from django.utils.text import capfirst

from accounts.admin_site import decision_confirmation, decision_rows, user_label
from core.forms import ChangesOnPageForm
from core.locks import unique_value_serialize
from core.widgets import PlainNumberInput
from tokens.models import Token
from trading.addresses import address_canonical
from trading.exceptions import TradingError
from trading.models import (
    AMOUNT,
    AddressFormat,
    Balance,
    Deposit,
    LedgerEntry,
    LedgerTransaction,
    Market,
    Order,
    SavedAddress,
    Trade,
    Withdrawal,
)
from trading.money import plain
from trading.notices import withdrawal_decided_notice
from trading.orders import command_refusal, commands_wait, order_cancel
from trading.services import (
    deposit_credit_or_get,
    market_create,
    withdrawal_approve,
    withdrawal_process_start,
    withdrawal_reject,
)
from trading.templatetags.address_display import address_marked, memo_marked


@functools.cache
def _amount_shown(model: type[models.Model], name: str) -> Callable[[object], str]:
    """A list column or read-only field showing the amount ``name`` without
    trailing zeros, sorted by the field. Named after the field, so that a
    detail page keeps the field's help text; one function per field, so that
    ``get_fields`` and ``get_readonly_fields`` name the same one."""
    field = model._meta.get_field(name)

    @admin.display(description=field.verbose_name, ordering=name)
    def shown(obj) -> str:
        value = getattr(obj, name)
        return admin.site.empty_value_display if value is None else plain(value)

    shown.__name__ = shown.amount_field = name
    return shown


class PlainAmountsAdmin(admin.ModelAdmin):
    """Every amount (a ``DecimalField``) of the model without trailing zeros:
    in the list (sorting kept), on read-only fields and in inputs. A subclass
    that overrides ``get_readonly_fields`` returns ``self.amounts_shown(...)``
    of its list."""

    formfield_overrides = {models.DecimalField: {"widget": PlainNumberInput}}

    def amounts_shown(self, names: Sequence) -> list:
        """``names`` with each amount field's name replaced by its display."""
        return [self._amount_shown(name) for name in names]

    def _amount_shown(self, name):
        if not isinstance(name, str):
            return name
        try:
            field = self.model._meta.get_field(name)
        except FieldDoesNotExist:
            return name
        if not isinstance(field, models.DecimalField):
            return name
        return _amount_shown(self.model, name)

    def get_list_display(self, request):
        return self.amounts_shown(super().get_list_display(request))

    def get_readonly_fields(self, request, obj=None):
        return self.amounts_shown(super().get_readonly_fields(request, obj))

    def get_exclude(self, request, obj=None):
        # The form leaves a read-only field out by its name; for an amount the
        # read-only fields hold the function showing it instead.
        amounts = [
            field.amount_field
            for field in self.get_readonly_fields(request, obj)
            if hasattr(field, "amount_field")
        ]
        excluded = super().get_exclude(request, obj)
        if not amounts:
            return excluded
        return [*(excluded or []), *amounts]

    def get_fields(self, request, obj=None):
        fields = super().get_fields(request, obj)
        if obj is not None and not self.has_change_permission(request, obj):
            # A view-only detail page shows every field read-only.
            return self.amounts_shown(fields)
        read_only = set(self.get_readonly_fields(request, obj))
        return [
            shown if (shown := self._amount_shown(name)) in read_only else name
            for name in fields
        ]


class ReadOnlyAdmin(PlainAmountsAdmin):
    def has_add_permission(self, request, obj=None):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


class MarketForm(ChangesOnPageForm):
    """The market admin's form. ``Market.clean`` checks the pair and steps
    against the tokens' units; on a change page those are read-only, so an
    error it names them by (data from before the tokens' decimals were fixed)
    is shown for the whole form, naming the field, where Django would raise
    ``ValueError`` (a 500) for a field the form does not have."""

    def clean(self):
        data = super().clean()
        base, quote = data.get("base"), data.get("quote")
        if self.instance._state.adding and base and quote:
            # The symbol is read-only, so the form's own unique checks skip
            # it; market_create would refuse it in save_model, too late for
            # a form error. A market of this very pair is refused by the
            # pair's constraint instead.
            symbol = Market.symbol_for(base, quote)
            # Before those checks: of two staff listing one pair at once, the
            # second waits here until the first's market is committed, and
            # the pair's constraint refuses it as a form error.
            unique_value_serialize(model=Market, symbol=symbol)
            taken = (
                Market.objects.filter(symbol=symbol)
                .exclude(base=base, quote=quote)
                .select_related("base", "quote")
                .first()
            )
            if taken is not None:
                raise ValidationError(
                    f"The symbol {symbol} is already the symbol of the market "
                    f"of {taken.base.symbol} and {taken.quote.symbol}; a "
                    "market's symbol is fixed when it is listed."
                )
        return data

    def add_error(self, field, error):
        if field is None and hasattr(error, "error_dict"):
            for name, errors in error.error_dict.items():
                self.add_error(
                    None if name == NON_FIELD_ERRORS else name,
                    ValidationError(errors),
                )
            return
        if field is not None and field not in self.fields:
            try:
                label = capfirst(Market._meta.get_field(field).verbose_name)
            except FieldDoesNotExist:
                label = field
            error = ValidationError(
                [f"{label}: {message}" for message in ValidationError(error)]
            )
            field = None
        super().add_error(field, error)


@admin.register(Market)
class MarketAdmin(PlainAmountsAdmin):
    form = MarketForm
    list_display = [
        "symbol",
        "status",
        "price_step",
        "amount_step",
        "min_notional",
        "maker_fee",
        "taker_fee",
    ]
    list_filter = ["status"]
    search_fields = ["symbol"]
    fields = [
        "base",
        "quote",
        "symbol",
        "price_step",
        "amount_step",
        "min_notional",
        "maker_fee",
        "taker_fee",
        "status",
    ]

    def get_readonly_fields(self, request, obj=None):
        # The pair and its steps define what open orders hold; they are fixed
        # once the market exists.
        if obj is None:
            return ["symbol"]
        return self.amounts_shown(
            ["base", "quote", "symbol", "price_step", "amount_step"]
        )

    def save_model(self, request, obj, form, change):
        if change:
            # Only what this staff member changed on the page: another may
            # have halted the market or set its fees since it was opened.
            obj.save(update_fields=form.changed_data)
            return
        created = market_create(
            **{
                name: form.cleaned_data[name]
                for name in [
                    "base",
                    "quote",
                    "price_step",
                    "amount_step",
                    "min_notional",
                    "maker_fee",
                    "taker_fee",
                    "status",
                ]
            }
        )
        obj.pk, obj.symbol = created.pk, created.symbol

    def has_delete_permission(self, request, obj=None):
        return False


@admin.register(Balance)
class BalanceAdmin(ReadOnlyAdmin):
    list_display = ["user", "token", "available", "locked", "updated_at"]
    list_select_related = ["user", "token"]
    list_filter = ["token"]
    search_fields = ["user__username", "token__symbol"]


@admin.register(Order)
class OrderAdmin(ReadOnlyAdmin):
    list_display = [
        "pk",
        "user",
        "market",
        "side",
        "type",
        "price",
        "quantity",
        "filled_quantity",
        "status",
        "created_at",
    ]
    list_select_related = ["user", "market"]
    list_filter = ["status", "side", "type", "market"]
    search_fields = ["user__username", "client_order_id"]
    actions = ["cancel_orders"]

    def has_cancel_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm("trading.change_order")

    @admin.action(description="Cancel the selected open orders", permissions=["cancel"])
    def cancel_orders(self, request: HttpRequest, queryset: QuerySet[Order]) -> None:
        """Queue a cancel for each order, like the owner's cancels (an order
        that fills first stays filled), then wait for the matcher's answers.

        Every cancel is queued and logged before any answer is awaited, and
        the answers share one wait of ``ORDER_RESULT_WAIT_SECONDS``: waiting
        per order, a matcher that is behind or stopped held the request past
        gunicorn's timeout from 15 orders on, and the worker was killed
        before the log entries of the cancels it had queued were written."""
        queued = []
        for order in queryset.select_related("user").order_by("pk"):
            try:
                command = order_cancel(user=order.user, order=order)
            except TradingError as error:
                self.message_user(request, f"{order}: {error.message}", messages.ERROR)
            else:
                self.log_change(request, order, "cancel requested")
                queued.append((order, command))
        answered = commands_wait(commands=[command for _, command in queued])
        cancelled, unanswered = [], []
        for (order, command), taken in zip(queued, answered, strict=True):
            if not taken:
                unanswered.append(order)
            elif refusal := command_refusal(command):
                self.message_user(
                    request, f"{order}: {refusal.message}", messages.ERROR
                )
            else:
                cancelled.append(order)
        if cancelled:
            self.message_user(
                request, f"Cancelled: {_orders_named(cancelled)}.", messages.SUCCESS
            )
        if unanswered:
            self.message_user(
                request,
                "Cancel requested, the matcher has not answered yet: "
                f"{_orders_named(unanswered)}. Their status here changes once "
                "it has.",
                messages.WARNING,
            )


def _orders_named(orders: list[Order]) -> str:
    return "; ".join(str(order) for order in orders)


@admin.register(Trade)
class TradeAdmin(ReadOnlyAdmin):
    list_display = [
        "pk",
        "market",
        "price",
        "quantity",
        "taker_side",
        "maker_order",
        "taker_order",
        "created_at",
    ]
    # An order names its market.
    list_select_related = ["market", "maker_order__market", "taker_order__market"]
    list_filter = ["market"]


class UserChoiceField(forms.ModelChoiceField):
    def label_from_instance(self, user) -> str:
        return user_label(user)

    def bound_data(self, data, initial):
        # What the form shows again after an error: a submitted value that
        # names no user shows as no choice (the admin's autocomplete widget
        # would look a value like "abc" up as an id and fail).
        data = super().bound_data(data, initial)
        try:
            self.to_python(data)
        except ValidationError:
            return None
        return data


class DepositCreditForm(forms.Form):
    user = UserChoiceField(queryset=get_user_model().objects.all())
    token = forms.ModelChoiceField(queryset=Token.objects.all())
    # No minimum here: the service refuses 0 and below with one message.
    amount = forms.DecimalField(**AMOUNT, widget=PlainNumberInput)
    reference = forms.CharField(
        max_length=100, help_text="The external id of the transfer, e.g. its hash."
    )

    def __init__(self, *args, admin_site, **kwargs):
        super().__init__(*args, **kwargs)
        # The admin's autocomplete searches the user admin's search_fields
        # (name and e-mail) and answers only staff who may view users.
        self.fields["user"] = UserChoiceField(
            queryset=get_user_model().objects.all(),
            widget=AutocompleteSelect(Deposit._meta.get_field("user"), admin_site),
            help_text="Type part of the user's name or e-mail address.",
        )


@admin.register(Deposit)
class DepositAdmin(ReadOnlyAdmin):
    list_display = ["reference", "user", "token", "amount", "created_at"]
    list_select_related = ["user", "token"]
    list_filter = ["token"]
    search_fields = ["reference", "user__username", "user__email"]

    def has_add_permission(self, request, obj=None):
        # The form finds the user with the admin's autocomplete, which answers
        # only staff who may view users: without that, no user could be chosen.
        users = self.admin_site.get_model_admin(get_user_model())
        may_credit = request.user.has_perm("trading.add_deposit")
        return may_credit and users.has_view_permission(request)

    def add_view(self, request, form_url="", extra_context=None) -> HttpResponse:
        """Credit a deposit through ``deposit_credit_or_get`` (idempotent on
        reference)."""
        if not self.has_add_permission(request):
            raise PermissionDenied
        form = DepositCreditForm(request.POST or None, admin_site=self.admin_site)
        if request.method == "POST" and form.is_valid():
            try:
                deposit, credited = deposit_credit_or_get(**form.cleaned_data)
            except TradingError as error:
                form.add_error(None, error.message)
            else:
                if credited:
                    self.log_addition(request, deposit, [{"added": {}}])
                    self.message_user(
                        request, f"{deposit} is credited.", messages.SUCCESS
                    )
                else:
                    self.message_user(
                        request, _repeat_message(deposit), messages.WARNING
                    )
                return redirect("admin:trading_deposit_changelist")
        context = {
            **self.admin_site.each_context(request),
            "title": "Credit a deposit",
            "opts": self.opts,
            "form": form,
            "media": self.media + form.media,
        }
        return TemplateResponse(request, "admin/trading/deposit/credit.html", context)


def _repeat_message(deposit: Deposit) -> str:
    when = timezone.localtime(deposit.created_at).strftime("%Y-%m-%d %H:%M %Z")
    return (
        f"Nothing was credited: reference {deposit.reference} was already "
        f"credited on {when} ({plain(deposit.amount)} {deposit.token.symbol} to "
        f"{deposit.user.get_username()}). Balances are unchanged."
    )


@admin.register(Withdrawal)
class WithdrawalAdmin(ReadOnlyAdmin):
    list_display = [
        "reference",
        "user",
        "token",
        "amount",
        "address_shown",
        "memo_shown",
        "network",
        "status",
        "created_at",
        "processing_by",
        "decided_at",
        "decided_by",
    ]
    list_select_related = ["user", "token", "processing_by", "decided_by"]
    list_filter = ["status", "token"]
    search_fields = ["reference", "user__username", "address", "memo"]
    fields = readonly_fields = [
        "user",
        "token",
        "amount",
        "address_shown",
        "memo_shown",
        "network",
        "reference",
        "status",
        "created_at",
        "processing_at",
        "processing_by",
        "decided_at",
        "decided_by",
        "reason",
    ]
    # Staff start sending before they send, so that the user cannot cancel a
    # withdrawal whose coins are on their way, and approve once they are sent.
    actions = ["start_sending", "approve", "reject"]

    @admin.display(description="Address", ordering="address")
    def address_shown(self, withdrawal: Withdrawal) -> str:
        # What is stored, every hidden or look-alike character shown escaped.
        return address_marked(withdrawal.address)

    @admin.display(description="Memo", ordering="memo", empty_value="—")
    def memo_shown(self, withdrawal: Withdrawal) -> str | None:
        # Next to the address: sent without it, the coins may be lost.
        return memo_marked(withdrawal.memo) if withdrawal.memo else None

    def has_decide_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm("trading.change_withdrawal")

    @admin.action(
        description="Start sending (the user can no longer cancel)",
        permissions=["decide"],
    )
    def start_sending(
        self, request: HttpRequest, queryset: QuerySet[Withdrawal]
    ) -> HttpResponse | None:
        return self._decide(request, queryset, action="start_sending")

    @admin.action(description="Approve: the coins were sent", permissions=["decide"])
    def approve(
        self, request: HttpRequest, queryset: QuerySet[Withdrawal]
    ) -> HttpResponse | None:
        return self._decide(request, queryset, action="approve")

    @admin.action(
        description="Reject: release the funds to the user", permissions=["decide"]
    )
    def reject(
        self, request: HttpRequest, queryset: QuerySet[Withdrawal]
    ) -> HttpResponse | None:
        return self._decide(request, queryset, action="reject")

    def _decide(
        self, request: HttpRequest, queryset: QuerySet[Withdrawal], *, action: str
    ) -> HttpResponse | None:
        """Show the selected withdrawals and ask to confirm (and, to reject,
        for the reason the user is told); the confirmation posts the action
        again with ``post=yes``, as Django's "delete selected" does."""
        confirmed = request.POST.get("post") == "yes"
        if confirmed:
            queryset = decision_rows(request, queryset)
        form = WithdrawalDecisionForm(
            request.POST if confirmed else None, reason=action == "reject"
        )
        title, done, template = _WITHDRAWAL_ACTIONS[action]
        if confirmed and form.is_valid():
            reason = form.cleaned_data.get("reason", "")

            def decide(withdrawal: Withdrawal) -> Withdrawal:
                if action == "start_sending":
                    return withdrawal_process_start(
                        withdrawal=withdrawal, staff=request.user
                    )
                if action == "approve":
                    return withdrawal_approve(withdrawal=withdrawal, staff=request.user)
                return withdrawal_reject(
                    withdrawal=withdrawal, staff=request.user, reason=reason
                )

            _run_each(
                self,
                request,
                queryset,
                decide,
                done=done,
                # Being sent changes no balance: the user is told once it ends.
                then=(lambda withdrawal: None)
                if action == "start_sending"
                else functools.partial(_decided, request),
            )
            return None
        shown = queryset.select_related("user", "token", "processing_by")
        context = {
            **self.admin_site.each_context(request),
            "title": title,
            "opts": self.opts,
            "action": action,
            "approve": action == "approve",
            **decision_confirmation(request, shown),
            "form": form,
            "media": self.media,
        }
        return TemplateResponse(
            request, f"admin/trading/withdrawal/{template}.html", context
        )


# Each withdrawal action: its confirmation page's title, what the message
# says was done, and the page's template.
_WITHDRAWAL_ACTIONS = {
    "start_sending": (
        "Start sending withdrawals",
        "now being sent",
        "start_sending_confirmation",
    ),
    "approve": ("Approve withdrawals", "approved", "decide_confirmation"),
    "reject": ("Reject withdrawals", "rejected", "decide_confirmation"),
}


class WithdrawalDecisionForm(forms.Form):
    reason = forms.CharField(
        widget=forms.Textarea(attrs={"rows": 3, "cols": 60}),
        max_length=500,
        help_text="Shown to the user in the wallet and in the mail.",
    )

    def __init__(self, *args, reason: bool, **kwargs):
        super().__init__(*args, **kwargs)
        if not reason:
            del self.fields["reason"]


def _decided(request: HttpRequest, withdrawal: Withdrawal) -> None:
    withdrawal_decided_notice(request=request, withdrawal=withdrawal)


def _run_each(model_admin, request, queryset, call, *, done: str, then) -> None:
    """Call a service for each selected row, each in its own transaction;
    report what was done and what was refused, and why. ``then`` is given
    what the call returned, once its row is in the admin's log (the mail to
    the user: a mail server slow to answer delays no row's log entry)."""
    succeeded = 0
    for obj in queryset.order_by("pk"):
        try:
            result = call(obj)
        except TradingError as error:
            model_admin.message_user(request, f"{obj}: {error.message}", messages.ERROR)
        else:
            model_admin.log_change(request, obj, done)
            succeeded += 1
            then(result)
    if succeeded:
        model_admin.message_user(request, f"{succeeded} {done}.", messages.SUCCESS)


@admin.register(LedgerTransaction)
class LedgerTransactionAdmin(ReadOnlyAdmin):
    list_display = ["pk", "kind", "order", "deposit", "withdrawal", "created_at"]
    # An order names its market; a deposit and a withdrawal their token.
    list_select_related = ["order__market", "deposit__token", "withdrawal__token"]
    list_filter = ["kind"]


@admin.register(LedgerEntry)
class LedgerEntryAdmin(ReadOnlyAdmin):
    list_display = ["pk", "transaction", "token", "account", "user", "amount"]
    list_select_related = ["transaction", "token", "user"]
    list_filter = ["account", "token"]
    search_fields = ["user__username"]


class AddressFormatForm(ChangesOnPageForm):
    example = forms.CharField(
        required=False,
        max_length=255,
        help_text="Optional: a real address of this network. Saving checks that "
        "it fits the pattern and the checksum; it is not stored.",
    )

    class Meta:
        model = AddressFormat
        fields = [
            "token",
            "network",
            "pattern",
            "checksum",
            "description",
            "memo_name",
            "memo_pattern",
        ]

    def clean(self):
        data = super().clean()
        if data.get("token") and data.get("network"):
            # Before the form's unique check: of two staff adding (or naming)
            # one network of a token at once, the second waits here for the
            # first's commit, and the check refuses it as a form error.
            unique_value_serialize(
                model=AddressFormat, token=data["token"].pk, network=data["network"]
            )
        example = data.get("example")
        if example and not self.errors:
            candidate = AddressFormat(
                token=data["token"],
                network=data["network"],
                pattern=data["pattern"],
                checksum=data["checksum"],
                description=data["description"],
            )
            try:
                address_canonical(
                    token=data["token"], address=example, formats=[candidate]
                )
            except TradingError as refusal:
                self.add_error("example", refusal.message)
        return data


@admin.register(AddressFormat)
class AddressFormatAdmin(admin.ModelAdmin):
    form = AddressFormatForm
    list_display = ["token", "network", "pattern", "checksum", "memo_name"]
    list_select_related = ["token"]
    list_filter = ["checksum", "token"]
    search_fields = ["token__symbol", "network"]
    fieldsets = [
        (
            None,
            {
                "description": "A withdrawal or saved address must fit one of "
                "its token's formats. A token with no format accepts any "
                "address, as before formats existed.",
                "fields": [
                    "token",
                    "network",
                    "pattern",
                    "checksum",
                    "description",
                    "example",
                ],
            },
        ),
        (
            "Memo",
            {
                "description": "Networks like the XRP Ledger, Stellar or Cosmos "
                "chains send a memo (a destination tag) with each transaction, "
                "which exchanges need to credit the recipient. Name it, and "
                "users must give one with each withdrawal or say that the "
                "recipient needs none.",
                "fields": ["memo_name", "memo_pattern", "memo_description"],
            },
        ),
    ]

    def save_model(self, request, obj, form, change):
        if change:
            # Only what this staff member changed on the page: another may
            # have edited the format since it was opened. The example is
            # not stored.
            obj.save(update_fields=[n for n in form.changed_data if n != "example"])
            return
        super().save_model(request, obj, form, change)


@admin.register(SavedAddress)
class SavedAddressAdmin(ReadOnlyAdmin):
    list_display = [
        "user",
        "token",
        "label",
        "address",
        "memo",
        "created_at",
        "usable_from",
    ]
    list_select_related = ["user", "token"]
    list_filter = ["token"]
    search_fields = ["user__username", "address", "memo", "label"]
