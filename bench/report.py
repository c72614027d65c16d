"""What the benchmarks share: the machine they ran on, and docs/PERFORMANCE.md.

The report is one file with one ``## `` section per benchmark, under a summary
written by hand. Each benchmark rewrites only its own section
(``section_write``), so they can run in any order and the summary stays.
"""

from __future__ import annotations

import importlib.metadata
import math
import os
import platform
import time
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from pathlib import Path

REPORT_PATH = Path(__file__).resolve().parent.parent / "docs" / "PERFORMANCE.md"
TICKS = os.sysconf("SC_CLK_TCK")


def django_setup() -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "crypto_exchange.settings")
    import django

    django.setup()


def cores() -> int:
    return len(os.sched_getaffinity(0))


def process_stat(pid: int | str) -> list[str]:
    """The fields of ``/proc/<pid>/stat`` after the command's name."""
    text = Path(f"/proc/{pid}/stat").read_text()
    return text[text.rindex(")") + 2 :].split()


def process_cpu(pid: int | str, *, children: bool = False) -> float:
    """User + system CPU seconds of a process; with ``children``, also of its
    children that have ended."""
    fields = process_stat(pid)
    return sum(int(value) for value in fields[11 : 15 if children else 13]) / TICKS


def machine_cpu() -> tuple[float, float]:
    """(busy, total) CPU seconds of all cores since boot (``/proc/stat``)."""
    values = [int(x) for x in Path("/proc/stat").read_text().split()[1:9]]
    return (sum(values) - values[3] - values[4]) / TICKS, sum(values) / TICKS


def machine(packages: Iterable[str] = (), software: Iterable[str] = ()) -> str:
    """CPU, cores, memory, OS, Python, then the packages' versions."""
    info = {}
    for name in ("cpuinfo", "meminfo"):
        for line in Path(f"/proc/{name}").read_text().splitlines():
            key, _, value = line.partition(":")
            info.setdefault(key.strip(), value.strip())
    memory = int(info["MemTotal"].split()[0]) / 2**20
    versions = [f"{name} {importlib.metadata.version(name)}" for name in packages]
    system = f"{platform.platform()}, Python {platform.python_version()}"
    cpu = f"{info.get('model name', 'unknown CPU')}, {cores()} cores"
    return ", ".join([cpu, f"{memory:.1f} GiB", system, *versions, *software])


def percentile(values: Sequence[float], share: float) -> float:
    """Nearest rank; NaN for no values."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[max(1, math.ceil(len(ordered) * share)) - 1]


def ms(seconds: float) -> str:
    return f"{seconds * 1e3:,.1f} ms"


def table(rows: Sequence[dict[str, object]], *, left: int = 1) -> list[str]:
    """A Markdown table of rows {column: cell}; the first ``left`` columns
    aligned to the left, the others to the right."""
    return [
        "| " + " | ".join(rows[0]) + " |",
        "|" + "---|" * left + "--:|" * (len(rows[0]) - left),
        *("| " + " | ".join(str(cell) for cell in row.values()) + " |" for row in rows),
    ]


def targets(rows: Iterable[tuple[str, str, bool]]) -> list[str]:
    """(target, measured, met) as a table."""
    return [
        "| Target | Measured | Result |",
        "|---|---|---|",
        *(f"| {t} | {m} | {'**PASS**' if ok else '**FAIL**'} |" for t, m, ok in rows),
    ]


def section_write(text: str, *, heading: str, path: Path = REPORT_PATH) -> None:
    """Replace the section under ``heading`` with ``text``, or append it."""
    old = path.read_text(encoding="utf-8") if path.exists() else "# Performance\n"
    lines = old.splitlines(keepends=True)
    start = next((i for i, line in enumerate(lines) if line.rstrip() == heading), None)
    if start is None:
        new = f"{old.rstrip()}\n\n{text}"
    else:
        end = next(
            (i for i in range(start + 1, len(lines)) if lines[i].startswith("## ")),
            len(lines),
        )
        after = "".join(lines[end:])
        new = "".join(lines[:start]) + text + ("\n" + after if after else "")
    path.write_text(new, encoding="utf-8")


class Run:
    """One benchmark's run: its progress on stdout, then its section."""

    def __init__(self, module: str, heading: str) -> None:
        self.module, self.heading = module, heading
        self.started, self.clock = datetime.now(UTC), time.monotonic()
        self.load = os.getloadavg()[0]

    def log(self, message: str) -> None:
        print(f"[{time.monotonic() - self.clock:6.1f}s] {message}", flush=True)

    def write(self, lines: list[str], packages=(), software=()) -> None:
        """The section: what ran where, then ``lines``; ``packages`` and
        ``software`` name what the machine summary lists besides Python."""
        header = (
            f"`python -m {self.module}` on {self.started:%Y-%m-%d %H:%M} UTC, "
            f"{time.monotonic() - self.clock:.0f} s, load average (1 min) "
            f"{self.load:.2f} at the start and {os.getloadavg()[0]:.2f} at the end; "
            f"method in the module's docstring. {machine(packages, software)}."
        )
        text = "\n".join([self.heading, "", header, "", *lines]) + "\n"
        section_write(text, heading=self.heading)
        print(text)
        self.log(f"wrote {self.heading!r} in {REPORT_PATH}")
