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
def address_marked(value: object, spaces_shown: bool = False) -> SafeString:
    """An address for staff to read: each character that is not printable
    ASCII (a space, a line break, a zero-width or text-direction character,
    a look-alike letter of another alphabet) shown as its ``\\u`` escape in a
    highlighted ``<mark>``, so that what is displayed is what is stored.
    Addresses are refused with such characters now; rows saved before may
    still have them. With ``spaces_shown`` a lone space is left as itself (a
    run of them is marked: HTML would show it as one)."""
    text = "" if value is None else str(value)

    def shown(index: int, char: str) -> bool:
        if char != " ":
            return _visible(char)
        return (
            spaces_shown
            and text[index - 1 : index] != " "
            and text[index + 1 : index + 2] != " "
        )

    return format_html_join(
        "",
        "{}",
        (
            (
                char
                if shown(index, char)
                else format_html(
                    '<mark title="Character U+{}, not shown as itself">{}</mark>',
                    f"{ord(char):04X}",
                    _escaped(char),
                ),
            )
            for index, char in enumerate(text)
        ),
    )


@register.filter
def memo_marked(value: object) -> SafeString:
    """A memo for staff to read, marked as ``address_marked`` marks an
    address but for its spaces: a memo may have some, and staff copy it as
    shown."""
    return address_marked(value, spaces_shown=True)
