"""Side concerns of the trading app, connected in ``TradingConfig.ready``."""

from allauth.utils import build_absolute_uri
from django.contrib import messages
from django.urls import reverse
from django.utils.html import format_html

from accounts.services import account_notify
from trading.api_keys import api_keys_usable


def on_password_changed_offer_key_revocation(sender, request, user, **kwargs) -> None:
    """A changed or reset password says nothing about API keys: offer to
    revoke them."""
    count = api_keys_usable(user=user).count()
    if count:
        messages.warning(
            request,
            format_html(
                "Your API keys still work with the new password. If one may "
                'have leaked too, <a href="{}">revoke {} key{}</a>.',
                reverse("api:keys_revoke_all"),
                "all " + str(count) if count > 1 else "the",
                "s" if count > 1 else "",
            ),
        )


def on_password_reset_mail_keys(sender, request, user, **kwargs) -> None:
    # Whoever reset the password is not signed in, and may not be the owner
    # (who then must hear of it): the mail lists the keys that still work.
    _keys_still_work_notify(request=request, user=user, change="password_reset")


def on_authenticator_removed_mail_keys(
    sender, request, user, authenticator, **kwargs
) -> None:
    if authenticator.type == authenticator.Type.TOTP:
        _keys_still_work_notify(
            request=request,
            user=user,
            change="mfa_removed",
            # Staff remove one in the admin (accounts.admin): not their
            # address and browser in the user's mail.
            by_staff=request.user.pk != user.pk,
        )


def _keys_still_work_notify(
    *, request, user, change: str, by_staff: bool = False
) -> None:
    api_keys = list(api_keys_usable(user=user).order_by("-created_at", "-pk"))
    if api_keys:
        account_notify(
            request=request,
            user=user,
            template="accounts/email/api_keys_still_work",
            context={
                "change": change,
                "api_keys": api_keys,
                "revoke_url": build_absolute_uri(
                    request, reverse("api:keys_revoke_all")
                ),
                "by_staff": by_staff,
            },
        )
