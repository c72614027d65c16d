"""scripts/setup_minio.py as an operator runs it, against the real S3 server."""

import http.server
import json
import socket
import subprocess
import threading
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from minio.error import S3Error

from conftest import S3_ACCESS_KEY, S3_SECRET_KEY
from tests.checkout import clean_environment, copy_checkout
from tests.factories import image_bytes, object_bytes

DEFAULT_AVATAR = Path(__file__).resolve().parents[2] / "media" / "default_avatar.jpg"
AVATAR = DEFAULT_AVATAR.name


@pytest.fixture
def env(s3_server, bucket_name):
    return {
        "USE_MINIO": "true",
        "MINIO_ENDPOINT": s3_server.endpoint,
        "MINIO_ACCESS_KEY": S3_ACCESS_KEY,
        "MINIO_SECRET_KEY": S3_SECRET_KEY,
        "MINIO_BUCKET_NAME": bucket_name,
        "MINIO_USE_SSL": "false",
    }


def setup_minio(run_python, env):
    return run_python(["scripts/setup_minio.py"], env)


def test_first_run_creates_the_bucket_policy_and_default_avatar(
    run_python, env, s3_client, bucket_name, s3_server
):
    result = setup_minio(run_python, env)

    assert result.returncode == 0, result.stderr
    assert f"{bucket_name} created" in result.stdout
    assert "default_avatar.jpg uploaded" in result.stdout
    assert s3_client.bucket_exists(bucket_name=bucket_name)
    policy = json.loads(s3_client.get_bucket_policy(bucket_name=bucket_name))
    assert policy["Statement"][0]["Action"] in ("s3:GetObject", ["s3:GetObject"])

    base = f"http://{s3_server.endpoint}/{bucket_name}"
    with urllib.request.urlopen(f"{base}/default_avatar.jpg") as response:
        assert response.headers["Content-Type"] == "image/jpeg"
    with pytest.raises(urllib.error.HTTPError) as listing:
        urllib.request.urlopen(f"{base}/")
    assert listing.value.code == 403


def test_second_run_changes_nothing_and_says_so(
    run_python, env, s3_client, bucket_name
):
    assert setup_minio(run_python, env).returncode == 0
    avatar = s3_client.stat_object(
        bucket_name=bucket_name, object_name="default_avatar.jpg"
    )

    result = setup_minio(run_python, env)

    assert result.returncode == 0, result.stderr
    assert f"{bucket_name} exists" in result.stdout
    assert "default_avatar.jpg present" in result.stdout
    again = s3_client.stat_object(
        bucket_name=bucket_name, object_name="default_avatar.jpg"
    )
    assert again.last_modified == avatar.last_modified
    keys = [
        o.object_name
        for o in s3_client.list_objects(bucket_name=bucket_name, recursive=True)
    ]
    assert keys == ["default_avatar.jpg"]


@pytest.mark.parametrize(
    "content_type, cache_control",
    [("image/jpeg", None), ("binary/octet-stream", "public, max-age=86400")],
    ids=["no-cache-control", "generic-type"],
)
def test_a_default_avatar_copied_with_other_headers_gets_the_apps_again(
    run_python, env, s3_client, bucket_name, content_type, cache_control
):
    assert setup_minio(run_python, env).returncode == 0
    wanted = s3_client.stat_object(bucket_name=bucket_name, object_name=AVATAR)
    # What `mc cp --recursive media/ ...` leaves over it.
    s3_client.fput_object(
        bucket_name=bucket_name,
        object_name=AVATAR,
        file_path=str(DEFAULT_AVATAR),
        content_type=content_type,
        metadata={"Cache-Control": cache_control} if cache_control else None,
    )

    result = setup_minio(run_python, env)

    assert result.returncode == 0, result.stderr
    assert f"{AVATAR} headers fixed" in result.stdout
    fixed = s3_client.stat_object(bucket_name=bucket_name, object_name=AVATAR)
    assert fixed.content_type == wanted.content_type == "image/jpeg"
    assert fixed.metadata["Cache-Control"] == wanted.metadata["Cache-Control"]
    assert fixed.metadata["Cache-Control"] == "public, max-age=86400"
    assert object_bytes(s3_client, bucket_name, AVATAR) == DEFAULT_AVATAR.read_bytes()

    again = setup_minio(run_python, env)

    assert again.returncode == 0, again.stderr
    assert f"{AVATAR} present" in again.stdout
    assert "headers fixed" not in again.stdout
    unchanged = s3_client.stat_object(bucket_name=bucket_name, object_name=AVATAR)
    assert unchanged.last_modified == fixed.last_modified


def test_help_names_the_script_itself(run_python, env):
    result = run_python(["scripts/setup_minio.py", "--help"], env)

    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("usage: setup_minio.py ")
    assert "manage.py" not in result.stdout.splitlines()[0]


@pytest.mark.reliability("private-documents")
def test_presigned_mode_grants_no_anonymous_access(
    run_python, env, s3_client, bucket_name
):
    assert setup_minio(run_python, env).returncode == 0

    result = setup_minio(run_python, {**env, "MINIO_MEDIA_URL_MODE": "presigned"})

    assert result.returncode == 0, result.stderr
    assert "private" in result.stdout
    with pytest.raises(S3Error) as no_policy:
        s3_client.get_bucket_policy(bucket_name=bucket_name)
    assert no_policy.value.code == "NoSuchBucketPolicy"


@pytest.mark.reliability("store-errors")
def test_wrong_credentials_exit_non_zero_naming_the_keys(
    run_python, env, s3_client, bucket_name
):
    result = setup_minio(run_python, {**env, "MINIO_SECRET_KEY": "wrong-secret"})

    assert result.returncode != 0
    assert "MINIO_ACCESS_KEY and MINIO_SECRET_KEY" in result.stderr
    assert "Traceback" not in result.stderr
    assert not s3_client.bucket_exists(bucket_name=bucket_name)


@pytest.mark.reliability("store-errors")
def test_unreachable_endpoint_exits_non_zero_naming_the_endpoint(run_python, env):
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]

    result = setup_minio(run_python, {**env, "MINIO_ENDPOINT": f"127.0.0.1:{port}"})

    assert result.returncode != 0
    assert "cannot connect" in result.stderr
    assert "MINIO_ENDPOINT" in result.stderr
    assert "Traceback" not in result.stderr


def test_a_malformed_setting_exits_with_the_variable_and_no_traceback(run_python, env):
    result = setup_minio(run_python, {**env, "MINIO_ENDPOINT": "http://x:9000"})

    assert result.returncode != 0
    assert "MINIO_ENDPOINT" in result.stderr
    assert "Traceback" not in result.stderr


def test_the_management_command_does_the_same(run_python, env, bucket_name):
    result = run_python(["manage.py", "setup_minio"], env)

    assert result.returncode == 0, result.stderr
    assert f"{bucket_name} created" in result.stdout


def test_a_second_run_makes_one_request_per_check(storage, monkeypatch):
    from storage.services import bucket_setup

    bucket_setup(storage=storage, default_avatar=DEFAULT_AVATAR)
    sent = []
    http = storage.client._http
    real_urlopen = http.urlopen

    def urlopen(method, url, *args, **kwargs):
        sent.append(method)
        return real_urlopen(method, url, *args, **kwargs)

    monkeypatch.setattr(http, "urlopen", urlopen)

    bucket_setup(storage=storage, default_avatar=DEFAULT_AVATAR)

    # bucket, policy (read; as wanted, so not written again), test object
    # written, read back and removed, lifecycle rule (read, as wanted), avatar
    assert sent == ["HEAD", "GET", "PUT", "GET", "DELETE", "GET", "HEAD"]


class _ConsolePage(http.server.BaseHTTPRequestHandler):
    """Not an S3 API: a web page and 200 to every method, as the port of
    MinIO's console answers; with ``etag``, an ETag too, as a server of
    static files gives."""

    etag = False

    def _page(self, body: bool = True) -> None:
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        page = b"<!doctype html><html><body>MinIO Console</body></html>"
        self.send_response(200)
        self.send_header("Content-Type", "text/html")
        self.send_header("Content-Length", str(len(page)))
        if self.etag:
            self.send_header("ETag", '"5f3a-page"')
        self.end_headers()
        if body:
            self.wfile.write(page)

    def do_HEAD(self):
        self._page(body=False)

    do_GET = do_PUT = do_POST = do_DELETE = _page

    def log_message(self, *args):
        pass


@pytest.fixture(params=[False, True], ids=["no-etag", "etag"])
def console_endpoint(request):
    handler = type("ConsolePage", (_ConsolePage,), {"etag": request.param})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


@pytest.mark.parametrize("url_mode", ["public", "presigned", "proxy"])
def test_a_web_server_that_is_not_an_s3_api_exits_non_zero_saying_so(
    run_python, console_endpoint, url_mode
):
    result = setup_minio(
        run_python,
        {
            "USE_MINIO": "true",
            "MINIO_ENDPOINT": console_endpoint,
            "MINIO_ACCESS_KEY": S3_ACCESS_KEY,
            "MINIO_SECRET_KEY": S3_SECRET_KEY,
            "MINIO_USE_SSL": "false",
            "MINIO_MEDIA_URL_MODE": url_mode,
        },
    )

    assert result.returncode != 0
    assert "does not look like an S3 API" in result.stderr
    assert "MINIO_ENDPOINT" in result.stderr
    assert "Traceback" not in result.stderr
    assert "ready" not in result.stdout


def test_the_default_avatar_is_uploaded_from_media_root(
    run_python, env, media_root, s3_client, bucket_name
):
    own = image_bytes("JPEG", (80, 80), (200, 10, 10))
    (media_root / AVATAR).write_bytes(own)

    result = run_python(
        ["scripts/setup_minio.py"], {**env, "MEDIA_ROOT": str(media_root)}
    )

    assert result.returncode == 0, result.stderr
    assert f"{AVATAR} uploaded from {media_root / AVATAR}" in result.stdout
    assert object_bytes(s3_client, bucket_name, AVATAR) == own
    stored = s3_client.stat_object(bucket_name=bucket_name, object_name=AVATAR)
    assert stored.content_type == "image/jpeg"


def test_without_a_default_avatar_anywhere_setup_fails_saying_where_to_put_one(
    tmp_path, env, s3_client, bucket_name
):
    # A checkout whose media/ holds no default avatar (a bind mount over it,
    # or the file deleted), and MEDIA_ROOT left at that media/.
    checkout = copy_checkout(tmp_path / "checkout")
    (checkout / "media" / AVATAR).unlink()
    shell = {**clean_environment(tmp_path, activated=checkout), **env}

    for command in (["scripts/setup_minio.py"], ["manage.py", "setup_minio"]):
        result = subprocess.run(
            [str(checkout / ".venv/bin/python"), *command],
            cwd=checkout,
            env=shell,
            capture_output=True,
            text=True,
            timeout=120,
        )

        assert result.returncode == 1, result.stdout
        assert f"The bucket '{bucket_name}' has no {AVATAR}" in result.stderr
        assert str(checkout / "media" / AVATAR) in result.stderr
        assert "Put default_avatar.jpg in MEDIA_ROOT" in result.stderr
        assert "Traceback" not in result.stderr
        assert "ready" not in result.stdout
        assert f"{AVATAR} missing" in result.stdout
    names = [o.object_name for o in s3_client.list_objects(bucket_name=bucket_name)]
    assert AVATAR not in names
