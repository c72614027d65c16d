import logging
import re
import uuid
from dataclasses import dataclass
from decimal import Decimal
from urllib.parse import urlencode

from allauth.account.decorators import reauthentication_required
from django.conf import settings
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import ValidationError
from django.core.paginator import Paginator
from django.db.models import Q
from django.forms import Form
from django.http import Http404, HttpRequest, HttpResponse, QueryDict
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
    BelowMinNotional,
    DuplicateReference,
    EmailNotVerified,
    FillOrKillNotFilled,
    IdentityNotVerified,
    InsufficientBalance,
    InvalidAddress,
    InvalidAmount,
    InvalidMemo,
    MemoRequired,
    PostOnlyWouldTake,
    PrecisionTooHigh,
    TradingError,
)
from trading.forms import (
    OrderForm,
    SavedAddressForm,
    WithdrawalAddressPolicyForm,
    WithdrawalForm,
)
from trading.models import Market, Order, SavedAddress, Trade, Withdrawal
from trading.money import EXACT, exact, grouped, plain, spread_percent, unit
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
    WALLET_HISTORY_PAGE,
    PriceLevel,
    balances_for_user,
    candles,
    market_get,
    market_sort_parse,
    market_summaries,
    order_book,
    orders_open,
    saved_addresses_for_user,
    trades_recent,
    wallet_history,
    withdrawal_address_policy_get,
)
from trading.services import (
    saved_address_add,
    saved_address_remove,
    withdrawal_address_policy_set,
    withdrawal_cancel,
    withdrawal_identity_refusal,
    withdrawal_request_or_get,
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
    sort = market_sort_parse(request.GET.get("sort"))
    return render(
        request,
        "trading/market_list.html",
        {"summaries": market_summaries(sort=sort), "sort": sort},
    )


DEFAULT_INTERVAL = "1h"
CHART_SVG_CANDLES = 60  # the picture shown without script


@dataclass(frozen=True)
class DepthLevel:
    price: Decimal
    quantity: Decimal
    total: Decimal  # this level's and every better one's quantity


@exact
def _depth(levels: list[PriceLevel]) -> list[DepthLevel]:
    """``levels``, best first, each with the quantity summed up to it."""
    total = Decimal(0)
    rows = []
    for level in levels:
        total += level.quantity
        rows.append(DepthLevel(level.price, level.quantity, total))
    return rows


def _market_page(
    request: HttpRequest, market: Market, *, form: OrderForm, status: int = 200
) -> HttpResponse:
    """The market page: chart, order form, book, trades and, signed in, the
    user's orders, trades and balances; the live stream (market.js) keeps it
    current, and without script it is current on every load."""
    interval = request.GET.get("interval", DEFAULT_INTERVAL)
    if interval not in CANDLE_INTERVALS:
        interval = DEFAULT_INTERVAL
    book = order_book(market=market, depth=BOOK_DEPTH)
    best_bid = book.bids[0].price if book.bids else None
    best_ask = book.asks[0].price if book.asks else None
    spread = None
    if best_bid is not None and best_ask is not None:
        spread = {
            "amount": EXACT.subtract(best_ask, best_bid),
            "percent": spread_percent(bid=best_bid, ask=best_ask),
        }
    context = {
        "market": market,
        "asks": list(reversed(_depth(book.asks))),  # the best next to the spread
        "bids": _depth(book.bids),
        "spread": spread,
        "trades": trades_recent(market=market, limit=RECENT_TRADES),
        "interval": interval,
        "intervals": [
            (name, int(length.total_seconds()))
            for name, length in CANDLE_INTERVALS.items()
        ],
        "chart": candle_chart(
            candles(market=market, interval=interval, limit=CHART_SVG_CANDLES)
        ),
        "candles_url": reverse("api:candles", args=[market.symbol]),
        "form": form,
        "ticker": ticker_for(market=market),
        # The live stream (trading.live): on this origin behind nginx, or on
        # the ASGI process's own (STREAM_ORIGIN) in development.
        "stream_url": settings.STREAM_ORIGIN
        + reverse("api:market_stream", args=[market.symbol]),
        "quote_step": plain(unit(market.quote.decimals)),
        "base_step": plain(unit(market.base.decimals)),
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
        held = {b.token_id: b for b in balances_for_user(user=request.user)}
        context["base_balance"] = held.get(market.base_id)
        context["quote_balance"] = held.get(market.quote_id)
    return render(request, "trading/market_detail.html", context, status=status)


def _order_initial(query: QueryDict) -> dict:
    """A new order form, with the side, type and price of the query when it
    gives them (after a submit, or a price picked in the book)."""
    initial = {
        "client_order_id": uuid.uuid4().hex,
        "side": Order.Side.BUY,
        "type": Order.Type.LIMIT,
    }
    if query.get("side") in Order.Side.values:
        initial["side"] = query["side"]
    if query.get("type") in Order.Type.values:
        initial["type"] = query["type"]
    try:
        price = OrderForm.base_fields["price"].clean(query.get("price"))
    except ValidationError:
        price = None
    if price:
        initial["price"] = plain(price)
    return initial


def market_detail(request: HttpRequest, symbol: str) -> HttpResponse:
    market = _market_or_404(symbol)
    return _market_page(
        request,
        market,
        form=OrderForm(initial=_order_initial(request.GET), market=market),
    )


# What a refusal's message starts with when it is about one amount ("The
# price 100.001 has too much precision", trading.money and trading.orders
# name the amount so): the error is shown next to that field.
_REFUSED_AMOUNT = re.compile(
    r"The (?P<name>price|stop price|protection price|quantity|quote amount)\b"
)


def _refusal_field(refusal: TradingError, data: dict) -> str | None:
    """The order form's field a refusal is about; None when it is about the
    whole order (a closed market, an unverified e-mail address)."""
    if isinstance(refusal, PostOnlyWouldTake):
        return "post_only"
    if isinstance(refusal, FillOrKillNotFilled):
        return "time_in_force"
    if not isinstance(
        refusal,
        InvalidAmount | PrecisionTooHigh | BelowMinNotional | InsufficientBalance,
    ):
        return None
    if isinstance(refusal, BelowMinNotional) and data.get("protection_price"):
        return "protection_price"  # the book held too little up to the cap
    if match := _REFUSED_AMOUNT.match(refusal.message):
        return match["name"].replace(" ", "_")
    return "quote_amount" if data.get("quote_amount") is not None else "quantity"


@login_required
@require_POST
def order_create(request: HttpRequest, symbol: str) -> HttpResponse:
    market = _market_or_404(symbol)
    form = OrderForm(request.POST, market=market)
    if not form.is_valid():
        return _order_form_again(request, market, form)
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
        form.add_error(_refusal_field(refusal, data), refusal.message)
        return _order_form_again(request, market, form)
    messages.success(request, _order_outcome(order))
    # The next order starts on the same side and type.
    query = urlencode({"side": data["side"], "type": data["type"]})
    return redirect(reverse("trading:market", args=[market.symbol]) + f"?{query}")


def _order_form_again(
    request: HttpRequest, market: Market, form: OrderForm
) -> HttpResponse:
    """The market page with the order as typed and its errors next to the
    fields. Nothing was placed, so the form gets a new client order id: the
    corrected order is a new one."""
    form.data = form.data.copy()
    form.data["client_order_id"] = uuid.uuid4().hex
    return _market_page(request, market, form=form, status=400)


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


# Why the matcher cancelled an order the user just placed, and what to do.
_CANCEL_WHY = {
    Order.CancelReason.SELF_TRADE: (
        "it would have traded with your own order (self-trade prevention)",
        " To trade past your own order, cancel it first.",
    ),
    Order.CancelReason.UNFILLED: ("the book could not fill it at once", ""),
}


def _order_outcome(order: Order) -> str:
    """What the user is told of an order the matcher has taken, or not yet."""
    market = order.market
    if order.quantity is not None:
        what = (
            f"{order.get_side_display()} {grouped(order.quantity)} {market.base.symbol}"
        )
    else:
        what = f"Buy {market.base.symbol} for {grouped(order.quote_amount)} "
        what += market.quote.symbol
    filled = grouped(order.filled_quantity)
    if order.status == Order.Status.ACCEPTED and order.type == Order.Type.MARKET:
        return (
            f"{what}: accepted, and waiting for the matcher. It fills when the "
            "matcher takes it, and shows in your trades then."
        )
    if order.status == Order.Status.ACCEPTED:
        return (
            f"{what}: accepted, and waiting for the matcher. It shows under your "
            "open orders once it rests, and in your trades once it fills."
        )
    if order.status == Order.Status.WAITING:
        return f"{what}: waiting until the price reaches {grouped(order.stop_price)}."
    if order.status == Order.Status.FILLED:
        return f"{what}: filled."
    if order.status == Order.Status.OPEN:
        return f"{what}: placed ({filled} filled so far)."
    if order.cancel_reason not in _CANCEL_WHY:
        return f"{what}: {filled} filled, the rest cancelled."
    why, advice = _CANCEL_WHY[order.cancel_reason]
    if (
        order.cancel_reason == Order.CancelReason.UNFILLED
        and order.protection_price is not None
    ):
        # A capped market buy stops at its cap, not where the book ends.
        limit = f"{grouped(order.protection_price)} {market.quote.symbol}"
        if order.filled_quantity:
            return (
                f"{what}: {filled} filled; the rest was cancelled: nothing more "
                f"was offered at or below your price limit of {limit}."
            )
        return (
            f"{what}: cancelled, nothing filled: nothing was offered at or below "
            f"your price limit of {limit}."
        )
    if order.filled_quantity:
        return f"{what}: {filled} filled; the rest was cancelled because {why}.{advice}"
    return f"{what}: cancelled because {why}; nothing filled.{advice}"


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
    form = WithdrawalForm(
        request.POST or None,
        user=request.user,
        initial={"reference": uuid.uuid4().hex},
    )
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
            with service_call(request, recovery=recovery, resend=True):
                # A repeat (a double click, the form sent again) is answered
                # with the withdrawal the first made, as the first is.
                withdrawal, created = withdrawal_request_or_get(
                    user=request.user,
                    token=data["token"],
                    amount=data["amount"],
                    address=data["address"],
                    reference=data["reference"],
                    network=data.get("network", ""),
                    memo=data.get("memo", _memo_posted(request, form)),
                )
        except IdentityNotVerified as refusal:
            # Said once, by the notice next to the form, which links to the
            # verification page.
            return _wallet_render(request, form=form, identity_refused=refusal)
        except (InvalidAddress, AddressNotAllowed) as refusal:
            form.add_error("address", refusal.message)
        except (InvalidMemo, MemoRequired) as refusal:
            # No memo field: staff gave a network a memo since the form was
            # built; the page shown now has it.
            form.add_error("memo" if "memo" in form.fields else None, refusal.message)
        except InsufficientBalance as refusal:
            form.add_error("amount", refusal.message)
        except DuplicateReference:
            # The form's hidden reference, sent again with other values (the
            # browser's Back, then a change).
            form.add_error(
                None,
                "This form was already used for another withdrawal: reload the "
                "wallet page to request a new one.",
            )
        except TradingError as refusal:
            form.add_error(None, refusal.message)
        else:
            if not created and withdrawal.status != Withdrawal.Status.PENDING:
                # The form sent again after the withdrawal ended: nothing new.
                messages.info(
                    request,
                    "This withdrawal was already requested; it is "
                    f"{withdrawal.get_status_display().lower()} now.",
                )
                return redirect("trading:wallet")
            # A repeat announces it too: the first may have been stopped
            # between its commit and its notice. ``once`` keeps it to one.
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
    identity_refused: IdentityNotVerified | None = None,
) -> HttpResponse:
    """The wallet; ``identity_refused``: a withdrawal just refused for want of
    an approved identity verification (403)."""
    form = form or WithdrawalForm(initial={"reference": uuid.uuid4().hex})
    address_form = address_form or SavedAddressForm()
    policy = withdrawal_address_policy_get(user=request.user)
    context = {
        "balances": balances_for_user(user=request.user),
        "history": Paginator(
            wallet_history(user=request.user), WALLET_HISTORY_PAGE
        ).get_page(request.GET.get("page")),
        "form": form,
        "saved_addresses": saved_addresses_for_user(user=request.user),
        "address_form": address_form,
        "address_policy": policy,
        "saved_only": policy.saved_only_at(timezone.now()),
        "address_delay_hours": settings.WITHDRAWAL_ADDRESS_DELAY_HOURS,
        "now": timezone.now(),
        "identity_refusal": identity_refused
        or withdrawal_identity_refusal(user=request.user),
        "identity_refused": identity_refused is not None,
    }
    if identity_refused is not None:
        status = 403
    elif form.errors or address_form.errors:
        status = 400
    else:
        status = 200
    return render(request, "trading/wallet.html", context, status=status)


def _memo_posted(request: HttpRequest, form: Form) -> str:
    """The memo a form without a memo field was sent with: staff removed the
    last network taking one while the page was open, and the service refuses
    it rather than sending the coins without it."""
    return request.POST.get(form.add_prefix("memo"), "").strip()


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
                memo=data.get("memo", _memo_posted(request, address_form)),
            )
        except InvalidMemo as refusal:
            address_form.add_error(
                "memo" if "memo" in address_form.fields else None, refusal.message
            )
        except TradingError as refusal:
            address_form.add_error("address", refusal.message)
        except ValidationError as error:
            address_form.add_error(None, error)
        else:
            saved_address_notice(request=request, saved_address=saved, added=True)
            # The delay counts only while withdrawals go to saved addresses
            # alone (the notice says so too).
            policy = withdrawal_address_policy_get(user=request.user)
            if policy.saved_only_at(timezone.now()):
                message = (
                    f"Address “{saved.label}” saved; withdrawals to it are "
                    f"possible from {saved.usable_from:%Y-%m-%d %H:%M} UTC."
                )
            else:
                message = f"Address “{saved.label}” saved."
            messages.success(request, message)
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
        recovery = "Look at it on the wallet page, or cancel it again: that is safe."
        try:
            with service_call(request, recovery=recovery):
                withdrawal, cancelled = withdrawal_cancel(
                    user=request.user, withdrawal=withdrawal
                )
        except TradingError as refusal:
            messages.error(request, refusal.message)
        else:
            # Of two cancels sent at once (a double click) only the one that
            # cancelled mails.
            if cancelled:
                notice_after_commit(
                    withdrawal_decided_notice, request=request, withdrawal=withdrawal
                )
            messages.success(
                request,
                f"Withdrawal of {grouped(withdrawal.amount)} "
                f"{withdrawal.token.symbol} cancelled; the amount is available "
                "again.",
            )
        return redirect("trading:wallet")
    return render(request, "trading/withdrawal_cancel.html", {"withdrawal": withdrawal})
