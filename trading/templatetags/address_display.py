from django import template
from django.utils.html import format_html, format_html_join
from django.utils.safestring import SafeString

register = template.Library()


def _visible(char: str) -> bool:
    return "!" <= char <= "~"  # printable ASCII, the space excepted


def _escaped(char: str) -> str:
    """As Python writes it in a string: ``\\u202e``, ``\\n``, ``\\x20``."""
    if char == " ":
        return "\\x20"
    return char.encode("unicode_escape").decode("ascii")


@register.filter
def address_marked(value: object) -> SafeString:
    """An address for staff to read: each character that is not printable
    ASCII (a space, a line break, a zero-width or text-direction character,
    a look-alike letter of another alphabet) shown as its ``\\u`` escape in a
    highlighted ``<mark>``, so that what is displayed is what is stored.
    Addresses are refused with such characters now; rows saved before may
    still have them."""
    text = "" if value is None else str(value)
    return format_html_join(
        "",
        "{}",
        (
            (
                char
                if _visible(char)
                else format_html(
                    '<mark title="Character U+{}, not shown as itself">{}</mark>',
                    f"{ord(char):04X}",
                    _escaped(char),
                ),
            )
            for char in text
        ),
    )
