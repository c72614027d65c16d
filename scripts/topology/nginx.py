"""nginx for the loopback topology: ``deploy/nginx.conf`` itself, with what
only Docker has (its DNS, service names, ports, /dev/stdout) replaced, and
the TRUSTED_PROXY_COUNT that docker-compose.yml writes into it written in.

Each replacement must match exactly once, so a change to deploy/nginx.conf
the topology does not follow fails loudly instead of testing something else.
Two headers are added for the tests: ``X-Upstream`` (the instances nginx
tried, in order) and ``X-Request-ID``.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable
from pathlib import Path

DEPLOY_NGINX_CONF = Path(__file__).resolve().parents[2] / "deploy" / "nginx.conf"
TEMP_PATHS = ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")


def media_accel_prefix() -> str:
    """The internal location the app's X-Accel-Redirect names."""
    found = re.search(r"location (\S+) \{\s*internal;", DEPLOY_NGINX_CONF.read_text())
    if not found:
        raise ValueError(f"{DEPLOY_NGINX_CONF} has no internal media location")
    return found[1]


def config(
    *,
    directory: Path,
    port: int,
    upstreams: Iterable[str],
    stream: str,
    media_store: str,
    upload_rate: str | None = None,
    trusted_proxy_count: int = 2,
) -> str:
    """``stream``, ``media_store``: host:port of the stream's process and of
    the S3 server; ``upload_rate``: instead of deploy's rate of upload POSTs;
    ``trusted_proxy_count``: the instances' TRUSTED_PROXY_COUNT (the
    topology's: a load balancer, then nginx)."""
    user = "user nobody nogroup;\n" if os.geteuid() == 0 else ""
    temp = "".join(f"    {name}_temp_path {directory}/{name};\n" for name in TEMP_PATHS)
    servers = "".join(f"        server {address};\n" for address in upstreams)
    replacements = [
        # One worker: round robin is strict.
        (r"^worker_processes auto;\n", f"{user}worker_processes 1;\n"),
        (r"^error_log \S+", f"error_log {directory}/error.log"),
        (r"^pid \S+;", f"pid {directory}/nginx.pid;"),
        (r"^http \{\n", "http {\n" + temp),
        (r"^ *resolver [^;]*;\n", ""),  # every address here is an IP
        (r"access_log /dev/stdout", f"access_log {directory}/access.log"),
        (r"^ *server app:\d+ resolve;\n", servers),
        (r"server stream:\d+ resolve;", f"server {stream};"),
        (r"listen \d+;", f"listen 127.0.0.1:{port};"),
        (r"set \$media_store \S+;", f"set $media_store {media_store};"),
        # What the nginx image's entrypoint does (envsubst).
        (r"\$\{TRUSTED_PROXY_COUNT\}", str(trusted_proxy_count)),
        (
            r"^( *)server_name _;\n",
            r"\g<0>\1add_header X-Upstream $upstream_addr always;\n"
            r"\1add_header X-Request-ID $request_id_out always;\n",
        ),
    ]
    if upload_rate:
        replacements.append(
            (r"(zone=uploads:\S+ rate=)[^;]+;", rf"\g<1>{upload_rate};")
        )
    text = DEPLOY_NGINX_CONF.read_text()
    for pattern, replacement in replacements:
        text, count = re.subn(pattern, replacement, text, flags=re.MULTILINE)
        if count != 1:
            raise ValueError(f"{DEPLOY_NGINX_CONF}: {count} matches of {pattern!r}")
    return text
