"""For tests that run the app, or a server it needs, as real processes."""

from __future__ import annotations

import json
import socket
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    """A TCP port free on 127.0.0.1 now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


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
