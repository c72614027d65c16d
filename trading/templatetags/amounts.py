from decimal import Decimal

from django import template

from trading.money import grouped, plain

register = template.Library()


def _decimal(value: object) -> Decimal | None:
    if isinstance(value, int) and not isinstance(value, bool):
        value = Decimal(value)
    if not isinstance(value, Decimal) or not value.is_finite():
        return None
    return value


@register.filter
def amount(value: Decimal | int | None) -> str:
    """An amount as people read it: thousands grouped, no exponent, no
    trailing zeros (``1,234,567.5``). For display only: a form field or a
    value a script reads takes ``amount_plain``."""
    number = _decimal(value)
    if number is None:
        return "—"
    return grouped(number)


@register.filter
def amount_plain(value: Decimal | int | None) -> str:
    """An amount as programs and form fields read it: no grouping, no
    exponent, no trailing zeros (``1234567.5``); empty when there is none."""
    number = _decimal(value)
    return "" if number is None else plain(number)


@register.filter
def percent(value: Decimal | None) -> str:
    """A signed percentage with two decimals, thousands grouped (+1.25 %)."""
    if value is None:
        return "—"
    text = f"{value:+,.2f}"
    # A fall too small to show is no change, not "-0.00 %".
    if text == "-0.00":
        text = "+0.00"
    return f"{text} %"


@register.filter
def rate_percent(value: Decimal | None) -> str:
    """A rate (a fee of 0.001) as a percentage, exactly, as the order form's
    estimate shows it (``0.1 %``)."""
    number = _decimal(value)
    if number is None:
        return "—"
    return f"{plain(number.scaleb(2))} %"
