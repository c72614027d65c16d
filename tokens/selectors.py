from django.db.models import Q, QuerySet

from tokens.models import Token


def token_list(*, query: str = "") -> QuerySet[Token]:
    """Active tokens, searched by symbol or name (case-insensitive)."""
    tokens = Token.objects.filter(is_active=True)
    query = query.strip()
    if query:
        tokens = tokens.filter(Q(symbol__icontains=query) | Q(name__icontains=query))
    return tokens.order_by("symbol")
