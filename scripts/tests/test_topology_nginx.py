"""What deploy/nginx.conf itself decides, in the loopback topology: whose
address a request is, which request id it carries, and the answers nginx
makes without the app.

One gunicorn instance of this checkout with the TRUSTED_PROXY_COUNT that
docker-compose.yml gives the app by default, behind Debian's nginx running
deploy/nginx.conf with the count compose writes into it (more nginx processes
for the other counts). Requests come from loopback addresses of their own, so
nginx sees each client's connection, and say what a TLS terminator in front
of nginx would (X-Forwarded-For).
"""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from scripts.browser import Browser, client_address, csrf_token
from scripts.processes import ROOT, free_ports, spawn, terminate, wait_ready
from scripts.topology import NGINX, Topology, parse_key_values
from scripts.topology import nginx as topology_nginx

pytestmark = pytest.mark.postgres

COMPOSE = Path(sys.executable).parent / "docker-compose"
# What docker-compose.yml requires in .env (scripts/check_containers.sh).
SAMPLE_ENV = {
    "SECRET_KEY": "sample-value-for-compose-config-only",
    "POSTGRES_PASSWORD": "sample-postgres-password",
    "MINIO_ACCESS_KEY": "sample-access-key",
    "MINIO_SECRET_KEY": "sample-secret-key",
}
# Over nginx's client_max_body_size (27 MB) and the app's MAX_REQUEST_BODY_SIZE.
TOO_LARGE = 30_000_000
SECURITY_HEADERS = ("X-Content-Type-Options", "X-Frame-Options")


@dataclass
class Answer:
    status: int
    headers: http.client.HTTPMessage
    body: bytes

    def one(self, name: str) -> str:
        """The header ``name``, sent exactly once."""
        values = self.headers.get_all(name) or []
        assert len(values) == 1, f"{name}: {values}"
        return values[0]


def exchange(port: int, request: bytes, *, source: str = "127.0.0.1") -> Answer:
    """``request`` as written, from the loopback address ``source``."""
    with socket.create_connection(
        ("127.0.0.1", port), timeout=30, source_address=(source, 0)
    ) as connection:
        connection.sendall(request)
        answer = http.client.HTTPResponse(connection)
        answer.begin()
        return Answer(answer.status, answer.headers, answer.read())


def head(method: str, path: str, **headers) -> bytes:
    """A request's head; header names may use underscores."""
    lines = [f"{method} {path} HTTP/1.1", "Host: 127.0.0.1", "Connection: close"]
    lines += [f"{name.replace('_', '-')}: {value}" for name, value in headers.items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def get(port: int, path: str, *, source: str = "127.0.0.1", **headers) -> Answer:
    return exchange(port, head("GET", path, **headers), source=source)


def too_large_post(port: int, path: str, **headers) -> Answer:
    """A POST that announces more than nginx and the app accept, and sends
    none of it: both answer from the Content-Length."""
    length = {"Content_Type": "application/json", "Content_Length": TOO_LARGE}
    return exchange(port, head("POST", path, **length, **headers))


def compose_services(**variables: str) -> dict:
    """The services of docker-compose.yml as `docker compose config` gives them
    with ``variables`` and the required secrets in .env (as
    scripts/check_containers.sh reads it)."""
    with tempfile.TemporaryDirectory() as directory:
        env_file = Path(directory) / "sample.env"
        values = {**SAMPLE_ENV, **variables}
        env_file.write_text("".join(f"{k}={v}\n" for k, v in values.items()))
        command = [str(COMPOSE), "--env-file", str(env_file)]
        command += ["--project-directory", str(ROOT), "-f", "docker-compose.yml"]
        result = subprocess.run(
            [*command, "--profile", "minio", "config", "--format", "json"],
            cwd=ROOT,
            env={"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": directory},
            capture_output=True,
            text=True,
            timeout=120,
        )
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)["services"]


@pytest.fixture(scope="module")
def composed() -> dict:
    return compose_services()


@pytest.fixture(scope="module")
def topology(s3_server, postgres_url, topology_static_root, composed):
    count = composed["app"]["environment"]["TRUSTED_PROXY_COUNT"]
    with Topology(
        instances=1,
        workers=2,
        s3=s3_server,
        postgres_url=postgres_url,
        static_root=topology_static_root,
        environment={"TRUSTED_PROXY_COUNT": count},
    ) as topology:
        yield topology


@dataclass
class Nginx:
    port: int
    access_log: Path

    def records(self) -> list[dict[str, str]]:
        return [
            parse_key_values(line) for line in self.access_log.read_text().splitlines()
        ]

    def record(self, request_id: str) -> dict[str, str]:
        """The access line of the request with ``request_id``, once written."""
        deadline = time.monotonic() + 10
        while True:
            found = [r for r in self.records() if r.get("rid") == request_id]
            if found:
                return found[0]
            assert time.monotonic() < deadline, f"nginx logged no rid={request_id}"
            time.sleep(0.05)


@contextlib.contextmanager
def nginx_before(topology: Topology, *, trusted_proxy_count: int) -> Iterator[Nginx]:
    """One more nginx running deploy/nginx.conf before the topology's instance,
    with ``trusted_proxy_count`` written in as compose writes it."""
    directory = Path(tempfile.mkdtemp(prefix="nginx-", dir=topology.directory))
    directory.chmod(0o711)  # nginx's workers (nobody) write below it
    [port] = free_ports(1)
    conf = directory / "nginx.conf"
    conf.write_text(
        topology_nginx.config(
            directory=directory,
            port=port,
            upstreams=[instance.address for instance in topology.instances],
            stream=topology.stream_address,
            media_store=topology.s3_endpoint,
            trusted_proxy_count=trusted_proxy_count,
        )
    )
    command = [NGINX, "-p", str(directory), "-c", str(conf)]
    command += ["-e", str(directory / "error.log"), "-g", "daemon off;"]
    process = spawn(command, env=topology.env, log_path=directory / "output.log")
    try:
        wait_ready(process, port, "/healthz/", directory / "error.log")
        yield Nginx(port, directory / "access.log")
    finally:
        terminate(process, signal.SIGQUIT)


def app_record(topology: Topology, request_id: str) -> dict[str, str]:
    """The instance's access line of the request with ``request_id``."""
    deadline = time.monotonic() + 10
    while True:
        for line in topology.instances[0].log_path.read_text().splitlines():
            if line.startswith("remote="):
                record = parse_key_values(line)
                if record["rid"] == request_id:
                    return record
        assert time.monotonic() < deadline, f"the app logged no rid={request_id}"
        time.sleep(0.05)


def test_compose_runs_nginx_and_the_app_with_one_count_two_by_default(composed):
    services = compose_services(TRUSTED_PROXY_COUNT="1")
    for name in ("app", "stream", "nginx"):
        assert composed[name]["environment"]["TRUSTED_PROXY_COUNT"] == "2", name
        assert services[name]["environment"]["TRUSTED_PROXY_COUNT"] == "1", name


def test_each_client_behind_the_tls_proxy_has_its_own_log_in_failures(
    topology, composed
):
    """The documented layout: a TLS terminator appends each browser's address
    to X-Forwarded-For, then nginx and the app as compose configures them."""
    from django.conf import settings

    count = int(composed["nginx"]["environment"]["TRUSTED_PROXY_COUNT"])
    per_address = int(settings.ACCOUNT_RATE_LIMITS["login_failed"].split("/")[0])

    def failed_log_in(browser: Browser, number: int) -> int:
        page = browser.get("/accounts/login/")
        answer = browser.post(
            "/accounts/login/",
            {
                "csrfmiddlewaretoken": csrf_token(page),
                "login": f"nobody{number}",
                "password": "not-the-password",
            },
        )
        refused = answer.status == 429 or "Too many failed" in answer.text
        return 429 if refused else answer.status

    with nginx_before(topology, trusted_proxy_count=count) as nginx:
        # One failure each from more people than one address may fail.
        statuses = [
            failed_log_in(
                Browser(nginx.port, client_address=f"203.0.113.{number}"), number
            )
            for number in range(1, per_address + 2)
        ]
        # The limit still holds for one of them.
        one = Browser(nginx.port, client_address="198.51.100.1")
        repeated = [failed_log_in(one, number) for number in range(per_address + 1)]

    assert statuses == [200] * (per_address + 1)
    assert repeated == [200] * per_address + [429]


@pytest.mark.parametrize("count", [1, 2, 3])
def test_nginx_takes_the_client_address_the_app_takes(topology, settings, count):
    from django.test import RequestFactory

    from accounts.adapter import AccountAdapter

    settings.ALLAUTH_TRUSTED_PROXY_COUNT = count
    forwarded = [
        None,
        "203.0.113.5",
        "198.51.100.7, 203.0.113.5",
        "192.0.2.1,198.51.100.7 , 203.0.113.5",
    ]
    seen = []
    with nginx_before(topology, trusted_proxy_count=count) as nginx:
        for number, forwarded_for in enumerate(forwarded, start=700):
            request_id = uuid.uuid4().hex
            headers = {"X_Request_ID": request_id}
            if forwarded_for:
                headers["X_Forwarded_For"] = forwarded_for
            source = client_address(number)
            get(nginx.port, "/healthz/", source=source, **headers)
            seen.append((source, nginx.record(request_id), request_id))

    for source, nginx_record, request_id in seen:
        app = app_record(topology, request_id)
        request = RequestFactory().get(
            "/",
            headers={"X-Forwarded-For": app["forwarded_for"]},
            REMOTE_ADDR=app["remote"],
        )
        assert nginx_record["remote"] == source
        assert nginx_record["client"] == AccountAdapter(request).get_client_ip(
            request
        ), app["forwarded_for"]
    if count == 1:
        # Nothing in front of nginx: whatever a client writes is not its address.
        assert [record["client"] for _, record, _ in seen] == [
            source for source, _, _ in seen
        ]


@pytest.mark.parametrize(
    "forged",
    [
        'abc remote=203.0.113.66 status=200 uri="/forged"',
        'abc" status="200',
        "x" * 65,
        "abc/../def",
    ],
)
def test_a_request_id_that_is_not_a_plain_token_is_replaced(topology, forged):
    source = client_address(800)

    answer = get(
        topology.nginx_port, "/no-such-page/", source=source, X_Request_ID=forged
    )

    assert answer.status == 404
    request_id = answer.one("X-Request-ID")  # what nginx passed on and logged
    assert len(request_id) == 32 and set(request_id) <= set("0123456789abcdef")
    record = Nginx(topology.nginx_port, topology.nginx_access_log).record(request_id)
    assert (record["remote"], record["status"]) == (source, "404")
    assert record["uri"] == "/no-such-page/"
    assert app_record(topology, request_id)["status"] == "404"
    records = Nginx(topology.nginx_port, topology.nginx_access_log).records()
    assert not [
        r for r in records if "203.0.113.66" in r.values() or "/forged" in r.values()
    ]


def test_a_plain_request_id_is_kept_on_both_sides(topology):
    request_id = f"lb-{uuid.uuid4().hex}_2026.1"

    answer = get(topology.nginx_port, "/healthz/", X_Request_ID=request_id)

    assert answer.status == 200
    assert answer.one("X-Request-ID") == request_id
    record = Nginx(topology.nginx_port, topology.nginx_access_log).record(request_id)
    assert record["uri"] == "/healthz/"
    assert app_record(topology, request_id)["path"] == "/healthz/"


def test_an_api_body_over_nginxs_limit_is_the_apis_json_413(topology):
    request_id = uuid.uuid4().hex
    answer = too_large_post(
        topology.nginx_port, "/api/v1/orders/", X_Request_ID=request_id
    )
    # The same request to the app itself (its limit is lower than nginx's).
    app = too_large_post(topology.instances[0].port, "/api/v1/orders/")

    assert answer.status == app.status == 413
    assert answer.one("Content-Type") == app.one("Content-Type") == "application/json"
    error, app_error = json.loads(answer.body), json.loads(app.body)
    assert error["error"]["code"] == app_error["error"]["code"] == "request_too_large"
    assert error.keys() == app_error.keys()
    assert error["error"].keys() == app_error["error"].keys()
    assert "27 MB" in error["error"]["message"]
    # nginx answered alone.
    nginx = Nginx(topology.nginx_port, topology.nginx_access_log)
    assert nginx.record(request_id)["upstream"] == "-"


def test_a_page_body_over_nginxs_limit_is_a_413_page(topology):
    answer = too_large_post(topology.nginx_port, "/accounts/profile/")
    app = too_large_post(topology.instances[0].port, "/accounts/profile/")

    assert answer.status == app.status == 413
    assert answer.one("Content-Type") == app.one("Content-Type")
    assert answer.one("Content-Type") == "text/html; charset=utf-8"
    assert b"<title>Too large" in answer.body
    assert b"27 MB" in answer.body


@pytest.mark.parametrize(
    "request_bytes",
    [
        b"GET /\x01 HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: a b\r\nConnection: close\r\n\r\n",
        f"POST /accounts/profile/ HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        f"Content-Length: {TOO_LARGE}\r\nConnection: close\r\n\r\n".encode(),
        f"POST /api/v1/orders/ HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        f"Content-Length: {TOO_LARGE}\r\nConnection: close\r\n\r\n".encode(),
        b"GET /_media_store/bucket/key HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        b"Connection: close\r\n\r\n",
    ],
    ids=["bad-request-line", "bad-host", "413-page", "413-api", "internal-404"],
)
def test_answers_nginx_makes_itself_carry_the_security_headers(topology, request_bytes):
    answer = exchange(topology.nginx_port, request_bytes)

    assert answer.status in (400, 404, 413)
    assert answer.one("X-Content-Type-Options") == "nosniff"
    assert answer.one("X-Frame-Options") == "DENY"
    assert answer.one("Content-Security-Policy") == (
        "default-src 'none'; frame-ancestors 'none'"
    )


def test_an_app_answer_keeps_its_own_security_headers_alone(topology):
    page = get(topology.nginx_port, "/tokens/")
    app = get(topology.instances[0].port, "/tokens/")

    assert page.status == app.status == 200
    for name in (*SECURITY_HEADERS, "Content-Security-Policy"):
        assert page.one(name) == app.one(name), name
    assert "default-src 'self'" in page.one("Content-Security-Policy")
