"""A copy of this checkout for tests that run the README's and the docs'
commands as a newcomer would: the files git sees, the installed virtualenv
linked, nothing of a developer's own runs, and an environment with nothing of
the test run's (no DATABASE_URL, no ENV_FILE, no MAKEFLAGS)."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parents[1]
GIT = shutil.which("git")


def copy_checkout(target: Path) -> Path:
    """The working tree's files as git sees them (committed or not, ignored
    ones left out: no db.sqlite3, .env or media/ of a developer's own runs),
    with the installed virtualenv linked, so nothing is left to install."""
    listed = subprocess.run(
        [GIT, "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=ROOT,
        capture_output=True,
        check=True,
    ).stdout
    for name in filter(None, listed.split(b"\0")):
        source = ROOT / os.fsdecode(name)
        if source.is_file():  # not deleted in the working tree
            destination = target / os.fsdecode(name)
            destination.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, destination)
    (target / ".venv").symlink_to(ROOT / ".venv")
    return target


def clean_environment(home: Path, *, activated: Path | None = None) -> dict[str, str]:
    """What a newcomer's shell has: the PATH, a home and a locale; with
    ``activated`` (a checkout), its virtualenv first in the PATH, as
    ``. .venv/bin/activate`` leaves it."""
    path = os.environ["PATH"]
    if activated is not None:
        path = f"{activated / '.venv' / 'bin'}:{path}"
    return {
        "PATH": path,
        "HOME": os.environ.get("HOME", str(home)),
        "LANG": "C.UTF-8",
    }


def processes_in(directory: Path) -> dict[int, str]:
    """What runs in ``directory``: the command line of each process by pid."""
    found = {}
    for entry in Path("/proc").iterdir():
        try:
            if entry.name.isdigit() and (entry / "cwd").resolve() == directory:
                command = (entry / "cmdline").read_bytes().replace(b"\0", b" ")
                found[int(entry.name)] = command.decode(errors="replace").strip()
        except OSError:
            pass  # gone meanwhile, or not ours to read
    return found


def kill_processes_in(directory: Path) -> None:
    """Kill what still runs in ``directory``: after a failed test, a server
    started in a session of its own may outlive its parent."""
    for pid in processes_in(directory):
        with contextlib.suppress(OSError):  # gone meanwhile
            os.kill(pid, signal.SIGKILL)


def answers(url: str) -> bool:
    """Whether a server started in the copy answers ``url`` with 200 yet."""
    try:
        return requests.get(url, timeout=5).status_code == 200
    except requests.RequestException:
        return False
