"""docs/RELIABILITY.md is what the suite's reliability markers give."""

from __future__ import annotations


def test_the_reliability_report_is_the_one_the_suite_gives(run_python):
    result = run_python(["-m", "core.tests.reliability", "--check"], timeout=300)

    assert result.returncode == 0, (
        "docs/RELIABILITY.md differs from what the suite's "
        "@pytest.mark.reliability markers give; regenerate it with "
        f"`make reliability` (python -m core.tests.reliability):\n{result.stderr}"
    )
