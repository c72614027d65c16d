from __future__ import annotations

from rest_framework import exceptions, serializers
from rest_framework.pagination import Cursor, CursorPagination
from rest_framework.utils.urls import remove_query_param

# Rows are paged by id, a bigint: a position is one written in decimal.
_POSITION_MAX_DIGITS = len(str(2**63 - 1))
_FIRST_PAGE = Cursor(offset=0, reverse=False, position=None)


class NewestFirstPagination(CursorPagination):
    """Pages of up to 100, newest first; ``next`` holds the following page's
    URL. A cursor stays valid while new rows arrive. A ``limit`` or a
    ``cursor`` the server cannot use is refused (400), never ignored."""

    ordering = "-id"
    page_size = 100
    page_size_query_param = "limit"
    max_page_size = 100
    cursor_query_description = (
        "The cursor of a `next` or `previous` link, as the server sent it."
    )
    page_size_query_description = f"Results per page, at most {max_page_size}."

    def get_page_size(self, request):
        # DRF's falls back to the default page size for a limit it cannot
        # read; a client asking for 0, 500 or "ten" is told instead.
        field = serializers.IntegerField(min_value=1, max_value=self.max_page_size)
        raw = request.query_params.get(self.page_size_query_param)
        if raw is None:
            return self.page_size
        try:
            return field.run_validation(raw)
        except exceptions.ValidationError as error:
            raise exceptions.ValidationError(
                {self.page_size_query_param: error.detail}
            ) from None

    def decode_cursor(self, request):
        try:
            cursor = super().decode_cursor(request)
        except exceptions.NotFound:
            raise self._invalid_cursor() from None
        # DRF takes an empty cursor (or one of characters base64 skips) for
        # the first page, which no link names, and hands the position to the
        # id filter unchecked, where "abc" is a 500.
        if cursor == _FIRST_PAGE or (cursor and not _position_valid(cursor.position)):
            raise self._invalid_cursor()
        return cursor

    def encode_cursor(self, cursor):
        # A link back to the first page has no cursor, not the empty one
        # decode_cursor refuses.
        if cursor == _FIRST_PAGE:
            return remove_query_param(self.base_url, self.cursor_query_param)
        return super().encode_cursor(cursor)

    def _invalid_cursor(self) -> exceptions.ValidationError:
        return exceptions.ValidationError(
            {self.cursor_query_param: ["This cursor is not valid."]}
        )

    def get_schema_operation_parameters(self, view):
        parameters = super().get_schema_operation_parameters(view)
        for parameter in parameters:
            if parameter["name"] == self.page_size_query_param:
                parameter["schema"].update(
                    minimum=1, maximum=self.max_page_size, default=self.page_size
                )
        return parameters


def _position_valid(position: str | None) -> bool:
    """No position yet, or an id as the server writes it."""
    return position is None or (
        position.isascii()
        and position.isdigit()
        and len(position) <= _POSITION_MAX_DIGITS
    )
