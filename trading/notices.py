"""What the user is told, by e-mail and in the security log, about their API
keys and withdrawals (the mails are in templates/accounts/email/)."""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import UTC, datetime

from django.contrib.auth.base_user import AbstractBaseUser
from django.db import transaction
from django.http import HttpRequest

from accounts.locks import user_serialize
from accounts.models import SecurityEvent
from accounts.services import (
    account_notify,
    security_event_record,
    security_notice,
)
from core.database import UNAVAILABLE
from trading.models import ApiKey, SavedAddress, Withdrawal, WithdrawalAddressPolicy
from trading.money import grouped

logger = logging.getLogger(__name__)


def _withdrawal_context(withdrawal: Withdrawal) -> dict:
    return {
        "amount": grouped(withdrawal.amount),
        "token": withdrawal.token.symbol,
        "address": withdrawal.address,
        "network": withdrawal.network,
        "memo": withdrawal.memo,
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
        once=True,
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
            "allowed_networks": api_key.allowed_networks,
        },
        detail=f"{api_key.name} ({api_key.prefix})",
        once=True,
    )


def api_keys_revoked_notice(
    *, request: HttpRequest, user: AbstractBaseUser, api_keys: list[ApiKey]
) -> None:
    """Log each key revoked; one mail names them all ("revoke all")."""
    with transaction.atomic():
        for api_key in api_keys:
            security_event_record(
                user=user,
                kind=SecurityEvent.Kind.API_KEY_REVOKED,
                request=request,
                detail=f"{api_key.name} ({api_key.prefix})",
            )
        account_notify(
            request=request,
            user=user,
            template="accounts/email/api_key_revoked",
            context={"api_keys": api_keys},
        )


def _moment(value: datetime) -> str:
    return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")


def _address_shortened(address: str) -> str:
    """Enough of an address to recognise it, not the whole of it."""
    return address if len(address) <= 16 else f"{address[:8]}…{address[-6:]}"


def saved_address_notice(
    *, request: HttpRequest, saved_address: SavedAddress, added: bool
) -> None:
    """Log an address saved or removed; mail the owner about one saved: it is
    what someone who took over the session does before withdrawing, and the
    owner has until it becomes usable to remove it."""
    detail = (
        f"{saved_address.token.symbol} {saved_address.label}: {saved_address.address}"
    )
    if saved_address.memo:
        detail += f" memo {saved_address.memo}"
    if not added:
        security_event_record(
            user=saved_address.user,
            kind=SecurityEvent.Kind.ADDRESS_REMOVED,
            request=request,
            detail=detail,
        )
        return
    security_notice(
        request=request,
        user=saved_address.user,
        kind=SecurityEvent.Kind.ADDRESS_SAVED,
        template="accounts/email/address_saved",
        context={
            "token": saved_address.token.symbol,
            "label": saved_address.label,
            "address": _address_shortened(saved_address.address),
            "memo": _address_shortened(saved_address.memo),
            "usable_from": _moment(saved_address.usable_from),
        },
        detail=detail,
    )


def withdrawal_address_policy_notice(
    *, request: HttpRequest, policy: WithdrawalAddressPolicy
) -> None:
    """Log the setting as it now is; mail the owner when it was just turned
    off, which takes effect after the delay (a repeated request, which does
    not push that moment back, is not mailed again)."""
    if policy.saved_only_ends_at is not None:
        detail = f"saved addresses only, until {_moment(policy.saved_only_ends_at)}"
    else:
        detail = "saved addresses only" if policy.saved_only else "any address"
    kind = SecurityEvent.Kind.WITHDRAWAL_POLICY_CHANGED
    with transaction.atomic():
        user_serialize(user_id=policy.user_id)
        previous = SecurityEvent.objects.filter(user=policy.user, kind=kind).first()
        security_event_record(
            user=policy.user, kind=kind, request=request, detail=detail
        )
        turned_off = policy.saved_only_ends_at is not None and (
            previous is None or previous.detail != detail
        )
        if turned_off:
            account_notify(
                request=request,
                user=policy.user,
                template="accounts/email/withdrawal_policy_off",
                context={"any_address_from": _moment(policy.saved_only_ends_at)},
            )


def notice_after_commit(
    notice: Callable[..., None], *, request: HttpRequest, withdrawal: Withdrawal
) -> None:
    """Send ``notice`` about a committed withdrawal. The request succeeded:
    should the database fail now, the lost notice is logged (a mail the
    server does not take is logged by the adapter), and the answer stays the
    success it is."""
    try:
        notice(request=request, withdrawal=withdrawal)
    except UNAVAILABLE:
        logger.error(
            "notice lost",
            extra={
                "user": withdrawal.user_id,
                "notice": notice.__name__,
                "withdrawal": withdrawal.pk,
            },
        )
