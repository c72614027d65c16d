"""Sections of the trading app shown on other apps' pages, so that those apps
need not import trading (which imports them): a token's markets on its page,
the API keys on the profile."""

from django import template

from trading.api.forms import ApiKeyCreateForm
from trading.api_keys import api_keys_for_user
from trading.selectors import market_summaries

register = template.Library()


@register.inclusion_tag("trading/partials/token_markets.html")
def token_markets(token) -> dict:
    return {"token": token, "summaries": market_summaries(token_id=token.pk)}


@register.inclusion_tag("trading/partials/api_keys.html", takes_context=True)
def api_keys_section(context: template.Context) -> dict:
    request = context["request"]
    return {
        "request": request,
        "csrf_token": context.get("csrf_token"),
        "api_keys": api_keys_for_user(user=request.user),
        # The form as it was sent, when trading.api.key_views refused it.
        "api_key_form": context.get("api_key_form") or ApiKeyCreateForm(),
    }
