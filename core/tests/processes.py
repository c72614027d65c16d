"""For tests that run the app, or a server it needs, as real processes."""

from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path

from scripts.processes import ROOT, free_port

__all__ = ["free_port", "plain_static_root", "process_pause"]


def plain_static_root(directory: Path) -> Path:
    """A STATIC_ROOT for an app process with DEBUG off: a manifest of the
    project's own static files under their plain names, so pages render
    their ``{% static %}`` names without collectstatic (which takes 40 s)."""
    static_root = directory / "static"
    static_root.mkdir()
    names = [
        path.relative_to(ROOT / "static").as_posix()
        for path in (ROOT / "static").rglob("*")
        if path.is_file()
    ]
    (static_root / "staticfiles.json").write_text(
        json.dumps({"version": "1.1", "paths": {name: name for name in names}})
    )
    return static_root


def process_pause(pid: int, *, timeout: float = 5.0) -> None:
    """SIGSTOP ``pid`` and return once every thread of it has stopped: the
    kernel stops them one by one, and a request sent at once could still be
    answered by one that has not (a test of a hung server would then see none).
    """
    os.kill(pid, signal.SIGSTOP)
    deadline = time.monotonic() + timeout
    while not all(
        (task / "stat").read_text().rsplit(")", 1)[1].split()[0] in ("T", "t")
        for task in Path(f"/proc/{pid}/task").iterdir()
    ):
        if time.monotonic() > deadline:
            raise TimeoutError(f"process {pid} did not stop")
        time.sleep(0.005)
