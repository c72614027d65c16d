from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, render

from tokens.models import Token
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


def token_index(request: HttpRequest) -> HttpResponse:
    query = request.GET.get("q", "")[:50]
    return render(
        request,
        "tokens/token_list.html",
        {"tokens": token_list(query=query), "query": query},
    )


def token_detail(request: HttpRequest, symbol: str) -> HttpResponse:
    token = get_object_or_404(Token, symbol=symbol.upper(), is_active=True)
    return render(request, "tokens/token_detail.html", {"token": token})
