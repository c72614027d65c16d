"""The JSON API, version 1: public market data, and the private account of the
signed-in user or API key. Views parse input, call one selector or service and
serialize; refusals become JSON errors in ``trading.api.exceptions``."""

from __future__ import annotations

import logging
from typing import Any

from allauth.account.decorators import reauthentication_required
from drf_spectacular.utils import OpenApiExample, OpenApiResponse, extend_schema
from rest_framework import exceptions, serializers, status
from rest_framework.generics import GenericAPIView
from rest_framework.permissions import AllowAny
from rest_framework.renderers import JSONRenderer
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.throttling import AnonRateThrottle, UserRateThrottle

from accounts.adapter import client_address
from accounts.selectors import email_verified
from core.database import UNAVAILABLE, incidental_writes, service_call
from core.parsers import JSONParser
from tokens.models import Token
from trading import exceptions as trading_errors
from trading.api import serializers as api
from trading.api.authentication import ApiKeyAuthentication, CsrfSessionAuthentication
from trading.api.exceptions import exception_handler
from trading.api.pagination import NewestFirstPagination
from trading.api.permissions import ScopeAllows
from trading.api.selectors import (
    fill_of,
    orders_for_user,
    ticker_for,
    trades_for_user,
    withdrawals_for_user,
)
from trading.models import ApiKey, Market, Order, Withdrawal
from trading.notices import (
    notice_after_commit,
    withdrawal_decided_notice,
    withdrawal_requested_notice,
)
from trading.orders import (
    command_refusal,
    command_wait,
    commands_wait,
    order_amend,
    order_cancel,
    order_place,
    order_refusal,
    order_wait,
    orders_cancel_all,
)
from trading.selectors import (
    balances_for_user,
    candles,
    market_get,
    order_book,
    trades_recent,
)
from trading.services import withdrawal_cancel, withdrawal_request_or_get

logger = logging.getLogger(__name__)

_ERROR_DESCRIPTIONS = {
    400: "Invalid input: code `invalid` with `fields`, or a refused amount "
    "(`invalid_amount`, `precision_too_high`, `invalid_order`, ...).",
    401: "No credentials, or a bad API key (`not_authenticated`, "
    "`invalid_api_key`, `api_key_revoked`, `api_key_expired`, `user_inactive`; "
    "`signature_required` for a key that signs its requests sent with its "
    "secret; `signature_invalid`, `signature_expired`, `signature_replayed` "
    "for a signed request).",
    403: "`csrf_failed` for a session without the CSRF header; "
    "`insufficient_scope` for an API key without the scope (`trade` for orders, "
    "`withdraw` for withdrawals); `ip_not_allowed` for an API key used from an "
    "address outside its allow-list; `email_unverified` before "
    "the account's e-mail address is verified; `identity_unverified` for a "
    "withdrawal before staff approved the account's identity verification, when "
    "the exchange requires it; `reauthentication_required` for a "
    "browser session's withdrawal without a recent password confirmation.",
    404: "`not_found`.",
    409: "Conflicts with the current state (`order_not_open`: the order was "
    "closed, or it filled before the matcher took the cancel or amend; "
    "`order_changed`: the order changed while the amend waited (it filled past "
    "the new quantity, or a fill, self-trade prevention or an earlier amend "
    "left its reservation short of the amended order), so the amend was "
    "refused and the order is unchanged; "
    "`duplicate_client_order_id`, `duplicate_reference`, `market_closed`, "
    "`token_not_listed`: the token is not listed now, so it cannot be withdrawn "
    "or its addresses saved; `withdrawal_not_pending`, `address_already_saved`).",
    422: "Refused by the exchange's rules (`insufficient_balance`, "
    "`below_min_notional`, `post_only_would_take`, `fill_or_kill_not_filled`, "
    "`withdrawal_limit_exceeded`; `balance_limit`: a trade would take a "
    "balance to 10^18 or more; `address_not_allowed`: an address outside "
    "the address book under the saved-addresses-only setting, or a full book).",
    429: "`rate_limited`: too many requests in a short time, per user (an API "
    "key counts as its user) or, without one, per address; nothing was done. "
    "Send it again once the `Retry-After` header's seconds have passed.",
    500: "`matcher_error`: the matcher could not apply the request; nothing was "
    "changed and its funds are available again.",
    503: "The database could not be reached. `unavailable`: nothing was "
    "changed, send the request again. `outcome_unknown`: the connection broke "
    "while the request was being saved, so it may have taken effect: look it "
    "up (`GET /api/v1/orders/?client_order_id=...`, "
    "`GET /api/v1/withdrawals/?reference=...`) or send it again with the same "
    "`client_order_id` or `reference`, which never acts twice.",
}


def _errors(*codes: int) -> dict[int, OpenApiResponse]:
    """The error answers of an operation: ``codes``, and 429, which every
    operation may answer (``ApiView.throttle_classes``)."""
    return {
        code: OpenApiResponse(
            api.ErrorSerializer, description=_ERROR_DESCRIPTIONS[code]
        )
        for code in (*codes, 429)
    }


def _valid(serializer_class: type[serializers.Serializer], data: Any) -> dict:
    serializer = serializer_class(data=data)
    serializer.is_valid(raise_exception=True)
    return serializer.validated_data


def _valid_query(
    serializer_class: type[serializers.Serializer], request: Request
) -> dict:
    # A plain dict, not the QueryDict: DRF reads a QueryDict as an HTML form,
    # where an empty optional field counts as absent, so `?limit=` or
    # `?market=` would be ignored instead of refused.
    return _valid(serializer_class, request.query_params.dict())


@reauthentication_required
def _session_reauthenticated(request: Request) -> None:
    """Raises ReauthenticationRequired (a 403 with its code) unless the signed-in
    browser confirmed the password recently, as the wallet page asks."""


def _email_verified_require(request: Request) -> None:
    if not email_verified(user=request.user):
        raise trading_errors.EmailNotVerified()


def _market_or_404(symbol: str) -> Market:
    try:
        return market_get(symbol=symbol)
    except Market.DoesNotExist:
        raise exceptions.NotFound(f"There is no market {symbol!r}.") from None


def _market_field(symbol: str | None) -> Market | None:
    """The market a body or query field names; unknown ones are invalid input."""
    if symbol is None:
        return None
    try:
        return market_get(symbol=symbol)
    except Market.DoesNotExist:
        raise exceptions.ValidationError(
            {"market": [f"There is no market {symbol!r}."]}
        ) from None


class _ClientAddress:
    """Counts an address as the API keys' allow-lists and the log-in throttles
    read it (``TRUSTED_PROXY_COUNT``), not as DRF's ``NUM_PROXIES`` would."""

    def get_ident(self, request: Request) -> str | None:
        return client_address(request)


class UserThrottle(_ClientAddress, UserRateThrottle):
    """``API_THROTTLE_USER`` per signed-in user, an API key counting as its
    user (all of a user's keys together)."""


class AnonThrottle(_ClientAddress, AnonRateThrottle):
    """``API_THROTTLE_ANON`` per client address, for requests without a user."""


class ApiView(GenericAPIView):
    renderer_classes = (JSONRenderer,)
    # JSON only, nesting bounded (core.parsers, also the settings' default).
    parser_classes = (JSONParser,)
    pagination_class = None
    throttle_classes = (UserThrottle, AnonThrottle)

    def throttled(self, request: Request, wait: float | None) -> None:
        # DRF adds "Expected available in N seconds." and Retry-After.
        raise exceptions.Throttled(
            wait,
            detail="Too many requests in a short time; this one was not handled.",
            code="rate_limited",
        )

    def get_exception_handler(self):
        # Also set as REST_FRAMEWORK["EXCEPTION_HANDLER"]; this keeps the API's
        # error shape whatever the settings say.
        return exception_handler

    def perform_authentication(self, request: Request) -> None:
        # An API key's last use, written on the way, is not what the client
        # asked for (core.database).
        with incidental_writes(request):
            super().perform_authentication(request)


class PublicView(ApiView):
    authentication_classes = ()
    permission_classes = (AllowAny,)


class PrivateView(ApiView):
    authentication_classes = (ApiKeyAuthentication, CsrfSessionAuthentication)
    permission_classes = (ScopeAllows,)


# -- Public -----------------------------------------------------------------


class MarketListView(PublicView):
    @extend_schema(
        tags=["market data"],
        summary="Markets",
        description="Every listed market with its steps, fees and status.",
        responses={200: api.MarketSerializer(many=True), **_errors()},
    )
    def get(self, request: Request) -> Response:
        markets = Market.objects.select_related("base", "quote").order_by("symbol")
        return Response(api.MarketSerializer(markets, many=True).data)


class TickerView(PublicView):
    @extend_schema(
        tags=["market data"],
        summary="Ticker",
        description=(
            "Last price, change from the price 24 hours ago, 24-hour high, low"
            " and volumes, best bid and ask."
        ),
        responses={200: api.TickerSerializer, **_errors(404)},
    )
    def get(self, request: Request, symbol: str) -> Response:
        market = _market_or_404(symbol)
        return Response(api.TickerSerializer(ticker_for(market=market)).data)


class DepthView(PublicView):
    @extend_schema(
        tags=["market data"],
        summary="Order book",
        description="Open quantity summed per price, `limit` levels a side.",
        parameters=[api.LimitQuerySerializer],
        responses={200: api.DepthSerializer, **_errors(400, 404)},
    )
    def get(self, request: Request, symbol: str) -> Response:
        market = _market_or_404(symbol)
        query = _valid_query(api.LimitQuerySerializer, request)
        book = order_book(market=market, depth=query["limit"])
        data = {"market": market.symbol, "bids": book.bids, "asks": book.asks}
        return Response(api.DepthSerializer(data).data)


class TradeListView(PublicView):
    @extend_schema(
        tags=["market data"],
        summary="Recent trades",
        description="The market's latest trades, newest first.",
        parameters=[api.LimitQuerySerializer],
        responses={200: api.TradeSerializer(many=True), **_errors(400, 404)},
    )
    def get(self, request: Request, symbol: str) -> Response:
        market = _market_or_404(symbol)
        query = _valid_query(api.LimitQuerySerializer, request)
        trades = trades_recent(market=market, limit=query["limit"])
        return Response(api.TradeSerializer(trades, many=True).data)


class CandleListView(PublicView):
    @extend_schema(
        tags=["market data"],
        summary="Candles",
        description="OHLCV of the last `limit` intervals up to now, the "
        "current one included, oldest first: the intervals without trades are "
        "left out, so fewer may come back (none if the market had no trade in "
        "that time). Intervals start at multiples of their length since the "
        "Unix epoch (UTC).",
        parameters=[api.CandleQuerySerializer],
        responses={200: api.CandleSerializer(many=True), **_errors(400, 404)},
    )
    def get(self, request: Request, symbol: str) -> Response:
        market = _market_or_404(symbol)
        query = _valid_query(api.CandleQuerySerializer, request)
        rows = candles(market=market, interval=query["interval"], limit=query["limit"])
        return Response(api.CandleSerializer(rows, many=True).data)


# -- Private ----------------------------------------------------------------


class BalanceListView(PrivateView):
    @extend_schema(
        tags=["account"],
        summary="Balances",
        responses={200: api.BalanceSerializer(many=True), **_errors(401, 403)},
    )
    def get(self, request: Request) -> Response:
        balances = balances_for_user(user=request.user)
        return Response(api.BalanceSerializer(balances, many=True).data)


class OrderListView(PrivateView):
    pagination_class = NewestFirstPagination

    @extend_schema(
        tags=["orders"],
        summary="Your orders",
        description="Newest first, 100 a page; follow `next` for older ones.",
        parameters=[api.OrderQuerySerializer],
        responses={200: api.OrderSerializer(many=True), **_errors(400, 401, 403)},
    )
    def get(self, request: Request) -> Response:
        query = _valid_query(api.OrderQuerySerializer, request)
        orders = orders_for_user(
            user=request.user,
            status=query.get("status"),
            market=_market_field(query.get("market")),
            client_order_id=query.get("client_order_id"),
        )
        page = self.paginate_queryset(orders)
        return self.get_paginated_response(api.OrderSerializer(page, many=True).data)

    @extend_schema(
        tags=["orders"],
        summary="Place an order",
        description="The order is accepted (funds reserved), then matched by "
        "the market's matcher. By default the server waits briefly for the "
        "result and answers 201 with the order as matched (filled, open, "
        "cancelled); an order the matcher refuses answers its error (422 "
        "`post_only_would_take`, `fill_or_kill_not_filled`, "
        "`below_min_notional`). If the matcher has not answered in time, or "
        'with `"response": "ack"`, the answer is 202 with the order '
        "`accepted` and its `url` to follow (also in `Location`). Repeating "
        "an order with the same `client_order_id` returns the first one (200) "
        "and places nothing: the safe way to retry after a lost answer or a "
        "503 `outcome_unknown`.",
        request=api.OrderCreateSerializer,
        examples=[
            OpenApiExample(
                "Limit buy",
                request_only=True,
                value={
                    "market": "BTC-USDT",
                    "side": "buy",
                    "type": "limit",
                    "quantity": "0.5",
                    "price": "100",
                },
            ),
            OpenApiExample(
                "Market buy spending an amount of quote",
                request_only=True,
                value={
                    "market": "BTC-USDT",
                    "side": "buy",
                    "type": "market",
                    "quote_amount": "250",
                },
            ),
            OpenApiExample(
                "Stop-limit sell",
                request_only=True,
                value={
                    "market": "BTC-USDT",
                    "side": "sell",
                    "type": "stop_limit",
                    "quantity": "0.5",
                    "price": "95",
                    "stop_price": "96",
                    "client_order_id": "my-stop-1",
                },
            ),
        ],
        responses={
            201: api.OrderSerializer,
            202: OpenApiResponse(
                api.OrderSerializer,
                description="Accepted, not matched yet: follow `url`.",
            ),
            200: OpenApiResponse(
                api.OrderSerializer, description="An identical repeat: the order."
            ),
            **_errors(400, 401, 403, 409, 422, 500, 503),
        },
    )
    def post(self, request: Request) -> Response:
        _email_verified_require(request)
        data = _valid(api.OrderCreateSerializer, request.data)
        market = _market_field(data["market"])
        client_order_id = data.get("client_order_id")
        # An identical repeat returns the earlier order: answer it with 200.
        # Identical requests sent together may all find none here; order_place
        # makes them take turns, so the others get the first's order there
        # and answer it as a new one (201, 202 until matched), placing nothing.
        earlier = None
        if client_order_id is not None:
            earlier = (
                Order.objects.filter(user=request.user, client_order_id=client_order_id)
                .exclude(status=Order.Status.REJECTED)
                .order_by("-pk")
                .values_list("pk", flat=True)
                .first()
            )
        with service_call(request, recovery=_order_recovery(client_order_id)):
            placed = order_place(
                user=request.user,
                market=market,
                side=data["side"],
                type=data["type"],
                quantity=data.get("quantity"),
                price=data.get("price"),
                quote_amount=data.get("quote_amount"),
                protection_price=data.get("protection_price"),
                stop_price=data.get("stop_price"),
                time_in_force=data["time_in_force"],
                post_only=data["post_only"],
                self_trade=data["self_trade"],
                client_order_id=client_order_id,
            )
        repeat = placed.pk == earlier
        try:
            if data["response"] == "result" and not repeat:
                order = order_wait(order=placed)
            else:
                order = Order.objects.select_related(
                    "market__base", "market__quote"
                ).get(pk=placed.pk)
        except UNAVAILABLE:
            # The order is committed: a failed re-read must not turn that
            # into an error. It is accepted; its url tells how it went.
            logger.warning("order result unread", extra={"order": placed.pk})
            placed.market = market
            return _order_response(placed, status.HTTP_202_ACCEPTED)
        if (refusal := order_refusal(order)) is not None and not repeat:
            raise refusal
        return _order_response(
            order,
            status.HTTP_200_OK
            if repeat
            else status.HTTP_202_ACCEPTED
            if order.status == Order.Status.ACCEPTED
            else status.HTTP_201_CREATED,
        )


def _order_recovery(client_order_id: str | None) -> str:
    if client_order_id is None:
        return (
            "It carried no client_order_id, so sending it again may place a "
            "second order: look for it first among your orders "
            "(GET /api/v1/orders/?status=open) and fills (GET /api/v1/fills/). "
            "With a client_order_id, sending an order again is always safe."
        )
    return (
        f"Look it up with GET /api/v1/orders/?client_order_id={client_order_id}, "
        f"or send the same order again with client_order_id {client_order_id!r}: "
        "that is safe, it is never placed twice."
    )


def _order_response(order: Order, code: int) -> Response:
    body = api.OrderSerializer(order).data
    headers = {"Location": body["url"]} if code == status.HTTP_202_ACCEPTED else {}
    return Response(body, status=code, headers=headers)


def _own_order(request: Request, pk: int) -> Order:
    order = (
        Order.objects.select_related("market__base", "market__quote")
        .filter(pk=pk, user=request.user)
        .first()
    )
    if order is None:
        raise exceptions.NotFound("You have no order with this id.")
    return order


def _command_answer(request: Request, command, order: Order) -> Response:
    """The order once the matcher has applied ``command``: 200; its refusal
    as an error; or, if it has not taken it in time (or the database failed
    after the command was queued), 202 and the order as it was."""
    try:
        done = command_wait(command=command)
        if done and (refusal := command_refusal(command)) is not None:
            raise refusal
        fresh = _own_order(request, order.pk)
    except UNAVAILABLE:
        logger.warning("order command result unread", extra={"order": order.pk})
        return _order_response(order, status.HTTP_202_ACCEPTED)
    return _order_response(
        fresh, status.HTTP_200_OK if done else status.HTTP_202_ACCEPTED
    )


def _order_command_recovery(pk: int, *, safe: bool) -> str:
    look = f"Look at the order (GET /api/v1/orders/{pk}/)"
    if safe:
        return f"{look}, or send the cancel again: that is safe."
    return f"{look} before sending the change again."


class OrderDetailView(PrivateView):
    @extend_schema(
        tags=["orders"],
        summary="One of your orders",
        responses={200: api.OrderSerializer, **_errors(401, 403, 404)},
    )
    def get(self, request: Request, pk: int) -> Response:
        return Response(api.OrderSerializer(_own_order(request, pk)).data)

    @extend_schema(
        tags=["orders"],
        summary="Cancel an order",
        description="Queues a cancel for the matcher and waits briefly for it: "
        "200 with the order cancelled (what it reserved is available again), "
        "or 409 `order_not_open` if it had filled or closed first. 202 with "
        "the order as it stands if the matcher has not taken the cancel in "
        "time: it is cancelled unless it fills first.",
        responses={
            200: api.OrderSerializer,
            202: OpenApiResponse(api.OrderSerializer, description="Cancel queued."),
            **_errors(401, 403, 404, 409, 500, 503),
        },
    )
    def delete(self, request: Request, pk: int) -> Response:
        order = _own_order(request, pk)
        with service_call(request, recovery=_order_command_recovery(pk, safe=True)):
            command = order_cancel(user=request.user, order=order)
        return _command_answer(request, command, order)

    @extend_schema(
        tags=["orders"],
        summary="Amend an order",
        description="Change the price and/or total quantity of a limit order "
        "in the book (a stop-limit once triggered). A lower quantity keeps its "
        "place in the book; a new price or a higher quantity queues it again "
        "(it may trade at once). A buy needing more quote reserves it now. "
        "Answers like a cancel: 200, an error, or 202. The matcher may refuse "
        "it, leaving the order unchanged: 409 `order_changed` if the order "
        "traded meanwhile (it filled past the new quantity), 422 "
        "`post_only_would_take` if a post-only order's new price would trade "
        "at once, 422 `below_min_notional` or 400 `precision_too_high` if "
        "staff changed the market's minimum or steps meanwhile.",
        request=api.OrderAmendSerializer,
        responses={
            200: api.OrderSerializer,
            202: OpenApiResponse(api.OrderSerializer, description="Amend queued."),
            **_errors(400, 401, 403, 404, 409, 422, 500, 503),
        },
    )
    def patch(self, request: Request, pk: int) -> Response:
        _email_verified_require(request)
        data = _valid(api.OrderAmendSerializer, request.data)
        order = _own_order(request, pk)
        with service_call(request, recovery=_order_command_recovery(pk, safe=False)):
            command = order_amend(
                user=request.user,
                order=order,
                price=data.get("price"),
                quantity=data.get("quantity"),
            )
        return _command_answer(request, command, order)


class CancelAllView(PrivateView):
    @extend_schema(
        tags=["orders"],
        summary="Cancel all your orders",
        description="In one market, or in all. 200 once the matcher has "
        "taken every cancel, with the orders it cancelled; 202 if not yet "
        "(`done` false), with those cancelled so far.",
        request=api.CancelAllSerializer,
        responses={
            200: api.CancelAllResultSerializer,
            202: api.CancelAllResultSerializer,
            **_errors(400, 401, 403, 503),
        },
    )
    def post(self, request: Request) -> Response:
        data = _valid(api.CancelAllSerializer, request.data)
        market = _market_field(data.get("market"))
        live = Order.objects.filter(user=request.user, status__in=Order.LIVE)
        if market is not None:
            live = live.filter(market=market)
        live_ids = list(live.values_list("pk", flat=True))
        recovery = "Look at your open orders (GET /api/v1/orders/?status=open), "
        recovery += "or send it again: that is safe."
        with service_call(request, recovery=recovery):
            commands = orders_cancel_all(user=request.user, market=market)
        try:
            done = all(commands_wait(commands=commands))
            cancelled = list(
                Order.objects.select_related("market__base", "market__quote")
                .filter(
                    pk__in=live_ids,
                    status=Order.Status.CANCELLED,
                    cancel_reason=Order.CancelReason.USER,
                )
                .order_by("pk")
            )
        except UNAVAILABLE:
            logger.warning("cancel-all result unread")
            done, cancelled = False, []
        body = {"done": done, "cancelled": cancelled}
        return Response(
            api.CancelAllResultSerializer(body).data,
            status=status.HTTP_200_OK if done else status.HTTP_202_ACCEPTED,
        )


class FillListView(PrivateView):
    pagination_class = NewestFirstPagination

    @extend_schema(
        tags=["orders"],
        summary="Your fills",
        description="Your side of each trade of your orders, newest first.",
        parameters=[api.MarketQuerySerializer],
        responses={200: api.FillSerializer(many=True), **_errors(400, 401, 403)},
    )
    def get(self, request: Request) -> Response:
        query = _valid_query(api.MarketQuerySerializer, request)
        trades = trades_for_user(
            user=request.user, market=_market_field(query.get("market"))
        )
        page = self.paginate_queryset(trades)
        fills = [fill_of(trade, user=request.user) for trade in page]
        return self.get_paginated_response(api.FillSerializer(fills, many=True).data)


class WithdrawalListView(PrivateView):
    pagination_class = NewestFirstPagination
    write_scope = ApiKey.Scope.WITHDRAW

    @extend_schema(
        tags=["withdrawals"],
        summary="Your withdrawal requests",
        description="Newest first, 100 a page; follow `next` for older ones.",
        parameters=[api.WithdrawalQuerySerializer],
        responses={
            200: api.WithdrawalSerializer(many=True),
            **_errors(400, 401, 403),
        },
    )
    def get(self, request: Request) -> Response:
        query = _valid_query(api.WithdrawalQuerySerializer, request)
        withdrawals = withdrawals_for_user(
            user=request.user, reference=query.get("reference")
        )
        page = self.paginate_queryset(withdrawals)
        return self.get_paginated_response(
            api.WithdrawalSerializer(page, many=True).data
        )

    @extend_schema(
        tags=["withdrawals"],
        summary="Request a withdrawal",
        description="The amount stays locked until staff approve or reject the "
        "request, or you cancel it. Repeating a request with the same "
        "`reference` returns the first one (200): the safe way to retry after "
        "a lost answer or a 503 `outcome_unknown`. Each token may have a daily "
        "limit per user: pending, processing and approved requests since "
        "00:00 UTC count, and a request over it is refused with "
        "`withdrawal_limit_exceeded` (a limit of 0: the token's withdrawals "
        "are suspended). "
        "A token that is not listed now cannot be withdrawn: 409 "
        "`token_not_listed`. Where the exchange requires a verified identity, "
        "a user whose identity verification staff have not approved is "
        "refused with 403 `identity_unverified`. On a network that takes a "
        'memo (a destination tag), `memo` is required, `""` saying that '
        "the recipient needs none: without it, 400 `memo_required`.",
        request=api.WithdrawalCreateSerializer,
        examples=[
            OpenApiExample(
                "Withdraw BTC",
                request_only=True,
                value={
                    "token": "BTC",
                    "amount": "0.01",
                    "address": "bc1qar0srrr7xfkvy5l643lydnw9re59gtzzwf5mdq",
                    "reference": "w-2026-12-05-1",
                },
            ),
            OpenApiExample(
                "Withdraw XRP to an exchange, with its destination tag",
                request_only=True,
                value={
                    "token": "XRP",
                    "amount": "25",
                    "address": "rHb9CJAWyB4rj91VRWn96DkukG4bwdtyTh",
                    "memo": "3052514",
                    "reference": "w-2026-12-05-2",
                },
            ),
        ],
        responses={
            201: api.WithdrawalSerializer,
            200: OpenApiResponse(
                api.WithdrawalSerializer, description="An identical repeat."
            ),
            **_errors(400, 401, 403, 409, 422, 503),
        },
    )
    def post(self, request: Request) -> Response:
        _email_verified_require(request)
        if request.auth is None:  # a browser's session, not an API key
            _session_reauthenticated(request)
        data = _valid(api.WithdrawalCreateSerializer, request.data)
        token = Token.objects.filter(symbol=data["token"].upper()).first()
        if token is None:
            raise exceptions.ValidationError(
                {"token": [f"There is no token {data['token']!r}."]}
            )
        reference = data["reference"]
        recovery = (
            f"Look it up with GET /api/v1/withdrawals/?reference={reference}, or "
            f"send the same request again with reference {reference!r}: that is "
            "safe, it is never made twice."
        )
        with service_call(request, recovery=recovery):
            withdrawal, created = withdrawal_request_or_get(
                user=request.user,
                token=token,
                amount=data["amount"],
                address=data["address"],
                reference=reference,
                network=data.get("network", ""),
                # Left out: not said, refused on a network that takes a memo.
                memo=data.get("memo"),
            )
        # A repeat announces it too: the first may have been stopped between
        # its commit and its notice. ``once`` keeps it to one.
        notice_after_commit(
            withdrawal_requested_notice, request=request, withdrawal=withdrawal
        )
        return Response(
            api.WithdrawalSerializer(withdrawal).data,
            status=status.HTTP_201_CREATED if created else status.HTTP_200_OK,
        )


class WithdrawalDetailView(PrivateView):
    write_scope = ApiKey.Scope.WITHDRAW

    def _own_withdrawal(self, request: Request, pk: int) -> Withdrawal:
        withdrawal = withdrawals_for_user(user=request.user).filter(pk=pk).first()
        if withdrawal is None:
            raise exceptions.NotFound("You have no withdrawal with this id.")
        return withdrawal

    @extend_schema(
        tags=["withdrawals"],
        summary="One of your withdrawal requests",
        responses={200: api.WithdrawalSerializer, **_errors(401, 403, 404)},
    )
    def get(self, request: Request, pk: int) -> Response:
        return Response(
            api.WithdrawalSerializer(self._own_withdrawal(request, pk)).data
        )

    @extend_schema(
        tags=["withdrawals"],
        summary="Cancel a withdrawal request",
        description="Only while it is pending: the amount becomes available "
        "again; returns the withdrawal. Cancelling a cancelled request returns "
        "it again and changes nothing; one staff are sending (`processing`), "
        "approved or rejected is refused with `withdrawal_not_pending`.",
        responses={
            200: api.WithdrawalSerializer,
            **_errors(401, 403, 404, 409, 503),
        },
    )
    def delete(self, request: Request, pk: int) -> Response:
        withdrawal = self._own_withdrawal(request, pk)
        recovery = f"Look at it (GET /api/v1/withdrawals/{pk}/), or send the "
        recovery += "cancel again: that is safe."
        with service_call(request, recovery=recovery):
            withdrawal, cancelled = withdrawal_cancel(
                user=request.user, withdrawal=withdrawal
            )
        # Of two cancels sent at once only the one that cancelled mails.
        if cancelled:
            notice_after_commit(
                withdrawal_decided_notice, request=request, withdrawal=withdrawal
            )
        return Response(api.WithdrawalSerializer(withdrawal).data)


@extend_schema(exclude=True)
class NotFoundView(PublicView):
    """Any other path under the API answers a JSON 404."""

    def _not_found(self, request: Request, *args: object, **kwargs: object):
        raise exceptions.NotFound("There is no such API endpoint.")

    get = post = put = patch = delete = options = _not_found
