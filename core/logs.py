"""Log lines that user input cannot forge.

Paths, query strings and headers reach two logs: gunicorn's access log
(gunicorn.conf.py) and the app's own key=value lines (settings.LOGGING). A
newline, carriage return, NUL or other control character in them would start
a line of the attacker's making, or rewrite what a terminal shows; an
unescaped double quote would end a quoted value early. Both logs write such
characters as escapes instead (``\\n``, ``\\r``, ``\\x00``, ``\\"``), so one
request is one line and every value stays in its field.
"""

from __future__ import annotations

import contextlib
from collections.abc import MutableMapping
from typing import Any

_ESCAPES = {"\n": "\\n", "\r": "\\r", "\t": "\\t", "\\": "\\\\"}


def _escaped(character: str) -> str:
    if character in _ESCAPES:
        return _ESCAPES[character]
    code = ord(character)
    if 0xDC80 <= code <= 0xDCFF:  # a byte that was not UTF-8 (surrogateescape)
        return f"\\x{code - 0xDC00:02x}"
    if code <= 0xFF:
        return f"\\x{code:02x}"
    return f"\\u{code:04x}" if code <= 0xFFFF else f"\\U{code:08x}"


def access_log_value(value: str) -> str:
    """A value for gunicorn's access log: controls and backslashes escaped.
    Gunicorn escapes the double quotes itself (glogging.SafeAtoms).

    Gunicorn hands over what came from the wire as Latin-1 text (PATH_INFO
    percent-decoded, headers as sent); UTF-8 is shown as the characters it
    encodes, any other byte as ``\\xNN``.
    """
    with contextlib.suppress(UnicodeEncodeError):  # else not from the wire
        value = value.encode("latin-1").decode("utf-8", "surrogateescape")
    if value.isprintable() and "\\" not in value:
        return value
    return "".join(c if c.isprintable() and c != "\\" else _escaped(c) for c in value)


def escape_control_characters(
    logger: object, method_name: str, event_dict: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    """structlog processor, before the LogfmtRenderer: every value's control
    characters as escapes. Newlines, double quotes and backslashes are left
    to the renderer, which escapes them itself (a traceback keeps its ``\\n``).
    """
    for key, value in event_dict.items():
        if value is None or isinstance(value, bool | int | float):
            continue
        text = str(value)
        if not text.isprintable():
            event_dict[key] = "".join(
                c if c == "\n" or c.isprintable() else _escaped(c) for c in text
            )
    return event_dict
