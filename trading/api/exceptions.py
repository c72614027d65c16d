"""Every API error as ``{"error": {"code": ..., "message": ...}}``.

``code`` is stable and meant for programs; ``message`` is for people and may
be reworded. Validation errors add ``fields``: each field's messages.
"""

from __future__ import annotations

import logging

from allauth.core.exceptions import ReauthenticationRequired
from django.core.exceptions import BadRequest, ObjectDoesNotExist, SuspiciousOperation
from django.core.exceptions import PermissionDenied as DjangoPermissionDenied
from django.core.exceptions import ValidationError as DjangoValidationError
from django.http import Http404
from django.utils.log import log_response
from rest_framework import exceptions, status
from rest_framework.response import Response
from rest_framework.serializers import as_serializer_error
from rest_framework.settings import api_settings
from rest_framework.views import exception_handler as drf_exception_handler

from core.database import UNAVAILABLE, unavailable_error
from core.errors import MALFORMED_REQUEST, bad_request_reason, error_body
from trading import exceptions as trading

logger = logging.getLogger(__name__)

# Malformed input is 400, a clash with the current state of something 409, a
# well-formed request the exchange's rules refuse 422 (the default).
TRADING_STATUS = {
    trading.InvalidAmount: status.HTTP_400_BAD_REQUEST,
    trading.PrecisionTooHigh: status.HTTP_400_BAD_REQUEST,
    trading.InvalidOrder: status.HTTP_400_BAD_REQUEST,
    trading.InvalidReference: status.HTTP_400_BAD_REQUEST,
    trading.InvalidAddress: status.HTTP_400_BAD_REQUEST,
    trading.InvalidMemo: status.HTTP_400_BAD_REQUEST,
    trading.MemoRequired: status.HTTP_400_BAD_REQUEST,
    trading.OrderNotFound: status.HTTP_404_NOT_FOUND,
    trading.WithdrawalNotFound: status.HTTP_404_NOT_FOUND,
    trading.EmailNotVerified: status.HTTP_403_FORBIDDEN,
    trading.IdentityNotVerified: status.HTTP_403_FORBIDDEN,
    trading.MarketClosed: status.HTTP_409_CONFLICT,
    trading.TokenNotListed: status.HTTP_409_CONFLICT,
    trading.OrderNotOpen: status.HTTP_409_CONFLICT,
    trading.OrderChanged: status.HTTP_409_CONFLICT,
    trading.DuplicateReference: status.HTTP_409_CONFLICT,
    trading.DuplicateClientOrderId: status.HTTP_409_CONFLICT,
    trading.WithdrawalNotPending: status.HTTP_409_CONFLICT,
    trading.WithdrawalNotProcessing: status.HTTP_409_CONFLICT,
    trading.AddressAlreadySaved: status.HTTP_409_CONFLICT,
    trading.CommandFailed: status.HTTP_500_INTERNAL_SERVER_ERROR,
}


def trading_status(error: trading.TradingError) -> int:
    for cls in type(error).__mro__:
        if cls in TRADING_STATUS:
            return TRADING_STATUS[cls]
    return status.HTTP_422_UNPROCESSABLE_ENTITY


def exception_handler(exc: Exception, context: dict) -> Response | None:
    """DRF's handler, with trading refusals added and one error shape."""
    if isinstance(exc, trading.TradingError):
        return Response(error_body(exc.code, exc.message), status=trading_status(exc))
    if isinstance(exc, ReauthenticationRequired):
        return Response(
            error_body(
                "reauthentication_required",
                "Confirm your password (or a two-factor code) at "
                "/accounts/reauthenticate/ first, then send the request again; "
                "nothing was changed.",
            ),
            status=status.HTTP_403_FORBIDDEN,
        )
    if isinstance(exc, UNAVAILABLE):
        # "nothing was changed" only when nothing that writes was sent;
        # otherwise outcome_unknown, saying what to check (core.database).
        code, message = unavailable_error(context["request"])
        logger.warning(
            "database unavailable",
            extra={"code": code, "reason": f"{type(exc).__name__}: {exc}".strip()},
        )
        return Response(
            error_body(code, message),
            status=status.HTTP_503_SERVICE_UNAVAILABLE,
            headers={"Retry-After": "5", "Cache-Control": "no-store"},
        )
    if isinstance(exc, BadRequest | SuspiciousOperation):
        # Raised while reading the request (a body over
        # DATA_UPLOAD_MAX_MEMORY_SIZE, too many query fields). Left to Django,
        # it is handler400's JSON only with DEBUG off: with DEBUG on (make
        # run), Django answers its HTML debug page instead.
        code, message = bad_request_reason(exc)
        response = Response(
            error_body(code, message or MALFORMED_REQUEST),
            status=status.HTTP_400_BAD_REQUEST,
        )
        request = context["request"]
        # Logged as Django logs those it answers itself
        # (django.core.handlers.exception.response_for_exception).
        if isinstance(exc, SuspiciousOperation):
            logging.getLogger(f"django.security.{type(exc).__name__}").error(
                str(exc), exc_info=exc, extra={"status_code": 400, "request": request}
            )
        else:
            log_response(
                "%s: %s", exc, request.path, response=response, request=request
            )
        return response
    if isinstance(exc, DjangoValidationError):
        exc = exceptions.ValidationError(as_serializer_error(exc))
    elif isinstance(exc, Http404 | ObjectDoesNotExist):
        exc = exceptions.NotFound()
    elif isinstance(exc, DjangoPermissionDenied):
        exc = exceptions.PermissionDenied()
    response = drf_exception_handler(exc, context)
    if response is None:
        return None
    if isinstance(exc, exceptions.ValidationError):
        fields = _fields(response.data)
        response.data = error_body("invalid", _summary(fields), fields=fields)
    else:
        codes = exc.get_codes() if isinstance(exc, exceptions.APIException) else None
        code = codes if isinstance(codes, str) else "error"
        detail = (
            response.data.get("detail", "") if isinstance(response.data, dict) else ""
        )
        response.data = error_body(code, str(detail))
    return response


def _fields(detail: object, prefix: str = "") -> dict[str, list[str]]:
    """Flatten DRF's nested error detail to ``{"field.sub": [messages]}``."""
    key = prefix or api_settings.NON_FIELD_ERRORS_KEY
    found: dict[str, list[str]] = {}
    if isinstance(detail, dict):
        for name, value in detail.items():
            found.update(_fields(value, f"{prefix}.{name}" if prefix else str(name)))
    elif isinstance(detail, list) and any(isinstance(i, dict | list) for i in detail):
        for index, item in enumerate(detail):
            found.update(_fields(item, f"{key}.{index}"))
    elif isinstance(detail, list):
        found[key] = [str(item) for item in detail]
    else:
        found[key] = [str(detail)]
    return found


def _summary(fields: dict[str, list[str]]) -> str:
    for field, messages in fields.items():
        if messages:
            if field == api_settings.NON_FIELD_ERRORS_KEY:
                return messages[0]
            return f"{field}: {messages[0]}"
    return "The request is not valid."
