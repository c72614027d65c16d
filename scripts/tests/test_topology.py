"""scripts/topology.py: the production topology on loopback, driven end to end.

One run for the module: nginx round robin over three gunicorn instances of
this checkout, a PostgreSQL database of its own on the suite's server, Redis,
and the suite's S3 server. The scenario signs users up, uploads through nginx,
reads back through every instance and stops one in the middle of a burst;
what it saw, the logs and the state after the topology stopped are kept, and
each test checks one thing that must hold.
"""

from __future__ import annotations

import re
import socket
import subprocess
from dataclasses import dataclass
from pathlib import Path

import psycopg
import pytest
import redis

from scripts import topology as topology_module
from scripts.topology import (
    DEPLOY_NGINX_CONF,
    SCENARIO_UPLOAD_RATE,
    Report,
    Topology,
    client_address,
    deploy_upload_limits,
    parse_key_values,
    scenario_run,
    totp_code,
)

pytestmark = pytest.mark.postgres

# gunicorn.conf.py's access_log_format, one key=value line per request.
ACCESS_LINE = re.compile(
    r'^remote=\S+ forwarded_for="[^"]*" method=[A-Z]+ path="[^"]*" query="[^"]*" '
    r'status=\d{3} bytes=\S+ duration_ms=\d+ rid=\S+ pid=<\d+> user_agent="[^"]*"$'
)


@dataclass
class Run:
    report: Report
    instances: list[str]
    nginx: str
    listening: dict[int, set[str]]
    logs: dict[str, str]  # file name -> text
    instance_logs: dict[str, str]  # address -> text
    nginx_records: list[dict[str, str]]
    nginx_conf: str
    secrets: list[str]
    processes: list[subprocess.Popen]
    directory: Path
    database: str
    admin_url: str
    redis_url: str
    bucket: str


def _listening(port: int) -> set[str]:
    """Local addresses with a TCP socket listening on ``port`` (IPv4 and IPv6)."""
    found = set()
    for table, width in (("/proc/net/tcp", 8), ("/proc/net/tcp6", 32)):
        for line in Path(table).read_text().splitlines()[1:]:
            local, state = line.split()[1], line.split()[3]
            address, port_hex = local.split(":")
            if state != "0A" or int(port_hex, 16) != port:
                continue
            if width == 8:
                found.add(
                    socket.inet_ntop(socket.AF_INET, bytes.fromhex(address)[::-1])
                )
            else:
                raw = b"".join(
                    bytes.fromhex(address[i : i + 8])[::-1] for i in range(0, 32, 8)
                )
                found.add(socket.inet_ntop(socket.AF_INET6, raw))
    return found


def _postgres_url() -> str:
    from django.db import connection

    params = connection.settings_dict
    credentials = params["USER"] + (
        f":{params['PASSWORD']}" if params["PASSWORD"] else ""
    )
    return (
        f"postgres://{credentials}@{params['HOST']}:{params['PORT'] or 5432}/postgres"
    )


@pytest.fixture(scope="module")
def run(s3_server) -> Run:
    with Topology(
        instances=3,
        workers=2,
        s3=s3_server,
        postgres_url=_postgres_url(),
        upload_rate=SCENARIO_UPLOAD_RATE,
    ) as (topology):
        report = scenario_run(topology, users=6)
        ports = [instance.port for instance in topology.instances]
        ports.append(topology.nginx_port)
        captured = Run(
            report=report,
            instances=[instance.address for instance in topology.instances],
            nginx=f"127.0.0.1:{topology.nginx_port}",
            listening={port: _listening(port) for port in ports},
            logs={path.name: path.read_text() for path in topology.log_paths()},
            instance_logs={
                instance.address: instance.log_path.read_text()
                for instance in topology.instances
            },
            nginx_records=topology.nginx_access_records(),
            nginx_conf=topology.nginx_conf.read_text(),
            secrets=list(topology.secret_values),
            processes=[instance.process for instance in topology.instances]
            + [topology.nginx_process],
            directory=topology.directory,
            database=topology.database,
            admin_url=_postgres_url(),
            redis_url=topology.redis_url,
            bucket=topology.bucket,
        )
    print(report.text())
    return captured


def test_every_server_listens_on_loopback_only(run):
    for port, addresses in run.listening.items():
        assert addresses == {"127.0.0.1"}, f"port {port} listens on {addresses}"


def test_the_load_balancer_uses_the_proxy_settings_of_deploy(run):
    assert "proxy_next_upstream error timeout;" in run.nginx_conf
    assert "non_idempotent" not in run.nginx_conf
    assert f"listen {run.nginx};" in run.nginx_conf
    app = re.search(r"upstream app \{([^}]*)\}", run.nginx_conf).group(1)
    upstreams = re.findall(r"^\s*server (\S+);", app, re.MULTILINE)
    assert upstreams == run.instances
    # The per-client upload limit, the scenario's rate aside.
    limits = deploy_upload_limits(DEPLOY_NGINX_CONF.read_text())
    for line in limits["server"] + limits["locations"]:
        assert line in run.nginx_conf
    assert f"rate={SCENARIO_UPLOAD_RATE};" in run.nginx_conf


def test_totp_codes_are_those_of_rfc_6238():
    # RFC 6238, appendix B (SHA1): the last 6 of its 8 digits.
    secret = "GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ"  # b"12345678901234567890"
    assert totp_code(secret, at=59) == "287082"
    assert totp_code(secret, at=1111111109) == "081804"
    assert totp_code(secret, at=20000000000) == "353130"


def test_simulated_clients_have_distinct_loopback_addresses():
    addresses = [client_address(number) for number in range(255 * 254)]
    assert len(set(addresses)) == len(addresses)
    assert all(
        address.startswith("127.0.") and not address.startswith("127.0.0.")
        for address in addresses
    )


@pytest.mark.reliability("throttle-login")
def test_the_throttles_see_each_simulated_user_as_a_client_of_its_own(run):
    # TRUSTED_PROXY_COUNT=2: the client is the second address from the right
    # of X-Forwarded-For (the load balancer's view, then nginx's).
    clients = set()
    for text in run.instance_logs.values():
        for line in text.splitlines():
            record = parse_key_values(line) if line.startswith("remote=") else {}
            if record.get("method") == "POST" and record["path"] in (
                "/accounts/login/",
                "/accounts/signup/",
            ):
                clients.add(record["forwarded_for"].split(", ")[-2])
    assert len(clients) == 1 + 6  # staff, users
    assert all(address.startswith("127.0.") for address in clients)


def test_every_session_is_served_by_every_instance(run):
    assert run.report.users == 6
    assert len(run.report.session_instances) == 6
    for user, served in run.report.session_instances.items():
        assert served == sorted(run.instances), user


def test_every_instance_stores_avatars_and_logos_through_nginx(run):
    for kind in ("avatar", "logo"):
        handled = run.report.handled(kind)
        assert set(handled) == set(run.instances), kind
        assert all(count >= 1 for count in handled.values())


def test_every_current_image_is_readable_from_every_instance(run):
    report = run.report
    files = 6 + 3  # an avatar per user, a logo per token
    for readable in (report.readable_before_stop, report.readable_at_end):
        assert readable == dict.fromkeys(run.instances, (files, files))
    assert report.unreadable == []


def test_no_upload_shares_a_key_and_the_bucket_matches_the_database(run):
    report = run.report
    keys = [upload.key for upload in report.uploads if upload.stored]
    assert len(keys) == report.stored == len(set(keys))
    assert report.duplicate_keys == []
    assert report.missing_objects == []
    assert report.orphan_objects == []
    assert report.wrong_files == []
    assert report.objects == 6 + 3 + 1  # and the default avatar


@pytest.mark.reliability("instance-stopped")
def test_only_requests_in_flight_on_the_stopped_instance_fail(run):
    report = run.report
    assert report.stopped in run.instances
    assert report.failed_before_stop == []
    for failure in report.failed_after_stop:
        assert failure.in_flight_on_stopped, failure.describe()
        # nginx passes a GET on to the next instance; only a POST it has
        # already sent is answered with an error.
        assert failure.response.method == "POST", failure.describe()
        assert failure.response.status == 502, failure.describe()
    assert report.attempted - report.stored == len(report.failed_after_stop)
    others = set(run.instances) - {report.stopped}
    assert set(report.served_after_stop) & others
    assert report.served_by_stopped_after_exit == 0
    assert report.problems() == []


@pytest.mark.reliability("instance-stopped")
def test_failed_requests_are_the_ones_nginx_logged_as_502(run):
    failed = {f.response.request_id for f in run.report.failed_after_stop}
    logged = {
        record["rid"]
        for record in run.nginx_records
        if record["status"] == "502" and record["upstream"] == run.report.stopped
    }
    assert failed == logged


def test_instance_access_logs_are_key_value_with_nginx_request_ids(run):
    for address, text in run.instance_logs.items():
        access = [line for line in text.splitlines() if line.startswith("remote=")]
        assert access, f"no access log line from {address}"
        for line in access:
            assert ACCESS_LINE.match(line), line
        logged_rids = {parse_key_values(line)["rid"] for line in access}
        answered_here = {
            record["rid"]
            for record in run.nginx_records
            if record["upstream"] == address and record["status"] != "502"
        }
        assert answered_here, address
        assert answered_here <= logged_rids, address


@pytest.mark.reliability("log-secrets")
def test_no_secret_appears_in_any_log(run):
    # SECRET_KEY, S3 key, staff (password, authenticator secret), users
    assert len(run.secrets) == 2 + 2 + 6
    for name, text in run.logs.items():
        for secret in run.secrets:
            assert secret not in text, f"a secret is in {name}"
    assert run.report.logs_with_secrets == []


def test_everything_is_stopped_and_removed_afterwards(run, s3_client):
    assert all(process.poll() is not None for process in run.processes)
    for port in run.listening:
        with socket.socket() as probe:
            assert probe.connect_ex(("127.0.0.1", port)) != 0, port
    assert not run.directory.exists()
    with psycopg.connect(run.admin_url) as connection:
        exists = connection.execute(
            "SELECT 1 FROM pg_database WHERE datname = %s", [run.database]
        ).fetchone()
    assert exists is None
    client = redis.Redis.from_url(run.redis_url)
    try:
        assert client.get(topology_module.REDIS_CLAIM_KEY) is None
        assert list(client.scan_iter(match=topology_module.APP_CACHE_KEYS)) == []
    finally:
        client.close()
    assert not s3_client.bucket_exists(bucket_name=run.bucket)
