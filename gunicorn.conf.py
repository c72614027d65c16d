"""Gunicorn settings of the Docker image, read from the environment.

    gunicorn --config gunicorn.conf.py crypto_exchange.wsgi:application

PORT (default 8000) and WEB_CONCURRENCY (default 2 x CPUs + 1, at most 8) are
the usual platform variables; FORWARDED_ALLOW_IPS lists the proxies whose
forwarder headers gunicorn believes (never a scheme header: Django's
TRUST_X_FORWARDED_PROTO decides HTTPS). Any other setting can be overridden
without a new image through GUNICORN_CMD_ARGS, e.g. "--timeout 60".
"""

import os
import re

from gunicorn import glogging
from gunicorn.http import wsgi

from core.logs import access_log_value


def _int_env(name: str, default: int) -> int:
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise SystemExit(f"{name} must be a whole number (got {raw!r}).") from None
    if value < 1:
        raise SystemExit(f"{name} must be at least 1 (got {value}).")
    return value


def _default_workers() -> int:
    # sched_getaffinity sees a container's cpuset; os.cpu_count() sees the host.
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else 1
    # Every worker keeps a database connection (CONN_MAX_AGE): capped so that
    # replicas x workers stays well under PostgreSQL's max_connections (100).
    return min(2 * cpus + 1, 8)


# Inside a container the published port decides who reaches us; 0.0.0.0 is
# the container's own interfaces only.
bind = [f"0.0.0.0:{_int_env('PORT', 8000)}"]
workers = _int_env("WEB_CONCURRENCY", _default_workers())
# The master imports the app once and forks: less memory per worker, and a bad
# setting (ImproperlyConfigured) stops the container at once instead of making
# every worker crash in turn. Safe because nothing opens a connection at import
# time: database connections, the cache client and the MinIO client are all
# created lazily, inside each worker.
preload_app = True

# A request that takes longer than this is a bug or a hung dependency (every
# request to the object store ends within MINIO_DEADLINE, 10 s by default).
timeout = 30
# On SIGTERM (docker stop) workers finish their requests within this; compose
# gives the container 30 s (stop_grace_period) before it kills.
graceful_timeout = 25
# Recycle workers now and then (memory held by image decoding); the jitter
# keeps them from restarting together.
max_requests = 1000
max_requests_jitter = 100
# The heartbeat file on tmpfs: on a disk-backed overlay filesystem the
# heartbeat's fchmod can block a worker. Gunicorn creates the files unlinked,
# with random names, so a shared directory is safe here.
worker_tmp_dir = "/dev/shm"  # noqa: S108

# Whether a request came over HTTPS is Django's to decide, from
# TRUST_X_FORWARDED_PROTO (SECURE_PROXY_SSL_HEADER) alone: gunicorn's default
# scheme headers (X-Forwarded-Proto, -Ssl, -Protocol) are believed from any
# FORWARDED_ALLOW_IPS address even with that setting off: through nginx on
# loopback a client chose its own scheme, and two that disagreed got
# gunicorn's own HTML 400.
secure_scheme_headers = {}
# The proxies gunicorn takes its forwarder headers (SCRIPT_NAME, PATH_INFO)
# from; nothing the stack runs sends them.
forwarded_allow_ips = os.environ.get("FORWARDED_ALLOW_IPS", "").strip() or "127.0.0.1"

# The control socket (gunicorn 25.1+) is a management interface nobody uses in
# a container, and its default path under $HOME does not exist for the app user.
control_socket_disable = True

# Logs go to the container's output. One line per request, key=value so that
# `grep status=5` or `grep rid=<id>` finds it; duration in milliseconds; rid is
# the X-Request-ID nginx sets and logs too. What a client sends is escaped
# (EscapingLogger), so no request can write a line or a field of its own.
accesslog = "-"
errorlog = "-"
loglevel = "info"
access_log_format = (
    'remote=%(h)s forwarded_for="%({x-forwarded-for}i)s" method=%(m)s '
    'path="%(U)s" query="%(q)s" status=%(s)s bytes=%(B)s duration_ms=%(M)s '
    'rid=%({x-request-id}i)s pid=%(p)s user_agent="%(a)s"'
)
# A value the format writes without quotes: a space in it would start a field.
_UNQUOTED_ATOM = re.compile(r'(?<!")%\(([^)]+)\)s')


class EscapingLogger(glogging.Logger):
    """Gunicorn's logger, with the access log's values escaped: a path of
    ``/x%0Aremote=6.6.6.6`` is logged as ``path="/x\\nremote=6.6.6.6"``, on
    the request's own line (core.logs)."""

    def atoms(self, resp, req, environ, request_time):
        atoms = super().atoms(resp, req, environ, request_time)
        unquoted = set(_UNQUOTED_ATOM.findall(self.cfg.access_log_format))
        for name, value in atoms.items():
            if isinstance(value, str):
                value = access_log_value(value)
                atoms[name] = value.replace(" ", "\\x20") if name in unquoted else value
        return atoms


logger_class = EscapingLogger

# Gunicorn has no setting for its "Server: gunicorn" header (benoitc/gunicorn
# issues 825 and 3006): drop it from the headers every response starts with.
# Behind nginx the client sees nginx's header anyway (server_tokens off).
_default_headers = wsgi.Response.default_headers


def _default_headers_without_server(response):
    return [
        line
        for line in _default_headers(response)
        if not line.lower().startswith("server:")
    ]


wsgi.Response.default_headers = _default_headers_without_server


def pre_request(worker, req):
    """Tag the app's own log lines of this request (settings.LOGGING) with the
    request id that the access log line carries, so one grep finds both."""
    import structlog

    structlog.contextvars.clear_contextvars()
    request_id = next(
        (value for name, value in req.headers if name == "X-REQUEST-ID"), ""
    )
    structlog.contextvars.bind_contextvars(
        rid=request_id or "-", method=req.method, path=req.path
    )


def post_request(worker, req, environ, resp):
    import structlog

    structlog.contextvars.clear_contextvars()
