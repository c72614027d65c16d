"""System checks of the accounts app, which sends the site's mail and counts
failed log-ins (``manage.py check --deploy``)."""

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


# The cache each process keeps in its own memory: Django's default, the
# settings' choice without REDIS_URL.
_PER_PROCESS_CACHE = "django.core.cache.backends.locmem.LocMemCache"


@checks.register(deploy=True)
def log_in_limits_counted_per_process(
    app_configs, **kwargs
) -> list[checks.CheckMessage]:
    """The log-in limits, the mark of a used authenticator code and the
    throttles live in the cache: kept in each process's memory, every
    gunicorn worker counts on its own, so three workers let three times the
    wrong codes through and take a used code once more."""
    if settings.DEBUG or settings.CACHES["default"]["BACKEND"] != _PER_PROCESS_CACHE:
        return []
    return [
        checks.Warning(
            "The cache is each process's own memory (REDIS_URL is not set): "
            "the log-in limits (failed passwords and two-factor codes per "
            "account), the protection against using an authenticator code "
            "twice and the throttles then apply per worker process, so with "
            "several workers or instances each one allows the limit again.",
            hint="Set REDIS_URL, e.g. REDIS_URL=redis://127.0.0.1:6379/0.",
            id="accounts.W002",
        )
    ]
