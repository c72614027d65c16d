"""The app's own log lines (settings.LOGGING) keep what a user sent on their
line: control characters are written as escapes. (Under gunicorn, with the
access log: test_server.py.)"""

from __future__ import annotations

import pytest

LOG_HOSTILE_TEXT = r"""
import django, logging
django.setup()
text = "a\rb\x00c\x1b[2J\x85d\u2028e"
logging.getLogger("x").warning("user wrote %s", text, extra={"login": text})
"""


@pytest.mark.reliability("log-injection")
def test_control_characters_in_a_message_and_its_fields_stay_on_the_line(
    run_python,
):
    result = run_python(
        ["-c", LOG_HOSTILE_TEXT],
        env={"DJANGO_SETTINGS_MODULE": "crypto_exchange.settings"},
    )

    [line] = result.stderr.splitlines()  # also splits at \x85 and \u2028
    escaped = r"a\\rb\\x00c\\x1b[2J\\x85d\\u2028e"
    assert f'event="user wrote {escaped}"' in line
    assert r"login=a\rb\x00c\x1b[2J\x85d\u2028e" in line
    assert line.isprintable()


@pytest.mark.reliability("log-injection")
def test_a_traceback_keeps_its_newlines_as_escapes(run_python):
    result = run_python(
        [
            "-c",
            "import django, logging; django.setup()\n"
            "try:\n    1 / 0\nexcept ZeroDivisionError:\n"
            "    logging.getLogger('x').exception('boom')",
        ],
        env={"DJANGO_SETTINGS_MODULE": "crypto_exchange.settings"},
    )

    [line] = result.stderr.splitlines()
    assert r"\n  File \"<string>\", line 3" in line
