"""System checks of the accounts app, which sends the site's mail
(``manage.py check --deploy``)."""

from __future__ import annotations

from email.utils import parseaddr

from django.conf import settings
from django.core import checks

# Backends that keep mail on this machine: any sender address does.
_LOCAL_BACKENDS = {
    "django.core.mail.backends.console.EmailBackend",
    "django.core.mail.backends.dummy.EmailBackend",
    "django.core.mail.backends.filebased.EmailBackend",
    "django.core.mail.backends.locmem.EmailBackend",
}


@checks.register(deploy=True)
def sender_address_refused_by_mail_servers(
    app_configs, **kwargs
) -> list[checks.CheckMessage]:
    """Mail servers refuse a sender of a domain that is not a real one (the
    default ``no-reply@localhost``): the SMTP server takes no mail, and every
    confirmation, password reset and withdrawal notice is lost."""
    if settings.EMAIL_BACKEND in _LOCAL_BACKENDS:
        return []
    _, address = parseaddr(settings.DEFAULT_FROM_EMAIL)
    domain = address.rpartition("@")[2].lower()
    if "." in domain and domain != "localhost" and not domain.endswith(".localhost"):
        return []
    return [
        checks.Warning(
            f"DEFAULT_FROM_EMAIL is {settings.DEFAULT_FROM_EMAIL!r}, an address "
            "without a real domain, while mail is sent through a mail server: "
            "mail servers refuse such a sender, and every mail (sign-up "
            "confirmations, password resets, withdrawal notices) is lost.",
            hint=(
                "Set DEFAULT_FROM_EMAIL to an address of a domain the mail "
                "server may send for, e.g. DEFAULT_FROM_EMAIL=Crypto Exchange "
                "<no-reply@exchange.example.com>."
            ),
            id="accounts.W001",
        )
    ]
