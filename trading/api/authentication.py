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

from accounts.adapter import client_address
from trading.api_keys import (
    ApiKeyRefused,
    api_key_authenticate,
    api_key_authenticate_signed,
)
from trading.models import ApiKey

KEYWORD = "Api-Key"
SIGNED_KEYWORD = "Api-Key-HMAC"


class ApiKeyAuthentication(BaseAuthentication):
    """``Authorization: Api-Key <prefix>.<secret>``, or for a key that signs
    its requests ``Authorization: Api-Key-HMAC <prefix>`` with the headers
    ``X-Api-Timestamp`` and ``X-Api-Signature`` (``trading.api_keys``).
    ``request.auth`` is the ``ApiKey``. Requests without either are left to
    the next class."""

    def authenticate(self, request: Request) -> tuple[object, ApiKey] | None:
        words = get_authorization_header(request).split()
        scheme = words[0].lower() if words else b""
        if scheme not in (KEYWORD.lower().encode(), SIGNED_KEYWORD.lower().encode()):
            return None
        if len(words) != 2:
            raise exceptions.AuthenticationFailed(
                f"The header reads: Authorization: {KEYWORD} <prefix>.<secret>, "
                f"or {SIGNED_KEYWORD} <prefix> for a signed request.",
                code="invalid_api_key",
            )
        # A key is printable ASCII: anything else (a NUL, which PostgreSQL
        # refuses in a query) is no key, refused before any lookup.
        if not (words[1].isascii() and words[1].decode().isprintable()):
            raise exceptions.AuthenticationFailed(
                "The API key is not valid.", code="invalid_api_key"
            )
        credential = words[1].decode()
        client_ip = client_address(request)
        try:
            if scheme == KEYWORD.lower().encode():
                api_key = api_key_authenticate(key=credential, client_ip=client_ip)
            else:
                api_key = api_key_authenticate_signed(
                    prefix=credential,
                    timestamp=request.headers.get("X-Api-Timestamp", ""),
                    signature=request.headers.get("X-Api-Signature", ""),
                    method=request.method,
                    path=request.path,
                    query=request.META.get("QUERY_STRING", ""),
                    body=request.body,
                    client_ip=client_ip,
                )
        except ApiKeyRefused as refusal:
            if refusal.status == 403:
                raise exceptions.PermissionDenied(
                    refusal.message, code=refusal.code
                ) from None
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
                "page; or, for a key that signs its requests, "
                f"`{SIGNED_KEYWORD} <prefix>` with `X-Api-Timestamp` and "
                "`X-Api-Signature` (see the description above). Scope `read` "
                "allows GET; `trade` also placing and cancelling orders; "
                "`withdraw` also requesting and cancelling withdrawals."
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
                "The signed-in browser session. Every method but GET, HEAD and "
                "OPTIONS (POST, PATCH, DELETE) also needs the `csrftoken` "
                "cookie's value in the `X-CSRFToken` header."
            ),
        }
