from __future__ import annotations

from rest_framework import exceptions, serializers
from rest_framework.pagination import CursorPagination


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
            return super().decode_cursor(request)
        except exceptions.NotFound:
            raise exceptions.ValidationError(
                {self.cursor_query_param: ["This cursor is not valid."]}
            ) from None

    def get_schema_operation_parameters(self, view):
        parameters = super().get_schema_operation_parameters(view)
        for parameter in parameters:
            if parameter["name"] == self.page_size_query_param:
                parameter["schema"].update(
                    minimum=1, maximum=self.max_page_size, default=self.page_size
                )
        return parameters
