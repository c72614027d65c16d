import uuid

from allauth.account.decorators import reauthentication_required
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.db.models import Q
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_POST

from accounts.selectors import email_verified
from trading.charts import candle_chart
from trading.exceptions import EmailNotVerified, TradingError
from trading.forms import OrderForm, WithdrawalForm
from trading.models import Deposit, Market, Order, Trade, Withdrawal
from trading.money import plain
from trading.notices import withdrawal_requested_notice
from trading.selectors import (
    CANDLE_INTERVALS,
    balances_for_user,
    candles,
    market_get,
    market_summaries,
    order_book,
    orders_open,
    trades_recent,
)
from trading.services import order_cancel, order_place, withdrawal_request

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
        form=OrderForm(),
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
    try:
        _email_verified_require(request)
        order = order_place(
            user=request.user,
            market=market,
            side=data["side"],
            type=data["type"],
            quantity=data["quantity"],
            price=data["price"],
            time_in_force=data["time_in_force"],
            post_only=data["post_only"],
        )
    except TradingError as refusal:
        messages.error(request, refusal.message)
    else:
        messages.success(request, _order_outcome(order))
    return redirect("trading:market", symbol=market.symbol)


def _email_verified_require(request: HttpRequest) -> None:
    if not email_verified(user=request.user):
        raise EmailNotVerified()


def _order_outcome(order: Order) -> str:
    what = (
        f"{order.get_side_display()} {plain(order.quantity)} {order.market.base.symbol}"
    )
    if order.status == Order.Status.FILLED:
        return f"{what}: filled."
    if order.status == Order.Status.OPEN:
        filled = plain(order.filled_quantity)
        return f"{what}: placed ({filled} filled so far)."
    return f"{what}: {plain(order.filled_quantity)} filled, the rest cancelled."


@login_required
@require_POST
def order_cancel_view(request: HttpRequest, symbol: str, order_id: int) -> HttpResponse:
    order = get_object_or_404(Order, pk=order_id, user=request.user)
    try:
        order_cancel(user=request.user, order=order)
    except TradingError as refusal:
        messages.error(request, refusal.message)
    else:
        messages.success(request, "Order cancelled; its funds are available again.")
    return redirect("trading:market", symbol=symbol)


@login_required
# A withdrawal request asks for the password (or a second-factor code) again
# when the last sign-in is not recent; the request is sent on afterwards.
@reauthentication_required(allow_get=True)
def wallet(request: HttpRequest) -> HttpResponse:
    form = WithdrawalForm(request.POST or None, initial={"reference": uuid.uuid4().hex})
    if request.method == "POST" and form.is_valid():
        data = form.cleaned_data
        try:
            _email_verified_require(request)
            withdrawal = withdrawal_request(
                user=request.user,
                token=data["token"],
                amount=data["amount"],
                address=data["address"],
                reference=data["reference"],
            )
        except TradingError as refusal:
            form.add_error(None, refusal.message)
        else:
            withdrawal_requested_notice(request=request, withdrawal=withdrawal)
            messages.success(
                request,
                "Withdrawal requested: the funds are locked until staff decide.",
            )
            return redirect("trading:wallet")
    context = {
        "balances": balances_for_user(user=request.user),
        "deposits": Deposit.objects.filter(user=request.user)
        .select_related("token")
        .order_by("-pk")[:50],
        "withdrawals": Withdrawal.objects.filter(user=request.user)
        .select_related("token")
        .order_by("-pk")[:50],
        "form": form,
    }
    return render(
        request, "trading/wallet.html", context, status=400 if form.errors else 200
    )
