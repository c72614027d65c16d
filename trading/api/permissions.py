from __future__ import annotations

from rest_framework.permissions import SAFE_METHODS, BasePermission
from rest_framework.request import Request

from trading.models import ApiKey


class ScopeAllows(BasePermission):
    """A signed-in user may do everything; an API key what its scopes allow:
    ``read`` the safe methods, ``trade`` also the others."""

    message = "This API key has only the read scope; trading needs the trade scope."
    code = "insufficient_scope"

    def has_permission(self, request: Request, view: object) -> bool:
        if not (request.user and request.user.is_authenticated):
            return False
        if isinstance(request.auth, ApiKey) and request.method not in SAFE_METHODS:
            return request.auth.can_trade
        return True
