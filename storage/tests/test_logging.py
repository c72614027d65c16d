"""Every storage failure is one key=value log line that names what failed and
never carries a credential; under gunicorn it carries the request id too."""

import http.client
import os
import shlex
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import S3_ACCESS_KEY
from core.tests.processes import free_port

ROOT = Path(__file__).resolve().parents[2]
SECRET_KEY = "django-secret-never-logged-8c1f0e"
WRONG_SECRET = "wrong-secret-never-logged-42a7d9"

SAVE_ONE_FILE = """
import django
django.setup()
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from storage.exceptions import StorageUnavailable
try:
    default_storage.save("profile_pics/me.jpg", ContentFile(b"x"))
except StorageUnavailable:
    print("refused")
"""


def _storage_env(endpoint: str, secret: str, bucket: str, **more: str) -> dict:
    return {
        "DJANGO_SETTINGS_MODULE": "crypto_exchange.settings",
        "SECRET_KEY": SECRET_KEY,
        "USE_MINIO": "true",
        "MINIO_ENDPOINT": endpoint,
        "MINIO_ACCESS_KEY": S3_ACCESS_KEY,
        "MINIO_SECRET_KEY": secret,
        "MINIO_BUCKET_NAME": bucket,
        "MINIO_USE_SSL": "false",
        **more,
    }


def _fields(line: str) -> dict[str, str]:
    """The key=value pairs of one logfmt line (values may be quoted)."""
    pairs = (part.partition("=") for part in shlex.split(line))
    return {key: value for key, _, value in pairs}


def _failure_lines(output: str) -> list[str]:
    return [line for line in output.splitlines() if 'event="storage failure"' in line]


def test_unreachable_store_logs_one_line_naming_operation_key_and_endpoint(
    run_python, bucket_name
):
    result = run_python(
        ["-c", SAVE_ONE_FILE],
        env=_storage_env("127.0.0.1:9", WRONG_SECRET, bucket_name),
    )

    assert result.stdout.strip() == "refused", result.stderr
    [line] = _failure_lines(result.stderr)
    fields = _fields(line)
    assert fields["level"] == "warning"
    assert fields["logger"] == "storage.backends"
    assert fields["endpoint"] == "127.0.0.1:9"
    assert fields["bucket"] == bucket_name
    assert fields["key"].startswith("profile_pics/me")
    assert fields["operation"]
    assert "cannot connect" in fields["reason"]
    assert WRONG_SECRET not in result.stderr


@pytest.mark.reliability("log-secrets")
def test_refused_credentials_are_logged_without_the_secret(
    run_python, s3_server, bucket_name
):
    result = run_python(
        ["-c", SAVE_ONE_FILE],
        env=_storage_env(s3_server.endpoint, WRONG_SECRET, bucket_name),
    )

    assert result.stdout.strip() == "refused", result.stderr
    lines = _failure_lines(result.stderr)
    assert lines, result.stderr
    assert "access refused" in _fields(lines[-1])["reason"]
    assert WRONG_SECRET not in result.stderr
    assert SECRET_KEY not in result.stderr


def _wait_for_port(port: int, process: subprocess.Popen, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"gunicorn exited with {process.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.1)
    raise AssertionError("gunicorn did not start listening")


def test_under_gunicorn_a_request_and_its_storage_failure_share_the_request_id(
    tmp_path, bucket_name
):
    """The image's gunicorn.conf.py: one access line per request and the
    failure line of the same request, both with the X-Request-ID."""
    port = free_port()
    env = {
        "PATH": os.environ.get("PATH", ""),
        "HOME": str(tmp_path),
        "ENV_FILE": "/dev/null",
        "PYTHONPATH": str(ROOT),
        "DEBUG": "false",
        "PLAIN_HTTP": "true",
        "ALLOWED_HOSTS": "127.0.0.1",
        "DATABASE_URL": f"sqlite:///{tmp_path / 'db.sqlite3'}",
        "WEB_CONCURRENCY": "1",
        "MINIO_MEDIA_URL_MODE": "proxy",
        **_storage_env("127.0.0.1:9", WRONG_SECRET, bucket_name),
    }
    server = subprocess.Popen(
        [
            str(Path(sys.executable).parent / "gunicorn"),
            "--config",
            "gunicorn.conf.py",
            "--bind",
            f"127.0.0.1:{port}",
            "crypto_exchange.wsgi:application",
        ],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        _wait_for_port(port, server)
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        conn.request(
            "GET", "/media/token_logo/btc.png", headers={"X-Request-ID": "rid-7f3a"}
        )
        response = conn.getresponse()
        response.read()
        conn.close()
    finally:
        server.send_signal(signal.SIGTERM)
        output, _ = server.communicate(timeout=30)

    assert response.status == 503
    [failure] = _failure_lines(output)
    assert _fields(failure)["rid"] == "rid-7f3a"
    assert _fields(failure)["path"] == "/media/token_logo/btc.png"
    [access] = [line for line in output.splitlines() if line.startswith("remote=")]
    access_fields = _fields(access)
    assert access_fields["rid"] == "rid-7f3a"
    assert access_fields["status"] == "503"
    assert access_fields["path"] == "/media/token_logo/btc.png"
    for secret in (SECRET_KEY, WRONG_SECRET):
        assert secret not in output


@pytest.mark.parametrize("level", ["warning", "error"])
@pytest.mark.reliability("log-injection")
def test_a_traceback_stays_on_the_line_of_its_event(run_python, level):
    result = run_python(
        [
            "-c",
            "import django, logging; django.setup()\n"
            "try:\n    1 / 0\n"
            f"except ZeroDivisionError:\n"
            f"    logging.getLogger('x').{level}('boom', exc_info=True)",
        ],
        env={"DJANGO_SETTINGS_MODULE": "crypto_exchange.settings"},
    )

    [line] = result.stderr.splitlines()
    fields = _fields(line)
    assert (fields["level"], fields["event"]) == (level, "boom")
    assert "ZeroDivisionError" in fields["exception"]
