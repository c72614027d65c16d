"""The production topology on loopback, without Docker.

    python -m scripts.topology        # or: make topology; Ctrl-C stops it

What docker-compose.yml runs, on 127.0.0.1 only and on free ports: an S3
server (``scripts/s3_server.py``, or a running one), a fresh PostgreSQL
database (migrated, dropped at the end), a Redis database number nobody else
uses, N gunicorn instances of this checkout (``gunicorn.conf.py``, production
settings from the environment), the order matcher, the live stream's ASGI
process, and Debian's nginx running ``deploy/nginx.conf`` itself
(``nginx.py`` says what is replaced). Everything is stopped and removed when
the ``with`` block ends, however it ends; a child outlives no killed parent.

The instances trust two proxies (``TRUSTED_PROXY_COUNT=2``), as if a load
balancer stood in front of nginx; ``scripts.browser`` sends what it would.
Used by ``scripts/tests/test_topology*.py`` and ``bench/load.py``.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from scripts import processes
from scripts.processes import LOOPBACK, free_ports, spawn, terminate, wait_ready
from scripts.topology import nginx

PYTHON = Path(sys.executable)
NGINX = "/usr/sbin/nginx"
DEFAULT_POSTGRES_URL = "postgres://postgres@127.0.0.1:5432/postgres"
DEFAULT_REDIS_URL = "redis://127.0.0.1:6379"
APP_CACHE_KEYS = "crypto-exchange:*"  # the cache KEY_PREFIX of settings.py
# Marks a Redis database number as taken; it expires, so a killed run does
# not keep the number for ever.
REDIS_CLAIM_KEY = "topology:claimed-by"
S3_REGION = "us-east-1"
DEFAULT_AVATAR = "default_avatar.jpg"  # uploaded by setup_minio
# As the Procfile's and docker-compose's `stream` run it.
STREAM_COMMAND = [
    *("-m", "uvicorn", "crypto_exchange.asgi:application"),
    *("--loop", "uvloop", "--http", "httptools"),
    *("--timeout-graceful-shutdown", "5", "--no-access-log"),
]
# Tests and benchmarks upload many avatars per client on purpose;
# deploy/nginx.conf's per-client limit (6 a minute) is tested on its own.
SCENARIO_UPLOAD_RATE = "100r/s"
TopologyError = processes.ServerError  # a part did not start, or stopped


_KEY_VALUE = re.compile(r'(\w+)=("(?:[^"\\]|\\.)*"|\S*)')


def parse_key_values(line: str) -> dict[str, str]:
    """``key=value key="quoted value"``, as nginx and gunicorn log here."""
    return {
        key: value[1:-1] if value.startswith('"') else value
        for key, value in _KEY_VALUE.findall(line)
    }


@dataclass
class Instance:
    """One gunicorn of this checkout, bound to 127.0.0.1:port."""

    port: int
    log_path: Path
    process: subprocess.Popen | None = None

    @property
    def address(self) -> str:
        return f"{LOOPBACK}:{self.port}"

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None


_static_collected: set[Path] = set()
_numbers = itertools.count(1)


class Topology:
    """``with Topology(instances=3) as topology:``

    ``s3``: a running S3 server (``endpoint``, ``access_key``, ``secret_key``)
    to make a bucket of its own on; without it, one is started.
    ``static_root``: a folder for collected static files, collected into once
    per process. ``media_accel``: media are handed to nginx
    (MEDIA_ACCEL_REDIRECT), so readable through nginx only. ``upload_rate``:
    nginx's rate of upload POSTs per client instead of deploy's.
    ``environment``: settings that differ from production's.
    """

    def __init__(
        self,
        *,
        instances: int = 3,
        workers: int = 2,
        s3=None,
        postgres_url: str = DEFAULT_POSTGRES_URL,
        redis_url: str = DEFAULT_REDIS_URL,
        url_mode: str = "proxy",
        media_accel: bool = False,
        upload_rate: str | None = None,
        static_root: Path | None = None,
        environment: dict[str, str] | None = None,
        log: Callable[[str], None] = lambda message: None,
    ) -> None:
        if instances < 1 or url_mode not in ("proxy", "public"):
            raise ValueError("at least one instance; url_mode proxy or public")
        self.instance_count, self.workers, self.url_mode = instances, workers, url_mode
        self.media_accel, self.upload_rate = media_accel, upload_rate
        self._static_root, self._extra = static_root, dict(environment or {})
        self.log, self._s3_given = log, s3
        self._postgres_url, self._redis_url = postgres_url, redis_url.rstrip("/")
        self._stack = contextlib.ExitStack()
        self.instances: list[Instance] = []
        self.nginx_process: subprocess.Popen | None = None
        self.secret_values: list[str] = []  # never to appear in a log

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
        self.directory.chmod(0o711)  # nginx's workers (nobody) write below it
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
        if self.static_root not in _static_collected:  # whitenoise is slow at it
            self.manage("collectstatic", "--noinput", "--verbosity", "0")
            if self._static_root is not None:
                _static_collected.add(self.static_root)
        self.manage("setup_minio")
        self.matcher_process = self._run(
            [str(PYTHON), "manage.py", "run_matcher"], "matcher.log"
        )
        *ports, self.stream_port, self.nginx_port = free_ports(self.instance_count + 2)
        self.stream_log_path = self.directory / "stream.log"
        host = ("--host", LOOPBACK, "--port", str(self.stream_port))
        stream = self._run([str(PYTHON), *STREAM_COMMAND, *host], "stream.log")
        for port in ports:
            instance = Instance(port, self.directory / f"gunicorn-{port}.log")
            self.instances.append(instance)
            self._stack.callback(self.instance_stop, instance)
            self.instance_start(instance, wait=False)
        for instance in self.instances:
            wait_ready(instance.process, instance.port, "/readyz/", instance.log_path)
        wait_ready(stream, self.stream_port, "/healthz/", self.stream_log_path)
        self._nginx_start()
        self.log(f"ready on {self.url} in {time.monotonic() - started:.1f} s")

    def _run(self, command: list[str], log_name: str) -> subprocess.Popen:
        process = spawn(command, env=self.env, log_path=self.directory / log_name)
        self._stack.callback(terminate, process)
        return process

    def _s3_start(self) -> None:
        s3 = self._s3_given
        if s3 is None:
            from scripts import s3_server

            s3 = s3_server.start(
                access_key=f"topology-{secrets.token_hex(4)}",
                secret_key=secrets.token_urlsafe(24),
                data_dir=self.directory / "s3",
            )
            self._stack.callback(s3.stop)
        self.s3_endpoint, self.s3_access_key = s3.endpoint, s3.access_key
        self.s3_secret_key = s3.secret_key

    def _database_create(self) -> None:
        import psycopg
        from psycopg import sql

        parsed = urllib.parse.urlsplit(self._postgres_url)
        # New every time: a topology never drops a database it did not create.
        self.database = f"crypto_exchange_topology_{os.getpid()}_{next(_numbers)}"
        admin = urllib.parse.urlunsplit(parsed._replace(path="/postgres"))
        path = f"/{self.database}"
        self.database_url = urllib.parse.urlunsplit(parsed._replace(path=path))
        name = sql.Identifier(self.database)

        def execute(statement: str) -> None:
            with psycopg.connect(admin, autocommit=True) as connection:
                connection.execute(sql.SQL(statement).format(name))

        execute("CREATE DATABASE {}")
        self._stack.callback(execute, "DROP DATABASE IF EXISTS {} WITH (FORCE)")

    def _redis_claim(self) -> None:
        """An empty database number; only the app's keys are deleted at the end."""
        import redis

        token = f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(4)}"
        for number in range(15, 0, -1):
            client = redis.Redis.from_url(f"{self._redis_url}/{number}")
            try:
                if client.dbsize() == 0 and client.set(
                    REDIS_CLAIM_KEY, token, nx=True, ex=6 * 3600
                ):
                    break
            except redis.RedisError as exc:
                raise TopologyError(f"Redis at {self._redis_url}: {exc}") from exc
            client.close()
        else:
            raise TopologyError(f"no empty Redis database number on {self._redis_url}")
        self.redis_url = f"{self._redis_url}/{number}"

        def release() -> None:
            for key in client.scan_iter(match=APP_CACHE_KEYS, count=500):
                client.delete(key)
            if client.get(REDIS_CLAIM_KEY) == token.encode():
                client.delete(REDIS_CLAIM_KEY)
            client.close()

        self._stack.callback(release)

    def _environment(self) -> dict[str, str]:
        """Production settings; nothing from the caller's environment or .env."""
        accel = nginx.media_accel_prefix() if self.media_accel else ""
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
            "PLAIN_HTTP": "true",  # no HTTPS redirect, HSTS or Secure cookie
            "IMAGE_UPLOADS_PER_USER": "100000",  # the throttle is tested alone
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
            "MEDIA_ACCEL_REDIRECT": accel,
            "STATIC_ROOT": str(self.static_root),
            "WEB_CONCURRENCY": str(self.workers),
            "LOG_LEVEL": "INFO",
            "TRUSTED_PROXY_COUNT": "2",  # a load balancer, then nginx
            **self._extra,
        }

    def _bucket_remove(self) -> None:
        if self._s3_given is None:
            return  # the server's data goes with the directory
        from minio.deleteobjects import DeleteObject

        client = self.minio_client()
        if not client.bucket_exists(bucket_name=self.bucket):
            return
        objects = client.list_objects(bucket_name=self.bucket, recursive=True)
        deletes = (DeleteObject(o.object_name) for o in objects)
        for error in client.remove_objects(
            bucket_name=self.bucket, delete_object_list=deletes
        ):
            raise TopologyError(f"could not delete {error}")
        client.remove_bucket(bucket_name=self.bucket)

    def instance_start(self, instance: Instance, *, wait: bool = True) -> None:
        """Start (or start again) one gunicorn; its log file is appended to."""
        command = [str(PYTHON.parent / "gunicorn"), "-c", "gunicorn.conf.py"]
        # gunicorn.conf.py binds 0.0.0.0 (in a container); the command line wins.
        command += ["crypto_exchange.wsgi:application", "--bind", instance.address]
        env = {**self.env, "PORT": str(instance.port)}
        instance.process = spawn(command, env=env, log_path=instance.log_path)
        if wait:
            wait_ready(instance.process, instance.port, "/readyz/", instance.log_path)

    def instance_stop(self, instance: Instance) -> None:
        """SIGTERM: gunicorn finishes the requests its workers hold, then exits."""
        terminate(instance.process)

    def _nginx_start(self) -> None:
        directory = self.directory / "nginx"
        directory.mkdir()
        directory.chmod(0o711)
        self.nginx_access_log = directory / "access.log"
        self.nginx_conf = directory / "nginx.conf"
        self.nginx_conf.write_text(
            nginx.config(
                directory=directory,
                port=self.nginx_port,
                upstreams=[instance.address for instance in self.instances],
                stream=f"{LOOPBACK}:{self.stream_port}",
                media_store=self.s3_endpoint,
                upload_rate=self.upload_rate,
            )
        )
        command = [NGINX, "-p", str(directory), "-c", str(self.nginx_conf)]
        command += ["-e", str(directory / "error.log"), "-g", "daemon off;"]
        self.nginx_process = spawn(
            command, env=self.env, log_path=directory / "output.log"
        )
        # SIGQUIT: the requests in progress are finished.
        self._stack.callback(terminate, self.nginx_process, signal.SIGQUIT)
        wait_ready(
            self.nginx_process, self.nginx_port, "/healthz/", directory / "error.log"
        )

    @property
    def url(self) -> str:
        return f"http://{LOOPBACK}:{self.nginx_port}"

    @property
    def stream_address(self) -> str:
        return f"{LOOPBACK}:{self.stream_port}"

    @property
    def media_prefix(self) -> str:
        """What an image URL starts with before its (quoted) object key."""
        if self.url_mode == "proxy":
            return "/media/"
        return f"http://{self.s3_endpoint}/{self.bucket}/"

    def manage(self, *args: str, env: dict[str, str] | None = None) -> str:
        """``manage.py`` with the instances' settings; its output."""
        return self.python("manage.py", *args, env=env)

    def python(self, *args: str, env: dict[str, str] | None = None) -> str:
        return processes.run([str(PYTHON), *args], env={**self.env, **(env or {})})

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
        """Every server's log but the S3 server's."""
        return sorted(self.directory.glob("*.log")) + sorted(
            self.directory.glob("nginx/*.log")
        )

    def nginx_access_records(self) -> list[dict[str, str]]:
        """nginx's access log (deploy/nginx.conf's key=value format), parsed."""
        return [
            parse_key_values(line)
            for line in self.nginx_access_log.read_text().splitlines()
        ]
