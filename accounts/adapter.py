"""django-allauth, adapted to the site: its messages, its e-mail look, the
security log."""

from __future__ import annotations

import ipaddress
import logging
import math
import re
import smtplib
import time
from collections.abc import Callable
from datetime import UTC, datetime
from email.utils import make_msgid, parseaddr
from typing import Any

from allauth.account.adapter import DefaultAccountAdapter
from allauth.account.models import EmailAddress
from allauth.core import ratelimit
from allauth.core.internal import ratelimit as allauth_ratelimit
from django.conf import settings
from django.contrib import messages
from django.core.cache import cache
from django.core.exceptions import ImproperlyConfigured, ValidationError
from django.core.mail import EmailMessage, EmailMultiAlternatives
from django.template.loader import render_to_string
from django.utils.html import escape
from django.utils.safestring import mark_safe

from accounts.selectors import email_verified_elsewhere, users_for_login

logger = logging.getLogger(__name__)

# What sending raises when the mail server refuses the mail, cannot be
# reached or does not answer within EMAIL_TIMEOUT.
MAIL_UNAVAILABLE = (smtplib.SMTPException, OSError)
# What the server refuses about one mail; any other failure means the server
# cannot be used now (down, not answering, refusing the log-in).
MAIL_REFUSED = (
    smtplib.SMTPRecipientsRefused,
    smtplib.SMTPSenderRefused,
    smtplib.SMTPDataError,
)


# Once a mail is lost because the server could not be used, every worker and
# instance skips the server for this many seconds (a mark in the shared
# cache), losing its mails at once instead of each request waiting
# EMAIL_TIMEOUT for a server that does not answer. Then the next mail tries
# it again.
MAIL_SERVER_REST_SECONDS = 30
MAIL_SERVER_DOWN_KEY = "accounts:mail-server-down"

CONFIRMATION_LOST_MESSAGE = (
    "The confirmation e-mail to {email} could not be sent right now. Please ask "
    "for the link again in a few minutes (Send the link again, on your profile)."
)


class MailServerGivenUp(OSError):
    """Not tried: the mail server could not be used earlier in this request."""


class MailServerSkipped(MailServerGivenUp):
    """Not tried: the mail server could not be used by some request less than
    ``MAIL_SERVER_REST_SECONDS`` ago."""


def mail_lost_to(request, email: str) -> bool:
    """Whether a mail to ``email`` was lost in this request."""
    return email.lower() in getattr(request, "mails_lost_to", set())


def client_address(request) -> str | None:
    """The client's address as the throttles and API key allow-lists see it:
    behind ``TRUSTED_PROXY_COUNT`` proxies, from X-Forwarded-For."""
    from allauth.account.adapter import get_adapter

    return get_adapter(request).get_client_ip(request)


def _account_key(user) -> str:
    return f"user:{user.pk}"


def _name_key(*, username: str = "", email: str = "", **credentials: Any) -> str:
    """One key for the names that would reach one account: an address in any
    case (allauth looks it up by ``lower()``), a username in any case that
    both ``lower()`` and a case-insensitive match in the database take
    (allauth's lookup needs both: the Kelvin sign is "k" to ``lower()`` only,
    and ``upper()`` keeps it apart as the database does)."""
    if email:
        return f"address:{email.lower()}"
    return f"name:{username.lower()}:{username.upper()}"


def _minutes(count: int) -> str:
    return f"{count} minute" if count == 1 else f"{count} minutes"


class AccountAdapter(DefaultAccountAdapter):
    # Set once a mail sent through this adapter is lost (``send_mail``):
    # get_adapter() makes an adapter per call, so it tells that call's sender.
    mail_lost = False
    _mail_user = None

    error_messages = {
        **DefaultAccountAdapter.error_messages,
        "too_many_login_attempts": (
            "Too many failed log-in attempts for this account or from your "
            "address. Try again in {minutes}."
        ),
    }

    def pre_authenticate(self, request, **credentials: Any) -> None:
        """Refuse the attempt before any password is hashed when the address
        (allauth's ``login_failed`` limit) or an account the name typed is the
        own name or address of (``users_for_login``; ``login_failed_account``,
        ``account_attempt_count``) has failed too often; or, for a name no
        account has, the name (``_name_attempt_count``).

        An account is counted by its row, not by the name typed: allauth
        would count "alice", "ALICE" and alice's e-mail address, or the same
        name under another Host header, separately.
        """
        self._login_accounts = users_for_login(
            username=credentials.get("username"), email=credentials.get("email")
        )
        self._login_attempts = []
        super().pre_authenticate(request, **credentials)
        try:
            for account in self._login_accounts:
                self._login_attempts.append(
                    self.account_attempt_count(request, account)
                )
            self._login_attempts.append(
                self._name_attempt_count(request, **credentials)
            )
        except ValidationError:
            # Refused before any password is checked: nothing was tried.
            for attempt in self._login_attempts:
                attempt.rollback()
            self._login_attempts = []
            raise

    def authenticate(self, request, **credentials: Any):
        user = super().authenticate(request, **credentials)
        if user is not None:
            for attempt in self._login_attempts:
                attempt.rollback()
        return user

    def account_attempt_count(
        self, request, user, *, second_factor: bool = False
    ) -> allauth_ratelimit.RateLimitUsage:
        """Count an attempt to sign in to the account, a password or (with
        ``second_factor``) a second-factor code at log-in or when confirming
        who you are, before it is checked; refused while the account has
        failed too often of late, from any address (``login_failed_account``).

        Codes are counted under a key of their own: a password reset lifts
        the password failures' lock (``accounts.signals.on_password_reset``)
        but not the codes', so holding the mailbox without the phone gives no
        more code guesses.

        Counted first, atomically in the cache every instance shares, so that
        attempts made at once cannot all pass a check that is still open: the
        limit's last place goes to one of them. An attempt that succeeds gives
        its place back (``rollback()``, as allauth does with ``login_failed``),
        so only failures count and signing in often never locks anyone.
        """
        attempt = allauth_ratelimit.consume(
            request,
            app="allauth.account",
            action="login_failed_account",
            key=f"second-factor:{_account_key(user)}"
            if second_factor
            else _account_key(user),
        )
        if not attempt:
            raise self.validation_error("too_many_login_attempts")
        return attempt

    def _name_attempt_count(
        self, request, **credentials: Any
    ) -> allauth_ratelimit.RateLimitUsage:
        """Count the attempt against the name typed as well, under the
        accounts' limit (``login_failed_account``); refused while the name has
        failed too often and no account has it.

        A name no account has is then refused after as many failures as an
        account, so the answers do not tell them apart (allauth's
        ``PREVENT_ENUMERATION``). An account is refused by its own count only:
        failures under its name lock it no more than before. Attempts on an
        account count on the name too: where ``_name_key`` takes together
        names the database keeps apart (letters beyond ASCII in another case,
        to SQLite), the one no account matches is then locked alike whether
        or not the account exists.
        """
        attempt = allauth_ratelimit.consume(
            request,
            app="allauth.account",
            action="login_failed_account",
            key=_name_key(**credentials),
        )
        if attempt:
            return attempt
        if not self._login_accounts:
            raise self.validation_error("too_many_login_attempts")
        return allauth_ratelimit.RateLimitUsage(usage=[])

    def validation_error(self, code: str, *args: Any) -> ValidationError:
        """allauth's, with the wait in the too-many-attempts message (raised
        here, by allauth's password check and by its second-factor step)."""
        if code == "too_many_login_attempts":
            minutes = _minutes(settings.LOGIN_FAILURE_WINDOW_MINUTES)
            return ValidationError(
                self.error_messages[code].format(minutes=minutes), code=code
            )
        return super().validation_error(code, *args)

    def get_reauthentication_methods(self, user) -> list[dict]:
        """With a second factor on, confirming who you are before a sensitive
        action (an API key, a withdrawal, changing e-mail or password) takes
        a code from it, never the password alone."""
        methods = super().get_reauthentication_methods(user)
        second_factor = [m for m in methods if m["id"].startswith("mfa_")]
        return second_factor or methods

    def get_client_ip(self, request) -> str:
        """The client's address, as allauth reads it with TRUSTED_PROXY_COUNT,
        also for a request that came through fewer proxies than that (it
        skipped an outer balancer): every entry it has was then written by one
        of ours, and the first is the client as that proxy saw it. allauth
        would refuse such a request with a server error."""
        try:
            return super().get_client_ip(request)
        except ImproperlyConfigured:
            first = request.headers.get("x-forwarded-for", "").split(",")[0].strip()
            try:
                return str(ipaddress.ip_address(first))
            except ValueError:
                return request.META["REMOTE_ADDR"]

    def authentication_failed(self, request, **credentials: Any) -> None:
        from accounts.models import SecurityEvent
        from accounts.services import security_event_record

        # The attempt is counted already (pre_authenticate).
        for account in getattr(self, "_login_accounts", []):
            security_event_record(
                user=account, kind=SecurityEvent.Kind.SIGN_IN_FAILED, request=request
            )

    def send_notification_mail(
        self,
        template_prefix: str,
        user,
        context: dict[str, Any] | None = None,
        email: str | None = None,
    ) -> None:
        """allauth's, sent only to an address verified for the user: ``email``
        when given (allauth names the old address when it changes), else the
        primary one. The site's own notices come through here too
        (``accounts.services.account_notify``).

        Anyone can sign up with someone else's address (verification is
        optional), or add one, then have notices sent to it as often as they
        like: a notice with no verified address to go to is not sent, which
        is logged at INFO (``notice not sent``). The user is remembered:
        should the mail be lost, the log names the user."""
        address = self._notice_address(user, email)
        if address is None:
            logger.info(
                "notice not sent",
                extra={
                    "user": user.pk,
                    "notice": template_prefix,
                    "reason": "unverified",
                },
            )
            return
        self._mail_user = user
        # allauth passes no user with some notices (a password reset, an
        # address changed by a link opened signed out): the greeting names it.
        context = {"user": user, **(context or {})}
        super().send_notification_mail(template_prefix, user, context, address)

    def _notice_address(self, user, email: str | None) -> str | None:
        """``email``, or without it the primary address, if it is verified for
        the user, or was until this request replaced it (``confirm_email``)."""
        verified = EmailAddress.objects.filter(user_id=user.pk, verified=True)
        if email is None:
            return verified.filter(primary=True).values_list("email", flat=True).first()
        replaced = getattr(self.request, "verified_addresses_replaced", set())
        if (user.pk, email.lower()) in replaced:
            return email
        return email if verified.filter(email__iexact=email).exists() else None

    def confirm_email(self, request, email_address: EmailAddress) -> bool:
        """allauth's. The new address replaces the user's others
        (``ACCOUNT_CHANGE_EMAIL``), and allauth deletes them before it mails
        the old one that the address changed: the request remembers which of
        them were verified, so that the notice still reaches such a one."""
        verified = EmailAddress.objects.filter(
            user_id=email_address.user_id, verified=True
        ).values_list("email", flat=True)
        request.verified_addresses_replaced = {
            (email_address.user_id, email.lower()) for email in verified
        }
        return super().confirm_email(request, email_address)

    def send_mail(self, template_prefix: str, email: str, context: dict) -> None:
        """allauth's, except that a mail the server does not take is dropped.

        Every mail is about something already done (a password changed, an
        account made, a withdrawal requested), which must neither fail nor be
        rolled back for it. The loss is logged at ERROR, ``notice lost``, with
        the user and the template, never the text (a link in it may confirm
        or reset); ``mail_lost`` tells the sender, and the request remembers
        the address (``mail_lost_to``).

        Once a mail is lost because the server could not be used (down, or
        silent for ``EMAIL_TIMEOUT``), the request's other mails are lost at
        once, and so are every request's for ``MAIL_SERVER_REST_SECONDS``
        (``MailServerSkipped``), in every worker: a silent server costs one
        request the wait, not each one that mails (staff deciding many
        withdrawals in one action, anyone asking for a password reset).
        """
        request = self.request
        try:
            if getattr(request, "mail_server_given_up", False):
                raise MailServerGivenUp
            if cache.get(MAIL_SERVER_DOWN_KEY):
                raise MailServerSkipped
            super().send_mail(template_prefix, email, context)
        except MAIL_UNAVAILABLE as error:
            if not isinstance(error, MAIL_REFUSED):
                if request is not None:
                    request.mail_server_given_up = True
                # A skipped mail does not make the rest longer.
                if not isinstance(error, MailServerGivenUp):
                    cache.set(MAIL_SERVER_DOWN_KEY, True, MAIL_SERVER_REST_SECONDS)
            self.mail_lost = True
            if request is not None:
                request.mails_lost_to = getattr(request, "mails_lost_to", set()) | {
                    email.lower()
                }
            user = context.get("user") or self._mail_user
            logger.error(
                "notice lost",
                extra={
                    "user": getattr(user, "pk", None),
                    "notice": template_prefix,
                    "error": type(error).__name__,
                },
            )

    def add_message(
        self,
        request,
        level: int,
        message_template: str | None = None,
        message_context: dict[str, Any] | None = None,
        extra_tags: str = "",
        message: str | None = None,
    ) -> None:
        """allauth's, saying so when the confirmation e-mail it announces was
        lost (``send_mail``) rather than that it was sent."""
        email = (message_context or {}).get("email")
        if (
            message_template == "account/messages/email_confirmation_sent.txt"
            and email
            and mail_lost_to(request, email)
        ):
            level = messages.WARNING
            message = CONFIRMATION_LOST_MESSAGE.format(email=email)
        super().add_message(
            request, level, message_template, message_context, extra_tags, message
        )

    def send_confirmation_mail(self, request, emailconfirmation, signup: bool) -> None:
        """allauth's; a link that was lost does not count against the
        address's limit (``confirm_email``: one every few minutes), so asking
        for it again, the user's way out, sends it at once."""
        super().send_confirmation_mail(request, emailconfirmation, signup)
        if self.mail_lost:
            ratelimit.clear(
                request,
                action="confirm_email",
                key=emailconfirmation.email_address.email.lower(),
            )

    def confirmation_link_refusal(self, request, email: str) -> str | None:
        """Why no confirmation link to ``email`` should be sent to the
        request's user now, and what to do: another account verified the
        address first (allauth would mail its owner a link that says so when
        opened), or the address had its last link within the
        ``confirm_email`` limit (allauth skips such a request without a word,
        which left the user waiting for a mail that never came). None when a
        link would be sent."""
        if email_verified_elsewhere(user=request.user, email=email):
            return (
                f"No link was sent: {email} now belongs to another account, "
                "which confirmed it first, so it can no longer be confirmed for "
                "yours. Change your e-mail address to one of your own below."
            )
        now = time.time()
        retry_at = None
        for rate in allauth_ratelimit.get_rates(
            app="allauth.account", action="confirm_email"
        ):
            cache_key = allauth_ratelimit.get_cache_key(
                request,
                app="allauth.account",
                action="confirm_email",
                rate=rate,
                key=email.lower(),
            )
            history = cache.get(cache_key, [])
            sent = [stamp for stamp in history if stamp > now - rate.duration]
            if len(sent) >= rate.amount:
                # A place is freed first by the amount-th newest link.
                newest_first = sorted(sent, reverse=True)
                freed_at = newest_first[rate.amount - 1] + rate.duration
                if retry_at is None or freed_at > retry_at[0]:
                    retry_at = (freed_at, rate.duration)
        if retry_at is None:
            return None
        freed_at, window = retry_at
        # Rounded up: "after 14:06" must not come before the place is free.
        after = datetime.fromtimestamp(math.ceil(freed_at / 60) * 60, tz=UTC)
        return (
            f"A confirmation link was sent to {email} less than "
            f"{_minutes(math.ceil(window / 60))} ago; check your inbox (and spam), "
            f"or ask again after {after:%H:%M} UTC."
        )

    def render_mail(
        self,
        template_prefix: str,
        email: str | list[str],
        context: dict[str, Any],
        headers: dict[str, str] | None = None,
    ) -> EmailMessage:
        """Every mail in plain text and, in the site's look, in HTML, with a
        Message-ID in the sender's domain.

        A mail with a template of its own in HTML keeps it; the others get
        their text set in one layout (``templates/email/layout.html``).
        """
        message = super().render_mail(template_prefix, email, context, headers)
        message.extra_headers.setdefault("Message-ID", _message_id(message.from_email))
        if isinstance(message, EmailMultiAlternatives) and not message.alternatives:
            linked = _links_in(context)
            html = render_to_string(
                "email/layout.html",
                {
                    "subject": message.subject,
                    "paragraphs": [
                        linked(paragraph)
                        for paragraph in message.body.split("\n\n")
                        if paragraph.strip()
                    ],
                },
            )
            message.attach_alternative(html, "text/html")
        return message


def _message_id(from_email: str) -> str:
    """A new Message-ID in the domain of the address mails come from.

    Django would make it with the machine's name (``DNS_NAME``), in a
    container a random one such as ``3f2a9c1d7e4b``, which spam filters hold
    against a mail."""
    domain = parseaddr(from_email)[1].rpartition("@")[2]
    return make_msgid(domain=domain or None)


def _links_in(context: dict[str, Any]) -> Callable[[str], str]:
    """A paragraph of a mail's text as HTML, escaped, in which only the links
    the app put in the mail's context (a confirmation or reset link) are
    links: text from anyone else (a browser's name, an API key's) stays text,
    whatever it looks like."""
    urls = sorted(
        {
            value
            for value in context.values()
            if isinstance(value, str) and value.startswith(("https://", "http://"))
        },
        key=len,
        reverse=True,
    )
    pattern = re.compile("|".join(re.escape(str(escape(url))) for url in urls))

    def linked(paragraph: str) -> str:
        text = str(escape(paragraph))
        if urls:
            text = pattern.sub(
                lambda found: f'<a href="{found[0]}">{found[0]}</a>', text
            )
        return mark_safe(text)  # noqa: S308 (escaped above)

    return linked
