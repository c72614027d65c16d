"""docs/PERFORMANCE.md: one file, one ``## `` section per benchmark.

``bench.run`` writes the file from scratch and carries the other benchmarks'
sections over (``section_keep``); each of the others rewrites only its own
section (``section_write``), so the benchmarks can run in any order.
"""

from __future__ import annotations

from pathlib import Path

REPORT_PATH = Path(__file__).resolve().parent.parent / "docs" / "PERFORMANCE.md"


def _section_bounds(lines: list[str], heading: str) -> tuple[int, int] | None:
    for start, line in enumerate(lines):
        if line.rstrip() == heading:
            end = next(
                (i for i in range(start + 1, len(lines)) if lines[i].startswith("## ")),
                len(lines),
            )
            return start, end
    return None


def section_replace(text: str, new_section: str, *, heading: str) -> str:
    """``text`` with the section under ``heading`` replaced, or appended."""
    lines = text.splitlines(keepends=True)
    bounds = _section_bounds(lines, heading)
    if bounds is None:
        return f"{text.rstrip()}\n\n{new_section}" if text.strip() else new_section
    start, end = bounds
    following = "".join(lines[end:])
    return (
        "".join(lines[:start]) + new_section + ("\n" + following if following else "")
    )


def section_keep(text: str, *, heading: str, path: Path = REPORT_PATH) -> str:
    """``text`` with the section under ``heading`` carried over from ``path``."""
    if not path.exists():
        return text
    lines = path.read_text(encoding="utf-8").splitlines(keepends=True)
    bounds = _section_bounds(lines, heading)
    if bounds is None:
        return text
    kept = "".join(lines[bounds[0] : bounds[1]]).rstrip("\n") + "\n"
    return section_replace(text, kept, heading=heading)


def section_write(new_section: str, *, heading: str, path: Path = REPORT_PATH) -> None:
    """Replace (or add) one section of the report, leaving the rest as it is."""
    old = path.read_text(encoding="utf-8") if path.exists() else ""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(
        section_replace(old or "# Performance\n", new_section, heading=heading),
        encoding="utf-8",
    )
