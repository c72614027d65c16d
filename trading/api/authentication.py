"""Who is calling: an API key in the ``Authorization`` header, or the browser
session (with DRF's CSRF check on unsafe methods)."""

from __future__ import annotations

from django.conf import settings
from drf_spectacular.extensions import OpenApiAuthenticationExtension
from rest_framework import exceptions
from rest_framework.authentication import (
    BaseAuthentication,
    SessionAuthentication,
    get_authorization_header,
)
from rest_framework.request import Request

from trading.api_keys import ApiKeyRefused, api_key_authenticate
from trading.models import ApiKey

KEYWORD = "Api-Key"


class ApiKeyAuthentication(BaseAuthentication):
    """``Authorization: Api-Key <prefix>.<secret>``; ``request.auth`` is the
    ``ApiKey``. Requests without that header are left to the next class."""

    def authenticate(self, request: Request) -> tuple[object, ApiKey] | None:
        words = get_authorization_header(request).split()
        if not words or words[0].lower() != KEYWORD.lower().encode():
            return None
        if len(words) != 2:
            raise exceptions.AuthenticationFailed(
                f"The header reads: Authorization: {KEYWORD} <prefix>.<secret>",
                code="invalid_api_key",
            )
        try:
            key = words[1].decode("ascii")
        except UnicodeDecodeError:
            raise exceptions.AuthenticationFailed(
                "The API key is not valid.", code="invalid_api_key"
            ) from None
        try:
            api_key = api_key_authenticate(key=key)
        except ApiKeyRefused as refusal:
            raise exceptions.AuthenticationFailed(
                refusal.message, code=refusal.code
            ) from None
        return api_key.user, api_key

    def authenticate_header(self, request: Request) -> str:
        # Makes unauthenticated requests 401 (with this challenge), not 403.
        return KEYWORD


class CsrfSessionAuthentication(SessionAuthentication):
    """DRF's session authentication, its CSRF refusal given a stable code."""

    def enforce_csrf(self, request: Request) -> None:
        try:
            super().enforce_csrf(request)
        except exceptions.PermissionDenied as refusal:
            raise exceptions.PermissionDenied(
                f"{refusal.detail} Signed-in browsers send the csrftoken "
                "cookie's value in the X-CSRFToken header.",
                code="csrf_failed",
            ) from None


class ApiKeyScheme(OpenApiAuthenticationExtension):
    target_class = ApiKeyAuthentication
    name = "apiKeyAuth"

    def get_security_definition(self, auto_schema):
        return {
            "type": "apiKey",
            "in": "header",
            "name": "Authorization",
            "description": (
                f"`{KEYWORD} <prefix>.<secret>`, a key created on the profile "
                "page. Scope `read` allows GET; `trade` also allows placing "
                "and cancelling orders and requesting withdrawals."
            ),
        }


class CsrfSessionScheme(OpenApiAuthenticationExtension):
    target_class = CsrfSessionAuthentication
    name = "cookieAuth"

    def get_security_definition(self, auto_schema):
        return {
            "type": "apiKey",
            "in": "cookie",
            "name": settings.SESSION_COOKIE_NAME,
            "description": (
                "The signed-in browser session. POST and DELETE also need the "
                "`csrftoken` cookie's value in the `X-CSRFToken` header."
            ),
        }
