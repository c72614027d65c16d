"""The production topology on loopback (scripts/topology), driven end to end.

One run for the module: nginx (deploy/nginx.conf) round robin over three
gunicorn instances of this checkout, a PostgreSQL database of its own, Redis
and the suite's S3 server. Through nginx, as a browser would (forms with their
CSRF token): users sign up, log out and in, and every session is served by
every instance; a staff user turns on an authenticator app (TOTP) and signs
in with its code; avatars (profile form, plain and from script) and token
logos (admin) are uploaded until every instance has stored some; every
current image is read back through every instance directly (the page, then
the image URL it gives); one instance gets SIGTERM in the middle of a burst
of concurrent uploads and the burst goes on; it is started again and
everything is read back once more. What it saw, the logs and the state after
the topology stopped are kept, and each test checks one thing that must hold.

nginx passes a request on to the next instance when the connection is
refused, but never sends a POST twice: one that reached the stopped
instance's listen queue while its workers finished is answered 502, and those
are the only failures allowed.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import itertools
import json
import re
import secrets
import socket
import struct
import subprocess
import threading
import time
import urllib.parse
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import psycopg
import pytest
import redis

from scripts import topology as topology_module
from scripts.browser import (
    Browser,
    Response,
    client_address,
    colour,
    csrf_token,
    img_src,
    upload_file,
)
from scripts.tests.traffic import image_check
from scripts.topology import (
    DEFAULT_AVATAR,
    SCENARIO_UPLOAD_RATE,
    Instance,
    Topology,
    parse_key_values,
)
from scripts.topology.nginx import DEPLOY_NGINX_CONF

pytestmark = pytest.mark.postgres

USERS, TOKENS, BURST_UPLOADS = 6, 3, 15
SIZES = {"avatar": 300, "logo": 200}
# django-allauth's pages for a second factor (allauth.mfa).
REAUTHENTICATE = "/accounts/reauthenticate/"
TOTP_ACTIVATE = "/accounts/2fa/totp/activate/"
TOTP_AUTHENTICATE = "/accounts/2fa/authenticate/"
# gunicorn.conf.py's access_log_format, one key=value line per request.
ACCESS_LINE = re.compile(
    r'^remote=\S+ forwarded_for="[^"]*" method=[A-Z]+ path="[^"]*" query="[^"]*" '
    r'status=\d{3} bytes=\S+ duration_ms=\d+ rid=\S+ pid=<\d+> user_agent="[^"]*"$'
)


def totp_code(secret: str, *, at: float | None = None) -> str:
    """What an authenticator app shows (RFC 6238: HMAC-SHA1, 30 s, 6 digits)."""
    key = base64.b32decode(secret + "=" * (-len(secret) % 8), casefold=True)
    step = int((time.time() if at is None else at) // 30)
    digest = hmac.new(key, struct.pack(">Q", step), hashlib.sha1).digest()
    offset = digest[-1] & 0x0F
    value = struct.unpack(">I", digest[offset : offset + 4])[0] & 0x7FFFFFFF
    return f"{value % 1_000_000:06d}"


def expect(response: Response, status: int, location: str | None = None) -> Response:
    moved = location is not None and response.headers.get("location") != location
    if response.status != status or moved:
        errors = re.findall(r'<ul class="errorlist[^>]*>(.*?)</ul>', response.text)
        raise AssertionError(
            f"expected {status} {location or ''}: {response.describe()}: "
            f"{' '.join(errors) or response.text[:300]}"
        )
    return response


@dataclass
class User:
    name: str
    password: str
    browser: Browser
    totp: str = ""  # the authenticator's secret, once turned on

    def form(self, path: str, fields: dict, status=302, location=None, **options):
        page = expect(self.browser.get(path), 200)
        fields = {"csrfmiddlewaretoken": csrf_token(page), **fields}
        return expect(self.browser.post(path, fields, **options), status, location)

    def log_in(self) -> None:
        to = TOTP_AUTHENTICATE if self.totp else None
        self.form(
            "/accounts/login/",
            {"login": self.name, "password": self.password},
            location=to,
        )
        if self.totp:
            self.form(TOTP_AUTHENTICATE, {"code": totp_code(self.totp)})

    def log_out(self) -> None:
        page = expect(self.browser.get("/accounts/profile/"), 200)
        token = {"csrfmiddlewaretoken": csrf_token(page)}
        expect(self.browser.post("/accounts/logout/", token), 302)
        assert "sessionid" not in self.browser.cookies, self.name


@dataclass
class Upload:
    kind: str  # avatar or logo
    owner: str  # username or token symbol
    rgb: tuple[int, int, int]
    responses: list[Response]  # the form page, then the POST if it was sent
    key: str | None = None  # the object it was stored under
    burst: bool = False

    @property
    def response(self) -> Response:
        return self.responses[-1]


@dataclass
class Scenario:
    topology: Topology
    run_id: str = field(default_factory=lambda: secrets.token_hex(2))
    users: list[User] = field(default_factory=list)
    uploads: list[Upload] = field(default_factory=list)
    sessions: dict[str, set[str]] = field(default_factory=dict)
    readable: list[dict[str, int]] = field(default_factory=list)  # per read-back
    unreadable: list[str] = field(default_factory=list)
    stopped: Instance | None = None
    stop_at: float = 0.0
    exited_at: float = 0.0
    clients: Iterator[int] = field(default_factory=itertools.count)
    colours: Iterator[int] = field(default_factory=itertools.count)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def user(self, name: str, password: str) -> User:
        self.topology.secret_values.append(password)
        address = client_address(next(self.clients))
        return User(
            name, password, Browser(self.topology.nginx_port, client_address=address)
        )

    def key(self, url: str | None) -> str | None:
        prefix = self.topology.media_prefix
        return (
            urllib.parse.unquote(url[len(prefix) :])
            if url and url.startswith(prefix)
            else None
        )

    def handled(self, kind: str) -> set[str]:
        return {u.response.upstream for u in self.uploads if u.kind == kind and u.key}

    def run(self) -> None:
        staff = self.user(f"staff-{self.run_id}", secrets.token_urlsafe(18))
        self.topology.manage(
            "createsuperuser",
            "--noinput",
            env={
                "DJANGO_SUPERUSER_USERNAME": staff.name,
                "DJANGO_SUPERUSER_PASSWORD": staff.password,
                "DJANGO_SUPERUSER_EMAIL": f"{staff.name}@example.com",
            },
        )
        staff.log_in()
        self.totp_turn_on(staff)
        staff.log_out()
        staff.log_in()
        for number in range(USERS):
            user = self.user(f"trader{number}-{self.run_id}", secrets.token_urlsafe(18))
            fields = {"username": user.name, "email": f"{user.name}@example.com"}
            fields |= {"password1": user.password, "password2": user.password}
            user.form("/accounts/signup/", fields, location="/accounts/profile/")
            user.log_out()
            user.log_in()
            self.users.append(user)
        self.sessions_check()
        self.logos_upload(staff)
        for xhr in (False, True):  # as a plain form, then as the page's script
            for user in self.users:
                assert self.avatar_post(user, xhr=xhr).key, self.uploads[
                    -1
                ].response.describe()
        for attempt in range(3 * len(self.topology.instances)):
            if self.handled("avatar") >= {i.address for i in self.topology.instances}:
                break
            self.avatar_post(self.users[attempt % len(self.users)], xhr=True)
        self.read_back()
        self.burst_with_stop()
        self.topology.instance_start(self.stopped)
        self.read_back()

    def totp_turn_on(self, staff: User) -> None:
        """As a person does: the password again, the secret the page shows,
        then the code the app computes from it."""
        asked = expect(staff.browser.get(TOTP_ACTIVATE), 302)
        expect(staff.browser.get(asked.headers["location"]), 200)
        fields = {"password": staff.password, "next": TOTP_ACTIVATE}
        staff.form(REAUTHENTICATE, fields, location=TOTP_ACTIVATE)
        page = expect(staff.browser.get(TOTP_ACTIVATE), 200)
        tag = re.search(r'<input[^>]*id="authenticator_secret"[^>]*>', page.text)
        found = tag and re.search(r'\svalue="([A-Z2-7]+=*)"', tag[0])
        assert found, page.describe()
        staff.totp = found[1]
        self.topology.secret_values.append(staff.totp)
        # Not staff.form: each GET of the page shows a new secret.
        fields = {
            "csrfmiddlewaretoken": csrf_token(page),
            "code": totp_code(staff.totp),
        }
        expect(staff.browser.post(TOTP_ACTIVATE, fields), 302)

    def sessions_check(self) -> None:
        """Every session is accepted by every instance, through nginx or not."""
        for user in self.users:
            served = self.sessions.setdefault(user.name, set())
            heading = f"<h1>{user.name}</h1>"
            for instance in self.topology.instances:
                page = expect(user.browser.get("/accounts/profile/"), 200)
                if heading in page.text:
                    served.add(page.upstream)
                page = user.browser.get("/accounts/profile/", port=instance.port)
                if page.status == 200 and heading in page.text:
                    served.add(instance.address)

    def logos_upload(self, staff: User) -> None:
        """A token per logo form of the admin, then new logos (the old file must
        go) until every instance has stored some."""
        symbols = [f"T{self.run_id.upper()}{n}" for n in range(TOKENS)]
        paths = ["/admin/tokens/token/add/"] * TOKENS
        for attempt in range(TOKENS + 3 * len(self.topology.instances)):
            everywhere = self.handled("logo") >= {
                i.address for i in self.topology.instances
            }
            if attempt >= TOKENS and everywhere:
                break
            symbol = symbols[attempt % TOKENS]
            rgb = colour(next(self.colours))
            fields = {"symbol": symbol, "name": f"Token {symbol}", "decimals": "8"}
            fields |= {"description": "", "is_active": "on", "_save": "Save"}
            files = {"logo": upload_file(rgb, kind="logo")}
            done = staff.form(paths[attempt % TOKENS], fields, files=files)
            page = expect(staff.browser.get(f"/tokens/{symbol}/"), 200)
            key = self.key(img_src(page, "token-logo-large"))
            assert key, f"no logo on /tokens/{symbol}/"
            self.uploads.append(Upload("logo", symbol, rgb, [done], key))
            listing = expect(staff.browser.get(f"/admin/tokens/token/?q={symbol}"), 200)
            paths[attempt % TOKENS] = re.search(
                r'href="(/admin/tokens/token/\d+/change/)', listing.text
            )[1]

    def avatar_post(self, user: User, *, xhr: bool, burst: bool = False) -> Upload:
        rgb = colour(next(self.colours))
        page = user.browser.get("/accounts/profile/")
        upload = Upload("avatar", user.name, rgb, [page], burst=burst)
        if page.status == 200:
            fields = {"csrfmiddlewaretoken": csrf_token(page)}
            headers = {"X_Requested_With": "XMLHttpRequest"} if xhr else {}
            files = {"avatar": upload_file(rgb, kind="avatar")}
            response = user.browser.post(
                "/accounts/profile/", fields, files=files, **headers
            )
            upload.responses.append(response)
            if xhr and response.status == 200:
                upload.key = self.key(json.loads(response.body)["avatar_url"])
            elif not xhr and response.status == 302:
                after = user.browser.get("/accounts/profile/")
                upload.key = self.key(img_src(after, 'id="avatar-current"'))
        with self.lock:
            self.uploads.append(upload)
        return upload

    def latest(self) -> dict[tuple[str, str], Upload]:
        """(kind, owner) -> the last stored upload: what each row must show."""
        ordered = sorted(self.uploads, key=lambda upload: upload.response.ended)
        return {(u.kind, u.owner): u for u in ordered if u.key}

    def read_back(self) -> None:
        """Every current file through every running instance, bypassing nginx."""
        users = {user.name: user for user in self.users}
        readable = {}
        for instance in self.topology.instances:
            if not instance.running:
                continue
            readable[instance.address] = 0
            for (kind, owner), upload in sorted(self.latest().items()):
                if kind == "avatar":
                    browser, path, marker = (
                        users[owner].browser,
                        "/accounts/profile/",
                        'id="avatar-current"',
                    )
                else:
                    browser, path, marker = (
                        Browser(instance.port),
                        f"/tokens/{owner}/",
                        "token-logo-large",
                    )
                page = browser.get(path, port=instance.port)
                url = img_src(page, marker)
                if self.key(url) != upload.key:
                    problem = f"shows {url!r}, not {upload.key!r} ({page.status})"
                else:
                    image = Browser(instance.port).get(url)
                    kind_of = image.headers.get("content-type", "")
                    problem = (
                        image_check(image.body, size=SIZES[kind], rgb=upload.rgb)
                        if image.status == 200 and kind_of.startswith("image/")
                        else f"{url} answered {image.status} {kind_of}"
                    )
                if problem:
                    self.unreadable.append(
                        f"{kind} of {owner} via {instance.address}: {problem}"
                    )
                else:
                    readable[instance.address] += 1
        self.readable.append(readable)

    def burst_with_stop(self) -> None:
        """Every user uploads in a loop, all at once; an instance gets SIGTERM
        once a quarter of the uploads have answered; the burst goes on."""
        self.stopped = self.topology.instances[len(self.topology.instances) // 2]
        answered = threading.Semaphore(0)

        def uploads_of(user: User) -> None:
            for _ in range(BURST_UPLOADS):
                self.avatar_post(user, xhr=True, burst=True)
                answered.release()

        with ThreadPoolExecutor(max_workers=len(self.users)) as pool:
            futures = [pool.submit(uploads_of, user) for user in self.users]
            for _ in range(len(self.users) * BURST_UPLOADS // 4):
                assert answered.acquire(timeout=90), "the burst stalled"
            self.stop_at = time.monotonic()
            self.topology.instance_stop(self.stopped)
            self.exited_at = time.monotonic()
            for future in futures:
                future.result()

    def burst_failures(self) -> list[Response]:
        return [
            response
            for upload in self.uploads
            if upload.burst
            for response in upload.responses
            if response.status != 200
        ]

    def in_flight_on_stopped(self, response: Response) -> bool:
        return response.upstream == self.stopped.address and (
            response.started < self.exited_at
        )


@dataclass
class Run:
    scenario: Scenario
    instances: list[str]
    listening: dict[int, set[str]]
    logs: dict[str, str]  # file name -> text
    instance_logs: dict[str, str]  # address -> text
    nginx_records: list[dict[str, str]]
    nginx_conf: str
    objects: set[str]
    rows: list[tuple[str, str, str]]  # kind, owner, file name
    processes: list[subprocess.Popen]
    topology: Topology


def _listening(port: int) -> set[str]:
    """Local addresses with a TCP socket listening on ``port`` (IPv4 and IPv6)."""
    found = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            local, state = line.split()[1], line.split()[3]
            address, port_hex = local.split(":")
            if state != "0A" or int(port_hex, 16) != port:
                continue
            raw = b"".join(
                bytes.fromhex(address[i : i + 8])[::-1]
                for i in range(0, len(address), 8)
            )
            family = socket.AF_INET if len(raw) == 4 else socket.AF_INET6
            found.add(socket.inet_ntop(family, raw))
    return found


@pytest.fixture(scope="module")
def run(s3_server, postgres_url, topology_static_root) -> Run:
    with Topology(
        instances=3,
        workers=2,
        s3=s3_server,
        postgres_url=postgres_url,
        upload_rate=SCENARIO_UPLOAD_RATE,
        static_root=topology_static_root,
    ) as topology:
        scenario = Scenario(topology)
        scenario.run()
        client = topology.minio_client()
        listed = client.list_objects(bucket_name=topology.bucket, recursive=True)
        with psycopg.connect(topology.database_url) as connection:
            rows = connection.execute(
                "SELECT 'avatar', u.username, p.avatar FROM accounts_profile p "
                "JOIN auth_user u ON u.id = p.user_id "
                "UNION ALL SELECT 'logo', symbol, logo FROM tokens_token"
            ).fetchall()
        ports = [instance.port for instance in topology.instances]
        captured = Run(
            scenario=scenario,
            instances=[instance.address for instance in topology.instances],
            listening={
                port: _listening(port) for port in [*ports, topology.nginx_port]
            },
            logs={path.name: path.read_text() for path in topology.log_paths()},
            instance_logs={
                i.address: i.log_path.read_text() for i in topology.instances
            },
            nginx_records=topology.nginx_access_records(),
            nginx_conf=topology.nginx_conf.read_text(),
            objects={o.object_name for o in listed},
            rows=rows,
            processes=[i.process for i in topology.instances]
            + [topology.nginx_process],
            topology=topology,
        )
    return captured


def test_every_server_listens_on_loopback_only(run):
    for port, addresses in run.listening.items():
        assert addresses == {"127.0.0.1"}, f"port {port} listens on {addresses}"


def test_nginx_runs_deploys_config_with_only_dockers_parts_replaced(run):
    deploy = DEPLOY_NGINX_CONF.read_text().splitlines()
    replaced = [
        line.strip() for line in deploy if line not in run.nginx_conf.splitlines()
    ]
    assert replaced == [
        "worker_processes auto;",
        "error_log /dev/stderr warn;",
        "pid /tmp/nginx.pid;",
        "resolver 127.0.0.11 valid=10s ipv6=off;",
        'map "${TRUSTED_PROXY_COUNT}|$http_x_forwarded_for" $client_address {',
        "limit_req_zone $upload_client zone=uploads:10m rate=6r/m;",
        "access_log /dev/stdout main;",
        "server app:8000 resolve;",
        "server stream:8001 resolve;",
        "listen 8080;",
        "set $media_store objectstore:9000;",
    ]
    assert f"rate={SCENARIO_UPLOAD_RATE};" in run.nginx_conf
    # The instances' TRUSTED_PROXY_COUNT, as compose writes it in.
    assert 'map "2|$http_x_forwarded_for" $client_address {' in run.nginx_conf
    app = re.search(r"upstream app \{([^}]*)\}", run.nginx_conf)[1]
    assert re.findall(r"^\s*server (\S+);", app, re.MULTILINE) == run.instances


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
    assert len(clients) == 1 + USERS  # staff, users
    assert all(address.startswith("127.0.") for address in clients)


def test_every_session_is_served_by_every_instance(run):
    assert len(run.scenario.sessions) == USERS
    for user, served in run.scenario.sessions.items():
        assert served == set(run.instances), user


def test_every_instance_stores_avatars_and_logos_through_nginx(run):
    for kind in ("avatar", "logo"):
        assert run.scenario.handled(kind) == set(run.instances), kind


def test_every_current_image_is_readable_from_every_instance(run):
    files = USERS + TOKENS  # an avatar per user, a logo per token
    before, after = run.scenario.readable
    assert before == dict.fromkeys(run.instances, files)  # before the stop
    assert after == dict.fromkeys(run.instances, files)  # the stopped one back
    assert run.scenario.unreadable == []


def test_no_upload_shares_a_key_and_the_bucket_matches_the_database(run):
    keys = [upload.key for upload in run.scenario.uploads if upload.key]
    assert len(keys) == len(set(keys))
    names = [name for *_, name in run.rows if name and name != DEFAULT_AVATAR]
    assert len(names) == len(set(names)) == USERS + TOKENS
    assert run.objects == set(names) | {DEFAULT_AVATAR}
    # Each row shows its last stored upload.
    latest = {place: upload.key for place, upload in run.scenario.latest().items()}
    assert len(latest) == USERS + TOKENS
    assert {
        (kind, owner): name for kind, owner, name in run.rows if (kind, owner) in latest
    } == latest


@pytest.mark.reliability("instance-stopped")
def test_only_requests_in_flight_on_the_stopped_instance_fail(run):
    scenario = run.scenario
    # An upload not stored is one that failed.
    for upload in scenario.uploads:
        assert upload.key or upload.response.status != 200, upload.response.describe()
    for response in scenario.burst_failures():
        assert response.ended > scenario.stop_at, response.describe()
        assert scenario.in_flight_on_stopped(response), response.describe()
        # nginx passes a GET on to the next instance; only a POST it has
        # already sent is answered with an error.
        assert (response.method, response.status) == ("POST", 502), response.describe()
    served_after = Counter(
        response.upstream
        for upload in scenario.uploads
        for response in upload.responses
        if response.status == 200 and response.started > scenario.stop_at
    )
    assert set(served_after) - {scenario.stopped.address}
    # Nothing the stopped instance answered was sent after it exited.
    assert all(
        response.started < scenario.exited_at
        for upload in scenario.uploads
        for response in upload.responses
        if response.upstream == scenario.stopped.address and upload.burst
    )


@pytest.mark.reliability("instance-stopped")
def test_failed_requests_are_the_ones_nginx_logged_as_502(run):
    failed = {response.request_id for response in run.scenario.burst_failures()}
    logged = {
        record["rid"]
        for record in run.nginx_records
        if record["status"] == "502"
        and record["upstream"] == run.scenario.stopped.address
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
    secrets_ = run.topology.secret_values
    assert len(secrets_) == 2 + 2 + USERS
    assert {"matcher.log", "stream.log", "access.log", "error.log"} <= set(run.logs)
    for name, text in run.logs.items():
        for secret in secrets_:
            assert secret not in text, f"a secret is in {name}"


def test_everything_is_stopped_and_removed_afterwards(run, s3_client, postgres_url):
    topology = run.topology
    assert all(process.poll() is not None for process in run.processes)
    for port in run.listening:
        with socket.socket() as probe:
            assert probe.connect_ex(("127.0.0.1", port)) != 0, port
    assert not topology.directory.exists()
    with psycopg.connect(postgres_url) as connection:
        exists = connection.execute(
            "SELECT 1 FROM pg_database WHERE datname = %s", [topology.database]
        ).fetchone()
    assert exists is None
    client = redis.Redis.from_url(topology.redis_url)
    try:
        assert client.get(topology_module.REDIS_CLAIM_KEY) is None
        assert list(client.scan_iter(match=topology_module.APP_CACHE_KEYS)) == []
    finally:
        client.close()
    assert not s3_client.bucket_exists(bucket_name=topology.bucket)
