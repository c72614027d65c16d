"""docs/STORAGE.md followed command by command, as a newcomer does, in a copy
of the checkout (tests/checkout.py): files on local disk first (runserver
alone, the demo, an avatar uploaded in runserver), then "Moving existing media to the
bucket" and "Switching to MinIO" against the suite's S3 server: the backup,
``.env`` from ``.env.example`` with the guide's lines, ``setup_minio.py``,
``media_to_bucket``, ``makemigrations`` finding nothing, runserver again, and
"Verify the setup" typed into ``manage.py shell``. The values are the
suite's server, key and a bucket of the test's own, where the guide has
``localhost:9000`` and ``minioadmin``."""

from __future__ import annotations

import contextlib
import io
import os
import re
import signal
import socket
import subprocess
import tarfile
import textwrap
import time
from pathlib import Path

import pytest
import requests
from minio import Minio
from PIL import Image

from tests.checkout import (
    answers,
    clean_environment,
    copy_checkout,
    kill_processes_in,
)
from tests.factories import image_bytes

START_TIMEOUT = 60.0
COMMAND_TIMEOUT = 240.0  # migrate on a new SQLite database is the longest
DEMO = {"login": "demo", "password": "demo-pass-2026"}  # seed_demo's


class Checkout:
    """A copy of the checkout and a shell in it, its virtualenv activated."""

    def __init__(self, directory: Path, home: Path) -> None:
        self.directory = directory
        self.env = clean_environment(home, activated=directory)
        self.python = str(directory / ".venv" / "bin" / "python")

    def run(self, command: str, *, stdin: str | None = None) -> str:
        """A line of the guide as typed in the shell; its output."""
        result = subprocess.run(  # noqa: S602 (a line typed in a shell)
            command,
            shell=True,
            cwd=self.directory,
            env=self.env,
            input=stdin,
            capture_output=True,
            text=True,
            timeout=COMMAND_TIMEOUT,
        )
        output = result.stdout + result.stderr
        assert result.returncode == 0, (
            f"`{command}` exited {result.returncode}:\n{output}"
        )
        assert "Traceback" not in output, f"`{command}`:\n{output}"
        return output

    def edit_env(self, lines: str) -> None:
        """Set each ``NAME=value`` of ``lines`` in ``.env``, on the line that
        names it, as one edits the copied example."""
        path = self.directory / ".env"
        text = path.read_text()
        for line in textwrap.dedent(lines).strip().splitlines():
            name = line.split("=", 1)[0]
            text, count = re.subn(rf"^{name}=.*$", line, text, flags=re.MULTILINE)
            assert count == 1, f".env.example has {count} lines setting {name}"
        path.write_text(text)

    @contextlib.contextmanager
    def runserver(self):
        """``python manage.py runserver`` (on a free port), until the block ends."""
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        log_path = self.directory / f"runserver-{port}.log"
        with log_path.open("wb") as log:
            server = subprocess.Popen(
                [self.python, "manage.py", "runserver", f"127.0.0.1:{port}"],
                cwd=self.directory,
                env=self.env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # with its autoreloader's child
            )
        url = f"http://127.0.0.1:{port}"
        try:
            deadline = time.monotonic() + START_TIMEOUT
            while not answers(f"{url}/healthz/"):
                log_tail = log_path.read_text(errors="replace")[-3000:]
                assert server.poll() is None, f"runserver exited:\n{log_tail}"
                assert time.monotonic() < deadline, f"runserver silent:\n{log_tail}"
                time.sleep(0.2)
            yield url
        finally:
            os.killpg(server.pid, signal.SIGTERM)
            server.wait(timeout=30)
        assert "Traceback" not in log_path.read_text(errors="replace")


def _csrf(page: str) -> str:
    return re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page)[1]


def _avatar_url(page: str) -> str:
    return re.search(r'<img id="avatar-current"[^>]* src="([^"]+)"', page)[1]


class Visitor:
    """A browser signed in as the demo user."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.session = requests.Session()
        self.session.headers["Origin"] = url  # as a browser sends with a form
        form = self.get("/accounts/login/")
        self.post("/accounts/login/", {**DEMO, "csrfmiddlewaretoken": _csrf(form)})

    def get(self, path: str) -> str:
        answer = self.session.get(f"{self.url}{path}", timeout=30)
        assert answer.status_code == 200, f"GET {path}: {answer.status_code}"
        return answer.text

    def post(self, path: str, fields: dict, **files) -> None:
        answer = self.session.post(
            f"{self.url}{path}",
            fields,
            files=files,
            allow_redirects=False,
            timeout=30,
        )
        assert answer.status_code == 302, f"POST {path}: {answer.status_code}"

    def avatar_upload(self, colour: tuple[int, int, int]) -> str:
        """A photo sent with the profile form; the URL the page then shows."""
        page = self.get("/accounts/profile/")
        photo = image_bytes("JPEG", (640, 480), colour)
        self.post(
            "/accounts/profile/",
            {"csrfmiddlewaretoken": _csrf(page)},
            avatar=("photo.jpg", photo, "image/jpeg"),
        )
        return _avatar_url(self.get("/accounts/profile/"))

    def image(self, url: str) -> Image.Image:
        """The picture at ``url``, fetched as the page's <img> does."""
        if url.startswith("/"):
            url = f"{self.url}{url}"
        answer = requests.get(url, timeout=30)
        assert answer.status_code == 200, f"GET {url}: {answer.status_code}"
        return Image.open(io.BytesIO(answer.content))


@pytest.fixture
def checkout(tmp_path):
    directory = copy_checkout(tmp_path / "checkout")
    yield Checkout(directory, tmp_path)
    kill_processes_in(directory)


def test_the_storage_guide_moves_local_media_to_the_bucket_and_serves_it_there(
    checkout, s3_server, bucket_name
):
    # Local files, the default: no .env and no setup, runserver alone (the
    # storage guide's "Option A"), which creates the new database's tables.
    with checkout.runserver() as url:
        assert requests.get(f"{url}/", timeout=30).status_code == 200
    assert "No migrations to apply" in checkout.run("python manage.py migrate")
    checkout.run("python manage.py seed_demo")
    with checkout.runserver() as url:
        local = Visitor(url)
        local_avatar = local.avatar_upload((30, 120, 200))
        logos = re.findall(r'<img[^>]* src="(/media/token_logo/[^"]+)"', local.get("/"))
    avatar_key = local_avatar.removeprefix("/media/")
    assert avatar_key.startswith("profile_pics/")
    assert (checkout.directory / "media" / avatar_key).is_file()
    assert logos

    # "Moving existing media to the bucket", step 1: the backup.
    # (Its second line is for identity documents: none were sent here.)
    checkout.run("tar -czf media_backup.tar.gz media/")
    with tarfile.open(checkout.directory / "media_backup.tar.gz") as backup:
        assert f"media/{avatar_key}" in backup.getnames()

    # "Switching to MinIO", steps 2 and 3: .env, then the bucket.
    checkout.run("cp .env.example .env")
    checkout.edit_env(
        f"""
        USE_MINIO=true
        MINIO_ENDPOINT={s3_server.endpoint}
        MINIO_ACCESS_KEY={s3_server.access_key}
        MINIO_SECRET_KEY={s3_server.secret_key}
        MINIO_BUCKET_NAME={bucket_name}
        """
    )
    report = checkout.run(". .venv/bin/activate && python scripts/setup_minio.py")
    assert bucket_name in report

    # Step 3 of the move: copy, then a second run finds nothing to copy.
    checkout.run("python manage.py media_to_bucket --dry-run")
    checkout.run("python manage.py media_to_bucket")
    bucket = Minio(
        s3_server.endpoint,
        access_key=s3_server.access_key,
        secret_key=s3_server.secret_key,
        secure=False,
    )
    stored = {o.object_name for o in bucket.list_objects(bucket_name, recursive=True)}
    assert {avatar_key, *(logo.removeprefix("/media/") for logo in logos)} <= stored

    # The storage setting changes no model: nothing for makemigrations.
    assert "No changes detected" in checkout.run("python manage.py makemigrations")
    assert "No migrations to apply" in checkout.run("python manage.py migrate")

    # Step 4: the app again, with USE_MINIO=true from .env.
    with checkout.runserver() as url:
        member = Visitor(url)
        shown = _avatar_url(member.get("/accounts/profile/"))
        moved = member.image(shown)
        new_avatar = member.avatar_upload((220, 60, 30))
        new = member.image(new_avatar)
        logo = member.image(
            re.findall(r'<img[^>]* src="([^"]*token_logo/[^"]+)"', member.get("/"))[0]
        )

    # The pictures now come from the bucket ("public", .env.example's mode).
    bucket_url = f"http://{s3_server.endpoint}/{bucket_name}/"
    assert shown == f"{bucket_url}{avatar_key}"
    assert (moved.format, moved.size) == ("JPEG", (300, 300))
    assert new_avatar.startswith(f"{bucket_url}profile_pics/")
    assert (new.format, new.size, new.getpixel((150, 150))[0] > 180) == (
        "JPEG",
        (300, 300),
        True,
    )
    assert (logo.format, logo.size) == ("PNG", (200, 200))
    new_key = new_avatar.removeprefix(bucket_url)
    assert new_key in {
        o.object_name for o in bucket.list_objects(bucket_name, recursive=True)
    }
    assert not (checkout.directory / "media" / new_key).exists()

    # "Verify the setup".
    checkout.run(". .venv/bin/activate && python scripts/setup_minio.py")
    shell = checkout.run(
        "python manage.py shell",
        stdin=(
            "from django.conf import settings\n"
            'print(f"MinIO enabled: {settings.USE_MINIO}")\n'
            "print(f\"Endpoint: {getattr(settings, 'MINIO_ENDPOINT', 'Not set')}\")\n"
        ),
    )
    assert "MinIO enabled: True" in shell
    assert f"Endpoint: {s3_server.endpoint}" in shell
