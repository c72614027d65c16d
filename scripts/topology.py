#!/usr/bin/env python
"""The production topology on loopback, without Docker, and a scenario through it.

    python scripts/topology.py            # or: make topology

Starts, on 127.0.0.1 only: an S3 server (``scripts/s3_server.py``, or an
existing endpoint with ``--s3-endpoint``), a fresh PostgreSQL database on the
server of ``--postgres-url`` (migrated once, dropped at the end), a Redis
database number of its own on ``--redis-url``, three gunicorn instances of this
checkout (``gunicorn -c gunicorn.conf.py crypto_exchange.wsgi:application``
with ``--bind 127.0.0.1:PORT``) with production settings from the environment,
and Debian's nginx (``/usr/sbin/nginx``, ``make /usr/sbin/nginx`` installs it)
round-robin in front of them, with the proxy settings of ``deploy/nginx.conf``
and its per-client limit on upload POSTs (the scenario, which uploads as fast
as it can, raises its rate to ``SCENARIO_UPLOAD_RATE``), the order matcher
(``manage.py run_matcher``), and the live stream's ASGI process (uvicorn, as
the Procfile and docker-compose.yml run it) behind nginx's stream location of
``deploy/nginx.conf``, copied verbatim. Every port is chosen
free; everything is stopped and removed on exit, also on an error, Ctrl-C or
SIGTERM.

Then, through nginx as a browser would (forms with their CSRF token): users
sign up and log in, and every session is served by every instance; a staff
user turns on an authenticator app (TOTP) and signs in with its code; avatars
(profile form, plain and XMLHttpRequest) and token logos (admin, as staff)
are uploaded until every instance has handled some; every stored image is
read back through every instance directly (the page that shows it, then the
image URL it gives) and checked in the bucket; one instance is stopped
(SIGTERM, graceful) in the middle of a burst of concurrent uploads and the
burst goes on; the instance is started again and everything is read back once
more. The report: uploads attempted and stored, readable from each instance,
duplicate object keys, what the bucket and the database disagree on, and the
requests that failed after the stop. The exit code is 1 when an invariant
does not hold.

The instances trust two proxies (``TRUSTED_PROXY_COUNT=2``), as if a load
balancer stood in front of nginx: each simulated client sends the
X-Forwarded-For that load balancer would, with a loopback address of its own
(127.0.X.Y, never 127.0.0.1), so the log-in and sign-up throttles count
clients apart as they would in production.

A POST that nginx has already sent to an instance is never sent again
(``proxy_next_upstream error timeout``, without ``non_idempotent``): an
instance that refuses the connection is skipped, but a request that reached
the stopped instance's listen queue while its workers were finishing their
last requests is answered 502, as nginx cannot know it was not processed.
Those are the only failures allowed after the stop; a GET in the same
situation is retried on the next instance.

The test (``scripts/tests/test_topology.py``) and the load benchmark
(``bench/load.py``) use :class:`Topology` and :func:`scenario_run`.
"""

from __future__ import annotations

import argparse
import base64
import colorsys
import contextlib
import ctypes
import hashlib
import hmac
import html
import http.client
import io
import itertools
import json
import os
import re
import secrets
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from http.cookies import SimpleCookie
from pathlib import Path
from typing import Protocol

ROOT = Path(__file__).resolve().parent.parent
PYTHON = Path(sys.executable)
NGINX = "/usr/sbin/nginx"
DEPLOY_NGINX_CONF = ROOT / "deploy" / "nginx.conf"
LOOPBACK = "127.0.0.1"

DEFAULT_POSTGRES_URL = "postgres://postgres@127.0.0.1:5432/postgres"
DEFAULT_REDIS_URL = "redis://127.0.0.1:6379"
# The app's Redis keys start with its cache KEY_PREFIX (crypto_exchange/settings.py).
APP_CACHE_KEYS = "crypto-exchange:*"
# Marks a Redis database number as taken by one topology; it expires, so a
# killed run does not keep the number for ever.
REDIS_CLAIM_KEY = "topology:claimed-by"
REDIS_CLAIM_SECONDS = 6 * 3600
DEFAULT_AVATAR = "default_avatar.jpg"
S3_REGION = "us-east-1"

# The live stream's process, as the Procfile's `stream` and docker-compose's
# `stream` service run it (there on 0.0.0.0 inside the container).
STREAM_COMMAND = [
    *("-m", "uvicorn", "crypto_exchange.asgi:application"),
    *("--loop", "uvloop", "--http", "httptools"),
    *("--timeout-graceful-shutdown", "5", "--no-access-log"),
]

READY_TIMEOUT = 90.0
STOP_TIMEOUT = 40.0  # gunicorn's graceful_timeout is 25 s
REQUEST_TIMEOUT = 60.0
AVATAR_SIZE, LOGO_SIZE = 300, 200
# django-allauth's pages for a second factor (allauth.mfa).
REAUTHENTICATE_PATH = "/accounts/reauthenticate/"
TOTP_ACTIVATE_PATH = "/accounts/2fa/totp/activate/"
TOTP_AUTHENTICATE_PATH = "/accounts/2fa/authenticate/"
COLOUR_TOLERANCE = 12  # per channel, after JPEG re-encoding
# The scenario and the load benchmark upload many avatars per client on
# purpose, as fast as they can; deploy/nginx.conf's per-client limit (6 a
# minute) is tested on its own.
SCENARIO_UPLOAD_RATE = "100r/s"


class TopologyError(RuntimeError):
    """A part of the topology could not start, or stopped by itself."""


class S3Endpoint(Protocol):
    endpoint: str  # host:port
    access_key: str
    secret_key: str


# --- Processes ---------------------------------------------------------------


def _free_ports(count: int) -> list[int]:
    ports: set[int] = set()
    while len(ports) < count:
        with socket.socket() as probe:
            probe.bind((LOOPBACK, 0))
            ports.add(probe.getsockname()[1])
    return sorted(ports)


_libc = ctypes.CDLL(None, use_errno=True)
_PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:
    # Runs in the child before exec: if this script is killed outright (no
    # chance to clean up), the kernel sends the child SIGTERM, so no server
    # outlives it.
    _libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


def _spawn(command: list[str], *, env: dict[str, str], log_path: Path, cwd: Path):
    with log_path.open("ab") as log:
        return subprocess.Popen(
            command,
            cwd=cwd,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            # Ctrl-C reaches this script only; it stops the children in order.
            start_new_session=True,
            # Not thread-safe in general; nothing here spawns while threads run.
            preexec_fn=_die_with_parent,
        )


def _terminate(process: subprocess.Popen | None, sig: int, timeout: float) -> None:
    if process is None or process.poll() is not None:
        return
    process.send_signal(sig)
    try:
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=10)


def _log_tail(path: Path, characters: int = 3000) -> str:
    try:
        return path.read_text(errors="replace")[-characters:]
    except OSError:
        return "(no log)"


def _status(port: int, path: str) -> int | None:
    connection = http.client.HTTPConnection(LOOPBACK, port, timeout=5)
    try:
        connection.request("GET", path, headers={"Host": LOOPBACK})
        response = connection.getresponse()
        response.read()
        return response.status
    except OSError:
        return None
    finally:
        connection.close()


@dataclass
class Instance:
    """One gunicorn of this checkout, bound to 127.0.0.1:port."""

    number: int
    port: int
    log_path: Path
    process: subprocess.Popen | None = None

    @property
    def address(self) -> str:
        return f"{LOOPBACK}:{self.port}"

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None


# --- nginx -------------------------------------------------------------------


def _strip_comments(text: str) -> str:
    return re.sub(r"#[^\n]*", "", text)


# The store's address in deploy/nginx.conf's internal media location.
_MEDIA_STORE_ADDRESS = re.compile(r"(\bset \$media_store )\S+;")


def deploy_proxy_settings(text: str) -> dict[str, list[str]]:
    """The parts of deploy/nginx.conf the loopback load balancer reuses verbatim.

    ``maps`` and ``log_format`` from its http block; ``server``: the proxy
    directives and the body size limit of its server block (not those of its
    locations, nor ``proxy_pass``, whose upstream differs); ``media_store``:
    the ``internal`` location media are handed to (X-Accel-Redirect) and the
    named locations of its error pages, whole (the store's address is
    replaced); ``stream``: the location of the live stream, whole (its
    ``proxy_pass`` names the upstream ``stream``). Everything Docker-specific
    (resolver, service names, ports) is left out.
    """
    text = _strip_comments(text)
    maps = re.findall(r"^\s*(map\s[^{]*\{[^}]*\})", text, re.MULTILINE)
    log_format = re.findall(r"^\s*(log_format\s[^;]*;)", text, re.MULTILINE)
    location = re.compile(
        r"^[ \t]*(location\s+(?:[=~^*]+\s+)?(\S+)\s*\{[^}]*\})", re.MULTILINE
    )
    blocks = {path: block for block, path in location.findall(text)}
    internal = [
        block
        for block in blocks.values()
        if _MEDIA_STORE_ADDRESS.search(block)
        and re.search(r"^\s*internal;", block, re.MULTILINE)
    ]
    error_pages = {
        name for block in internal for name in re.findall(r"\s(@\w+);", block)
    }
    media_store = [
        "\n".join(line for line in block.splitlines() if line.strip())
        for block in internal + [blocks[name] for name in sorted(error_pages)]
    ]
    stream = [
        "\n".join(line for line in block.splitlines() if line.strip())
        for block in blocks.values()
        if re.search(r"^\s*proxy_pass http://stream;", block, re.MULTILINE)
    ]
    server = re.findall(
        r"^\s*((?:proxy_(?!pass\b)\w+|client_max_body_size)\s[^;]*;)",
        location.sub("", text),
        re.MULTILINE,
    )
    return {
        "maps": maps,
        "log_format": log_format,
        "server": server,
        "media_store": media_store,
        "stream": stream,
    }


def media_accel_prefix(deploy_text: str) -> str:
    """The internal location of deploy/nginx.conf that MEDIA_ACCEL_REDIRECT
    names: the app's X-Accel-Redirect goes there."""
    for block in deploy_proxy_settings(deploy_text)["media_store"]:
        if _MEDIA_STORE_ADDRESS.search(block):
            return block.split()[1]
    raise TopologyError(f"{DEPLOY_NGINX_CONF} has no internal media store location")


def deploy_upload_limits(text: str, *, rate: str | None = None) -> dict[str, list[str]]:
    """deploy/nginx.conf's per-client limit on upload POSTs, verbatim.

    ``zones``: its ``limit_req_zone``/``limit_conn_zone`` (http block);
    ``server``: its ``limit_req``/``limit_conn`` directives and the
    ``error_page 429`` of its server block; ``locations``: the named location
    that 429 goes to. ``rate`` replaces the zones' rate when given.
    """
    text = _strip_comments(text)
    zones = re.findall(r"^\s*(limit_(?:req|conn)_zone\s[^;]*;)", text, re.MULTILINE)
    if rate is not None:
        zones = [re.sub(r"\brate=[^\s;]+", f"rate={rate}", zone) for zone in zones]
    server = re.findall(
        r"^\s*((?:limit_(?:req|conn)(?:_status|_log_level)?|error_page\s+429)\s[^;]*;)",
        text,
        re.MULTILINE,
    )
    names = re.findall(r"^\s*error_page\s+429\s+(@\w+);", text, re.MULTILINE)
    locations = [
        "\n".join(line for line in block.splitlines() if line.strip())
        for name in names
        for block in re.findall(
            rf"^[ \t]*(location\s+{name}\s*\{{[^}}]*\}})", text, re.MULTILINE
        )
    ]
    return {"zones": zones, "server": server, "locations": locations}


def nginx_config(
    *,
    directory: Path,
    port: int,
    upstreams: Iterable[str],
    deploy_text: str,
    media_store: str,
    stream: str,
    upload_rate: str | None = None,
) -> str:
    """``media_store``: host:port of the S3 server, for the location media
    are handed to (the signed host: the instances' MINIO_ENDPOINT).
    ``stream``: host:port of the live stream's process.
    ``upload_rate``: instead of deploy's rate of upload POSTs per client."""
    reused = deploy_proxy_settings(deploy_text)
    if not reused["stream"]:
        raise TopologyError(f"{DEPLOY_NGINX_CONF} has no location for the stream")
    stream_locations = "\n\n".join(f"        {block}" for block in reused["stream"])
    if not reused["log_format"] or not any(
        line.startswith("proxy_next_upstream") for line in reused["server"]
    ):
        raise TopologyError(f"{DEPLOY_NGINX_CONF} has no log_format or proxy settings")
    media_accel_prefix(deploy_text)  # the location is there
    limits = deploy_upload_limits(deploy_text, rate=upload_rate)
    if not limits["zones"] or not limits["server"] or not limits["locations"]:
        raise TopologyError(f"{DEPLOY_NGINX_CONF} has no per-client upload limit")
    zones = "\n    ".join(limits["zones"])
    limit_directives = "\n".join(f"        {line}" for line in limits["server"])
    limit_locations = "\n\n".join(f"        {block}" for block in limits["locations"])
    maps = "\n    ".join(reused["maps"])
    servers = "\n".join(f"        server {address};" for address in upstreams)
    proxy = "\n".join(f"        {line}" for line in reused["server"])
    media_locations = "\n\n".join(
        "        " + _MEDIA_STORE_ADDRESS.sub(rf"\g<1>{media_store};", block)
        for block in reused["media_store"]
    )
    user = "user nobody nogroup;\n" if os.geteuid() == 0 else ""
    return f"""# Generated by scripts/topology.py; the proxy settings are those of
# deploy/nginx.conf. Loopback only; nginx is a child process of the script.
{user}daemon off;
master_process on;
# One worker: round robin is strict, and the machine is small.
worker_processes 1;
pid {directory}/nginx.pid;
error_log {directory}/error.log warn;

events {{
    worker_connections 1024;
}}

http {{
    default_type application/octet-stream;
    server_tokens off;
    client_body_temp_path {directory}/client_body;
    proxy_temp_path {directory}/proxy;
    fastcgi_temp_path {directory}/fastcgi;
    uwsgi_temp_path {directory}/uwsgi;
    scgi_temp_path {directory}/scgi;

    {maps}

    {zones}

    {reused["log_format"][0]}
    access_log {directory}/access.log main;

    upstream app {{
        zone app 64k;
{servers}
    }}

    upstream stream {{
        zone stream 64k;
        server {stream};
    }}

    server {{
        listen {LOOPBACK}:{port};
        server_name _;

{proxy}

{limit_directives}

        # Which instance answered (several when nginx went on to the next
        # one), and the request id both sides log.
        add_header X-Upstream $upstream_addr always;
        add_header X-Request-ID $request_id_out always;

        location / {{
            proxy_pass http://app;
        }}

{stream_locations}

{limit_locations}

{media_locations}
    }}
}}
"""


@contextlib.contextmanager
def nginx_running(
    directory: Path, *, port: int, env: dict[str, str]
) -> Iterator[subprocess.Popen]:
    """nginx on ``directory``/nginx.conf (``nginx_config``'s), once ``/healthz/``
    answers 200 on ``port``; stopped with SIGQUIT (the requests in progress
    are finished) when the block ends. Its output goes to output.log there,
    its errors to error.log."""
    error_log, output = directory / "error.log", directory / "output.log"
    command = [NGINX, "-p", str(directory), "-c", str(directory / "nginx.conf")]
    command += ["-e", str(error_log)]
    process = _spawn(command, env=env, log_path=output, cwd=directory)
    try:
        deadline = time.monotonic() + READY_TIMEOUT
        while _status(port, "/healthz/") != 200:
            if process.poll() is not None or time.monotonic() > deadline:
                raise TopologyError(
                    "nginx did not start:\n" + _log_tail(output) + _log_tail(error_log)
                )
            time.sleep(0.1)
        yield process
    finally:
        _terminate(process, signal.SIGQUIT, STOP_TIMEOUT)


# --- The topology ------------------------------------------------------------


_static_collected: set[Path] = set()
_numbers = itertools.count(1)


class Topology:
    """S3, PostgreSQL, Redis, N gunicorn instances, the order matcher, the
    live stream's process and nginx, all on loopback.

    A context manager: ``with Topology(instances=3) as topology:``; everything
    it started is stopped and removed when the block ends, however it ends.
    ``s3`` is an already running S3 server to use (a bucket of its own is
    created and removed); without it, one is started. ``static_root``: a
    folder for collected static files shared by the topologies of one process
    (collected by the first); by default one in the temporary folder.
    ``media_accel``: the instances hand media to nginx (MEDIA_ACCEL_REDIRECT),
    which fetches them from the S3 server; media are then readable through
    nginx only (an instance alone answers with an empty body).
    ``upload_rate``: nginx's rate of upload POSTs per client, instead of
    deploy/nginx.conf's (``SCENARIO_UPLOAD_RATE`` for the scenario).
    ``environment``: settings that differ from the production defaults for the
    instances, the matcher and ``manage`` (a shorter ``MINIO_DEADLINE``, say).
    """

    def __init__(
        self,
        *,
        instances: int = 3,
        workers: int = 2,
        s3: S3Endpoint | None = None,
        postgres_url: str = DEFAULT_POSTGRES_URL,
        redis_url: str = DEFAULT_REDIS_URL,
        url_mode: str = "proxy",
        media_accel: bool = False,
        upload_rate: str | None = None,
        static_root: Path | None = None,
        environment: dict[str, str] | None = None,
        log: Callable[[str], None] = lambda message: None,
    ) -> None:
        if instances < 1:
            raise ValueError("instances must be at least 1")
        if url_mode not in ("proxy", "public"):
            raise ValueError("url_mode must be proxy or public")
        self.instance_count = instances
        self.workers = workers
        self.url_mode = url_mode
        self.media_accel = media_accel
        self.upload_rate = upload_rate
        self._static_root = static_root
        self._environment_extra = dict(environment or {})
        self.log = log
        self._s3_given = s3
        self._postgres_url = postgres_url
        self._redis_url = redis_url.rstrip("/")
        self._stack = contextlib.ExitStack()
        self.instances: list[Instance] = []
        self.nginx_process: subprocess.Popen | None = None
        # Values that must never appear in a log; the scenario adds passwords.
        self.secret_values: list[str] = []

    # -- Start and stop --

    def __enter__(self) -> Topology:
        try:
            self._start()
        except BaseException:
            self._stack.close()
            raise
        return self

    def __exit__(self, *exc_info) -> None:
        self.log("stopping the topology")
        self._stack.close()

    def _start(self) -> None:
        if not Path(NGINX).is_file():
            raise TopologyError(f"{NGINX} is missing: run `make {NGINX}`.")
        self.directory = Path(tempfile.mkdtemp(prefix="topology-"))
        self._stack.callback(shutil.rmtree, self.directory, ignore_errors=True)
        # nginx's workers (user nobody when started as root) write upload
        # bodies below it: they must be able to walk in.
        self.directory.chmod(0o711)
        self._s3_start()
        self._database_create()
        self._redis_claim()
        self.static_root = self._static_root or self.directory / "static"
        self.secret_key = secrets.token_urlsafe(50)
        self.secret_values += [self.secret_key, self.s3_secret_key]
        self.bucket = f"topology-{os.getpid()}-{secrets.token_hex(3)}"
        self.env = self._environment()
        self._stack.callback(self._bucket_remove)
        started = time.monotonic()
        self.manage("migrate", "--noinput", "--verbosity", "0")
        # Static sources do not change while one process runs: a folder the
        # caller gives is collected into once (whitenoise compresses every
        # file again each time, which takes a while).
        if self.static_root not in _static_collected:
            self.manage("collectstatic", "--noinput", "--verbosity", "0")
            if self._static_root is not None:
                _static_collected.add(self.static_root)
        self.manage("setup_minio")
        self.log(f"database migrated, static collected, bucket {self.bucket} set up")
        # The order matcher of every market, as docker-compose's `matcher`.
        self.matcher_log_path = self.directory / "matcher.log"
        self.matcher_process = _spawn(
            [str(PYTHON), "manage.py", "run_matcher"],
            env=self.env,
            log_path=self.matcher_log_path,
            cwd=ROOT,
        )
        self._stack.callback(
            _terminate, self.matcher_process, signal.SIGTERM, STOP_TIMEOUT
        )
        ports = _free_ports(self.instance_count + 2)
        self.nginx_port = ports.pop()
        self.stream_port = ports.pop()
        self._stream_start()
        for number, port in enumerate(ports, start=1):
            instance = Instance(number, port, self.directory / f"gunicorn-{port}.log")
            self.instances.append(instance)
            self._stack.callback(self.instance_stop, instance)
            self.instance_start(instance, wait=False)
        for instance in self.instances:
            self._instance_wait(instance)
        self._stream_wait()
        self._nginx_start()
        self.log(
            f"{self.instance_count} instance(s) and nginx ready on {self.url} "
            f"({time.monotonic() - started:.1f} s)"
        )

    def _stream_start(self) -> None:
        """The live stream's ASGI process, as the Procfile runs it."""
        self.stream_log_path = self.directory / "stream.log"
        self.stream_process = _spawn(
            [
                str(PYTHON),
                *STREAM_COMMAND,
                *("--host", LOOPBACK, "--port", str(self.stream_port)),
            ],
            env=self.env,
            log_path=self.stream_log_path,
            cwd=ROOT,
        )
        self._stack.callback(
            _terminate, self.stream_process, signal.SIGTERM, STOP_TIMEOUT
        )

    def _stream_wait(self) -> None:
        deadline = time.monotonic() + READY_TIMEOUT
        while _status(self.stream_port, "/healthz/") != 200:
            if self.stream_process.poll() is not None or time.monotonic() > deadline:
                raise TopologyError(
                    "the stream process did not start; its log:\n"
                    + _log_tail(self.stream_log_path)
                )
            time.sleep(0.1)

    @property
    def stream_address(self) -> str:
        return f"{LOOPBACK}:{self.stream_port}"

    def _s3_start(self) -> None:
        if self._s3_given is None:
            from scripts import s3_server

            server = s3_server.start(
                access_key=f"topology-{secrets.token_hex(4)}",
                secret_key=secrets.token_urlsafe(24),
                data_dir=self.directory / "s3",
            )
            self._stack.callback(server.stop)
            self.log(f"S3 server started on {server.endpoint}")
            s3: S3Endpoint = server
        else:
            s3 = self._s3_given
        self.s3_endpoint = s3.endpoint
        self.s3_access_key = s3.access_key
        self.s3_secret_key = s3.secret_key

    def _database_create(self) -> None:
        import psycopg
        from psycopg import sql

        parsed = urllib.parse.urlsplit(self._postgres_url)
        # New every time: a topology never drops a database it did not create.
        self.database = f"crypto_exchange_topology_{os.getpid()}_{next(_numbers)}"
        admin_url = urllib.parse.urlunsplit(parsed._replace(path="/postgres"))
        self.database_url = urllib.parse.urlunsplit(
            parsed._replace(path=f"/{self.database}")
        )
        name = sql.Identifier(self.database)
        with psycopg.connect(admin_url, autocommit=True) as connection:
            connection.execute(sql.SQL("CREATE DATABASE {}").format(name))

        def drop() -> None:
            with psycopg.connect(admin_url, autocommit=True) as connection:
                connection.execute(
                    sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(name)
                )

        self._stack.callback(drop)

    def _redis_claim(self) -> None:
        """Take a Redis database number nobody uses; only our keys go at the end."""
        import redis

        token = f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(4)}"
        for number in range(15, 0, -1):
            client = redis.Redis.from_url(f"{self._redis_url}/{number}")
            try:
                empty = client.dbsize() == 0
            except redis.RedisError as exc:
                client.close()
                raise TopologyError(f"Redis at {self._redis_url}: {exc}") from exc
            if empty and client.set(
                REDIS_CLAIM_KEY, token, nx=True, ex=REDIS_CLAIM_SECONDS
            ):
                break
            client.close()
        else:
            raise TopologyError(f"no empty Redis database number on {self._redis_url}")
        self.redis_database = number
        self.redis_url = f"{self._redis_url}/{number}"

        def release() -> None:
            for keys in _batches(client.scan_iter(match=APP_CACHE_KEYS, count=500)):
                client.delete(*keys)
            if client.get(REDIS_CLAIM_KEY) == token.encode():
                client.delete(REDIS_CLAIM_KEY)
            client.close()

        self._stack.callback(release)

    def _environment(self) -> dict[str, str]:
        """Production settings, and nothing from the caller's environment or .env."""
        return {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "HOME": os.environ.get("HOME", str(self.directory)),
            "LANG": "C.UTF-8",
            "PYTHONUNBUFFERED": "1",
            "DJANGO_SETTINGS_MODULE": "crypto_exchange.settings",
            "ENV_FILE": "/dev/null",
            "DEBUG": "false",
            "SECRET_KEY": self.secret_key,
            "ALLOWED_HOSTS": f"{LOOPBACK},localhost",
            # Plain HTTP on loopback: no HTTPS redirect or HSTS, and no Secure
            # cookie, which would never come back.
            "PLAIN_HTTP": "true",
            # The scenario and the load benchmark upload many avatars per
            # user on purpose; the per-user throttle is tested on its own.
            "IMAGE_UPLOADS_PER_USER": "100000",
            # One host: every instance shares the decode slots, and no other
            # run on this machine does.
            "IMAGE_DECODE_SLOTS_DIR": str(self.directory / "decode-slots"),
            "DATABASE_URL": self.database_url,
            "REDIS_URL": self.redis_url,
            "USE_MINIO": "true",
            "MINIO_ENDPOINT": self.s3_endpoint,
            "MINIO_ACCESS_KEY": self.s3_access_key,
            "MINIO_SECRET_KEY": self.s3_secret_key,
            "MINIO_BUCKET_NAME": self.bucket,
            "MINIO_USE_SSL": "false",
            "MINIO_REGION": S3_REGION,
            "MINIO_MEDIA_URL_MODE": self.url_mode,
            "MEDIA_ACCEL_REDIRECT": (
                media_accel_prefix(DEPLOY_NGINX_CONF.read_text())
                if self.media_accel
                else ""
            ),
            # Used once settings.py reads STATIC_ROOT from the environment;
            # until then collectstatic fills the checkout's staticfiles/, as
            # `make check` does, every time.
            "STATIC_ROOT": str(self.static_root),
            "WEB_CONCURRENCY": str(self.workers),
            "LOG_LEVEL": "INFO",
            # A load balancer in front of nginx, as in production: the client
            # is the second address from the right of X-Forwarded-For, which
            # every Browser with a client address sends.
            "TRUSTED_PROXY_COUNT": "2",
            **self._environment_extra,
        }

    def _bucket_remove(self) -> None:
        if self._s3_given is None:
            return  # the server and its data go with the temporary directory
        from minio.deleteobjects import DeleteObject

        client = self.minio_client()
        if not client.bucket_exists(bucket_name=self.bucket):
            return
        objects = client.list_objects(bucket_name=self.bucket, recursive=True)
        errors = client.remove_objects(
            bucket_name=self.bucket,
            delete_object_list=(DeleteObject(o.object_name) for o in objects),
        )
        for error in errors:
            raise TopologyError(f"could not delete {error}")
        client.remove_bucket(bucket_name=self.bucket)

    # -- Instances --

    def instance_start(self, instance: Instance, *, wait: bool = True) -> None:
        """Start (or start again) one gunicorn; its log file is appended to."""
        command = [
            str(PYTHON.parent / "gunicorn"),
            "-c",
            "gunicorn.conf.py",
            "crypto_exchange.wsgi:application",
            # gunicorn.conf.py binds 0.0.0.0 (inside a container); here every
            # server listens on loopback only. The command line wins.
            "--bind",
            instance.address,
        ]
        env = {**self.env, "PORT": str(instance.port)}
        instance.process = _spawn(
            command, env=env, log_path=instance.log_path, cwd=ROOT
        )
        if wait:
            self._instance_wait(instance)

    def _instance_wait(self, instance: Instance) -> None:
        deadline = time.monotonic() + READY_TIMEOUT
        while _status(instance.port, "/readyz/") != 200:
            if not instance.running:
                raise TopologyError(
                    f"gunicorn on {instance.address} exited; its log:\n"
                    + _log_tail(instance.log_path)
                )
            if time.monotonic() > deadline:
                raise TopologyError(
                    f"gunicorn on {instance.address} not ready within "
                    f"{READY_TIMEOUT:.0f} s; its log:\n{_log_tail(instance.log_path)}"
                )
            time.sleep(0.2)

    def instance_stop(self, instance: Instance) -> None:
        """SIGTERM: gunicorn finishes the requests its workers hold, then exits."""
        _terminate(instance.process, signal.SIGTERM, STOP_TIMEOUT)

    # -- nginx --

    def _nginx_start(self) -> None:
        directory = self.directory / "nginx"
        directory.mkdir()
        directory.chmod(0o711)
        self.nginx_access_log = directory / "access.log"
        self.nginx_error_log = directory / "error.log"
        self.nginx_output = directory / "output.log"
        self.nginx_conf = directory / "nginx.conf"
        self.nginx_conf.write_text(
            nginx_config(
                directory=directory,
                port=self.nginx_port,
                upstreams=[instance.address for instance in self.instances],
                deploy_text=DEPLOY_NGINX_CONF.read_text(),
                media_store=self.s3_endpoint,
                stream=self.stream_address,
                upload_rate=self.upload_rate,
            )
        )
        self.nginx_process = self._stack.enter_context(
            nginx_running(directory, port=self.nginx_port, env=self.env)
        )

    # -- For callers --

    @property
    def url(self) -> str:
        return f"http://{LOOPBACK}:{self.nginx_port}"

    @property
    def media_prefix(self) -> str:
        """What an image URL starts with before its (quoted) object key."""
        if self.url_mode == "proxy":
            return "/media/"
        return f"http://{self.s3_endpoint}/{self.bucket}/"

    def manage(self, *args: str, env: dict[str, str] | None = None) -> str:
        """Run ``manage.py`` with the instances' settings; its output."""
        return self.python("manage.py", *args, env=env)

    def python(self, *args: str, env: dict[str, str] | None = None) -> str:
        result = subprocess.run(
            [str(PYTHON), *args],
            cwd=ROOT,
            env={**self.env, **(env or {})},
            capture_output=True,
            text=True,
            timeout=600,
            check=False,
            preexec_fn=_die_with_parent,
        )
        if result.returncode != 0:
            raise TopologyError(
                f"`python {' '.join(args)}` failed:\n{result.stdout}{result.stderr}"
            )
        return result.stdout

    def minio_client(self):
        from minio import Minio

        return Minio(
            endpoint=self.s3_endpoint,
            access_key=self.s3_access_key,
            secret_key=self.s3_secret_key,
            secure=False,
            region=S3_REGION,
        )

    def log_paths(self) -> list[Path]:
        """Every instance's output (access log included), the stream
        process's and nginx's logs."""
        paths = [instance.log_path for instance in self.instances]
        return [
            *paths,
            self.stream_log_path,
            self.nginx_access_log,
            self.nginx_error_log,
            self.nginx_output,
        ]

    def nginx_access_records(self) -> list[dict[str, str]]:
        """nginx's access log (deploy/nginx.conf's key=value format), parsed."""
        return [
            parse_key_values(line)
            for line in self.nginx_access_log.read_text().splitlines()
        ]


def _batches(items: Iterable, size: int = 500) -> Iterable[list]:
    batch = []
    for item in items:
        batch.append(item)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


_KEY_VALUE = re.compile(r'(\w+)=("(?:[^"\\]|\\.)*"|\S*)')


def parse_key_values(line: str) -> dict[str, str]:
    """``key=value key="quoted value"`` as nginx and gunicorn log here."""
    return {
        key: value[1:-1] if value.startswith('"') else value
        for key, value in _KEY_VALUE.findall(line)
    }


# --- A browser ---------------------------------------------------------------


@dataclass
class Response:
    method: str
    path: str
    status: int  # 0: no HTTP answer at all
    headers: dict[str, str]
    body: bytes
    started: float
    ended: float

    @property
    def upstreams(self) -> list[str]:
        """The instances nginx tried, in order (the last one answered)."""
        value = self.headers.get("x-upstream", "")
        return [part.strip() for part in value.split(",") if part.strip()]

    @property
    def upstream(self) -> str | None:
        return self.upstreams[-1] if self.upstreams else None

    @property
    def request_id(self) -> str:
        return self.headers.get("x-request-id", "")

    @property
    def text(self) -> str:
        return self.body.decode("utf-8", errors="replace")

    def describe(self) -> str:
        return (
            f"{self.method} {self.path} -> {self.status or 'no answer'} "
            f"via {', '.join(self.upstreams) or 'no instance'} rid={self.request_id}"
        )


class Browser:
    """Keeps cookies (per host, any port, as browsers do) and posts forms with
    the CSRF token of the page, the Origin header and the cookie.

    ``client_address``: where the browser is, as the load balancer in front of
    nginx (``port``) would say in X-Forwarded-For; a request straight to an
    instance (``port=``) carries the header as nginx would have passed it on.
    Without one, no header: the instances see the connection's address.
    """

    def __init__(self, port: int, *, client_address: str | None = None) -> None:
        self.port = port
        self.client_address = client_address
        self.cookies: dict[str, str] = {}

    def get(self, path: str, *, port: int | None = None, **headers) -> Response:
        return self._request("GET", path, port=port, headers=headers)

    def post(
        self,
        path: str,
        fields: dict[str, str],
        *,
        files: dict[str, tuple[str, str, bytes]] | None = None,
        port: int | None = None,
        **headers,
    ) -> Response:
        target = port or self.port
        headers = {"Origin": f"http://{LOOPBACK}:{target}", **headers}
        if files:
            body, content_type = multipart_body(fields, files)
        else:
            body = urllib.parse.urlencode(fields).encode()
            content_type = "application/x-www-form-urlencoded"
        headers["Content-Type"] = content_type
        return self._request("POST", path, port=target, headers=headers, body=body)

    def post_json(
        self, path: str, data: object, *, port: int | None = None, **headers
    ) -> Response:
        """POST ``data`` as JSON, as an API client does (no Origin, no form)."""
        headers["Content-Type"] = "application/json"
        body = json.dumps(data).encode()
        return self._request("POST", path, port=port, headers=headers, body=body)

    def _request(
        self,
        method: str,
        path: str,
        *,
        port: int | None,
        headers: dict[str, str],
        body: bytes | None = None,
    ) -> Response:
        headers = {key.replace("_", "-"): value for key, value in headers.items()}
        if self.client_address:
            headers["X-Forwarded-For"] = (
                self.client_address
                if port in (None, self.port)
                # nginx appends the address it was connected from (deploy/nginx.conf).
                else f"{self.client_address}, {LOOPBACK}"
            )
        if self.cookies:
            headers["Cookie"] = "; ".join(f"{k}={v}" for k, v in self.cookies.items())
        connection = http.client.HTTPConnection(
            LOOPBACK, port or self.port, timeout=REQUEST_TIMEOUT
        )
        started = time.monotonic()
        try:
            connection.request(method, path, body=body, headers=headers)
            answer = connection.getresponse()
            payload = answer.read()
        except OSError as exc:
            return Response(
                method, path, 0, {}, str(exc).encode(), started, time.monotonic()
            )
        finally:
            connection.close()
        for header in answer.headers.get_all("Set-Cookie") or []:
            self._cookie_store(header)
        received = {key.lower(): value for key, value in answer.headers.items()}
        return Response(
            method, path, answer.status, received, payload, started, time.monotonic()
        )

    def _cookie_store(self, header: str) -> None:
        cookie = SimpleCookie()
        cookie.load(header)
        for name, morsel in cookie.items():
            if morsel["max-age"] == "0" or "1970" in morsel["expires"]:
                self.cookies.pop(name, None)
            else:
                self.cookies[name] = morsel.value


def multipart_body(
    fields: dict[str, str], files: dict[str, tuple[str, str, bytes]]
) -> tuple[bytes, str]:
    boundary = f"----topology{secrets.token_hex(12)}"
    parts = []
    for name, value in fields.items():
        parts.append(
            f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"'
            f"\r\n\r\n{value}\r\n".encode()
        )
    for name, (filename, content_type, data) in files.items():
        parts.append(
            f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"; '
            f'filename="{filename}"\r\nContent-Type: {content_type}\r\n\r\n'.encode()
            + data
            + b"\r\n"
        )
    parts.append(f"--{boundary}--\r\n".encode())
    return b"".join(parts), f"multipart/form-data; boundary={boundary}"


def client_address(number: int) -> str:
    """A loopback address per simulated client: 127.0.1.1, 127.0.1.2, ...

    Never 127.0.0.X, where the load balancer and nginx themselves would be.
    """
    if not 0 <= number < 255 * 254:
        raise ValueError(f"no loopback client address number {number}")
    return f"127.0.{number // 254 + 1}.{number % 254 + 1}"


def totp_code(secret: str, *, at: float | None = None) -> str:
    """What an authenticator app shows for a base32 secret (RFC 6238: HMAC-SHA1,
    30 s steps, 6 digits)."""
    key = base64.b32decode(secret + "=" * (-len(secret) % 8), casefold=True)
    step = int((time.time() if at is None else at) // 30)
    digest = hmac.new(key, struct.pack(">Q", step), hashlib.sha1).digest()
    offset = digest[-1] & 0x0F
    value = struct.unpack(">I", digest[offset : offset + 4])[0] & 0x7FFFFFFF
    return f"{value % 1_000_000:06d}"


def csrf_token(page: Response) -> str:
    found = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page.text)
    if not found:
        raise ScenarioError(f"no CSRF token in {page.describe()}")
    return found[1]


def input_value(page: Response, marker: str) -> str | None:
    """The value of the first <input> whose attributes contain ``marker``."""
    for tag in re.findall(r"<input\s[^>]*>", page.text):
        if marker in tag:
            found = re.search(r'\svalue="([^"]*)"', tag)
            return html.unescape(found[1]) if found else None
    return None


def img_src(page: Response, marker: str) -> str | None:
    """The src of the first <img> whose attributes contain ``marker``."""
    for tag in re.findall(r"<img\s[^>]*>", page.text):
        if marker in tag:
            found = re.search(r'\ssrc="([^"]*)"', tag)
            return html.unescape(found[1]) if found else None
    return None


# --- Test images -------------------------------------------------------------


def colour(number: int) -> tuple[int, int, int]:
    """Distinct, saturated colours: consecutive numbers are far apart."""
    hue = (number * 0.618034) % 1.0
    red, green, blue = colorsys.hsv_to_rgb(hue, 0.85, 0.9)
    return round(red * 255), round(green * 255), round(blue * 255)


def image_bytes(rgb: tuple[int, int, int], *, kind: str) -> tuple[str, str, bytes]:
    """A photo-sized JPEG (avatar) or a PNG with transparency (logo), one colour
    in the middle, as (file name, content type, bytes)."""
    from PIL import Image

    buffer = io.BytesIO()
    if kind == "avatar":
        Image.new("RGB", (640, 480), rgb).save(buffer, format="JPEG", quality=92)
        return "photo.jpg", "image/jpeg", buffer.getvalue()
    image = Image.new("RGBA", (256, 256), (0, 0, 0, 0))
    image.paste((*rgb, 255), (32, 32, 224, 224))
    image.save(buffer, format="PNG")
    return "logo.png", "image/png", buffer.getvalue()


def image_check(body: bytes, *, size: int, rgb: tuple[int, int, int]) -> str | None:
    """None when ``body`` is a size x size image of that colour in the middle."""
    from PIL import Image

    try:
        with Image.open(io.BytesIO(body)) as image:
            image.load()
            if image.size != (size, size):
                return f"is {image.size[0]}x{image.size[1]}, not {size}x{size}"
            middle = image.convert("RGB").getpixel((size // 2, size // 2))
    except Exception as exc:  # any decoding failure is the finding
        return f"is not an image ({exc})"
    if max(abs(a - b) for a, b in zip(middle, rgb, strict=True)) > COLOUR_TOLERANCE:
        return f"has colour {middle} in the middle, not {rgb} (another upload)"
    return None


def http_get_url(url: str, *, port: int) -> tuple[int, bytes, str]:
    """GET an image URL: a path (proxy mode, asked of ``port``) or an absolute
    URL (public mode, the S3 server)."""
    parsed = urllib.parse.urlsplit(url)
    host = parsed.hostname or LOOPBACK
    port = parsed.port or port
    connection = http.client.HTTPConnection(host, port, timeout=REQUEST_TIMEOUT)
    try:
        connection.request("GET", parsed.path, headers={"Host": f"{host}:{port}"})
        answer = connection.getresponse()
        return answer.status, answer.read(), answer.headers.get("Content-Type", "")
    except OSError as exc:
        return 0, str(exc).encode(), ""
    finally:
        connection.close()


# --- The scenario ------------------------------------------------------------


class ScenarioError(RuntimeError):
    """A step that must work did not (outside the measured burst)."""


@dataclass
class Upload:
    kind: str  # avatar or logo
    owner: str  # username or token symbol
    rgb: tuple[int, int, int]
    phase: str  # before-stop, burst
    response: Response  # the POST, or the page before it when that failed
    page: Response | None = None  # the form page fetched before the POST
    key: str | None = None  # the object key it was stored under

    @property
    def stored(self) -> bool:
        return self.key is not None


@dataclass
class User:
    username: str
    password: str
    browser: Browser
    totp_secret: str = ""  # once an authenticator app is turned on


@dataclass
class Failure:
    response: Response
    in_flight_on_stopped: bool

    def describe(self) -> str:
        where = (
            "in flight on the stopped instance"
            if self.in_flight_on_stopped
            else ("NOT in flight on the stopped instance")
        )
        return f"{self.response.describe()} ({where})"


@dataclass
class Report:
    nginx: str
    instances: list[str]
    url_mode: str
    stopped: str = ""
    stop_seconds: float = 0.0  # from SIGTERM to the instance's exit
    users: int = 0
    session_instances: dict[str, list[str]] = field(default_factory=dict)
    uploads: list[Upload] = field(default_factory=list)
    readable_before_stop: dict[str, tuple[int, int]] = field(default_factory=dict)
    readable_at_end: dict[str, tuple[int, int]] = field(default_factory=dict)
    unreadable: list[str] = field(default_factory=list)
    objects: int = 0
    duplicate_keys: list[str] = field(default_factory=list)
    missing_objects: list[str] = field(default_factory=list)
    orphan_objects: list[str] = field(default_factory=list)
    wrong_files: list[str] = field(default_factory=list)
    burst_requests: int = 0
    failed_before_stop: list[Failure] = field(default_factory=list)
    failed_after_stop: list[Failure] = field(default_factory=list)
    retried_by_nginx: list[Response] = field(default_factory=list)
    served_after_stop: Counter = field(default_factory=Counter)  # by instance
    served_by_stopped_after_exit: int = 0
    logs_with_secrets: list[str] = field(default_factory=list)

    @property
    def attempted(self) -> int:
        return len(self.uploads)

    @property
    def stored(self) -> int:
        return sum(upload.stored for upload in self.uploads)

    def handled(self, kind: str) -> Counter:
        """Stored uploads of a kind per instance that handled them."""
        return Counter(
            upload.response.upstream
            for upload in self.uploads
            if upload.kind == kind and upload.stored
        )

    def problems(self) -> list[str]:
        found = []
        for kind in ("avatar", "logo"):
            missing = set(self.instances) - set(self.handled(kind))
            if missing:
                found.append(f"no {kind} upload handled by {sorted(missing)}")
        for user, served in self.session_instances.items():
            if set(served) != set(self.instances):
                found.append(f"session of {user} served only by {served}")
        failed = len(self.failed_before_stop) + len(self.failed_after_stop)
        failed_uploads = self.attempted - self.stored
        if failed_uploads > failed:
            found.append(f"{failed_uploads} uploads not stored, {failed} failed")
        for label, readable in (
            ("before the stop", self.readable_before_stop),
            ("at the end", self.readable_at_end),
        ):
            if set(readable) != set(self.instances):
                found.append(f"read back {label} through {sorted(readable)} only")
            for address, (ok, total) in readable.items():
                if ok != total or not total:
                    found.append(f"{address} {label}: {ok}/{total} readable")
        found += [f"unreadable: {line}" for line in self.unreadable]
        if self.duplicate_keys:
            found.append(f"duplicate object keys: {self.duplicate_keys}")
        if self.missing_objects:
            found.append(f"rows without an object: {self.missing_objects}")
        if self.orphan_objects:
            found.append(f"objects no row uses: {self.orphan_objects}")
        found += [f"wrong file: {line}" for line in self.wrong_files]
        found += [
            f"failed before the stop: {f.describe()}" for f in self.failed_before_stop
        ]
        found += [
            f"failed after the stop: {f.describe()}"
            for f in self.failed_after_stop
            if not f.in_flight_on_stopped
        ]
        if not self.stopped:
            found.append("no instance was stopped")
        elif not set(self.served_after_stop) - {self.stopped}:
            found.append("no other instance served a request after the stop")
        if self.served_by_stopped_after_exit:
            found.append(f"{self.stopped} answered requests sent after it exited")
        found += [f"secret in a log: {line}" for line in self.logs_with_secrets]
        return found

    def text(self) -> str:
        def per_instance(counts: dict[str, object]) -> str:
            return ", ".join(
                f"{address} {counts.get(address, 0)}" for address in self.instances
            )

        def readable(values: dict[str, tuple[int, int]]) -> str:
            return ", ".join(
                f"{address} {values[address][0]}/{values[address][1]}"
                if address in values
                else f"{address} -"
                for address in self.instances
            )

        kinds = Counter(upload.kind for upload in self.uploads)
        stored_kinds = Counter(upload.kind for upload in self.uploads if upload.stored)
        served = ", ".join(
            f"{address} {count}"
            for address, count in sorted(self.served_after_stop.items())
        )
        everywhere = sum(
            set(served_by) == set(self.instances)
            for served_by in self.session_instances.values()
        )
        lines = [
            f"Topology: nginx {self.nginx} round robin over {len(self.instances)} "
            f"gunicorn instances ({', '.join(self.instances)}); media URLs: "
            f"{self.url_mode}",
            f"Users signed up and logged in through nginx: {self.users}; sessions "
            f"served by every instance: {everywhere}/{len(self.session_instances)}",
            f"Uploads attempted: {self.attempted} (avatars {kinds['avatar']}, "
            f"logos {kinds['logo']})",
            f"Uploads stored: {self.stored} (avatars {stored_kinds['avatar']}, "
            f"logos {stored_kinds['logo']})",
            "Avatar uploads stored per instance: "
            + per_instance(self.handled("avatar")),
            "Logo uploads stored per instance: " + per_instance(self.handled("logo")),
            f"Readable from each instance before the stop: "
            f"{readable(self.readable_before_stop)}",
            f"Readable from each instance at the end (stopped one restarted): "
            f"{readable(self.readable_at_end)}",
            f"Objects in the bucket: {self.objects}",
            f"Duplicate object keys: {len(self.duplicate_keys)}",
            f"Rows without an object: {len(self.missing_objects)}; objects no row "
            f"uses: {len(self.orphan_objects)}; rows not showing their last upload: "
            f"{len(self.wrong_files)}",
            f"Stopped: {self.stopped or '-'} (SIGTERM in the middle of a burst of "
            f"{self.burst_requests} requests; exited {self.stop_seconds:.2f} s later)",
            f"Requests failed before the stop: {len(self.failed_before_stop)}",
            f"Requests failed after the stop: {len(self.failed_after_stop)} "
            f"({sum(f.in_flight_on_stopped for f in self.failed_after_stop)} in flight "
            f"on the stopped instance)",
            *(f"  {failure.describe()}" for failure in self.failed_after_stop),
            "Requests nginx passed on to another instance: "
            f"{len(self.retried_by_nginx)}",
            f"Requests answered after the SIGTERM, per instance: {served or 'none'}",
            f"Secrets found in logs: {len(self.logs_with_secrets)}",
        ]
        problems = self.problems()
        lines.append(
            "Result: every invariant holds"
            if not problems
            else "Result: FAILED\n"
            + "\n".join(f"  - {problem}" for problem in problems)
        )
        return "\n".join(lines)


class Scenario:
    """Users, uploads, reads and a stopped instance, all through the topology."""

    def __init__(
        self,
        topology: Topology,
        *,
        users: int = 6,
        tokens: int = 3,
        burst_uploads: int = 15,
        log: Callable[[str], None] = lambda message: None,
    ) -> None:
        self.topology = topology
        self.user_count = users
        self.token_count = tokens
        self.burst_uploads = burst_uploads
        self.log = log
        self.run_id = secrets.token_hex(2)
        self.users: list[User] = []
        self.symbols: list[str] = []
        self.report = Report(
            nginx=f"{LOOPBACK}:{topology.nginx_port}",
            instances=[instance.address for instance in topology.instances],
            url_mode=topology.url_mode,
        )
        self._colours = 0
        self._client_numbers = itertools.count()
        self._lock = threading.Lock()

    def _next_colour(self) -> tuple[int, int, int]:
        with self._lock:
            self._colours += 1
            return colour(self._colours)

    def _upload_record(self, upload: Upload) -> None:
        with self._lock:
            self.report.uploads.append(upload)

    def _browser(self) -> Browser:
        """A browser through nginx, from a client address of its own."""
        number = next(self._client_numbers)
        return Browser(self.topology.nginx_port, client_address=client_address(number))

    # -- Steps --

    def run(self) -> Report:
        self.log("signing users up and logging them in through nginx")
        self.staff = self._staff_create()
        for number in range(self.user_count):
            self.users.append(self._sign_up(f"trader{number}-{self.run_id}"))
        self.report.users = len(self.users)
        self._sessions_check()
        self.log("uploading logos (admin) and avatars (profile) through nginx")
        self._logos_upload()
        self._avatars_upload()
        self.report.readable_before_stop = self._read_back()
        self.log("burst of concurrent uploads; one instance stopped in the middle")
        stopped = self._burst_with_stop()
        self.log(f"starting {stopped.address} again; reading everything back")
        self.topology.instance_start(stopped)
        self.report.readable_at_end = self._read_back()
        self._bucket_check()
        self._logs_check()
        return self.report

    def _staff_create(self) -> User:
        username = f"staff-{self.run_id}"
        password = secrets.token_urlsafe(18)
        self.topology.secret_values.append(password)
        self.topology.manage(
            "createsuperuser",
            "--noinput",
            env={
                "DJANGO_SUPERUSER_USERNAME": username,
                "DJANGO_SUPERUSER_PASSWORD": password,
                "DJANGO_SUPERUSER_EMAIL": f"{username}@example.com",
            },
        )
        staff = User(username, password, self._browser())
        # The admin wants a second factor: staff turn one on, then sign in
        # with it as they will from then on.
        self._log_in(staff)
        self._totp_activate(staff)
        self._log_out(staff)
        self._log_in(staff)
        return staff

    def _totp_activate(self, user: User) -> None:
        """Turn on an authenticator app as a person does: the secret the page
        shows, then the code the app computes from it."""
        browser = user.browser
        # Turning a factor on asks for the password again, however recent the
        # sign-in.
        asked = _expect(browser.get(TOTP_ACTIVATE_PATH), 302)
        form = _expect(browser.get(asked.headers["location"]), 200)
        _expect(
            browser.post(
                REAUTHENTICATE_PATH,
                {
                    "csrfmiddlewaretoken": csrf_token(form),
                    "password": user.password,
                    "next": TOTP_ACTIVATE_PATH,
                },
            ),
            302,
            location=TOTP_ACTIVATE_PATH,
        )
        page = _expect(browser.get(TOTP_ACTIVATE_PATH), 200)
        user.totp_secret = input_value(page, 'id="authenticator_secret"') or ""
        if not re.fullmatch(r"[A-Z2-7]+=*", user.totp_secret):
            raise ScenarioError(f"no authenticator secret in {page.describe()}")
        self.topology.secret_values.append(user.totp_secret)
        _expect(
            browser.post(
                TOTP_ACTIVATE_PATH,
                {
                    "csrfmiddlewaretoken": csrf_token(page),
                    "code": totp_code(user.totp_secret),
                },
            ),
            302,
        )

    def _sign_up(self, username: str) -> User:
        user = User(username, secrets.token_urlsafe(18), self._browser())
        self.topology.secret_values.append(user.password)
        browser = user.browser
        form = _expect(browser.get("/accounts/signup/"), 200)
        _expect(
            browser.post(
                "/accounts/signup/",
                {
                    "csrfmiddlewaretoken": csrf_token(form),
                    "username": username,
                    "email": f"{username}@example.com",
                    "password1": user.password,
                    "password2": user.password,
                },
            ),
            302,
            location="/accounts/profile/",
        )
        self._log_out(user)
        self._log_in(user)
        return user

    def _log_out(self, user: User) -> None:
        profile = _expect(user.browser.get("/accounts/profile/"), 200)
        _expect(
            user.browser.post(
                "/accounts/logout/", {"csrfmiddlewaretoken": csrf_token(profile)}
            ),
            302,
        )
        if "sessionid" in user.browser.cookies:
            raise ScenarioError(
                f"{user.username} still has a session after logging out"
            )

    def _log_in(self, user: User) -> None:
        browser = user.browser
        form = _expect(browser.get("/accounts/login/"), 200)
        _expect(
            browser.post(
                "/accounts/login/",
                {
                    "csrfmiddlewaretoken": csrf_token(form),
                    "login": user.username,
                    "password": user.password,
                },
            ),
            302,
            location=TOTP_AUTHENTICATE_PATH if user.totp_secret else None,
        )
        if user.totp_secret:
            form = _expect(browser.get(TOTP_AUTHENTICATE_PATH), 200)
            _expect(
                browser.post(
                    TOTP_AUTHENTICATE_PATH,
                    {
                        "csrfmiddlewaretoken": csrf_token(form),
                        "code": totp_code(user.totp_secret),
                    },
                ),
                302,
            )

    def _sessions_check(self) -> None:
        """Every session is accepted by every instance, through nginx or not."""
        heading = "<h1>{}</h1>"
        for user in self.users:
            served = set()
            for _ in self.topology.instances:
                page = _expect(user.browser.get("/accounts/profile/"), 200)
                if heading.format(user.username) in page.text:
                    served.add(page.upstream)
            for instance in self.topology.instances:
                page = user.browser.get("/accounts/profile/", port=instance.port)
                if page.status == 200 and heading.format(user.username) in page.text:
                    served.add(instance.address)
            self.report.session_instances[user.username] = sorted(served)

    def _key_from_url(self, url: str | None) -> str | None:
        prefix = self.topology.media_prefix
        if not url or not url.startswith(prefix):
            return None
        return urllib.parse.unquote(url[len(prefix) :])

    def _all_handled(self, kind: str) -> bool:
        return set(self.report.handled(kind)) >= set(self.report.instances)

    def _logos_upload(self) -> None:
        browser = self.staff.browser
        for number in range(self.token_count):
            symbol = f"T{self.run_id.upper()}{number}"
            self.symbols.append(symbol)
            self._logo_post(symbol, "/admin/tokens/token/add/", add=True)
        # Every token gets a new logo at least once (the old file must go),
        # and more until every instance has stored some.
        for attempt in range(self.token_count + 3 * len(self.topology.instances)):
            if attempt >= self.token_count and self._all_handled("logo"):
                break
            symbol = self.symbols[attempt % len(self.symbols)]
            listing = _expect(browser.get(f"/admin/tokens/token/?q={symbol}"), 200)
            found = re.search(r'href="(/admin/tokens/token/\d+/change/)', listing.text)
            if not found:
                raise ScenarioError(f"token {symbol} not in the admin list")
            self._logo_post(symbol, found[1], add=False)

    def _logo_post(self, symbol: str, path: str, *, add: bool) -> None:
        browser = self.staff.browser
        form = _expect(browser.get(path), 200)
        rgb = self._next_colour()
        response = browser.post(
            path,
            {
                "csrfmiddlewaretoken": csrf_token(form),
                "symbol": symbol,
                "name": f"Topology token {symbol}",
                "decimals": "8",
                "description": "",
                "is_active": "on",
                "_save": "Save",
            },
            files={"logo": image_bytes(rgb, kind="logo")},
        )
        upload = Upload("logo", symbol, rgb, "before-stop", response)
        self._upload_record(upload)
        _expect(response, 302)
        page = _expect(browser.get(f"/tokens/{symbol}/"), 200)
        upload.key = self._key_from_url(img_src(page, "token-logo-large"))
        if upload.key is None:
            raise ScenarioError(
                f"no logo on /tokens/{symbol}/ after {'add' if add else 'change'}"
            )

    def _avatar_post(self, user: User, *, phase: str, xhr: bool) -> Upload:
        browser = user.browser
        page = browser.get("/accounts/profile/")
        rgb = self._next_colour()
        headers = {"X_Requested_With": "XMLHttpRequest"} if xhr else {}
        if page.status != 200:
            upload = Upload("avatar", user.username, rgb, phase, page)
            self._upload_record(upload)
            return upload
        response = browser.post(
            "/accounts/profile/",
            {"csrfmiddlewaretoken": csrf_token(page)},
            files={"avatar": image_bytes(rgb, kind="avatar")},
            **headers,
        )
        upload = Upload("avatar", user.username, rgb, phase, response, page)
        if xhr and response.status == 200:
            upload.key = self._key_from_url(json.loads(response.body)["avatar_url"])
        elif not xhr and response.status == 302:
            after = browser.get("/accounts/profile/")
            upload.key = self._key_from_url(img_src(after, 'id="avatar-current"'))
        self._upload_record(upload)
        return upload

    def _avatars_upload(self) -> None:
        """Each user sends the form once without script and once as the page's
        script does, then more until every instance has stored some."""
        for xhr in (False, True):
            for user in self.users:
                self._avatar_post_stored(user, xhr=xhr)
        for attempt in range(3 * len(self.topology.instances)):
            if self._all_handled("avatar"):
                break
            self._avatar_post_stored(self.users[attempt % len(self.users)], xhr=True)

    def _avatar_post_stored(self, user: User, *, xhr: bool) -> None:
        upload = self._avatar_post(user, phase="before-stop", xhr=xhr)
        if not upload.stored:
            raise ScenarioError(
                f"avatar upload failed: {upload.response.describe()}: "
                f"{upload.response.text[:300]}"
            )

    def _expected_files(self) -> dict[tuple[str, str], Upload]:
        """(kind, owner) -> the last stored upload: what each row must show."""
        latest: dict[tuple[str, str], Upload] = {}
        for upload in sorted(self.report.uploads, key=lambda u: u.response.ended):
            if upload.stored:
                latest[(upload.kind, upload.owner)] = upload
        return latest

    def _read_back(self) -> dict[str, tuple[int, int]]:
        """Every current file through every running instance, bypassing nginx:
        the page that shows it, then the URL that page gives."""
        expected = self._expected_files()
        users = {user.username: user for user in self.users}
        readable = {}
        for instance in self.topology.instances:
            if not instance.running:
                continue
            ok = 0
            for (kind, owner), upload in sorted(expected.items()):
                problem = self._read_one(instance, kind, owner, upload, users)
                if problem:
                    self.report.unreadable.append(
                        f"{kind} of {owner} via {instance.address}: {problem}"
                    )
                else:
                    ok += 1
            readable[instance.address] = (ok, len(expected))
        return readable

    def _read_one(
        self,
        instance: Instance,
        kind: str,
        owner: str,
        upload: Upload,
        users: dict[str, User],
    ) -> str | None:
        if kind == "avatar":
            page = users[owner].browser.get("/accounts/profile/", port=instance.port)
            url = img_src(page, 'id="avatar-current"')
            size = AVATAR_SIZE
        else:
            page = Browser(instance.port).get(f"/tokens/{owner}/")
            url = img_src(page, "token-logo-large")
            size = LOGO_SIZE
        if page.status != 200:
            return f"page answered {page.status}"
        key = self._key_from_url(url)
        if key != upload.key:
            return f"page shows {url!r}, not the last upload {upload.key!r}"
        status, body, content_type = http_get_url(url, port=instance.port)
        if status != 200 or not content_type.startswith("image/"):
            return f"{url} answered {status} {content_type}"
        return image_check(body, size=size, rgb=upload.rgb)

    def _burst_with_stop(self) -> Instance:
        """Every user uploads in a loop, all at once; an instance gets SIGTERM
        once a quarter of the uploads have answered; the burst goes on."""
        stopped = self.topology.instances[len(self.topology.instances) // 2]
        answered = threading.Semaphore(0)

        def uploads_of(user: User) -> None:
            for _ in range(self.burst_uploads):
                self._avatar_post(user, phase="burst", xhr=True)
                answered.release()

        with ThreadPoolExecutor(max_workers=len(self.users)) as pool:
            futures = [pool.submit(uploads_of, user) for user in self.users]
            waited = 0
            deadline = time.monotonic() + READY_TIMEOUT
            while waited < len(self.users) * self.burst_uploads // 4:
                if answered.acquire(timeout=1):
                    waited += 1
                elif all(f.done() for f in futures) or time.monotonic() > deadline:
                    break
            stop_at = time.monotonic()
            self.topology.instance_stop(stopped)
            exited_at = time.monotonic()
            for future in futures:
                future.result()
        self.report.stopped = stopped.address
        self.report.stop_seconds = exited_at - stop_at
        burst = [
            response
            for upload in self.report.uploads
            if upload.phase == "burst"
            for response in (upload.page, upload.response)
            if response is not None
        ]
        self.report.burst_requests = len(burst)
        for response in sorted(burst, key=lambda r: r.started):
            if len(response.upstreams) > 1:
                self.report.retried_by_nginx.append(response)
            if response.status == 200:
                if response.started > stop_at:
                    self.report.served_after_stop[response.upstream] += 1
                if (
                    response.upstream == stopped.address
                    and response.started > exited_at
                ):
                    self.report.served_by_stopped_after_exit += 1
                continue
            # Sent to the stopped instance before it was gone: the only
            # requests nginx may answer 502 (a POST it will not send twice).
            in_flight = response.upstream == stopped.address and (
                response.started < exited_at
            )
            failure = Failure(response, in_flight)
            if response.ended < stop_at:
                self.report.failed_before_stop.append(failure)
            else:
                self.report.failed_after_stop.append(failure)
        return stopped

    def _bucket_check(self) -> None:
        import psycopg

        client = self.topology.minio_client()
        objects = {
            o.object_name
            for o in client.list_objects(
                bucket_name=self.topology.bucket, recursive=True
            )
        }
        self.report.objects = len(objects)
        with psycopg.connect(self.topology.database_url) as connection:
            rows = connection.execute(
                "SELECT 'avatar', u.username, p.avatar FROM accounts_profile p "
                "JOIN auth_user u ON u.id = p.user_id "
                "UNION ALL SELECT 'logo', symbol, logo FROM tokens_token"
            ).fetchall()
        names = [name for _, _, name in rows if name]
        # Two uploads answered with the same key (one overwrote the other), or
        # two rows sharing an object (deleting one file would break the other).
        stored_keys = Counter(u.key for u in self.report.uploads if u.stored)
        used = Counter(name for name in names if name != DEFAULT_AVATAR)
        self.report.duplicate_keys = sorted(
            {key for key, count in stored_keys.items() if count > 1}
            | {key for key, count in used.items() if count > 1}
        )
        self.report.missing_objects = sorted(set(names) - objects)
        self.report.orphan_objects = sorted(objects - set(names) - {DEFAULT_AVATAR})
        expected = self._expected_files()
        for kind, owner, name in rows:
            upload = expected.get((kind, owner))
            if upload is not None and name != upload.key:
                self.report.wrong_files.append(
                    f"{kind} of {owner} is {name!r}, last stored upload {upload.key!r}"
                )

    def _logs_check(self) -> None:
        for path in self.topology.log_paths():
            text = path.read_text(errors="replace") if path.exists() else ""
            for number, secret in enumerate(self.topology.secret_values):
                if secret and secret in text:
                    self.report.logs_with_secrets.append(
                        f"{path.name} holds secret #{number}"
                    )


def _expect(
    response: Response, status: int, *, location: str | None = None
) -> Response:
    if response.status != status or (
        location is not None and response.headers.get("location") != location
    ):
        errors = re.findall(r'<ul class="errorlist[^>]*>(.*?)</ul>', response.text)
        raise ScenarioError(
            f"expected {status}{f' to {location}' if location else ''}: "
            f"{response.describe()}: {' '.join(errors) or response.text[:300]}"
        )
    return response


def scenario_run(topology: Topology, **options) -> Report:
    return Scenario(topology, **options).run()


# --- The command -------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--instances", type=int, default=3)
    parser.add_argument("--workers", type=int, default=2, help="per instance")
    parser.add_argument("--users", type=int, default=6)
    parser.add_argument("--url-mode", choices=("proxy", "public"), default="proxy")
    parser.add_argument(
        "--s3-endpoint",
        help="host:port of a running S3 server (keys from S3_ACCESS_KEY and "
        "S3_SECRET_KEY); default: start one",
    )
    parser.add_argument(
        "--postgres-url",
        default=os.environ.get("POSTGRES_URL", DEFAULT_POSTGRES_URL),
        help="any database on the server; a new one is created there",
    )
    parser.add_argument("--redis-url", default=DEFAULT_REDIS_URL)
    parser.add_argument(
        "--keep-logs", type=Path, help="copy every server's log into this folder"
    )
    args = parser.parse_args(argv)

    def log(message: str) -> None:
        print(f"[{time.monotonic() - started:5.1f}s] {message}", flush=True)

    def terminated(signum, frame):
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, terminated)
    started = time.monotonic()
    s3 = None
    if args.s3_endpoint:
        s3 = argparse.Namespace(
            endpoint=args.s3_endpoint,
            access_key=os.environ.get("S3_ACCESS_KEY", "minioadmin"),
            secret_key=os.environ.get("S3_SECRET_KEY", "minioadmin"),
        )
    try:
        with Topology(
            instances=args.instances,
            workers=args.workers,
            s3=s3,
            postgres_url=args.postgres_url,
            redis_url=args.redis_url,
            url_mode=args.url_mode,
            upload_rate=SCENARIO_UPLOAD_RATE,
            log=log,
        ) as topology:
            try:
                report = scenario_run(topology, users=args.users, log=log)
            finally:
                if args.keep_logs:
                    args.keep_logs.mkdir(parents=True, exist_ok=True)
                    for path in topology.log_paths():
                        if path.exists():
                            shutil.copy(path, args.keep_logs / path.name)
    except (TopologyError, ScenarioError) as error:
        print(f"topology: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("topology: interrupted; everything was stopped", file=sys.stderr)
        return 130
    print()
    print(report.text())
    return 1 if report.problems() else 0


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))
    sys.exit(main())
