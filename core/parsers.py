"""The API's JSON parser (settings.REST_FRAMEWORK["DEFAULT_PARSER_CLASSES"])."""

from __future__ import annotations

from rest_framework import parsers
from rest_framework.exceptions import ParseError

# Far deeper than any request of the API (an order is one flat object), far
# shallower than the interpreter's recursion limit.
MAX_DEPTH = 32
_TOO_DEEP = f"JSON parse error - nested more than {MAX_DEPTH} levels deep."


class JSONParser(parsers.JSONParser):
    """DRF's JSON parser, refusing deep nesting with a 400 (``parse_error``).

    Python's json module recurses once per level: a body of 100,000 ``[``
    raised RecursionError, a 500. Shallower bodies that parse are measured
    afterwards, without recursion.
    """

    def parse(self, stream, media_type=None, parser_context=None):
        try:
            data = super().parse(stream, media_type, parser_context)
        except RecursionError:
            raise ParseError(_TOO_DEEP) from None
        if _deeper_than(data, MAX_DEPTH):
            raise ParseError(_TOO_DEEP)
        return data


def _deeper_than(data: object, limit: int) -> bool:
    level = [data]
    for _ in range(limit):
        level = [
            child
            for item in level
            if isinstance(item, dict | list)
            for child in (item.values() if isinstance(item, dict) else item)
        ]
        if not level:
            return False
    return any(isinstance(item, dict | list) for item in level)
