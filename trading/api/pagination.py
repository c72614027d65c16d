from __future__ import annotations

from rest_framework import exceptions
from rest_framework.pagination import CursorPagination


class NewestFirstPagination(CursorPagination):
    """Pages of up to 100, newest first; ``next`` holds the following page's
    URL. A cursor stays valid while new rows arrive."""

    ordering = "-id"
    page_size = 100
    page_size_query_param = "limit"
    max_page_size = 100

    def decode_cursor(self, request):
        try:
            return super().decode_cursor(request)
        except exceptions.NotFound:
            raise exceptions.ValidationError(
                {self.cursor_query_param: ["This cursor is not valid."]}
            ) from None
