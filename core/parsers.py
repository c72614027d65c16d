"""The API's JSON parser (settings.REST_FRAMEWORK["DEFAULT_PARSER_CLASSES"])."""

from __future__ import annotations

from rest_framework import parsers
from rest_framework.exceptions import ParseError

# Far deeper than any request of the API (an order is one flat object), far
# shallower than the interpreter's recursion limit.
MAX_DEPTH = 32
_TOO_DEEP = f"JSON parse error - nested more than {MAX_DEPTH} levels deep."
_NOT_TEXT = (
    "JSON parse error - a string holds an unpaired surrogate escape "
    "(\\ud800 to \\udfff), which is not a character."
)


class JSONParser(parsers.JSONParser):
    """DRF's JSON parser, refusing with a 400 (``parse_error``) what parses
    but no request can mean:

    - deep nesting. Python's json module recurses once per level: a body of
      100,000 ``[`` raised RecursionError, a 500. Shallower bodies that parse
      are measured afterwards, without recursion.
    - strings with an unpaired surrogate (``"\\ud800"``), valid JSON that
      decodes to no text: echoed in an error message ("not a valid choice"),
      it could not be encoded in the answer, a 500.
    """

    def parse(self, stream, media_type=None, parser_context=None):
        try:
            data = super().parse(stream, media_type, parser_context)
        except RecursionError:
            raise ParseError(_TOO_DEEP) from None
        level = [data]
        for _ in range(MAX_DEPTH + 1):
            if any(_not_text(item) for item in level):
                raise ParseError(_NOT_TEXT)
            level = [
                child
                for item in level
                if isinstance(item, dict | list)
                for child in (
                    (*item.keys(), *item.values()) if isinstance(item, dict) else item
                )
            ]
            if not level:
                return data
        raise ParseError(_TOO_DEEP)


def _not_text(item: object) -> bool:
    if not isinstance(item, str):
        return False
    try:
        item.encode()
    except UnicodeEncodeError:
        return True
    return False
