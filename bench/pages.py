"""Requests per second of real pages under gunicorn, against Django's own floor.

    python -m bench.pages

Sets up a throwaway site in a temporary directory (SQLite database, media
files, production settings: ``DEBUG=false``), with 100 tokens that have logos
and one user with a custom avatar, then starts one gunicorn
(``bench/pages_wsgi.py``) for the whole run. That gunicorn serves the project
plus ``/bench/floor/``, a view that returns two bytes: the same workers and the
same middleware, so the floor is what Django itself costs per request. A second
reference, ``/bench/floor/signed-in/``, returns the same two bytes after
Django has read the session and the user, as for any signed-in page. ``wrk``
loads each URL in turn, the URLs interleaved round by round so that drift of
the machine hits them all alike; every response must be a 200.

Before gunicorn starts, each page is also timed in-process (Django's test
client, no HTTP), with its template rendering time and its queries, so that a
missed target comes with where the time goes; the profile page also on a miss
of its page cache, as on the first view after a change.

Writes the section ``## Pages under gunicorn`` of ``docs/PERFORMANCE.md`` and
leaves the rest of the file as it is. Missing the target is a result: the exit
code is non-zero only when the benchmark could not run or a page was wrong.
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
from importlib import import_module
from pathlib import Path

from bench import report

REPO_ROOT = Path(__file__).resolve().parent.parent
SECTION_HEADING = "## Pages under gunicorn"
PYTHON = Path(sys.executable)

TARGET_RATIO = 0.5  # of the floor's requests per second
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
COMPONENT_REPEAT = 30
READ_REPEAT = 300  # for the reads and the CSRF token, tens of microseconds each

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
    target: bool = True  # False for the references


FLOOR = Page("floor: minimal view", "/bench/floor/", False, 1000, target=False)
SIGNED_IN_FLOOR = Page(
    "floor, signed in: minimal view after reading the user",
    "/bench/floor/signed-in/",
    True,
    1000,
    target=False,
)
TOKEN_LIST = Page(f"token list, {TOKENS} tokens with logos", "/tokens/", False, 100)
PROFILE = Page("profile, signed in", "/accounts/profile/", True, 300)
PAGES = (FLOOR, SIGNED_IN_FLOOR, TOKEN_LIST, PROFILE)


@dataclass(frozen=True)
class WrkRun:
    requests_per_second: float
    p50: float  # seconds
    p99: float
    requests: int
    socket_errors: str


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
    in_process: dict[str, InProcess]
    components: dict[str, float]  # seconds for all the tokens of the list


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
    """Time spent in the outermost template render (form widgets nest inside)."""

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


def _median_seconds(function: Callable[[], object], repeat: int) -> float:
    samples = []
    for _ in range(repeat):
        start = time.perf_counter()
        function()
        samples.append(time.perf_counter() - start)
    return statistics.median(samples)


def prepare() -> None:
    """Create the data through the services, then time the pages in-process.

    Runs in the benchmark's environment (``python -c``), so the session is
    signed with that SECRET_KEY and stored in the database gunicorn uses.
    Prints one line of JSON: the session cookie; for each page the time Django
    alone takes (test client, no HTTP), its rendering time and its queries,
    and the same for a view of the profile that misses its page cache; and
    what the token list's per-token pieces cost.
    """
    from django.conf import settings

    settings.ROOT_URLCONF = "bench.pages_urls"
    from bench import django_setup

    django_setup()
    from django.contrib.auth import get_user_model, load_backend
    from django.contrib.sessions.models import Session
    from django.core.files.base import ContentFile
    from django.db import connection
    from django.http import HttpRequest
    from django.middleware.csrf import get_token
    from django.test import Client
    from django.test.utils import CaptureQueriesContext
    from django.urls import reverse
    from django.utils import timezone

    from accounts.page_cache import profile_pages_clear
    from accounts.selectors import profile_for_user, profile_page_data
    from accounts.services import avatar_replace
    from tokens.selectors import token_list
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
    cookie = signed_in.cookies[settings.SESSION_COOKIE_NAME]
    # A signed-in browser has the CSRF cookie: logging in rotates the token
    # and sets it. One view gives it, as the login's answer would.
    signed_in.get("/accounts/profile/")
    csrf_cookie = signed_in.cookies[settings.CSRF_COOKIE_NAME]

    timer = _RenderTimer()
    timer.install()

    def timed(
        client: Client, path: str, requests: int, before: Callable[[], object]
    ) -> dict[str, float | int]:
        for _ in range(IN_PROCESS_WARMUP):
            before()
            if client.get(path).status_code != 200:
                raise BenchError(f"{path} is not a 200 in-process")
        elapsed, rendering = [], []
        for _ in range(requests):
            before()
            timer.seconds = 0.0
            start = time.perf_counter()
            client.get(path)
            elapsed.append(time.perf_counter() - start)
            rendering.append(timer.seconds)
        before()
        with CaptureQueriesContext(connection) as queries:
            client.get(path)
        statements = [query["sql"] for query in queries.captured_queries]
        return {
            "seconds": statistics.median(elapsed),
            "rendering": statistics.median(rendering),
            "queries": len(statements),
            "repeated": len(statements) - len(set(statements)),
        }

    in_process = {
        page.path: timed(
            signed_in if page.signed_in else Client(SERVER_NAME="127.0.0.1"),
            page.path,
            page.in_process_requests,
            before=lambda: None,
        )
        for page in PAGES
    }
    # Every view a first one: as after any change to what the page shows.
    profile_miss = timed(signed_in, PROFILE.path, 100, before=profile_pages_clear)
    tokens = list(token_list())
    session_store = import_module(settings.SESSION_ENGINE).SessionStore

    def csrf_cookie_request() -> HttpRequest:
        request = HttpRequest()
        request.META["CSRF_COOKIE"] = "c" * 32
        return request

    def query_on_new_connection() -> None:
        connection.close()
        list(token_list()[:1])

    components = {
        "new_connection": _median_seconds(query_on_new_connection, COMPONENT_REPEAT)
        - _median_seconds(lambda: list(token_list()[:1]), COMPONENT_REPEAT),
        "rows": _median_seconds(lambda: list(token_list()), COMPONENT_REPEAT),
        "reverse": _median_seconds(
            lambda: [reverse("tokens:detail", args=[t.symbol]) for t in tokens],
            COMPONENT_REPEAT,
        ),
        "logo_url": _median_seconds(
            lambda: [t.logo.url for t in tokens], COMPONENT_REPEAT
        ),
        # The two reads of every signed-in request, through the ORM as Django
        # makes them and through the project's session store and backend.
        "user_query": _median_seconds(
            lambda: get_user_model().objects.get(pk=user.pk), READ_REPEAT
        ),
        "user_query_sql": _median_seconds(
            lambda: load_backend(settings.AUTHENTICATION_BACKENDS[0]).get_user(user.pk),
            READ_REPEAT,
        ),
        "session_query": _median_seconds(
            lambda: Session.objects.get(
                session_key=cookie.value, expire_date__gt=timezone.now()
            ),
            READ_REPEAT,
        ),
        "session_query_sql": _median_seconds(
            lambda: session_store(cookie.value)._get_session_from_db(), READ_REPEAT
        ),
        # Django's CSRF token for a browser without the cookie (a new secret,
        # then its mask), as wrk is, and with it (the mask alone).
        "csrf_new": _median_seconds(lambda: get_token(HttpRequest()), READ_REPEAT),
        "csrf_mask": _median_seconds(
            lambda: get_token(csrf_cookie_request()), READ_REPEAT
        ),
        "profile_page_data": _median_seconds(
            lambda: profile_page_data(user=user), COMPONENT_REPEAT
        ),
        "profile_miss": profile_miss["seconds"],
        "profile_miss_rendering": profile_miss["rendering"],
        "profile_miss_queries": profile_miss["queries"],
    }
    cookie_header = (
        f"{cookie.key}={cookie.value}; {csrf_cookie.key}={csrf_cookie.value}"
    )
    print(
        json.dumps(
            {
                "cookie": cookie_header,
                "in_process": in_process,
                "components": components,
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


def environment(directory: Path) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        {
            "DJANGO_SETTINGS_MODULE": "crypto_exchange.settings",
            "ENV_FILE": "/dev/null",
            "DEBUG": "false",
            "SECRET_KEY": secrets.token_urlsafe(64)[:50],
            "ALLOWED_HOSTS": "127.0.0.1",
            "DATABASE_URL": f"sqlite:///{directory / 'db.sqlite3'}",
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
        in_process={
            path: InProcess(**values) for path, values in data["in_process"].items()
        },
        components=data["components"],
    )


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def get(port: int, path: str, cookie: str | None = None) -> tuple[int, bytes]:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
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
    logos = re.findall(rb'<img class="token-logo" src="([^"]+)"', bodies["/tokens/"])
    if len(logos) != TOKENS or len(set(logos)) != TOKENS:
        raise BenchError(
            f"/tokens/ shows {len(logos)} logos ({len(set(logos))} distinct), "
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
    errors = re.search(r"^\s*Socket errors: (.*)$", output, re.MULTILINE)
    return WrkRun(
        requests_per_second=float(find(r"^Requests/sec:\s+([\d.]+)")),
        p50=seconds(find(r"^\s+50%\s+(\S+)")),
        p99=seconds(find(r"^\s+99%\s+(\S+)")),
        requests=int(find(r"^\s+(\d+) requests in")),
        socket_errors=errors[1].strip() if errors else "",
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
        raise BenchError(f"wrk failed:\n{result.stdout}{result.stderr}")
    run = wrk_parse(result.stdout)
    if run.socket_errors:
        raise BenchError(f"wrk saw socket errors on {page.path}: {run.socket_errors}")
    return run


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


def microseconds(value: float) -> str:
    return f"{value * 1e6:.0f} µs"


def verdict(passed: bool) -> str:
    return "**PASS**" if passed else "**FAIL**"


def load_average() -> str:
    return Path("/proc/loadavg").read_text().split()[0]


def machine_summary(wrk_binary: str) -> str:
    cpu = "unknown CPU"
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            cpu = line.split(":", 1)[1].strip()
            break
    nproc_binary = shutil.which("nproc")
    nproc = (
        subprocess.run(
            [nproc_binary], capture_output=True, text=True, check=True
        ).stdout.strip()
        if nproc_binary
        else str(len(os.sched_getaffinity(0)))
    )
    wrk_version = subprocess.run(
        [wrk_binary, "--version"], capture_output=True, text=True, check=False
    ).stdout.split(" Copyright")[0]
    versions = ", ".join(
        f"{name} {importlib.metadata.version(name)}"
        for name in ("Django", "gunicorn", "whitenoise")
    )
    return (
        f"{cpu}, `nproc` {nproc}; {platform.platform()}; "
        f"Python {platform.python_version()}, {versions}; {wrk_version.strip()}"
    )


def core_time(result: PageResult) -> float:
    """CPU seconds per request: the cores over the rate (wrk's share included)."""
    return len(os.sched_getaffinity(0)) / result.requests_per_second


def findings(results: list[PageResult], components: dict[str, float]) -> list[str]:
    floor, signed_in, tokens, profile = results
    budget = core_time(floor) / TARGET_RATIO
    lines = [
        f"- **Budget.** The floor costs {milliseconds(core_time(floor))} of CPU "
        f"per request under load (cores / requests per second, wrk's share "
        f"included); Django alone takes {milliseconds(floor.in_process.seconds)} "
        "of it, the rest is gunicorn, a new TCP connection per request (the sync "
        "worker closes each one) and wrk. At "
        f"{TARGET_RATIO} a page may cost {milliseconds(budget)} in all, that is "
        f"at most {milliseconds(budget - core_time(floor))} more than a view "
        "that returns two bytes.",
    ]
    signed_in_extra = core_time(signed_in) - core_time(floor)
    signed_in_ratio = signed_in.requests_per_second / floor.requests_per_second
    page_budget = budget - core_time(floor)
    if signed_in_ratio < TARGET_RATIO:
        reach = (
            "more than the whole budget, so no page that knows who is signed in "
            "can meet the target in this setup, however little it adds, and the "
            "profile is better judged against the signed-in floor"
        )
    else:
        reach = (
            f"{signed_in_extra / page_budget:.0%} of the "
            f"{milliseconds(page_budget)} a page may add, which leaves "
            f"{milliseconds(page_budget - signed_in_extra)} to what a signed-in "
            "page does itself"
        )
    lines.append(
        f"- **Signed in.** The signed-in floor serves {signed_in_ratio:.2f} of the "
        "floor. Knowing who is signed in costs two queries before any view "
        "runs, the session row (`SessionMiddleware`) and the user row "
        "(`AuthenticationMiddleware`, which also checks the session against the "
        "password hash): "
        f"{milliseconds(signed_in.in_process.seconds - floor.in_process.seconds)}"
        f" more than the floor in Django alone, {milliseconds(signed_in_extra)} "
        f"more under load, {reach}. Through the ORM these reads are mostly "
        "query compilation, not the database's work, so both are read with a "
        "statement built once from the models' metadata (`accounts.rows`): the "
        "session row by the session store `accounts.sessions` (Django's "
        "database store otherwise, `accounts.sessions_cached` for `cached_db`) "
        f"in {microseconds(components['session_query_sql'])} instead of "
        f"{microseconds(components['session_query'])} through the ORM, the user "
        "row by `accounts.backends.SqlModelBackend` (Django's `ModelBackend` "
        f"otherwise) in {microseconds(components['user_query_sql'])} instead of "
        f"{microseconds(components['user_query'])}. Only the reads changed: "
        "decoding and checking the session's signature, refusing inactive users "
        "and checking the password hash are still Django's code.",
    )
    if tokens.requests_per_second < TARGET_RATIO * floor.requests_per_second:
        timing = tokens.in_process
        lines.append(
            f"- **Token list: missed.** Django alone takes "
            f"{milliseconds(timing.seconds)} per request, "
            f"{milliseconds(timing.rendering)} of it rendering the template, for "
            f"{timing.queries} query. The time grows with the number of tokens: "
            f"each of the {TOKENS} cards is an `{{% include %}}` of "
            "`partials/token_card.html` (a new context, node by node) with "
            "`{% url 'tokens:detail' token.symbol %}` "
            f"({milliseconds(components['reverse'])} for all {TOKENS} reverses), "
            f"`token.logo.url` ({milliseconds(components['logo_url'])} for "
            f"{TOKENS}) and four escaped variables; the query builds {TOKENS} "
            "full `Token` instances, `description` included "
            f"({milliseconds(components['rows'])}). No tuning of a per-request "
            f"render of {TOKENS} cards fits in the budget. Fix: do not render the "
            "grid per request. Cache it: a `{% cache %}` fragment around the grid "
            "keyed on a version that `token_create` / `token_logo_replace` bump "
            "through `transaction.on_commit` (or on `Max(updated_at)` and "
            "`Count`), which leaves little more than `base.html`; or the "
            "whole page for anonymous visitors (only `?q=` and the sign-in state "
            "change it), the only variant that gets near the floor. For cache "
            "misses and searches, render cheaper: the card inline instead of an "
            "include, the detail URL from one `reverse` prefix (a "
            "`Token.get_absolute_url`), `token_list().only('symbol', 'name', "
            "'logo')`.",
        )
    timing = profile.in_process
    met = profile.requests_per_second >= TARGET_RATIO * floor.requests_per_second
    lines.append(
        f"- **Profile: {'met' if met else 'missed'}.** It serves "
        f"{profile.requests_per_second / signed_in.requests_per_second:.2f} of the "
        "signed-in floor. Each view reads the session and the user as above, "
        "then the profile and the active API keys in one statement "
        f"(`accounts.selectors.profile_page_data`; {timing.queries} queries in "
        "all), and looks the page up in `accounts.page_cache`; when it is there "
        "the view only puts a new CSRF token into it, with no template: "
        f"{milliseconds(timing.seconds)} in Django alone "
        f"({milliseconds(timing.rendering)} of it rendering), "
        f"{milliseconds(timing.seconds - signed_in.in_process.seconds)} more than "
        "the signed-in floor. Of that, Django's CSRF token takes "
        f"{microseconds(components['csrf_mask'])} (its mask, 32 characters each "
        "drawn with an `os.urandom` call of its own; a browser without the "
        "CSRF cookie would also cost a new secret: "
        f"{microseconds(components['csrf_new'])} for the secret and the mask). "
        "The page's "
        "own statement takes "
        f"{microseconds(components['profile_page_data'])}, then the cache key "
        "and the lookup. "
        + (
            ""
            if met
            else "To meet the target the page would have to cost "
            f"{milliseconds(core_time(profile) - budget)} less per request under "
            "load. "
        )
        + "The run views the same page for the same session "
        "over and over, so these rows measure that path. A view that misses the "
        "cache, the first after any change, or in another worker, renders the "
        f"template: {milliseconds(components['profile_miss'])} in Django alone, "
        f"{milliseconds(components['profile_miss_rendering'])} of it rendering, "
        f"{components['profile_miss_queries']:.0f} queries (the navigation's "
        "avatar comes from the same profile).",
    )
    lines.append(
        "- **What is cached, and why nothing needs invalidating.** A rendered "
        "page is kept in local memory, per gunicorn worker (up to 1,000 pages, "
        "10 minutes), under a digest of everything it shows and of who it is "
        "for: the session key, every column of the user row as "
        "`AuthenticationMiddleware` loaded it for this request, the profile row "
        "and the active API key rows just read, and the avatar's URL. A change "
        "of any kind (new or removed picture, key created, revoked or used, "
        "username or e-mail edited in the admin, password changed) makes a new "
        "digest on the next view, so that view renders; no write has to know "
        "about the cache, and a page is served only while everything it was "
        "rendered from is unchanged, and only to the session it was rendered "
        "for. The CSRF token "
        "is stored as a placeholder and replaced on every view by a newly "
        "masked token of that browser's secret, as a render would; a view with "
        "messages pending is rendered and not stored; only GETs use it; "
        "responses say `Cache-Control: private, no-store` and `Vary: Cookie`.",
    )
    return lines


def section(
    results: list[PageResult],
    components: dict[str, float],
    *,
    machine: str,
    load: tuple[str, str],
    started: datetime,
    elapsed: float,
) -> str:
    floor = results[0]
    targeted = [result for result in results if result.page.target]
    met = [
        result
        for result in targeted
        if result.requests_per_second >= TARGET_RATIO * floor.requests_per_second
    ]
    lines = [
        SECTION_HEADING,
        "",
        f"Generated by `python -m bench.pages` on {started:%Y-%m-%d %H:%M} UTC in "
        f"{elapsed:.0f} s; do not edit by hand, run it again. Target: each page "
        f"serves at least {TARGET_RATIO} of the floor's requests per second. "
        f"{len(met)} of {len(targeted)} pages meet it.",
        "",
        f"Machine: {machine}. Load average (1 min) at the start and the end of "
        f"the run: {load[0]} and {load[1]}; other work on the machine lowers "
        "every number and widens the per-round ranges; the interleaving spreads "
        "it over all URLs.",
        "",
        "| URL | Requests/s | x floor (per round) | p50 | p99 | Response "
        "| Django alone | of which template | Queries | Target |",
        "|---|--:|--:|--:|--:|--:|--:|--:|--:|---|",
    ]
    for result in results:
        timing = result.in_process
        if result is floor:
            ratio_cell, target = "1.00", "(floor)"
        else:
            ratio = result.requests_per_second / floor.requests_per_second
            per_round = [
                run.requests_per_second / base.requests_per_second
                for run, base in zip(result.runs, floor.runs, strict=True)
            ]
            ratio_cell = f"{ratio:.2f} ({min(per_round):.2f} to {max(per_round):.2f})"
            target = (
                verdict(ratio >= TARGET_RATIO) if result.page.target else "(reference)"
            )
        queries = f"{timing.queries}"
        if timing.repeated:
            queries += f" ({timing.repeated} repeated)"
        lines.append(
            f"| `{result.page.path}` ({result.page.label}) "
            f"| {result.requests_per_second:,.0f} | {ratio_cell} "
            f"| {milliseconds(result.p50)} | {milliseconds(result.p99)} "
            f"| {result.response_bytes:,} B | {milliseconds(timing.seconds)} "
            f"| {milliseconds(timing.rendering)} | {queries} | {target} |"
        )
    cores = len(os.sched_getaffinity(0))
    lines += [
        "",
        "Method:",
        "",
        "- One gunicorn for the whole run: `gunicorn bench.pages_wsgi:application "
        f"--workers {WORKERS} --worker-class sync`, bound to 127.0.0.1, with an "
        "empty `--config` so that the Docker image's `gunicorn.conf.py` (access "
        "log, workers recycled every ~1,000 requests) does not apply. It serves "
        "the project's URLs plus `/bench/floor/`, a view returning "
        '`HttpResponse(b"ok")` (`bench/pages_urls.py`): the same processes and '
        "the same middleware, so the floor is the framework's own cost per request "
        "and the ratio shows what a page adds to it. `/bench/floor/signed-in/` "
        "returns the same two bytes once `request.user` is loaded, with the "
        "user's cookie: what knowing who is signed in costs, for reference.",
        "- Production settings from the environment, in a temporary directory: "
        "`DEBUG=false`, a random `SECRET_KEY`, a SQLite database file "
        "(`CONN_MAX_AGE=60`, the default: each worker keeps its connection), "
        "media on local disk with `MEDIA_SERVE=false`, static files collected "
        "(WhiteNoise manifest storage). No `REDIS_URL`: sessions in the database "
        "(`accounts.sessions`) and Django's default cache, "
        "local memory per process, which the token list uses; the profile's "
        "page cache is per process in any configuration. Data made through the "
        f"services: {TOKENS} tokens with PNG logos (`token_create`) and one user "
        "with a custom avatar (`avatar_replace`), signed in with a database "
        "session (`Client.force_login`) whose cookie wrk sends with the CSRF "
        "cookie a signed-in browser has (logging in sets it), so each view "
        "masks that secret as for a returning browser. The floor and the token "
        "list are requested without a cookie.",
        f"- Load: `wrk -t{WRK_THREADS} -c{WRK_CONNECTIONS} --latency`. "
        f"{WRK_CONNECTIONS} connections keep both sync workers busy (each serves "
        "one request at a time and the others wait in the listen backlog, so p50 "
        f"and p99 include that queueing, about {WRK_CONNECTIONS // WORKERS} "
        "service times); one wrk thread is enough for these rates and leaves the "
        f"rest of the CPU to gunicorn. wrk and gunicorn share the {cores} cores, "
        "as a load generator on the same host must; that costs the floor most in "
        "proportion, so it flatters the ratios rather than hurting them.",
        f"- {WARMUP_SECONDS} s warm-up per URL, then {ROUNDS} rounds of "
        f"{ROUND_SECONDS} s per URL, interleaved (floor, signed-in floor, token "
        "list, profile, floor, …) so that drift hits all URLs alike. "
        "Requests/s, p50 and p99 are medians over the rounds; the ratio is the "
        "page's median over the floor's, with the range of the per-round ratios "
        "beside it.",
        "- Checked, or the run fails: every response wrk received was a 200 "
        "(counted by a wrk Lua script, as wrk's own count takes a redirect to "
        f"the login page for a success), `/tokens/` shows {TOKENS} distinct "
        '`<img class="token-logo">`, the signed-in floor sees the user, and the '
        "profile page is the user's, each of its forms with a CSRF token (before "
        "the load and after it, when it comes from the page cache).",
        "- **Django alone**: the same page through Django's test client in one "
        "process (middleware, view, template; no HTTP, no gunicorn, no new "
        "database connection), median of about a second of requests before "
        "gunicorn starts; **of which template** is the time inside the outermost "
        "template render. Queries are counted on one request. The profile is "
        "also timed with its page cache emptied before every request (below).",
        "",
        "Findings:",
        "",
    ]
    lines += findings(results, components)
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
        prepared.components,
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
