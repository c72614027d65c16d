"""Requests per second of real pages under gunicorn, each against its floor.

    python -m bench.pages

The question: how much does each page cost on top of the cheapest request of
its kind? Anonymous pages are compared with the anonymous floor
(``/bench/floor/``, a view that returns two bytes), signed-in pages with the
signed-in floor (``/bench/floor/signed-in/``, the same two bytes once the
signed-in user is loaded). The floors are served by the same gunicorn workers,
through the same middleware, settings and session engine as the pages
(``bench/pages_urls.py``), and measured in the same run.

Method: a throwaway site in a temporary directory (SQLite, media on disk,
production settings with ``DEBUG=false``) holds 100 tokens with logos and one
user with a custom avatar, signed in with ``Client.force_login``. One gunicorn
(``bench/pages_wsgi.py``) serves the whole run; ``wrk`` loads each URL in turn,
each page right after its floor, in rounds, so that drift of the machine hits
them all alike; the ratio is the page's median requests per second over its
floor's. Every response must be a 200 and every page must show what it should,
or the run fails. Before gunicorn starts each URL is also timed in-process
(Django's test client, no HTTP) with its template time and its queries, to
show where a page's time goes. There is no target.

Writes the section ``## Pages under gunicorn`` of ``docs/PERFORMANCE.md`` and
leaves the rest of the file as it is.
"""

from __future__ import annotations

import http.client
import importlib.metadata
import io
import json
import os
import platform
import re
import secrets
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from bench import report

REPO_ROOT = Path(__file__).resolve().parent.parent
SECTION_HEADING = "## Pages under gunicorn"
PYTHON = Path(sys.executable)

TOKENS = 100
USERNAME = "bench-user"
WORKERS = 2
WRK_THREADS = 1
WRK_CONNECTIONS = 8
WARMUP_SECONDS = 2
ROUND_SECONDS = 4
ROUNDS = 5
READY_TIMEOUT = 30.0
IN_PROCESS_WARMUP = 20

# Counts every status wrk sees: its own "Non-2xx or 3xx" line would take a
# redirect to the login page for a success.
STATUS_SCRIPT = """
ok, other, last_other = 0, 0, 0
function response(status, headers, body)
  if status == 200 then ok = ok + 1 else other = other + 1; last_other = status end
end
local threads = {}
function setup(thread) table.insert(threads, thread) end
function done(summary, latency, requests)
  local total_ok, total_other, last = 0, 0, 0
  for _, thread in ipairs(threads) do
    total_ok = total_ok + thread:get("ok")
    total_other = total_other + thread:get("other")
    if thread:get("other") > 0 then last = thread:get("last_other") end
  end
  io.write(string.format("statuses: 200=%d other=%d last=%d\\n",
    total_ok, total_other, last))
end
"""


@dataclass(frozen=True)
class Page:
    label: str
    path: str
    signed_in: bool
    in_process_requests: int  # about a second of in-process timing each
    floor: Page | None = None  # what it is reported against; None for a floor


FLOOR = Page("anonymous floor", "/bench/floor/", False, 1000)
TOKEN_LIST = Page(f"token list, {TOKENS} tokens", "/tokens/", False, 100, FLOOR)
SIGNED_IN_FLOOR = Page("signed-in floor", "/bench/floor/signed-in/", True, 1000)
PROFILE = Page("profile", "/accounts/profile/", True, 100, SIGNED_IN_FLOOR)
# Each page right after its floor, so that the two are measured close in time.
PAGES = (FLOOR, TOKEN_LIST, SIGNED_IN_FLOOR, PROFILE)


@dataclass(frozen=True)
class WrkRun:
    requests_per_second: float
    p50: float  # seconds
    p99: float


@dataclass(frozen=True)
class InProcess:
    """One page served by Django alone: medians per request, in seconds."""

    seconds: float
    rendering: float
    queries: int
    repeated: int  # queries identical to an earlier one of the same request


@dataclass(frozen=True)
class PageResult:
    page: Page
    runs: list[WrkRun]
    response_bytes: int
    in_process: InProcess

    @property
    def requests_per_second(self) -> float:
        return statistics.median(run.requests_per_second for run in self.runs)

    @property
    def p50(self) -> float:
        return statistics.median(run.p50 for run in self.runs)

    @property
    def p99(self) -> float:
        return statistics.median(run.p99 for run in self.runs)


@dataclass(frozen=True)
class Prepared:
    cookie: str
    session_engine: str
    backends: list[str]
    in_process: dict[str, InProcess]


class BenchError(RuntimeError):
    """The benchmark could not run, or a page was not what it must be."""


# --- Set-up, run in a subprocess with the benchmark's environment ------------


def _logo_png(number: int) -> bytes:
    from PIL import Image, ImageDraw

    hue = (number * 37) % 256
    image = Image.new("RGBA", (256, 256), (0, 0, 0, 0))
    draw = ImageDraw.Draw(image)
    draw.ellipse((8, 8, 248, 248), fill=(hue, 255 - hue, (hue * 3) % 256, 255))
    draw.rectangle((96, 64 + number % 64, 160, 192), fill=(255, 255, 255, 200))
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def _avatar_jpeg() -> bytes:
    from PIL import Image

    image = Image.linear_gradient("L").resize((600, 600)).convert("RGB")
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=90)
    return buffer.getvalue()


class _RenderTimer:
    """Time spent in the outermost template render (includes nest inside)."""

    def __init__(self) -> None:
        self.depth = 0
        self.seconds = 0.0

    def install(self) -> None:
        from django.template.backends.django import Template

        original = Template.render
        timer = self

        def render(self, context=None, request=None):
            timer.depth += 1
            start = time.perf_counter()
            try:
                return original(self, context, request)
            finally:
                timer.depth -= 1
                if not timer.depth:
                    timer.seconds += time.perf_counter() - start

        Template.render = render


def prepare() -> None:
    """Create the data through the services, sign the user in, time the pages.

    Runs in the benchmark's environment (``python -c``), so the session is
    signed with that SECRET_KEY and stored where gunicorn will read it. Prints
    one line of JSON: the cookies wrk sends for signed-in pages, the session
    engine and authentication backends in use, and each page in-process.
    """
    from django.conf import settings

    settings.ROOT_URLCONF = "bench.pages_urls"
    from bench import django_setup

    django_setup()
    from django.contrib.auth import get_user_model
    from django.core.files.base import ContentFile
    from django.db import connection
    from django.test import Client
    from django.test.utils import CaptureQueriesContext

    from accounts.selectors import profile_for_user
    from accounts.services import avatar_replace
    from tokens.services import token_create

    for number in range(TOKENS):
        token_create(
            name=f"Bench token {number}",
            symbol=f"BT{number:03d}",
            logo=ContentFile(_logo_png(number), name=f"bt{number:03d}.png"),
        )
    user = get_user_model().objects.create_user(
        username=USERNAME, password=secrets.token_urlsafe(24)
    )
    avatar_replace(
        profile=profile_for_user(user=user),
        upload=ContentFile(_avatar_jpeg(), name="avatar.jpg"),
    )
    signed_in = Client(SERVER_NAME="127.0.0.1")
    signed_in.force_login(user)
    # A signed-in browser has the CSRF cookie (logging in sets it), so each
    # view only masks that secret; one view gives it, as the log-in would.
    signed_in.get(PROFILE.path)
    cookie = signed_in.cookies[settings.SESSION_COOKIE_NAME]
    csrf_cookie = signed_in.cookies[settings.CSRF_COOKIE_NAME]

    timer = _RenderTimer()
    timer.install()

    def timed(page: Page) -> dict[str, float | int]:
        client = signed_in if page.signed_in else Client(SERVER_NAME="127.0.0.1")
        for _ in range(IN_PROCESS_WARMUP):
            if client.get(page.path).status_code != 200:
                raise BenchError(f"{page.path} is not a 200 in-process")
        elapsed, rendering = [], []
        for _ in range(page.in_process_requests):
            timer.seconds = 0.0
            start = time.perf_counter()
            client.get(page.path)
            elapsed.append(time.perf_counter() - start)
            rendering.append(timer.seconds)
        with CaptureQueriesContext(connection) as queries:
            client.get(page.path)
        statements = [query["sql"] for query in queries.captured_queries]
        return {
            "seconds": statistics.median(elapsed),
            "rendering": statistics.median(rendering),
            "queries": len(statements),
            "repeated": len(statements) - len(set(statements)),
        }

    print(
        json.dumps(
            {
                "cookie": f"{cookie.key}={cookie.value}; "
                f"{csrf_cookie.key}={csrf_cookie.value}",
                "session_engine": settings.SESSION_ENGINE,
                "backends": settings.AUTHENTICATION_BACKENDS,
                "in_process": {page.path: timed(page) for page in PAGES},
            }
        )
    )


# --- The run -----------------------------------------------------------------
def wrk_ensure(log: Callable[[str], None]) -> str:
    """The path of wrk, installed from Debian's packages if missing."""
    found = shutil.which("wrk")
    if found:
        return found
    apt_get = shutil.which("apt-get")
    if apt_get is None or os.geteuid() != 0:
        raise BenchError("wrk is not installed: run `sudo apt-get install -y wrk`.")
    log("wrk is not installed; installing it with apt-get (Debian package wrk)")
    install = [apt_get, "install", "-y", "-q", "wrk"]
    if subprocess.run(install, capture_output=True, check=False).returncode != 0:
        log("apt-get install failed; running apt-get update, then trying again")
        subprocess.run([apt_get, "update", "-q"], capture_output=True, check=True)
        subprocess.run(install, capture_output=True, check=True)
    found = shutil.which("wrk")
    if not found:
        raise BenchError("wrk is still missing after `apt-get install wrk`.")
    return found


# Signed-in requests write (allauth's usersessions records a session's activity,
# once a minute per session and worker): with SQLite's default deferred
# transactions two workers writing at once fail with "database is locked".
# Served by several processes, SQLite needs these.
SQLITE_OPTIONS = "transaction_mode=IMMEDIATE&init_command=PRAGMA%20journal_mode%3DWAL"


def environment(directory: Path) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        {
            "DJANGO_SETTINGS_MODULE": "crypto_exchange.settings",
            "ENV_FILE": "/dev/null",
            "DEBUG": "false",
            # gunicorn on loopback over plain HTTP: no HTTPS redirect, no HSTS.
            "PLAIN_HTTP": "true",
            "SECRET_KEY": secrets.token_urlsafe(64)[:50],
            "ALLOWED_HOSTS": "127.0.0.1",
            "DATABASE_URL": f"sqlite:///{directory / 'db.sqlite3'}?{SQLITE_OPTIONS}",
            "MEDIA_ROOT": str(directory / "media"),
            "MEDIA_SERVE": "false",
            "USE_MINIO": "false",
            "LOG_LEVEL": "WARNING",
        }
    )
    return env


def run_python(env: dict[str, str], *args: str) -> str:
    result = subprocess.run(
        [str(PYTHON), *args],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    if result.returncode != 0:
        raise BenchError(
            f"`python {' '.join(args)}` failed:\n{result.stdout}{result.stderr}"
        )
    return result.stdout


def prepared_read(output: str) -> Prepared:
    data = json.loads(output.strip().splitlines()[-1])
    return Prepared(
        cookie=data["cookie"],
        session_engine=data["session_engine"],
        backends=data["backends"],
        in_process={
            path: InProcess(**values) for path, values in data["in_process"].items()
        },
    )


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def get(
    port: int, path: str, cookie: str | None = None, *, source: str = "127.0.0.1"
) -> tuple[int, bytes]:
    connection = http.client.HTTPConnection(
        "127.0.0.1", port, timeout=10, source_address=(source, 0)
    )
    try:
        connection.request("GET", path, headers={"Cookie": cookie} if cookie else {})
        response = connection.getresponse()
        return response.status, response.read()
    finally:
        connection.close()


@contextmanager
def gunicorn(env: dict[str, str], port: int, directory: Path) -> Iterator[None]:
    log_path = directory / "gunicorn.log"
    # Without --config gunicorn reads ./gunicorn.conf.py, the Docker image's
    # (access log, worker recycling every ~1000 requests): the command line
    # below must be the whole configuration.
    config = directory / "gunicorn.conf.py"
    config.write_text('"""bench.pages: the command line is the configuration."""\n')
    command = [
        str(PYTHON.parent / "gunicorn"),
        "bench.pages_wsgi:application",
        "--config",
        str(config),
        "--bind",
        f"127.0.0.1:{port}",
        "--workers",
        str(WORKERS),
        "--worker-class",
        "sync",
    ]
    with log_path.open("wb") as log_file:
        process = subprocess.Popen(
            command, cwd=REPO_ROOT, env=env, stdout=log_file, stderr=log_file
        )
    try:
        deadline = time.monotonic() + READY_TIMEOUT
        while True:
            if process.poll() is not None:
                raise BenchError(f"gunicorn exited:\n{log_path.read_text()}")
            try:
                if get(port, FLOOR.path)[0] == 200:
                    break
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise BenchError(f"gunicorn did not answer:\n{log_path.read_text()}")
            time.sleep(0.1)
        yield
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def pages_check(port: int, cookie: str) -> dict[str, int]:
    """Fail unless every page is a 200 showing what it must; sizes in bytes."""
    bodies = {}
    for page in PAGES:
        status, body = get(port, page.path, cookie if page.signed_in else None)
        if status != 200:
            raise BenchError(f"{page.path} answered {status}, not 200")
        bodies[page.path] = body
    logo = rb'<img class="token-logo" src="([^"]+)"'
    logos = re.findall(logo, bodies[TOKEN_LIST.path])
    if len(logos) != TOKENS or len(set(logos)) != TOKENS:
        raise BenchError(
            f"{TOKEN_LIST.path} shows {len(logos)} logos ({len(set(logos))} distinct), "
            f"not {TOKENS}"
        )
    if bodies[SIGNED_IN_FLOOR.path] != b"ok":
        raise BenchError(f"{SIGNED_IN_FLOOR.path} did not see the user signed in")
    profile = bodies[PROFILE.path]
    if f"<h1>{USERNAME}</h1>".encode() not in profile:
        raise BenchError(f"{PROFILE.path} is not {USERNAME}'s profile")
    tokens = re.findall(rb'name="csrfmiddlewaretoken" value="([^"]*)"', profile)
    if not tokens or not all(re.fullmatch(rb"[A-Za-z0-9]{64}", t) for t in tokens):
        raise BenchError(f"{PROFILE.path} has forms without a valid CSRF token")
    return {path: len(body) for path, body in bodies.items()}


_DURATION = re.compile(r"([\d.]+)(us|ms|s|m|h)$")
_DURATION_UNITS = {"us": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}


def seconds(text: str) -> float:
    match = _DURATION.match(text)
    if not match:
        raise BenchError(f"wrk printed a duration I cannot read: {text!r}")
    return float(match[1]) * _DURATION_UNITS[match[2]]


def wrk_parse(output: str) -> WrkRun:
    def find(pattern: str) -> str:
        match = re.search(pattern, output, re.MULTILINE)
        if not match:
            raise BenchError(f"no {pattern!r} in wrk's output:\n{output}")
        return match[1]

    statuses = re.search(r"^statuses: 200=(\d+) other=(\d+) last=(\d+)", output, re.M)
    if not statuses:
        raise BenchError(f"wrk's status script printed nothing:\n{output}")
    if int(statuses[2]) or not int(statuses[1]):
        raise BenchError(
            f"{statuses[1]} responses were 200, {statuses[2]} were not "
            f"(one was {statuses[3]}):\n{output}"
        )
    if re.search(r"^\s*Socket errors:", output, re.MULTILINE):
        raise BenchError(f"wrk saw socket errors:\n{output}")
    return WrkRun(
        requests_per_second=float(find(r"^Requests/sec:\s+([\d.]+)")),
        p50=seconds(find(r"^\s+50%\s+(\S+)")),
        p99=seconds(find(r"^\s+99%\s+(\S+)")),
    )


def wrk(
    binary: str, script: Path, port: int, page: Page, cookie: str, duration: int
) -> WrkRun:
    command = [
        binary,
        f"-t{WRK_THREADS}",
        f"-c{WRK_CONNECTIONS}",
        f"-d{duration}s",
        "--latency",
        "-s",
        str(script),
    ]
    if page.signed_in:
        command += ["-H", f"Cookie: {cookie}"]
    command.append(f"http://127.0.0.1:{port}{page.path}")
    result = subprocess.run(
        command, capture_output=True, text=True, check=False, timeout=duration + 30
    )
    if result.returncode != 0:
        raise BenchError(f"wrk failed on {page.path}:\n{result.stdout}{result.stderr}")
    return wrk_parse(result.stdout)


def measure(
    binary: str, script: Path, port: int, cookie: str, log: Callable[[str], None]
) -> dict[str, list[WrkRun]]:
    for page in PAGES:
        wrk(binary, script, port, page, cookie, WARMUP_SECONDS)
    runs: dict[str, list[WrkRun]] = {page.path: [] for page in PAGES}
    for round_number in range(1, ROUNDS + 1):
        for page in PAGES:
            run = wrk(binary, script, port, page, cookie, ROUND_SECONDS)
            runs[page.path].append(run)
            log(
                f"round {round_number}/{ROUNDS} {page.path}: "
                f"{run.requests_per_second:.0f} req/s, p50 {milliseconds(run.p50)}, "
                f"p99 {milliseconds(run.p99)}"
            )
    return runs


# --- The report --------------------------------------------------------------


def milliseconds(value: float) -> str:
    return f"{value * 1e3:.2f} ms" if value < 0.01 else f"{value * 1e3:.1f} ms"


def load_average() -> str:
    return Path("/proc/loadavg").read_text().split()[0]


def machine_summary(wrk_binary: str) -> str:
    cpu = "unknown CPU"
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            cpu = line.split(":", 1)[1].strip()
            break
    wrk_version = subprocess.run(
        [wrk_binary, "--version"], capture_output=True, text=True, check=False
    ).stdout.split(" Copyright")[0]
    versions = ", ".join(
        f"{name} {importlib.metadata.version(name)}"
        for name in ("Django", "django-allauth", "gunicorn", "whitenoise")
    )
    return (
        f"{cpu}, {len(os.sched_getaffinity(0))} cores; {platform.platform()}; "
        f"Python {platform.python_version()}, {versions}; {wrk_version.strip()}"
    )


def ratio_cell(result: PageResult, floor: PageResult | None) -> str:
    if floor is None:
        return "(floor)"
    per_round = [
        run.requests_per_second / base.requests_per_second
        for run, base in zip(result.runs, floor.runs, strict=True)
    ]
    ratio = result.requests_per_second / floor.requests_per_second
    return f"{ratio:.2f} ({min(per_round):.2f} to {max(per_round):.2f})"


def section(
    results: list[PageResult],
    prepared: Prepared,
    *,
    machine: str,
    load: tuple[str, str],
    started: datetime,
    elapsed: float,
) -> str:
    by_path = {result.page.path: result for result in results}
    lines = [
        SECTION_HEADING,
        "",
        f"Generated by `python -m bench.pages` on {started:%Y-%m-%d %H:%M} UTC in "
        f"{elapsed:.0f} s; do not edit by hand, run it again. Each page is "
        "compared with the floor of its kind, measured in the same run: "
        "anonymous pages with the anonymous floor, signed-in pages with the "
        "signed-in floor. There is no target.",
        "",
        f"Machine: {machine}. Load average (1 min) at the start and the end of "
        f"the run: {load[0]} and {load[1]}.",
        "",
        "| URL | Requests/s | x its floor (per round) | p50 | p99 | Response "
        "| Django alone | of which template | Queries |",
        "|---|--:|--:|--:|--:|--:|--:|--:|--:|",
    ]
    for result in results:
        page, timing = result.page, result.in_process
        floor = by_path[page.floor.path] if page.floor else None
        queries = f"{timing.queries}"
        if timing.repeated:
            queries += f" ({timing.repeated} repeated)"
        lines.append(
            f"| `{page.path}` ({page.label}) "
            f"| {result.requests_per_second:,.0f} | {ratio_cell(result, floor)} "
            f"| {milliseconds(result.p50)} | {milliseconds(result.p99)} "
            f"| {result.response_bytes:,} B | {milliseconds(timing.seconds)} "
            f"| {milliseconds(timing.rendering)} | {queries} |"
        )
    backends = ", ".join(f"`{backend}`" for backend in prepared.backends)
    lines += [
        "",
        "Method:",
        "",
        "- One gunicorn for the whole run: `gunicorn bench.pages_wsgi:application "
        f"--workers {WORKERS} --worker-class sync` on 127.0.0.1, with an empty "
        "`--config` so that the Docker image's `gunicorn.conf.py` does not apply. "
        "It serves the project's URLs plus the two floors (`bench/pages_urls.py`): "
        '`/bench/floor/` returns `HttpResponse(b"ok")`, `/bench/floor/signed-in/` '
        "the same once `request.user` is loaded from the session. Same workers, "
        "middleware, settings and session engine as the pages, so a page's ratio "
        "is what it adds to the cheapest request of its kind.",
        "- Production settings in a temporary directory: `DEBUG=false`, a SQLite "
        "database file (`CONN_MAX_AGE=60`; WAL and `transaction_mode=IMMEDIATE`, "
        "as SQLite served by several processes needs, since signed-in requests "
        "write: allauth's usersessions records a session's activity), media on "
        "local disk, static files collected. "
        f"Sessions: `{prepared.session_engine}`; authentication "
        f"backends: {backends}. {TOKENS} tokens with PNG logos and one user with "
        "a custom avatar, made through the services. The user is signed in with "
        "`Client.force_login`; wrk sends that session cookie and the CSRF cookie "
        "a signed-in browser has to the signed-in URLs, and no cookie to the "
        "others.",
        f"- Load: `wrk -t{WRK_THREADS} -c{WRK_CONNECTIONS} --latency`, on the "
        f"same {len(os.sched_getaffinity(0))} cores as gunicorn; p50 and p99 "
        "include the wait in the listen backlog. "
        f"{WARMUP_SECONDS} s warm-up per URL, then {ROUNDS} rounds of "
        f"{ROUND_SECONDS} s per URL, each page right after its floor. "
        "Requests/s, p50 and p99 are medians over the rounds; the ratio is the "
        "page's median over its floor's, with the range of the per-round ratios.",
        "- Checked, or the run fails: every response was a 200 (counted by a wrk "
        f"Lua script), `/tokens/` shows {TOKENS} distinct logos, the signed-in "
        "floor sees the user, the profile is the user's with a valid CSRF token "
        "in each form (before and after the load).",
        "- **Django alone**: the same URL through Django's test client in one "
        "process (no HTTP, no gunicorn), median of about a second of requests "
        "before gunicorn starts; **of which template** is the time inside the "
        "outermost template render. Queries are counted on one request.",
    ]
    return "\n".join(lines) + "\n"


def main() -> int:
    started = datetime.now(UTC)
    clock = time.monotonic()
    load_start = load_average()

    def log(message: str) -> None:
        print(f"[{time.monotonic() - clock:5.1f}s] {message}", flush=True)

    try:
        wrk_binary = wrk_ensure(log)
        with tempfile.TemporaryDirectory(prefix="bench-pages-") as temporary:
            directory = Path(temporary)
            env = environment(directory)
            run_python(env, "manage.py", "migrate", "--noinput", "--verbosity", "0")
            run_python(env, "manage.py", "collectstatic", "--noinput", "-v", "0")
            log(f"site set up in {directory}; creating {TOKENS} tokens and a user")
            prepared = prepared_read(
                run_python(env, "-c", "from bench.pages import prepare; prepare()")
            )
            for page in PAGES:
                timing = prepared.in_process[page.path]
                log(
                    f"in-process {page.path}: {milliseconds(timing.seconds)}, "
                    f"template {milliseconds(timing.rendering)}, "
                    f"{timing.queries} queries"
                )
            script = directory / "statuses.lua"
            script.write_text(STATUS_SCRIPT)
            port = free_port()
            with gunicorn(env, port, directory):
                log(f"gunicorn answering on 127.0.0.1:{port}")
                sizes = pages_check(port, prepared.cookie)
                runs = measure(wrk_binary, script, port, prepared.cookie, log)
                pages_check(port, prepared.cookie)
    except BenchError as error:
        print(f"bench.pages failed: {error}", file=sys.stderr)
        return 1
    results = [
        PageResult(
            page, runs[page.path], sizes[page.path], prepared.in_process[page.path]
        )
        for page in PAGES
    ]
    text = section(
        results,
        prepared,
        machine=machine_summary(wrk_binary),
        load=(load_start, load_average()),
        started=started,
        elapsed=time.monotonic() - clock,
    )
    report.section_write(text, heading=SECTION_HEADING)
    print(text)
    log(f"wrote the section {SECTION_HEADING!r} of {report.REPORT_PATH}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
