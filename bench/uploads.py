"""Anonymous page latency while signed-up users upload worst-case images.

    python -m bench.uploads

The question (issue 12): can signed-up users slow pages for others by
uploading images? The site is ``bench.pages``'s behind nginx as deployed (the
topology's config, from deploy/nginx.conf), with a Redis of its own so that
the upload throttle counts once for all workers, as in production. Each
uploader connects to nginx from a loopback address of its own, the page
client from another. Writes the section ``## Uploads against anonymous
pages`` of ``docs/PERFORMANCE.md``.
"""

from __future__ import annotations

import http.client
import io
import json
import multiprocessing
import os
import re
import shutil
import struct
import subprocess
import sys
import tempfile
import threading
import time
import zlib
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from unittest import mock

from bench import pages, report
from bench.pages import BenchError
from scripts.topology import (
    DEPLOY_NGINX_CONF,
    TopologyError,
    deploy_upload_limits,
    multipart_body,
    nginx_config,
    nginx_running,
)
from storage.decode_slots import WAIT_SECONDS

SECTION_HEADING = "## Uploads against anonymous pages"
WORKERS = 4  # as production's gunicorn.conf.py on 2 cores (2 x CPUs + 1, at most 8)
UPLOADERS = 16
ROUNDS = 4
PHASE_SECONDS = 8
PAGE_PATHS = ("/tokens/", "/")
PHASES = ("no uploads", "refused: 16-bit PNG bomb", "accepted: heaviest image")
PROFILE_PATH = "/accounts/profile/"
PAGE_CLIENT = "127.0.3.1"  # and 127.0.2.N for the uploaders
STATUSES = ("200", "400", "503", "429 app", "429 nginx", "other")


def status_name(status: int, content_type: str) -> str:
    # nginx's own 429 is plain text; the app's (the user's count) is JSON.
    if status == 429:
        return "429 nginx" if content_type.startswith("text/plain") else "429 app"
    return str(status) if str(status) in STATUSES else "other"


def png_bomb() -> bytes:
    """The issue's PNG: 6320x6320 16-bit RGBA (320 MB decoded) in ~310 KB."""
    width, height, row = 6320, 6320, bytes(1 + 6320 * 8)
    compressor = zlib.compressobj(9)
    data = b"".join(compressor.compress(row) for _ in range(height))
    data += compressor.flush()

    def chunk(kind: bytes, payload: bytes) -> bytes:
        crc = struct.pack(">I", zlib.crc32(kind + payload))
        return struct.pack(">I", len(payload)) + kind + payload + crc

    header = struct.pack(">IIBBBBB", width, height, 16, 6, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", data)


def heaviest_accepted() -> bytes:
    """A 4672x4672 progressive 4:2:0 JPEG of noise, ~9.4 MB: its coefficients
    and reduced decoding need 66.9 MB, just under the 64 MiB budget. Timed
    in-process, it took ~380 ms, more than an 8-bit RGBA PNG at the budget
    (4096x4096, ~310 ms), a WebP or a GIF at theirs."""
    from PIL import Image

    grey = Image.effect_noise((4672, 4672), 80)
    buffer = io.BytesIO()
    Image.merge("RGB", [grey] * 3).save(
        buffer, format="JPEG", quality=60, progressive=True
    )
    return buffer.getvalue()


def users_prepare() -> None:
    """Sign up 2 x UPLOADERS users; print each one's cookies, CSRF token and
    client address as JSON."""
    from django.conf import settings

    from bench import django_setup

    django_setup()
    from django.contrib.auth import get_user_model
    from django.test import Client

    users = []
    for number in range(2 * UPLOADERS):
        user = get_user_model().objects.create_user(username=f"uploader-{number}")
        client = Client(SERVER_NAME="127.0.0.1")
        client.force_login(user)
        client.get(PROFILE_PATH)  # sets the CSRF cookie, as signing in does
        session = client.cookies[settings.SESSION_COOKIE_NAME].value
        csrf = client.cookies[settings.CSRF_COOKIE_NAME].value
        cookie = f"{settings.SESSION_COOKIE_NAME}={session}; "
        cookie += f"{settings.CSRF_COOKIE_NAME}={csrf}"
        users.append([cookie, csrf, f"127.0.2.{number + 1}"])
    print(json.dumps(users))


def upload_loop(port: int, users: list, image: bytes, stop, results) -> None:
    """In a child process (no GIL shared with the page timer): one thread per
    user, from the user's own address, posting ``image`` as the profile page's
    script does, until ``stop``; the answers are counted by kind."""
    body, content_type = multipart_body(
        {}, {"avatar": ("upload", "application/octet-stream", image)}
    )
    statuses: list[str] = []  # list.append is atomic across threads

    def user_loop(cookie: str, csrf: str, address: str) -> None:
        headers = {
            "Cookie": cookie,
            "X-CSRFToken": csrf,
            "X-Requested-With": "XMLHttpRequest",
            "Content-Type": content_type,
        }
        while not stop.is_set():
            connection = http.client.HTTPConnection(
                "127.0.0.1", port, timeout=60, source_address=(address, 0)
            )
            try:
                connection.request("POST", PROFILE_PATH, body=body, headers=headers)
                response = connection.getresponse()
                response.read()
                kind = response.getheader("Content-Type", "")
                statuses.append(status_name(response.status, kind))
            except OSError:
                statuses.append("other")
            finally:
                connection.close()

    for cookie, csrf, address in users:
        threading.Thread(
            target=user_loop, args=(cookie, csrf, address), daemon=True
        ).start()
    stop.wait()
    # Requests still held by nginx's rate limit are abandoned with the process.
    results.put(dict(Counter(list(statuses))))


def pages_time(port: int, seconds: float) -> dict[str, list[float]]:
    latencies: dict[str, list[float]] = {path: [] for path in PAGE_PATHS}
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        for path in PAGE_PATHS:
            start = time.perf_counter()
            status, _ = pages.get(port, path, source=PAGE_CLIENT)
            latencies[path].append(time.perf_counter() - start)
            if status != 200:
                raise BenchError(f"{path} answered {status}, not 200")
    return latencies


@contextmanager
def nginx_in_front(directory: Path, upstream_port: int) -> Iterator[int]:
    """nginx as the topology runs it (deploy/nginx.conf's settings, limits
    included) in front of the gunicorn on ``upstream_port``; yields its port."""
    folder = directory / "nginx"
    folder.mkdir()
    port = pages.free_port()
    config = nginx_config(
        directory=folder,
        port=port,
        upstreams=[f"127.0.0.1:{upstream_port}"],
        deploy_text=DEPLOY_NGINX_CONF.read_text(),
        media_store="127.0.0.1:9",  # no object store: media are on disk
    )
    (folder / "nginx.conf").write_text(config)
    with nginx_running(folder, port=port, env={"PATH": os.environ["PATH"]}):
        yield port


@contextmanager
def redis_server(port: int):
    binary = shutil.which("redis-server")
    if binary is None:
        raise BenchError("redis-server is missing: `sudo apt-get install redis`.")
    command = [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", ""]
    process = subprocess.Popen([*command, "--appendonly", "no"], stdout=-3)
    try:
        import redis

        client = redis.Redis(port=port)
        for _ in range(100):
            try:
                client.ping()
                break
            except redis.ConnectionError:
                time.sleep(0.05)
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        process.terminate()
        process.wait(timeout=10)


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def measure(port: int, users: list, images: dict[str, bytes], log) -> dict:
    context = multiprocessing.get_context("fork")
    groups = dict(zip(PHASES, ([], users[:UPLOADERS], users[UPLOADERS:]), strict=True))
    results = {phase: ({p: [] for p in PAGE_PATHS}, Counter()) for phase in PHASES}
    for round_number in range(1, ROUNDS + 1):
        for phase in PHASES:
            stop, queue = context.Event(), context.Queue()
            uploader = context.Process(
                target=upload_loop,
                args=(port, groups[phase], images.get(phase, b""), stop, queue),
            )
            uploader.start()
            time.sleep(1)  # every user has a request in flight
            latencies = pages_time(port, PHASE_SECONDS)
            stop.set()
            statuses = queue.get(timeout=120)
            uploader.join()
            results[phase][1].update(statuses)
            for path, values in latencies.items():
                results[phase][0][path] += values
            timings = ", ".join(
                f"{path} p50 {pages.milliseconds(percentile(values, 0.5))} "
                f"p99 {pages.milliseconds(percentile(values, 0.99))}"
                for path, values in latencies.items()
            )
            log(f"round {round_number}/{ROUNDS}, {phase}: {timings}; {statuses}")
    return results


def section(results: dict, sizes: dict[str, int], *, machine: str, notes: str) -> str:
    def p99(phase: str, path: str) -> float:
        return percentile(results[phase][0][path], 0.99)

    def ratios(phase: str) -> str:
        return " and ".join(
            f"{p99(phase, path) / p99(PHASES[0], path):.1f}x on `{path}`"
            for path in PAGE_PATHS
        )

    kilobytes = [size // 1000 for size in sizes.values()]
    limits = deploy_upload_limits(DEPLOY_NGINX_CONF.read_text())
    rate = re.search(r"rate=([^;\s]+)", limits["zones"][0])[1]
    limit_req = next(line for line in limits["server"] if line.startswith("limit_req "))
    counts = sum((statuses for _, statuses in results.values()), Counter())
    reached = counts.total() - counts["429 nginx"] - counts["other"]
    slots = max(1, (os.cpu_count() or 2) // 2)  # the settings' default
    lines = [
        SECTION_HEADING,
        "",
        f"Generated by `python -m bench.uploads` {notes}; do not edit by hand, "
        "run it again. One anonymous client (a new connection per request, no "
        "cookies, from an address of its own) times `/tokens/` (100 tokens) and "
        f"`/` in turn through nginx, in {ROUNDS} rounds of three {PHASE_SECONDS} s "
        f"phases: no uploads, then {UPLOADERS} signed-in users, each from a "
        "loopback address of its own, posting in a loop the issue's 6320x6320 "
        f"16-bit RGBA PNG ({kilobytes[0]} KB), then {UPLOADERS} other users the "
        "heaviest image the limits accept (a 4672x4672 progressive JPEG of "
        f"noise, {kilobytes[1]} KB, ~0.4 s to decode). Against no uploads, the "
        f"page p99 was {ratios(PHASES[1])} with the refused PNG and "
        f"{ratios(PHASES[2])} with the accepted JPEG. nginx lets each address "
        f"post a few uploads at once, then holds the next ones back to {rate} "
        f"(`{limit_req}`): a looping client just waits, its body unread, and "
        f"the app answered {reached} uploads in the whole run. There every "
        "attempt counts against the user's 6 per 10 minutes "
        "(`IMAGE_UPLOADS_PER_USER`, then 429 from the app), and at most "
        f"`IMAGE_DECODE_SLOTS` images (half the cores: {slots} here) are decoded "
        f"at once on the host, the others refused after {WAIT_SECONDS} s (503), so "
        f"{results[PHASES[2]][1]['200']} images were decoded. Each upload that "
        "reaches the app still costs a worker the parsing of its body (up to 10 "
        "MB) before it is counted or refused, and the uploaders and nginx share "
        "the cores with the app.",
        "",
        f"Machine: {machine}. gunicorn `--workers {WORKERS} --worker-class "
        "sync` behind nginx (`scripts/topology.py`'s config: deploy/nginx.conf's "
        "proxy settings and upload limit, one worker process), production "
        "settings (`DEBUG=false`, SQLite, media on disk) and a Redis of its own "
        "as the cache, so that the throttle counts once for all workers. p50 and "
        "p99 are over all the phase's requests; the uploaders run in a process "
        "of their own, on the same cores. 429 nginx: answered by nginx itself "
        "(none while each client posts one upload at a time).",
        "",
        "| Phase | Page | Requests | p50 | p99 | p99 x no uploads | Uploads "
        f"| {' | '.join(STATUSES)} |",
        "|---|---|--:|--:|--:|--:|--:" + "|--:" * len(STATUSES) + "|",
    ]
    for phase in PHASES:
        latencies, statuses = results[phase]
        total = sum(statuses.values())
        counts = [total, *(statuses[name] for name in STATUSES)]
        counts = counts if statuses else ["-"] * len(counts)
        for path in PAGE_PATHS:
            lines.append(
                f"| {phase} | `{path}` | {len(latencies[path])} "
                f"| {pages.milliseconds(percentile(latencies[path], 0.5))} "
                f"| {pages.milliseconds(p99(phase, path))} "
                f"| {p99(phase, path) / p99(PHASES[0], path):.1f} "
                f"| {' | '.join(str(count) for count in counts)} |"
            )
    return "\n".join(lines) + "\n"


def main() -> int:
    started, clock = datetime.now(UTC), time.monotonic()
    load_start = pages.load_average()

    def log(message: str) -> None:
        print(f"[{time.monotonic() - clock:5.1f}s] {message}", flush=True)

    images = {PHASES[1]: png_bomb(), PHASES[2]: heaviest_accepted()}
    try:
        with (
            tempfile.TemporaryDirectory(prefix="bench-uploads-") as temporary,
            redis_server(pages.free_port()) as redis_url,
        ):
            directory = Path(temporary)
            # nginx's workers (user nobody when started as root) must walk in.
            directory.chmod(0o711)
            env = pages.environment(directory) | {
                "REDIS_URL": redis_url,
                "TRUSTED_PROXY_COUNT": "1",
                # The host's decode slots, and no other run's on this machine.
                "IMAGE_DECODE_SLOTS_DIR": str(directory / "decode-slots"),
            }
            pages.run_python(env, "manage.py", "migrate", "--noinput", "-v", "0")
            pages.run_python(env, "manage.py", "collectstatic", "--noinput", "-v", "0")
            log("creating the tokens of bench.pages and the uploaders")
            prepared = pages.prepared_read(
                pages.run_python(
                    env, "-c", "from bench.pages import prepare; prepare()"
                )
            )
            users = json.loads(
                pages.run_python(
                    env,
                    "-c",
                    "from bench.uploads import users_prepare; users_prepare()",
                )
            )
            app_port = pages.free_port()
            with (
                mock.patch.object(pages, "WORKERS", WORKERS),
                pages.gunicorn(env, app_port, directory),
                nginx_in_front(directory, app_port) as port,
            ):
                pages.pages_check(port, prepared.cookie)
                results = measure(port, users, images, log)
                pages.pages_check(port, prepared.cookie)
    except (BenchError, TopologyError) as error:
        print(f"bench.uploads failed: {error}", file=sys.stderr)
        return 1
    sizes = {phase: len(image) for phase, image in images.items()}
    # machine_summary's last part names the load tool's version: none here.
    machine = pages.machine_summary(str(pages.PYTHON)).rsplit("; ", 1)[0]
    notes = (
        f"on {started:%Y-%m-%d %H:%M} UTC in {time.monotonic() - clock:.0f} s "
        f"(load average {load_start} at the start, {pages.load_average()} at the end)"
    )
    text = section(results, sizes, machine=machine, notes=notes)
    report.section_write(text, heading=SECTION_HEADING)
    print(text)
    log(f"wrote the section {SECTION_HEADING!r} of {report.REPORT_PATH}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
