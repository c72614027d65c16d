"""How amounts read on the pages: grouped for people, plain for programs."""

from decimal import Decimal as D

import pytest
from django.template import Context, Template

from trading.templatetags.amounts import amount, amount_plain, percent, rate_percent


@pytest.mark.parametrize(
    ("value", "shown"),
    [
        (D("1234567.5"), "1,234,567.5"),
        (D("1234567.50000000"), "1,234,567.5"),
        (D("1000"), "1,000"),
        (D("999.99"), "999.99"),
        (D("0"), "0"),
        (D("0E-18"), "0"),
        (D("1E+3"), "1,000"),
        (D("0.000000000000000001"), "0.000000000000000001"),
        (
            D("123456789012345678.123456789012345678"),
            "123,456,789,012,345,678.123456789012345678",
        ),
        (D("-1234.5"), "-1,234.5"),
        (12345, "12,345"),
        (None, "—"),
        (D("NaN"), "—"),
        (D("Infinity"), "—"),
        ("1234", "—"),
    ],
)
def test_amounts_group_thousands_without_exponent_or_trailing_zeros(value, shown):
    assert amount(value) == shown


@pytest.mark.parametrize(
    ("value", "plain"),
    [
        (D("1234567.500"), "1234567.5"),
        (D("1E+3"), "1000"),
        (7, "7"),
        (None, ""),
        (D("NaN"), ""),
    ],
)
def test_plain_amounts_for_fields_and_scripts_are_not_grouped(value, plain):
    assert amount_plain(value) == plain


def test_percentages_are_signed_with_two_decimals_and_grouped():
    assert percent(D("1.254")) == "+1.25 %"
    assert percent(D("-12345.6")) == "-12,345.60 %"
    assert percent(None) == "—"


def test_a_percentage_that_rounds_to_zero_has_no_minus_sign():
    assert percent(D("-0.001")) == "+0.00 %"
    assert percent(D("-0.00")) == "+0.00 %"
    assert percent(D("-0.005")) == "+0.00 %"  # half even
    assert percent(D("-0.006")) == "-0.01 %"


@pytest.mark.parametrize(
    ("rate", "shown"),
    [
        (D("0.001"), "0.1 %"),
        (D("0.002000"), "0.2 %"),
        (D("0.000025"), "0.0025 %"),
        (D("0"), "0 %"),
        (D("0.5"), "50 %"),
        (None, "—"),
    ],
)
def test_fee_rates_read_as_exact_percentages(rate, shown):
    assert rate_percent(rate) == shown


def test_the_filters_work_in_templates():
    template = Template(
        '{% load amounts %}{{ value|amount }} <input value="{{ value|amount_plain }}">'
    )

    html = template.render(Context({"value": D("65432.10")}))

    assert html == '65,432.1 <input value="65432.1">'
