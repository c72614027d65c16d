from django.http import HttpRequest, HttpResponse
from django.shortcuts import render

from tokens.selectors import token_list
from trading.selectors import market_summaries

HOME_TOKENS = 12


def home(request: HttpRequest) -> HttpResponse:
    tokens = list(token_list()[: HOME_TOKENS + 1])
    return render(
        request,
        "home.html",
        {
            "tokens": tokens[:HOME_TOKENS],
            "more_tokens": len(tokens) > HOME_TOKENS,
            "summaries": market_summaries(),
        },
    )
