"""django-allauth, adapted to the site: its messages, its e-mail look, the
security log."""

from __future__ import annotations

import ipaddress
from typing import Any

from allauth.account.adapter import DefaultAccountAdapter
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured, ValidationError
from django.core.mail import EmailMessage, EmailMultiAlternatives
from django.template.loader import render_to_string
from django.utils.html import urlize


class AccountAdapter(DefaultAccountAdapter):
    error_messages = {
        **DefaultAccountAdapter.error_messages,
        "too_many_login_attempts": (
            "Too many failed log-in attempts for this account or from your "
            "address. Try again in {minutes} minutes."
        ),
    }

    def pre_authenticate(self, request, **credentials: Any) -> None:
        try:
            super().pre_authenticate(request, **credentials)
        except ValidationError as error:
            if error.code != "too_many_login_attempts":
                raise
            raise ValidationError(
                self.error_messages["too_many_login_attempts"].format(
                    minutes=settings.LOGIN_FAILURE_WINDOW_MINUTES
                ),
                code="too_many_login_attempts",
            ) from None

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
        from accounts.services import security_event_sign_in_failed

        security_event_sign_in_failed(
            request=request,
            login=credentials.get("email") or credentials.get("username") or "",
        )

    def render_mail(
        self,
        template_prefix: str,
        email: str | list[str],
        context: dict[str, Any],
        headers: dict[str, str] | None = None,
    ) -> EmailMessage:
        """Every mail in plain text and, in the site's look, in HTML.

        A mail with a template of its own in HTML keeps it; the others get
        their text set in one layout (``templates/email/layout.html``).
        """
        message = super().render_mail(template_prefix, email, context, headers)
        if isinstance(message, EmailMultiAlternatives) and not message.alternatives:
            html = render_to_string(
                "email/layout.html",
                {
                    "subject": message.subject,
                    "paragraphs": [
                        urlize(paragraph, autoescape=True)
                        for paragraph in message.body.split("\n\n")
                        if paragraph.strip()
                    ],
                },
            )
            message.attach_alternative(html, "text/html")
        return message
