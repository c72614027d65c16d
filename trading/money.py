"""Exact decimal arithmetic for amounts.

Python's default decimal context keeps 28 digits, fewer than an amount field
holds (36), so a sum could round silently. Money code runs under ``EXACT``:
80 digits (enough for the product of two amounts) and every rounding trapped,
so arithmetic is exact or raises. The places that round on purpose, the fee
and the change in percent, say how.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from decimal import (
    ROUND_CEILING,
    ROUND_HALF_EVEN,
    ROUND_HALF_UP,
    Context,
    Decimal,
    DivisionByZero,
    Inexact,
    InvalidOperation,
    Overflow,
    localcontext,
)
from typing import ParamSpec, TypeVar

from core.numbers import plain  # re-exported: trading code imports it from here
from trading.exceptions import InvalidAmount, PrecisionTooHigh

EXACT = Context(prec=80, traps=[InvalidOperation, DivisionByZero, Overflow, Inexact])
# The same digits, for the places that round on purpose (half even).
ROUNDING = Context(prec=80, traps=[InvalidOperation, DivisionByZero, Overflow])
_PERCENT_STEP = Decimal("0.01")

# Amount fields hold 36 digits, 18 of them decimals: every amount is below this.
AMOUNT_LIMIT = Decimal(10) ** 18
ZERO = Decimal(0)

P = ParamSpec("P")
R = TypeVar("R")


def exact(func: Callable[P, R]) -> Callable[P, R]:
    """Run ``func`` with the exact decimal context."""

    @functools.wraps(func)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        with localcontext(EXACT):
            return func(*args, **kwargs)

    return wrapper


def unit(decimals: int) -> Decimal:
    """The smallest amount of a token with ``decimals`` decimals (1E-8 for 8)."""
    return Decimal(1).scaleb(-decimals)


def fee_for(amount: Decimal, *, rate: Decimal, token_unit: Decimal) -> Decimal:
    """The fee on ``amount`` received, rounded *up* to a whole token unit.

    Rounding the fee up is what rounds the user's credit (amount - fee) down,
    and it means a positive fee smaller than one unit is charged as one unit
    instead of vanishing. A zero rate gives a zero fee. ``amount`` is a whole
    number of units, so the fee never exceeds it.
    """
    raw = ROUNDING.multiply(amount, rate)
    return raw.quantize(token_unit, rounding=ROUND_CEILING, context=ROUNDING)


def change_percent(*, first: Decimal, last: Decimal) -> Decimal:
    """How far ``last`` is from ``first``, in percent of ``first``, with two
    decimals (half even): ``(last - first) / first x 100``.

    Rounded once, from a quotient kept to 80 digits: rounded to fewer first,
    a change just above +0.125 % can land on +0.125 exactly and then round
    to +0.12. A change too small to show is ``0.00``, never ``-0.00``.
    """
    change = ROUNDING.subtract(last, first)
    percent = ROUNDING.divide(ROUNDING.multiply(change, 100), first)
    rounded = percent.quantize(
        _PERCENT_STEP, rounding=ROUND_HALF_EVEN, context=ROUNDING
    )
    return rounded.copy_abs() if rounded.is_zero() else rounded


def spread_percent(*, bid: Decimal, ask: Decimal) -> Decimal:
    """The spread in percent of the ask, ``(ask - bid) / ask x 100``, with
    two decimals rounded once from 80 digits, half up as the market page's
    script rounds it."""
    spread = ROUNDING.subtract(ask, bid)
    percent = ROUNDING.divide(ROUNDING.multiply(spread, 100), ask)
    return percent.quantize(_PERCENT_STEP, rounding=ROUND_HALF_UP, context=ROUNDING)


def grouped(value: Decimal) -> str:
    """A decimal as people read it: ``plain`` with the thousands grouped
    (``1,234,567.5``). For messages and pages; programs get ``plain``."""
    whole, point, fraction = plain(value).partition(".")
    sign = "-" if whole.startswith("-") else ""
    return f"{sign}{int(whole.lstrip('-')):,}{point}{fraction}"


# Amount fields keep 18 decimals (trading.models.AMOUNT).
AMOUNT_DECIMALS = 18


def positive_amount_check(value: object, *, name: str) -> Decimal:
    """``value`` if it is a Decimal an amount field can hold exactly, above 0;
    otherwise ``InvalidAmount`` or ``PrecisionTooHigh`` naming it."""
    if not isinstance(value, Decimal):
        raise InvalidAmount(
            f"The {name} must be a Decimal, not {type(value).__name__}."
        )
    if not value.is_finite() or value <= 0:
        raise InvalidAmount(f"The {name} must be a positive number.")
    if value >= AMOUNT_LIMIT:
        raise InvalidAmount(f"The {name} is too large.")
    if decimal_places(value) > AMOUNT_DECIMALS:
        raise PrecisionTooHigh(f"The {name} has more than {AMOUNT_DECIMALS} decimals.")
    return value


def decimal_places(value: Decimal) -> int:
    """How many decimals ``value`` really has (trailing zeros do not count)."""
    _, digits, exponent = value.as_tuple()
    significant = "".join(map(str, digits)).rstrip("0")
    return max(0, -(exponent + len(digits) - len(significant)))
