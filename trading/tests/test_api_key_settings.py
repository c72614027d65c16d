"""The API's settings: a bad value stops start-up naming the variable."""

from __future__ import annotations

import json

import pytest

SETTINGS_ENV = {"DJANGO_SETTINGS_MODULE": "crypto_exchange.settings"}


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("API_SIGNATURE_WINDOW_SECONDS", "0"),
        ("API_SIGNATURE_WINDOW_SECONDS", "-5"),
        ("API_SIGNATURE_WINDOW_SECONDS", "3601"),
        ("API_SIGNATURE_WINDOW_SECONDS", "999999999999"),
        ("API_THROTTLE_USER", "1200"),
        ("API_THROTTLE_USER", "0/minute"),
        ("API_THROTTLE_ANON", "120/fortnight"),
        ("API_THROTTLE_ANON", ""),
    ],
)
def test_a_bad_api_setting_stops_start_up_naming_the_variable(
    run_python, variable, value
):
    result = run_python(["manage.py", "check"], {**SETTINGS_ENV, variable: value})

    assert result.returncode != 0
    error = result.stderr.strip().splitlines()[-1]
    assert error.startswith(f"django.core.exceptions.ImproperlyConfigured: {variable} ")


def test_the_api_settings_take_values_in_their_range(run_python):
    env = {
        **SETTINGS_ENV,
        "API_SIGNATURE_WINDOW_SECONDS": "3600",
        "API_THROTTLE_USER": "50/second",
        "API_THROTTLE_ANON": "1000/day",
    }
    printed = (
        "import django, json; django.setup(); from django.conf import settings; "
        "print(json.dumps([settings.API_SIGNATURE_WINDOW_SECONDS, "
        "settings.REST_FRAMEWORK['DEFAULT_THROTTLE_RATES']]))"
    )

    result = run_python(["-c", printed], env)

    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == [
        3600,
        {"user": "50/second", "anon": "1000/day"},
    ]
