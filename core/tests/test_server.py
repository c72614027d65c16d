"""The app under gunicorn.conf.py, as the Docker image runs it, on a free
loopback port: no request can forge a line of the access log or of the app's
own log, no ``Server`` header is sent, only TRUST_X_FORWARDED_PROTO lets a
header say HTTPS, and a body over the limit is refused before it is read."""

from __future__ import annotations

import http.client
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

from core.tests.processes import free_port, plain_static_root

ROOT = Path(__file__).resolve().parents[2]
GUNICORN = Path(sys.executable).parent / "gunicorn"
ACCESS_KEYS = [
    "remote",
    "forwarded_for",
    "method",
    "path",
    "query",
    "status",
    "bytes",
    "duration_ms",
    "rid",
    "pid",
    "user_agent",
]
# key=value or key="value", values as written (escapes kept).
_FIELD = re.compile(r'(\w+)=("(?:[^"\\]|\\.)*"|\S*)')


def fields(line: str) -> list[tuple[str, str]]:
    return [
        (key, value[1:-1] if value.startswith('"') else value)
        for key, value in _FIELD.findall(line)
    ]


def access_line(line: str, request_id: str) -> bool:
    return line.startswith("remote=") and f" rid={request_id}" in line


@dataclass
class Server:
    port: int
    log: Path

    def lines(self) -> list[str]:
        # Python's splitlines also breaks at NEL (\x85), \u2028 and the like.
        return self.log.read_text(encoding="utf-8", errors="replace").splitlines()

    def wait_for(self, predicate, timeout: float = 10) -> list[str]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = [line for line in self.lines() if predicate(line)]
            if found:
                return found
            time.sleep(0.05)
        raise AssertionError("no such log line:\n" + "\n".join(self.lines()[-20:]))

    def send(self, head: bytes, body: bytes = b"") -> http.client.HTTPResponse:
        """Send raw bytes (nothing re-encoded), return the parsed answer."""
        connection = socket.create_connection(("127.0.0.1", self.port), timeout=10)
        connection.sendall(head + b"\r\n" + body)
        response = http.client.HTTPResponse(connection)
        response.begin()
        response.body = response.read()
        connection.close()
        return response


@contextmanager
def gunicorn(directory: Path, **settings: str):
    """gunicorn with gunicorn.conf.py on a free loopback port, production
    settings but for ``settings``."""
    port = free_port()
    log = directory / "gunicorn.log"
    static_root = plain_static_root(directory)
    env = {
        "PATH": os.environ.get("PATH", ""),
        "HOME": str(directory),
        "ENV_FILE": "/dev/null",
        "PYTHONPATH": str(ROOT),
        "DEBUG": "false",
        "SECRET_KEY": "a-test-secret-key-of-the-server-tests-3c9e1b",
        "ALLOWED_HOSTS": "127.0.0.1",
        "STATIC_ROOT": str(static_root),
        # Nothing these requests do reads the database.
        "DATABASE_URL": f"sqlite:///{directory / 'db.sqlite3'}",
        "WEB_CONCURRENCY": "1",
    }
    env.update(settings)
    with log.open("w") as output:
        process = subprocess.Popen(
            [
                str(GUNICORN),
                "--config",
                "gunicorn.conf.py",
                "--bind",
                f"127.0.0.1:{port}",
                "crypto_exchange.wsgi:application",
            ],
            cwd=ROOT,
            env=env,
            stdout=output,
            stderr=subprocess.STDOUT,
        )
    try:
        deadline = time.monotonic() + 30
        while True:
            if process.poll() is not None:
                raise AssertionError(f"gunicorn exited:\n{log.read_text()}")
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise AssertionError("gunicorn did not listen") from None
                time.sleep(0.1)
        yield Server(port, log)
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=40)


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    with gunicorn(tmp_path_factory.mktemp("gunicorn"), PLAIN_HTTP="true") as running:
        yield running


def request(path: bytes, *headers: bytes, method: bytes = b"GET") -> bytes:
    return (
        b"\r\n".join(
            [method + b" " + path + b" HTTP/1.1", b"Host: 127.0.0.1", *headers]
        )
        + b"\r\n"
    )


# --- The access log ----------------------------------------------------------


@pytest.mark.reliability("log-injection")
def test_a_path_with_newlines_and_nul_stays_on_its_own_access_line(server):
    forged = b"/x%0Aremote=6.6.6.6%20method=GET%20path=%22/admin/%22%20status=200%0D%00"

    response = server.send(request(forged, b"X-Request-ID: forge-path"))

    assert response.status == 404
    [line] = server.wait_for(lambda line: access_line(line, "forge-path"))
    logged = fields(line)
    assert [key for key, _ in logged] == ACCESS_KEYS
    assert dict(logged)["path"] == (
        r"/x\nremote=6.6.6.6 method=GET path=\"/admin/\" status=200\r\x00"
    )
    assert dict(logged)["status"] == "404"
    assert not any(line.startswith("remote=6.6.6.6") for line in server.lines())


@pytest.mark.reliability("log-injection")
def test_headers_cannot_add_lines_or_fields_to_the_access_line(server):
    response = server.send(
        request(
            b"/healthz/?a=%0A%22",
            b"X-Request-ID: forge-header status=200",
            b'User-Agent: curl" status="200\x85remote=6.6.6.6',
            b"X-Forwarded-For: 1.2.3.4\x85remote=6.6.6.6",
        )
    )

    assert response.status == 200
    [line] = server.wait_for(lambda line: access_line(line, "forge-header"))
    logged = dict(fields(line))
    assert [key for key, _ in fields(line)] == ACCESS_KEYS
    assert logged["rid"] == r"forge-header\x20status=200"
    assert logged["user_agent"] == r"curl\" status=\"200\x85remote=6.6.6.6"
    assert logged["forwarded_for"] == r"1.2.3.4\x85remote=6.6.6.6"
    assert logged["query"] == "a=%0A%22"  # as sent: percent-encoded
    assert not any(line.startswith("remote=6.6.6.6") for line in server.lines())


@pytest.mark.reliability("log-injection")
def test_the_apps_own_log_lines_escape_what_the_request_sent(server):
    """The not-found warning carries the request's id and path (bound by
    gunicorn.conf.py); a NEL byte in the id must not end its line."""
    response = server.send(
        request(b"/no-such-page%0D%1B[2J/", b'X-Request-ID: app\x85level=error "x"')
    )

    assert response.status == 404
    [line] = server.wait_for(
        lambda line: "logger=django.request" in line and 'rid="app' in line
    )
    logged = dict(fields(line))
    assert logged["level"] == "warning"
    assert logged["rid"] == r"app\\x85level=error \"x\""
    # Every line is one of gunicorn's, the access log's or the app's.
    for written in server.lines():
        assert written.startswith(("[", "remote=", "ts=")), written


# --- Headers -------------------------------------------------------------------


@pytest.mark.parametrize("path", [b"/healthz/", b"/no-such-page/", b"/api/nothing/"])
@pytest.mark.reliability("log-secrets")
def test_no_server_header_is_sent(server, path):
    response = server.send(request(path))

    assert response.status in (200, 404)
    assert response.getheader("Server") is None
    assert response.getheader("Date")


# --- The scheme ----------------------------------------------------------------


@pytest.fixture(scope="module")
def https_only_server(tmp_path_factory):
    """PLAIN_HTTP and TRUST_X_FORWARDED_PROTO unset: HTTPS only, and no header
    says a request came over HTTPS."""
    with gunicorn(tmp_path_factory.mktemp("https-only")) as running:
        yield running


@pytest.fixture(scope="module")
def proxied_server(tmp_path_factory):
    with gunicorn(
        tmp_path_factory.mktemp("proxied"), TRUST_X_FORWARDED_PROTO="true"
    ) as running:
        yield running


@pytest.mark.parametrize(
    "headers",
    [
        [b"X-Forwarded-Proto: https"],
        [b"X-Forwarded-Ssl: on"],
        [b"X-Forwarded-Protocol: ssl"],
        [b"X-Forwarded-Proto: http", b"X-Forwarded-Ssl: on"],
    ],
)
def test_without_trust_x_forwarded_proto_no_header_skips_the_https_redirect(
    https_only_server, headers
):
    """The requests come from 127.0.0.1, which gunicorn.conf.py's
    FORWARDED_ALLOW_IPS trusts by default: gunicorn's own scheme headers
    would make each of them HTTPS (or, contradicting, its HTML 400)."""
    response = https_only_server.send(request(b"/markets/", *headers))

    assert response.status == 301
    assert response.getheader("Location") == "https://127.0.0.1/markets/"


def test_with_trust_x_forwarded_proto_its_https_is_served(proxied_server):
    served = proxied_server.send(
        request(b"/accounts/login/", b"X-Forwarded-Proto: https")
    )
    other_header = proxied_server.send(
        request(b"/accounts/login/", b"X-Forwarded-Ssl: on")
    )

    assert served.status == 200
    assert served.getheader("Strict-Transport-Security")
    assert other_header.status == 301


# --- Request bodies ------------------------------------------------------------

SIXTY_MB = 60 * 1024 * 1024
CSRF_SECRET = "a" * 32


@pytest.mark.reliability("huge-bodies")
def test_a_60_mb_upload_is_refused_before_it_is_read(server):
    """Only 32 KB of the 60 MB are ever sent. With a CSRF cookie and token
    first in the form, Django's CSRF check would parse the whole multipart
    body (files do not count towards DATA_UPLOAD_MAX_MEMORY_SIZE): an app
    reading it would still wait for the rest when gunicorn's timeout came."""
    boundary = b"b0undary"
    start = (
        b"--" + boundary + b"\r\n"
        b'Content-Disposition: form-data; name="csrfmiddlewaretoken"\r\n\r\n'
        + CSRF_SECRET.encode()
        + b"\r\n--"
        + boundary
        + b"\r\n"
        b'Content-Disposition: form-data; name="avatar"; filename="big.jpg"\r\n'
        b"Content-Type: image/jpeg\r\n\r\n"
    )
    started = time.monotonic()

    response = server.send(
        request(
            b"/accounts/login/",
            b"Content-Type: multipart/form-data; boundary=" + boundary,
            b"Content-Length: %d" % SIXTY_MB,
            b"Cookie: csrftoken=" + CSRF_SECRET.encode(),
            method=b"POST",
        ),
        body=start + b"x" * 32 * 1024,
    )

    assert response.status == 413
    assert time.monotonic() - started < 5
    assert response.getheader("Content-Type").startswith("text/html")
    assert b"Too large" in response.body and b"26.5 MB" in response.body
    assert response.getheader("Server") is None


@pytest.mark.reliability("huge-bodies")
def test_a_60_mb_api_body_is_a_json_413(server):
    response = server.send(
        request(
            b"/api/v1/orders/",
            b"Content-Type: application/json",
            b"Content-Length: %d" % SIXTY_MB,
            method=b"POST",
        ),
        body=b"[" * 32 * 1024,
    )

    assert response.status == 413
    assert response.getheader("Content-Type") == "application/json"
    assert json.loads(response.body)["error"]["code"] == "request_too_large"


@pytest.mark.reliability("huge-bodies")
def test_a_chunked_body_is_refused_before_it_is_read(server):
    response = server.send(
        request(
            b"/api/v1/orders/",
            b"Content-Type: application/json",
            b"Transfer-Encoding: chunked",
            method=b"POST",
        ),
        body=b"10\r\n" + b"[" * 16 + b"\r\n",  # and never the last chunk
    )

    assert response.status == 411
    assert json.loads(response.body)["error"]["code"] == "length_required"
