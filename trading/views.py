import logging
import uuid

from allauth.account.decorators import reauthentication_required
from django.conf import settings
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import ValidationError
from django.db.models import Q
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.utils import timezone
from django.views.decorators.http import require_POST

from accounts.selectors import email_verified
from core.database import UNAVAILABLE, service_call
from trading.api.selectors import ticker_for
from trading.charts import candle_chart
from trading.exceptions import (
    AddressNotAllowed,
    EmailNotVerified,
    InvalidAddress,
    TradingError,
)
from trading.forms import (
    OrderForm,
    SavedAddressForm,
    WithdrawalAddressPolicyForm,
    WithdrawalForm,
)
from trading.models import Deposit, Market, Order, SavedAddress, Trade, Withdrawal
from trading.money import plain
from trading.notices import (
    notice_after_commit,
    saved_address_notice,
    withdrawal_address_policy_notice,
    withdrawal_decided_notice,
    withdrawal_requested_notice,
)
from trading.orders import (
    command_refusal,
    command_wait,
    order_cancel,
    order_place,
    order_refusal,
    order_wait,
)
from trading.selectors import (
    CANDLE_INTERVALS,
    balances_for_user,
    candles,
    market_get,
    market_summaries,
    order_book,
    orders_open,
    saved_addresses_for_user,
    trades_recent,
    withdrawal_address_policy_get,
)
from trading.services import (
    saved_address_add,
    saved_address_remove,
    withdrawal_address_policy_set,
    withdrawal_cancel,
    withdrawal_request,
)

logger = logging.getLogger(__name__)

BOOK_DEPTH = 15
RECENT_TRADES = 30
HISTORY = 20


def _market_or_404(symbol: str) -> Market:
    try:
        return market_get(symbol=symbol)
    except Market.DoesNotExist:
        raise Http404("No such market.") from None


def market_list(request: HttpRequest) -> HttpResponse:
    return render(
        request, "trading/market_list.html", {"summaries": market_summaries()}
    )


def _live_context(request: HttpRequest, market: Market) -> dict:
    """What the market page refreshes by itself: book, trades, the user's orders."""
    context = {
        "market": market,
        "book": order_book(market=market, depth=BOOK_DEPTH),
        "trades": trades_recent(market=market, limit=RECENT_TRADES),
    }
    if request.user.is_authenticated:
        context["open_orders"] = list(orders_open(user=request.user, market=market))
        history = (
            Trade.objects.filter(
                Q(maker_order__user=request.user) | Q(taker_order__user=request.user),
                market=market,
            )
            .select_related("maker_order", "taker_order")
            .order_by("-pk")[:HISTORY]
        )
        context["my_trades"] = [
            {
                "trade": trade,
                "side": trade.taker_side
                if trade.taker_order.user_id == request.user.pk
                else ("sell" if trade.taker_side == "buy" else "buy"),
                "liquidity": "taker"
                if trade.taker_order.user_id == request.user.pk
                else "maker",
            }
            for trade in history
        ]
    return context


def market_detail(request: HttpRequest, symbol: str) -> HttpResponse:
    market = _market_or_404(symbol)
    interval = request.GET.get("interval", "1h")
    if interval not in CANDLE_INTERVALS:
        interval = "1h"
    context = _live_context(request, market)
    context.update(
        interval=interval,
        intervals=list(CANDLE_INTERVALS),
        chart=candle_chart(candles(market=market, interval=interval, limit=60)),
        form=OrderForm(initial={"client_order_id": uuid.uuid4().hex}),
        ticker=ticker_for(market=market),
        # The live stream (trading.live): on this origin behind nginx, or on
        # the ASGI process's own (STREAM_ORIGIN) in development.
        stream_url=settings.STREAM_ORIGIN
        + reverse("api:market_stream", args=[market.symbol]),
    )
    if request.user.is_authenticated:
        held = {b.token_id: b for b in balances_for_user(user=request.user)}
        context["base_balance"] = held.get(market.base_id)
        context["quote_balance"] = held.get(market.quote_id)
    return render(request, "trading/market_detail.html", context)


def market_live(request: HttpRequest, symbol: str) -> HttpResponse:
    market = _market_or_404(symbol)
    return render(
        request, "trading/partials/market_live.html", _live_context(request, market)
    )


@login_required
@require_POST
def order_create(request: HttpRequest, symbol: str) -> HttpResponse:
    market = _market_or_404(symbol)
    form = OrderForm(request.POST)
    if not form.is_valid():
        for errors in form.errors.values():
            for error in errors:
                messages.error(request, error)
        return redirect("trading:market", symbol=market.symbol)
    data = form.cleaned_data
    recovery = (
        f"Look for it among your open orders and trades on the {market.symbol} "
        "page before placing it again. Sending this same form again is safe: "
        "it carries the order's client id, so it is never placed twice."
    )
    try:
        _email_verified_require(request)
        with service_call(request, recovery=recovery, resend=True):
            placed = order_place(
                user=request.user,
                market=market,
                side=data["side"],
                type=data["type"],
                quantity=data["quantity"],
                price=data["price"],
                quote_amount=data["quote_amount"],
                protection_price=data["protection_price"],
                stop_price=data["stop_price"],
                time_in_force=data["time_in_force"],
                post_only=data["post_only"],
                client_order_id=data["client_order_id"] or None,
            )
        order = _order_result(placed, market)
        if (refusal := order_refusal(order)) is not None:
            raise refusal
    except TradingError as refusal:
        messages.error(request, refusal.message)
    else:
        messages.success(request, _order_outcome(order))
    return redirect("trading:market", symbol=market.symbol)


def _order_result(placed: Order, market: Market) -> Order:
    """The order once the matcher has taken it, or as accepted: it is
    committed, so a database failure while waiting is not an error."""
    try:
        return order_wait(order=placed)
    except UNAVAILABLE:
        logger.warning("order result unread", extra={"order": placed.pk})
        placed.market = market
        return placed


def _email_verified_require(request: HttpRequest) -> None:
    if not email_verified(user=request.user):
        raise EmailNotVerified()


def _order_outcome(order: Order) -> str:
    """What the user is told of an order the matcher has taken, or not yet."""
    market = order.market
    if order.quantity is not None:
        what = (
            f"{order.get_side_display()} {plain(order.quantity)} {market.base.symbol}"
        )
    else:
        what = f"Buy {market.base.symbol} for {plain(order.quote_amount)} "
        what += market.quote.symbol
    filled = plain(order.filled_quantity)
    if order.status == Order.Status.ACCEPTED:
        return (
            f"{what}: accepted, and waiting for the matcher. It shows under your "
            "open orders once it rests, and in your trades once it fills."
        )
    if order.status == Order.Status.WAITING:
        return f"{what}: waiting until the price reaches {plain(order.stop_price)}."
    if order.status == Order.Status.FILLED:
        return f"{what}: filled."
    if order.status == Order.Status.OPEN:
        return f"{what}: placed ({filled} filled so far)."
    return f"{what}: {filled} filled, the rest cancelled."


@login_required
@require_POST
def order_cancel_view(request: HttpRequest, symbol: str, order_id: int) -> HttpResponse:
    order = get_object_or_404(Order, pk=order_id, user=request.user)
    recovery = "Look at your open orders, or send the cancel again: that is safe."
    try:
        with service_call(request, recovery=recovery, resend=True):
            command = order_cancel(user=request.user, order=order)
        try:
            done = command_wait(command=command)
        except UNAVAILABLE:
            logger.warning("order command result unread", extra={"order": order.pk})
            done = False
        if done and (refusal := command_refusal(command)) is not None:
            raise refusal
    except TradingError as refusal:
        messages.error(request, refusal.message)
    else:
        messages.success(
            request,
            "Order cancelled; its funds are available again."
            if done
            else "Cancel requested: the order is cancelled unless it fills first.",
        )
    return redirect("trading:market", symbol=symbol)


@login_required
# A withdrawal request asks for the password (or a second-factor code) again
# when the last sign-in is not recent; the request is sent on afterwards.
@reauthentication_required(allow_get=True)
def wallet(request: HttpRequest) -> HttpResponse:
    form = WithdrawalForm(request.POST or None, initial={"reference": uuid.uuid4().hex})
    if request.method == "POST" and form.is_valid():
        data = form.cleaned_data
        recovery = (
            "Look for it among your withdrawals on the wallet page before "
            "requesting it again. Sending this same form again is safe: it "
            f"carries the same reference ({data['reference']}), so it is never "
            "made twice."
        )
        try:
            _email_verified_require(request)
            earlier = Withdrawal.objects.filter(
                user=request.user, reference=data["reference"]
            ).exists()
            with service_call(request, recovery=recovery, resend=True):
                withdrawal = withdrawal_request(
                    user=request.user,
                    token=data["token"],
                    amount=data["amount"],
                    address=data["address"],
                    reference=data["reference"],
                )
        except (InvalidAddress, AddressNotAllowed) as refusal:
            form.add_error("address", refusal.message)
        except TradingError as refusal:
            form.add_error(None, refusal.message)
        else:
            if not earlier:  # a form sent again notifies once
                notice_after_commit(
                    withdrawal_requested_notice, request=request, withdrawal=withdrawal
                )
            messages.success(
                request,
                "Withdrawal requested: the funds are locked until staff decide.",
            )
            return redirect("trading:wallet")
    return _wallet_render(request, form=form)


def _wallet_render(
    request: HttpRequest,
    *,
    form: WithdrawalForm | None = None,
    address_form: SavedAddressForm | None = None,
) -> HttpResponse:
    form = form or WithdrawalForm(initial={"reference": uuid.uuid4().hex})
    address_form = address_form or SavedAddressForm()
    policy = withdrawal_address_policy_get(user=request.user)
    context = {
        "balances": balances_for_user(user=request.user),
        "deposits": Deposit.objects.filter(user=request.user)
        .select_related("token")
        .order_by("-pk")[:50],
        "withdrawals": Withdrawal.objects.filter(user=request.user)
        .select_related("token")
        .order_by("-pk")[:50],
        "form": form,
        "saved_addresses": saved_addresses_for_user(user=request.user),
        "address_form": address_form,
        "address_policy": policy,
        "saved_only": policy.saved_only_at(timezone.now()),
        "address_delay_hours": settings.WITHDRAWAL_ADDRESS_DELAY_HOURS,
        "now": timezone.now(),
    }
    invalid = form.errors or address_form.errors
    return render(
        request, "trading/wallet.html", context, status=400 if invalid else 200
    )


def _wallet_redirect(anchor: str = "") -> HttpResponse:
    return redirect(reverse("trading:wallet") + (f"#{anchor}" if anchor else ""))


# The address book and its setting guard withdrawals: changing them asks for
# the password again, like a withdrawal does.
@login_required
@require_POST
@reauthentication_required
def saved_address_create(request: HttpRequest) -> HttpResponse:
    address_form = SavedAddressForm(request.POST)
    if address_form.is_valid():
        data = address_form.cleaned_data
        try:
            saved = saved_address_add(
                user=request.user,
                token=data["token"],
                address=data["address"],
                label=data["label"],
            )
        except TradingError as refusal:
            address_form.add_error("address", refusal.message)
        except ValidationError as error:
            address_form.add_error(None, error)
        else:
            saved_address_notice(request=request, saved_address=saved, added=True)
            messages.success(
                request,
                f"Address “{saved.label}” saved; withdrawals to it are "
                f"possible from {saved.usable_from:%Y-%m-%d %H:%M} UTC.",
            )
            return _wallet_redirect("address-book")
    return _wallet_render(request, address_form=address_form)


@login_required
@require_POST
@reauthentication_required
def saved_address_delete(request: HttpRequest, saved_address_id: int) -> HttpResponse:
    saved = get_object_or_404(
        SavedAddress.objects.select_related("token"),
        pk=saved_address_id,
        user=request.user,
    )
    saved_address_remove(user=request.user, saved_address=saved)
    saved_address_notice(request=request, saved_address=saved, added=False)
    messages.success(request, f"Address “{saved.label}” removed.")
    return _wallet_redirect("address-book")


@login_required
@require_POST
@reauthentication_required
def withdrawal_address_policy_update(request: HttpRequest) -> HttpResponse:
    policy_form = WithdrawalAddressPolicyForm(request.POST)
    policy_form.is_valid()  # a checkbox: absent means off
    saved_only = policy_form.cleaned_data.get("saved_only", False)
    policy = withdrawal_address_policy_set(user=request.user, saved_only=saved_only)
    withdrawal_address_policy_notice(request=request, policy=policy)
    if policy.saved_only_ends_at is not None:
        message = (
            "Withdrawals may go to any address again from "
            f"{policy.saved_only_ends_at:%Y-%m-%d %H:%M} UTC; until then only "
            "to saved addresses. Turn the setting on again to stay protected."
        )
    elif policy.saved_only:
        message = "Withdrawals now go only to saved addresses."
    else:
        message = "Withdrawals may go to any address."
    messages.success(request, message)
    return _wallet_redirect("address-book")


@login_required
def withdrawal_cancel_view(request: HttpRequest, withdrawal_id: int) -> HttpResponse:
    """Ask to confirm (GET), then cancel (POST) a pending withdrawal of the
    signed-in user; its amount becomes available again."""
    withdrawal = get_object_or_404(
        Withdrawal.objects.select_related("token"), pk=withdrawal_id, user=request.user
    )
    if request.method == "POST":
        # Two cancels racing may both see it pending and both mail; the
        # funds are released once all the same.
        was_pending = withdrawal.status == Withdrawal.Status.PENDING
        recovery = "Look at it on the wallet page, or cancel it again: that is safe."
        try:
            with service_call(request, recovery=recovery):
                withdrawal = withdrawal_cancel(user=request.user, withdrawal=withdrawal)
        except TradingError as refusal:
            messages.error(request, refusal.message)
        else:
            if was_pending:
                notice_after_commit(
                    withdrawal_decided_notice, request=request, withdrawal=withdrawal
                )
            messages.success(
                request,
                f"Withdrawal of {plain(withdrawal.amount)} "
                f"{withdrawal.token.symbol} cancelled; the amount is available "
                "again.",
            )
        return redirect("trading:wallet")
    return render(request, "trading/withdrawal_cancel.html", {"withdrawal": withdrawal})
