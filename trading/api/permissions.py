from __future__ import annotations

from rest_framework.permissions import SAFE_METHODS, BasePermission
from rest_framework.request import Request

from trading.models import ApiKey


class ScopeAllows(BasePermission):
    """A signed-in user may do everything; an API key what its scopes allow:
    ``read`` the safe methods; the others the scope the view names in
    ``write_scope`` (``trade`` unless it says ``withdraw``)."""

    code = "insufficient_scope"

    def has_permission(self, request: Request, view: object) -> bool:
        if not (request.user and request.user.is_authenticated):
            return False
        if isinstance(request.auth, ApiKey) and request.method not in SAFE_METHODS:
            needed = getattr(view, "write_scope", ApiKey.Scope.TRADE)
            self.message = f"This API key does not have the {needed} scope needed here."
            return needed in request.auth.scope_list
        return True
