from decimal import Decimal

from django import template

from trading.money import plain

register = template.Library()


@register.filter
def amount(value: Decimal | int | None) -> str:
    """An amount as people write it: no exponent, no trailing zeros."""
    if isinstance(value, int):
        value = Decimal(value)
    if not isinstance(value, Decimal):
        return "—"
    return plain(value)


@register.filter
def percent(value: Decimal | None) -> str:
    """A signed percentage with two decimals (+1.25 %)."""
    if value is None:
        return "—"
    return f"{value:+.2f} %"
