"""Writes of the accounts app."""

from __future__ import annotations

from collections.abc import Callable

from allauth.account.adapter import get_adapter
from allauth.core.context import request_context
from allauth.usersessions.adapter import get_adapter as get_usersessions_adapter
from allauth.usersessions.models import UserSession
from django.contrib.auth.base_user import AbstractBaseUser
from django.core.exceptions import PermissionDenied
from django.core.files.base import File
from django.db import transaction
from django.http import HttpRequest

from accounts.devices import device_describe
from accounts.locks import user_serialize
from accounts.models import DEFAULT_AVATAR, Profile, SecurityEvent
from storage.images import AVATAR, image_ensure_processed
from storage.services import field_file_set, field_file_store


def avatar_replace(*, profile: Profile, upload: File) -> Profile:
    """Store a new profile picture (300x300, metadata stripped) for a profile.

    The upload is checked and resized in memory before anything is written:
    a refused image raises ValidationError with the row and the storage
    untouched. The old picture is deleted only after the transaction commits,
    the default avatar never.
    """
    processed = image_ensure_processed(upload, spec=AVATAR)
    field_file_store(
        instance=profile,
        field_name="avatar",
        content=processed,
        update_fields=["avatar", "updated_at"],
    )
    return profile


def avatar_remove(*, profile: Profile) -> Profile:
    """Go back to the default avatar; the custom picture is deleted on commit."""
    if profile.avatar.name == DEFAULT_AVATAR:
        return profile
    with transaction.atomic():
        field_file_set(
            instance=profile,
            field_name="avatar",
            name=DEFAULT_AVATAR,
            update_fields=["avatar", "updated_at"],
        )
    return profile


# --- Security log and notifications ------------------------------------------

USER_AGENT_MAX_LENGTH = SecurityEvent._meta.get_field("user_agent").max_length


def _client(request: HttpRequest | None) -> tuple[str | None, str]:
    if request is None:
        return None, ""
    adapter = get_adapter(request)
    user_agent = adapter.get_http_user_agent(request)[:USER_AGENT_MAX_LENGTH]
    try:
        ip_address = adapter.get_client_ip(request)
    except PermissionDenied:  # no address at all: a request made in code
        ip_address = None
    return ip_address, user_agent


def security_event_record(
    *,
    user: AbstractBaseUser,
    kind: SecurityEvent.Kind,
    request: HttpRequest | None = None,
    detail: str = "",
) -> SecurityEvent:
    """One line of the user's security log, with the request's address and
    browser when there is a request."""
    ip_address, user_agent = _client(request)
    return SecurityEvent.objects.create(
        user=user,
        kind=kind,
        ip_address=ip_address,
        user_agent=user_agent,
        detail=detail[:200],
    )


# The detail of a sign-in from a new browser whose mail could not be sent.
# Such a sign-in does not make the browser known: the next one from it is
# announced again.
NEW_BROWSER_NOT_MAILED = "new browser; the e-mail about it could not be sent"


def sign_in_record(*, request: HttpRequest, user: AbstractBaseUser) -> None:
    """Log a sign-in; mail the user when it comes from a browser never seen
    signing in to this account before (not for the very first sign-in, nor
    while the address is not verified: ``account_notify``).

    A browser is known through a sign-in from it that was announced or
    needed no mail: one whose mail was lost says so in its detail and counts
    for nothing, so the next sign-in from that browser mails again."""
    _, user_agent = _client(request)
    with transaction.atomic():
        # Sign-ins from one new browser at once would each find it unknown.
        user_serialize(user_id=user.pk)
        earlier = SecurityEvent.objects.filter(
            user=user, kind=SecurityEvent.Kind.SIGN_IN
        )
        known_device = (
            earlier.filter(user_agent=user_agent)
            .exclude(detail=NEW_BROWSER_NOT_MAILED)
            .exists()
        )
        first_sign_in = not earlier.exists()
        event = security_event_record(
            user=user, kind=SecurityEvent.Kind.SIGN_IN, request=request
        )
        if not known_device and not first_sign_in:

            def not_mailed() -> None:
                SecurityEvent.objects.filter(pk=event.pk).update(
                    detail=NEW_BROWSER_NOT_MAILED
                )

            account_notify(
                request=request,
                user=user,
                template="accounts/email/new_sign_in",
                context={"device": device_describe(user_agent)},
                on_lost=not_mailed,
            )


def account_notify(
    *,
    request: HttpRequest | None,
    user: AbstractBaseUser,
    template: str,
    context: dict | None = None,
    on_lost: Callable[[], None] | None = None,
) -> None:
    """Mail the user a security notification (``<template>_subject.txt`` and
    ``_message.txt``), after the current transaction commits, to the user's
    primary address if it is verified: the adapter sends every notice, the
    site's and allauth's, only to a verified address, and logs one it did
    not send at INFO (``notice not sent``, accounts.adapter).

    The action it is about is done by then: a mail that cannot be sent is
    logged (``notice lost``, accounts.adapter) and ``on_lost`` called; any
    other failure of the sending is logged by Django (``robust``). Neither
    reaches the caller."""

    def send() -> None:
        # allauth's adapter reads the request from its context, which is gone
        # when the commit comes after the request (a job, a test).
        with request_context(request):
            adapter = get_adapter()
            # ``user`` is the one mailed, not whoever made the request (staff).
            adapter.send_notification_mail(
                template, user, {**(context or {}), "user": user}
            )
        if adapter.mail_lost and on_lost is not None:
            on_lost()

    transaction.on_commit(send, robust=True)


def session_end_one(*, request: HttpRequest, session: UserSession) -> None:
    """End one session of the user (signed out there); the adapter logs it
    (accounts.usersessions)."""
    get_usersessions_adapter().end_sessions([session])


def sessions_end_others(*, request: HttpRequest, user: AbstractBaseUser) -> None:
    """End every session of the user but the request's own (all of them when
    the request is not signed in as that user); the adapter logs it
    (accounts.usersessions)."""
    sessions = UserSession.objects.filter(user_id=user.pk)
    if request.user.pk == user.pk:
        sessions = sessions.exclude(session_key=request.session.session_key)
    get_usersessions_adapter().end_sessions(list(sessions))


def security_notice(
    *,
    request: HttpRequest | None,
    user: AbstractBaseUser,
    kind: SecurityEvent.Kind,
    template: str,
    context: dict,
    detail: str,
    once: bool = False,
) -> None:
    """Log an event and mail the user about it once the line is committed.

    ``once``: announce each (kind, detail) a single time, so that a request
    repeated with the same idempotency key is not announced twice, even when
    the repeats arrive at once (they take turns on the user's row)."""
    with transaction.atomic():
        if once:
            user_serialize(user_id=user.pk)
            earlier = SecurityEvent.objects.filter(user=user, kind=kind, detail=detail)
            if earlier.exists():
                return
        security_event_record(user=user, kind=kind, request=request, detail=detail)
        account_notify(request=request, user=user, template=template, context=context)
