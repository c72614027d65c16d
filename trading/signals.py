"""Side concerns of the trading app, connected in ``TradingConfig.ready``."""

from django.contrib import messages
from django.urls import reverse
from django.utils.html import format_html

from trading.models import ApiKey


def on_password_changed_offer_key_revocation(sender, request, user, **kwargs) -> None:
    """A changed password says nothing about API keys: offer to revoke them."""
    count = ApiKey.objects.filter(user=user, revoked_at__isnull=True).count()
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
