"""What the user is told, by e-mail and in the security log, about their API
keys and withdrawals (the mails are in templates/accounts/email/)."""

from __future__ import annotations

import logging
from collections.abc import Callable

from django.http import HttpRequest

from accounts.models import SecurityEvent
from accounts.services import account_notify, security_event_record, security_notice
from core.database import UNAVAILABLE
from trading.models import ApiKey, SavedAddress, Withdrawal, WithdrawalAddressPolicy
from trading.money import grouped

logger = logging.getLogger(__name__)


def _withdrawal_context(withdrawal: Withdrawal) -> dict:
    return {
        "amount": grouped(withdrawal.amount),
        "token": withdrawal.token.symbol,
        "address": withdrawal.address,
        "reference": withdrawal.reference,
    }


def withdrawal_requested_notice(
    *, request: HttpRequest, withdrawal: Withdrawal
) -> None:
    security_notice(
        request=request,
        user=withdrawal.user,
        kind=SecurityEvent.Kind.WITHDRAWAL_REQUESTED,
        template="accounts/email/withdrawal_requested",
        context=_withdrawal_context(withdrawal),
        detail=f"{grouped(withdrawal.amount)} {withdrawal.token.symbol} "
        f"(reference {withdrawal.reference})",
    )


def withdrawal_decided_notice(*, request: HttpRequest, withdrawal: Withdrawal) -> None:
    account_notify(
        request=request,
        user=withdrawal.user,
        template="accounts/email/withdrawal_decided",
        context={
            **_withdrawal_context(withdrawal),
            "decision": withdrawal.get_status_display().lower(),
            "reason": withdrawal.reason,
        },
    )


def api_key_created_notice(*, request: HttpRequest, api_key: ApiKey) -> None:
    security_notice(
        request=request,
        user=api_key.user,
        kind=SecurityEvent.Kind.API_KEY_CREATED,
        template="accounts/email/api_key_created",
        context={
            "key_name": api_key.name,
            "key_prefix": api_key.prefix,
            "scopes": api_key.scopes,
        },
        detail=f"{api_key.name} ({api_key.prefix})",
    )


def api_key_revoked_notice(*, request: HttpRequest, api_key: ApiKey) -> None:
    security_event_record(
        user=api_key.user,
        kind=SecurityEvent.Kind.API_KEY_REVOKED,
        request=request,
        detail=f"{api_key.name} ({api_key.prefix})",
    )


def saved_address_notice(
    *, request: HttpRequest, saved_address: SavedAddress, added: bool
) -> None:
    security_event_record(
        user=saved_address.user,
        kind=SecurityEvent.Kind.ADDRESS_SAVED
        if added
        else SecurityEvent.Kind.ADDRESS_REMOVED,
        request=request,
        detail=f"{saved_address.token.symbol} {saved_address.label}: "
        f"{saved_address.address}",
    )


def withdrawal_address_policy_notice(
    *, request: HttpRequest, policy: WithdrawalAddressPolicy
) -> None:
    if policy.saved_only_ends_at is not None:
        ends = policy.saved_only_ends_at
        detail = f"saved addresses only, until {ends:%Y-%m-%d %H:%M} UTC"
    else:
        detail = "saved addresses only" if policy.saved_only else "any address"
    security_event_record(
        user=policy.user,
        kind=SecurityEvent.Kind.WITHDRAWAL_POLICY_CHANGED,
        request=request,
        detail=detail,
    )


def notice_after_commit(
    notice: Callable[..., None], *, request: HttpRequest, withdrawal: Withdrawal
) -> None:
    """Send ``notice`` about a committed withdrawal. The request succeeded:
    should the database fail now, the lost notice is logged, and the answer
    stays the success it is."""
    try:
        notice(request=request, withdrawal=withdrawal)
    except UNAVAILABLE:
        logger.warning(
            "withdrawal notice lost",
            extra={"withdrawal": withdrawal.pk, "notice": notice.__name__},
        )
