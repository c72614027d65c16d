"""Additions to the API's OpenAPI schema: answers that come before any view
runs, the same for every operation (SPECTACULAR_SETTINGS's
POSTPROCESSING_HOOKS)."""

from __future__ import annotations

_METHODS = {"get", "post", "put", "patch", "delete"}
_ERROR = {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}


def transport_errors(result, generator, request, public):
    """Document on every operation what the HTTP server and the request guard
    (core.middleware) refuse before the API reads a request: a request line
    too long (414, the HTTP server's own HTML page, as nginx's), and on those
    taking a body, one too large (413) or not JSON (415)."""
    for operations in result.get("paths", {}).values():
        for method, operation in operations.items():
            if method not in _METHODS:
                continue
            responses = operation.setdefault("responses", {})
            responses.setdefault(
                "414",
                {
                    "description": "The request line (path and query) is longer "
                    "than the HTTP server accepts (4 KB behind gunicorn, 8 KB "
                    "behind nginx): refused before the API reads it, with the "
                    "server's own HTML page.",
                    "content": {"text/html": {"schema": {"type": "string"}}},
                },
            )
            if "requestBody" in operation:
                responses.setdefault(
                    "413",
                    {
                        "description": "`request_too_large`: the body is larger "
                        "than the server accepts; nothing was read or changed.",
                        "content": _ERROR,
                    },
                )
                responses.setdefault(
                    "415",
                    {
                        "description": "`unsupported_media_type`: the body is "
                        "not sent as `application/json`.",
                        "content": _ERROR,
                    },
                )
    return result
