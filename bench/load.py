"""Requests per second through nginx, for one app instance and for three.

    python -m bench.load          # or: make bench-load

Starts one S3 server and two copies of the production topology of
``scripts/topology.py`` side by side (nginx round robin over one gunicorn
instance, and over three; each with a fresh PostgreSQL database and a Redis
database number of its own), seeds both through the services (tokens with
logos, markets, members with avatars), signs the members in through the login
form and warms every worker up. Then locust runs headless against one nginx
at a time for a fixed time (``bench/load_locustfile.py``: visitors browsing,
members viewing their profile and uploading avatars), the two configurations
taking turns round by round, so that other work on the machine hits both
alike. While locust runs, the CPU time of gunicorn, nginx, locust and the
whole machine is sampled.

Writes the section ``## Load balancer (locust)`` of ``docs/PERFORMANCE.md``
and leaves the rest of the file as it is. The target is no errors; missing it
is a result, and the exit code is non-zero only when the benchmark could not
run.
"""

from __future__ import annotations

import contextlib
import csv
import importlib.metadata
import json
import os
import platform
import secrets
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from bench import report
from scripts import s3_server
from scripts.topology import (
    DEFAULT_POSTGRES_URL,
    NGINX,
    SCENARIO_UPLOAD_RATE,
    Browser,
    ScenarioError,
    Topology,
    TopologyError,
    client_address,
    csrf_token,
    parse_key_values,
)

REPO_ROOT = Path(__file__).resolve().parent.parent
SECTION_HEADING = "## Load balancer (locust)"
LOCUSTFILE = REPO_ROOT / "bench" / "load_locustfile.py"
PYTHON = Path(sys.executable)

CONFIGURATIONS = (1, 3)  # instances behind nginx
WORKERS = 2  # gunicorn sync workers per instance
USERS = 12  # concurrent locust users: 3 visitors for 2 members
ROUNDS = 3
ROUND_SECONDS = 12  # of load per configuration and round
WARMUP_ROUNDS = 4  # of every page, per worker, before the first round
TOKENS = 24
MARKETS = 3
MEMBERS = USERS  # one session each
CPU_SAMPLE_SECONDS = 0.5


@dataclass(frozen=True)
class Row:
    """One line of locust's ``_stats.csv``, or the median over rounds; ms."""

    name: str
    requests: int
    failures: int
    requests_per_second: float
    p50: float
    p95: float
    p99: float


@dataclass(frozen=True)
class Round:
    rows: list[Row]  # per request name, then "Aggregated"
    failures: list[tuple[str, str, int]]  # name, error, occurrences
    per_instance: Counter  # requests per upstream, from nginx's access log
    statuses: Counter  # nginx's access log
    nginx_seconds: list[float]  # nginx's request_time of every request
    cpu: dict[str, float]  # cores used on average while locust sent requests
    load: str  # load average (1 min) at the start

    @property
    def total(self) -> Row:
        return next(row for row in self.rows if row.name == "Aggregated")


@dataclass(frozen=True)
class Result:
    instances: int
    rounds: list[Round]

    def row(self, name: str) -> Row | None:
        rows = [r for round_ in self.rounds for r in round_.rows if r.name == name]
        if not rows:
            return None
        return Row(
            name=name,
            requests=sum(r.requests for r in rows),
            failures=sum(r.failures for r in rows),
            requests_per_second=statistics.median(r.requests_per_second for r in rows),
            p50=statistics.median(r.p50 for r in rows),
            p95=statistics.median(r.p95 for r in rows),
            p99=statistics.median(r.p99 for r in rows),
        )

    @property
    def total(self) -> Row:
        return self.row("Aggregated")

    @property
    def statuses(self) -> Counter:
        return sum((r.statuses for r in self.rounds), Counter())

    @property
    def errors(self) -> int:
        bad = sum(count for status, count in self.statuses.items() if status >= 400)
        return max(self.total.failures, bad)

    @property
    def per_instance(self) -> Counter:
        return sum((r.per_instance for r in self.rounds), Counter())

    @property
    def cpu(self) -> dict[str, float]:
        return {
            part: statistics.mean(r.cpu[part] for r in self.rounds)
            for part in self.rounds[0].cpu
        }

    @property
    def nginx_percentiles(self) -> dict[str, float]:
        durations = [d for r in self.rounds for d in r.nginx_seconds]
        cuts = statistics.quantiles(durations, n=100)
        return {"p50": cuts[49], "p95": cuts[94], "p99": cuts[98]}


class BenchError(RuntimeError):
    """The benchmark could not run."""


# --- Seed, run in a subprocess with the topology's environment --------------


def seed() -> None:
    """Tokens with logos, markets and members with avatars, through the services.

    Prints one line of JSON: the token symbols and the members' user names.
    The members' password comes from ``LOAD_PASSWORD``.
    """
    from bench import django_setup

    django_setup()
    from decimal import Decimal

    from django.contrib.auth import get_user_model
    from django.core.files.base import ContentFile

    from accounts.selectors import profile_for_user
    from accounts.services import avatar_replace
    from scripts.topology import colour, image_bytes
    from tokens.services import token_create
    from trading.services import market_create

    tokens = []
    for number in range(TOKENS):
        name, _, logo = image_bytes(colour(number), kind="logo")
        tokens.append(
            token_create(
                name=f"Load token {number}",
                symbol=f"LD{number:03d}",
                logo=ContentFile(logo, name=name),
            )
        )
    for base in tokens[1 : MARKETS + 1]:
        market_create(
            base=base,
            quote=tokens[0],
            price_step=Decimal("0.01"),
            amount_step=Decimal("0.0001"),
        )
    usernames = []
    for number in range(MEMBERS):
        user = get_user_model().objects.create_user(
            username=f"member{number}", password=os.environ["LOAD_PASSWORD"]
        )
        name, _, avatar = image_bytes(colour(100 + number), kind="avatar")
        avatar_replace(
            profile=profile_for_user(user=user), upload=ContentFile(avatar, name=name)
        )
        usernames.append(user.username)
    print(json.dumps({"symbols": [t.symbol for t in tokens], "usernames": usernames}))


# --- A configuration, ready for load -----------------------------------------


@dataclass
class Stand:
    instances: int
    topology: Topology
    directory: Path
    symbols: list[str]


def sessions_create(topology: Topology, usernames: list[str], password: str) -> list:
    """Each member logs in through nginx with the login form, as a browser, from
    a client address of its own (the log-in throttle counts per address)."""
    sessions = []
    for number, username in enumerate(usernames):
        browser = Browser(topology.nginx_port, client_address=client_address(number))
        form = browser.get("/accounts/login/")
        answer = browser.post(
            "/accounts/login/",
            {
                "csrfmiddlewaretoken": csrf_token(form),
                "login": username,
                "password": password,
            },
        )
        if answer.status != 302 or "sessionid" not in browser.cookies:
            raise BenchError(f"{username} could not log in: {answer.describe()}")
        sessions.append(
            {
                "username": username,
                "cookies": dict(browser.cookies),
                "address": browser.client_address,
            }
        )
    return sessions


def warm_up(topology: Topology, symbols: list[str], session: dict) -> None:
    """Every page a few times per worker, so no worker's first request is timed.

    Each answer must be a 200; the token list also fills the shared cache.
    """
    member = Browser(topology.nginx_port, client_address=session["address"])
    member.cookies = dict(session["cookies"])
    visitor = Browser(topology.nginx_port, client_address=client_address(MEMBERS))
    pages = [
        (visitor, "/"),
        (visitor, "/tokens/"),
        (visitor, f"/tokens/{symbols[0]}/"),
        (visitor, "/markets/"),
        (member, "/accounts/profile/"),
    ]
    for _ in range(WARMUP_ROUNDS * topology.instance_count * topology.workers):
        for browser, path in pages:
            answer = browser.get(path)
            if answer.status != 200:
                raise BenchError(f"warm-up: {answer.describe()}")


@contextlib.contextmanager
def stand(
    instances: int,
    server: s3_server.S3Server,
    static_root: Path,
    log: Callable[[str], None],
) -> Iterator[Stand]:
    password = secrets.token_urlsafe(18)
    with (
        Topology(
            instances=instances,
            workers=WORKERS,
            s3=server,
            postgres_url=os.environ.get("POSTGRES_URL", DEFAULT_POSTGRES_URL),
            static_root=static_root,
            upload_rate=SCENARIO_UPLOAD_RATE,
            log=log,
        ) as topology,
        tempfile.TemporaryDirectory(prefix="bench-load-") as temporary,
    ):
        directory = Path(temporary)
        seeded = json.loads(
            topology.python(
                "-c",
                "from bench.load import seed; seed()",
                env={"LOAD_PASSWORD": password},
            ).splitlines()[-1]
        )
        sessions = sessions_create(topology, seeded["usernames"], password)
        (directory / "sessions.json").write_text(json.dumps(sessions))
        warm_up(topology, seeded["symbols"], sessions[0])
        log(f"{instances} instance(s) seeded and warmed up")
        yield Stand(instances, topology, directory, seeded["symbols"])


# --- CPU ---------------------------------------------------------------------

_TICKS = os.sysconf("SC_CLK_TCK")


def _stat_fields(pid: str) -> list[str]:
    # The command name (field 2) may hold spaces; split what follows it.
    text = Path(f"/proc/{pid}/stat").read_text()
    return text[text.rindex(")") + 2 :].split()


def process_trees_cpu(roots: dict[str, list[int]]) -> dict[str, float]:
    """CPU seconds of each group of processes and their children.

    A parent's cutime/cstime holds its reaped children (gunicorn recycles
    workers and with them their PostgreSQL backends); live children are added
    from their own utime/stime.
    """
    owner = {pid: part for part, pids in roots.items() for pid in pids}
    ticks = dict.fromkeys(roots, 0)
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            fields = _stat_fields(entry)
        except OSError:
            continue  # the process exited meanwhile
        pid, parent = int(entry), int(fields[1])
        if pid in owner:
            ticks[owner[pid]] += sum(int(value) for value in fields[11:15])
        elif parent in owner:
            ticks[owner[parent]] += int(fields[11]) + int(fields[12])
    return {part: count / _TICKS for part, count in ticks.items()}


def postmaster_pids() -> list[int]:
    """PostgreSQL's main processes: postgres processes whose parent is not one."""
    parents = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            if Path(f"/proc/{entry}/comm").read_text().strip() == "postgres":
                parents[int(entry)] = int(_stat_fields(entry)[1])
        except OSError:
            continue
    return [pid for pid, parent in parents.items() if parent not in parents]


def machine_busy_seconds() -> float:
    """CPU seconds all cores spent not idle since boot (``/proc/stat``)."""
    values = [int(value) for value in Path("/proc/stat").read_text().split()[1:9]]
    return (sum(values) - values[3] - values[4]) / _TICKS  # minus idle, iowait


class CpuSampler:
    """Samples the CPU time of the parts of a topology, locust and the machine."""

    def __init__(self, topology: Topology, *, locust_pid: int, s3_pid: int) -> None:
        self.roots = {
            "gunicorn": [instance.process.pid for instance in topology.instances],
            "postgres": postmaster_pids(),
            "s3": [s3_pid],
            "locust": [locust_pid],
            "nginx": [topology.nginx_process.pid],
        }
        self.samples: list[tuple[float, dict[str, float]]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            sample = process_trees_cpu(self.roots)
            sample["machine"] = machine_busy_seconds()
            self.samples.append((time.time(), sample))
            self._stop.wait(CPU_SAMPLE_SECONDS)

    def __enter__(self) -> CpuSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc_info) -> None:
        self._stop.set()
        self._thread.join()

    def cores(self, start: float, end: float) -> dict[str, float]:
        """Cores used on average between two wall-clock times."""
        inside = [(t, s) for t, s in self.samples if start <= t <= end]
        if len(inside) < 2:
            inside = self.samples
        (first_time, first), (last_time, last) = inside[0], inside[-1]
        return {
            part: (last[part] - first[part]) / (last_time - first_time)
            for part in first
        }


# --- A round -----------------------------------------------------------------


def locust_command(stand_: Stand, prefix: Path) -> list[str]:
    return [
        str(PYTHON.parent / "locust"),
        "-f",
        str(LOCUSTFILE),
        "--headless",
        "--users",
        str(USERS),
        "--spawn-rate",
        str(USERS),
        "--run-time",
        f"{ROUND_SECONDS}s",
        "--host",
        stand_.topology.url,
        "--csv",
        str(prefix),
        "--only-summary",
        "--loglevel",
        "WARNING",
        "--stop-timeout",
        "10",
        # Failures are counted from the CSV; a non-zero exit means "could not run".
        "--exit-code-on-error",
        "0",
    ]


def stats_read(prefix: Path) -> tuple[list[Row], list[tuple[str, str, int]]]:
    rows = []
    with Path(f"{prefix}_stats.csv").open() as stats:
        for record in csv.DictReader(stats):
            name = record["Name"]
            if record["Type"] and name != "Aggregated":
                name = f"{record['Type']} {name}"
            rows.append(
                Row(
                    name=name,
                    requests=int(record["Request Count"]),
                    failures=int(record["Failure Count"]),
                    requests_per_second=float(record["Requests/s"]),
                    p50=float(record["50%"]),
                    p95=float(record["95%"]),
                    p99=float(record["99%"]),
                )
            )
    failures = []
    with Path(f"{prefix}_failures.csv").open() as found:
        for record in csv.DictReader(found):
            failures.append(
                (record["Name"], record["Error"], int(record["Occurrences"]))
            )
    return rows, failures


def load_window(prefix: Path) -> tuple[float, float]:
    """When locust sent requests: its per-second history of the total count."""
    counts = []
    with Path(f"{prefix}_stats_history.csv").open() as history:
        for record in csv.DictReader(history):
            if record["Name"] == "Aggregated":
                counts.append(
                    (float(record["Timestamp"]), int(record["Total Request Count"]))
                )
    busy = [t for t, count in counts if count > 0]
    if not busy:
        raise BenchError(f"locust sent no request ({prefix}_stats_history.csv)")
    return busy[0], busy[-1]


def round_run(stand_: Stand, number: int, *, s3_pid: int) -> Round:
    topology = stand_.topology
    prefix = stand_.directory / f"round{number}"
    first_record = len(topology.nginx_access_log.read_text().splitlines())
    load = Path("/proc/loadavg").read_text().split()[0]
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": os.environ.get("HOME", str(stand_.directory)),
        "PYTHONPATH": str(REPO_ROOT),
        "LOAD_SESSIONS": str(stand_.directory / "sessions.json"),
        "LOAD_SYMBOLS": ",".join(stand_.symbols),
    }
    process = subprocess.Popen(
        locust_command(stand_, prefix),
        cwd=REPO_ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    with CpuSampler(topology, locust_pid=process.pid, s3_pid=s3_pid) as sampler:
        try:
            output, _ = process.communicate(timeout=ROUND_SECONDS + 120)
        except subprocess.TimeoutExpired:
            process.kill()
            output, _ = process.communicate()
    if process.returncode != 0 or not Path(f"{prefix}_stats.csv").exists():
        raise BenchError(f"locust failed:\n{output[-4000:]}")
    rows, failures = stats_read(prefix)
    records = [
        parse_key_values(line)
        for line in topology.nginx_access_log.read_text().splitlines()[first_record:]
    ]
    return Round(
        rows=rows,
        failures=failures,
        per_instance=Counter(record["upstream"] for record in records),
        statuses=Counter(int(record["status"]) for record in records),
        nginx_seconds=[float(record["duration_s"]) for record in records],
        cpu=sampler.cores(*load_window(prefix)),
        load=load,
    )


# --- The report --------------------------------------------------------------


def milliseconds(value: float) -> str:
    return f"{value:.0f} ms"


def machine_summary() -> str:
    cpu = "unknown CPU"
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            cpu = line.split(":", 1)[1].strip()
            break
    nginx = subprocess.run([NGINX, "-v"], capture_output=True, text=True, check=False)
    versions = ", ".join(
        f"{name} {importlib.metadata.version(name)}"
        for name in ("Django", "gunicorn", "locust")
    )
    return (
        f"{cpu}, {len(os.sched_getaffinity(0))} cores; {platform.platform()}; "
        f"Python {platform.python_version()}, {versions}; "
        f"{nginx.stderr.strip().removeprefix('nginx version: ')}"
    )


def per_request(result: Result) -> str:
    """gunicorn's CPU time per request served."""
    seconds = result.cpu["gunicorn"] / result.total.requests_per_second
    return f"{seconds * 1e3:.1f} ms"


def _label(instances: int) -> str:
    return f"{instances} instance{'s' if instances > 1 else ''}"


def section(results: list[Result], *, started: datetime, elapsed: float) -> str:
    one, three = results[0], results[-1]
    cores = len(os.sched_getaffinity(0))
    errors = sum(result.errors for result in results)
    ratio = three.total.requests_per_second / one.total.requests_per_second
    per_round = [
        b.total.requests_per_second / a.total.requests_per_second
        for a, b in zip(one.rounds, three.rounds, strict=True)
    ]
    lines = [
        SECTION_HEADING,
        "",
        f"Generated by `python -m bench.load` on {started:%Y-%m-%d %H:%M} UTC in "
        f"{elapsed:.0f} s; do not edit by hand, run it again. Target: no errors. "
        f"{'**PASS**' if not errors else '**FAIL**'}: {errors} errors in "
        f"{sum(r.total.requests for r in results):,} requests.",
        "",
        f"Machine: {machine_summary()}. Everything runs on it: locust, nginx, the "
        "gunicorn workers, PostgreSQL, Redis and the S3 server share the cores "
        "(and the machine is shared with other work).",
        "",
        "| Configuration | Requests | Requests/s | p50 | p95 | p99 | Errors "
        "| Load average at each round's start |",
        "|---|--:|--:|--:|--:|--:|--:|---|",
    ]
    for result in results:
        total = result.total
        lines.append(
            f"| {_label(result.instances)} x {WORKERS} workers | {total.requests:,} "
            f"| {total.requests_per_second:.1f} | {milliseconds(total.p50)} "
            f"| {milliseconds(total.p95)} | {milliseconds(total.p99)} "
            f"| {result.errors} | {', '.join(r.load for r in result.rounds)} |"
        )
    lines += [
        "",
        f"{_label(three.instances)} / {one.instances}: **{ratio:.2f}x** the "
        f"requests per second (per round: "
        f"{', '.join(f'{value:.2f}' for value in per_round)}); p95 "
        f"{milliseconds(one.total.p95)} → {milliseconds(three.total.p95)}, p99 "
        f"{milliseconds(one.total.p99)} → {milliseconds(three.total.p99)}.",
        "",
        "Per request (requests/s, p50 / p95 / p99):",
        "",
        "| Request | " + " | ".join(_label(r.instances) for r in results) + " |",
        "|---|" + "--:|" * len(results),
    ]
    names = [r.name for r in one.rounds[0].rows if r.name != "Aggregated"]
    for name in names:
        cells = []
        for result in results:
            row = result.row(name)
            cells.append(
                f"{row.requests_per_second:.1f}/s, {row.p50:.0f} / {row.p95:.0f} / "
                f"{row.p99:.0f} ms"
                if row
                else "-"
            )
        lines.append(f"| `{name}` | " + " | ".join(cells) + " |")
    lines += ["", "nginx's access log, all rounds:", ""]
    for result in results:
        spread = ", ".join(
            f"{address} {count:,}"
            for address, count in sorted(result.per_instance.items())
        )
        statuses = ", ".join(
            f"{status}: {count:,}" for status, count in sorted(result.statuses.items())
        )
        timing = ", ".join(
            f"{name} {value * 1e3:.0f} ms"
            for name, value in result.nginx_percentiles.items()
        )
        lines.append(
            f"- {_label(result.instances)}: requests per instance {spread}; "
            f"statuses {statuses}; nginx's request time {timing}."
        )
    lines += [
        "",
        f"Where the {cores} cores went while locust sent requests (cores used on "
        "average, mean of the rounds):",
        "",
        "| Configuration | All processes | gunicorn | PostgreSQL | S3 server "
        "| locust | nginx | The rest |",
        "|---|--:|--:|--:|--:|--:|--:|--:|",
    ]
    parts = ("gunicorn", "postgres", "s3", "locust", "nginx")
    for result in results:
        cpu = result.cpu
        rest = cpu["machine"] - sum(cpu[part] for part in parts)
        lines.append(
            f"| {_label(result.instances)} | {cpu['machine']:.2f} of {cores} | "
            + " | ".join(f"{cpu[part]:.2f}" for part in parts)
            + f" | {rest:.2f} |"
        )
    lines += [
        "",
        "PostgreSQL is the whole server (other databases' work included). The "
        "rest is Redis, the benchmark itself and whatever else the machine ran "
        "at the time (it is shared).",
    ]
    if errors:
        lines += ["", "Errors:", ""]
        for result in results:
            failures = Counter()
            for round_ in result.rounds:
                for name, error, count in round_.failures:
                    failures[(name, error)] += count
            lines += [
                f"- {_label(result.instances)}: {name}: {error} ({count})"
                for (name, error), count in failures.items()
            ]
    lines += [
        "",
        "Method:",
        "",
        "- Two copies of the topology of `scripts/topology.py`, up side by side "
        "for the whole run: nginx (Debian's package, one worker process, the "
        "proxy settings of `deploy/nginx.conf`) round robin over 1 or 3 gunicorn "
        f"instances (`gunicorn.conf.py`, `WEB_CONCURRENCY={WORKERS}` sync "
        "workers each), production settings (`DEBUG=false`, `USE_MINIO=true` "
        "with `proxy` media URLs), each with a fresh PostgreSQL database and a "
        "Redis database number of its own as the shared cache; one S3 server "
        "(SeaweedFS) for both. Everything on 127.0.0.1; the copy not under load "
        "sits idle.",
        f"- Data made through the services in each: {TOKENS} tokens with logos, "
        f"{MARKETS} markets, {MEMBERS} members with avatars. Each member logs in "
        "through nginx with the login form; locust's members carry those "
        "session cookies. Every client sends X-Forwarded-For with a loopback "
        "address of its own, as a load balancer in front of nginx would "
        "(`TRUSTED_PROXY_COUNT=2`), so the throttles see distinct clients. "
        f"Warm-up: every page {WARMUP_ROUNDS} times per worker "
        "through nginx (all answers 200), so no worker's first request is timed.",
        f"- Load: `locust --headless --users {USERS} --spawn-rate {USERS} "
        f"--run-time {ROUND_SECONDS}s` (`bench/load_locustfile.py`, "
        "`FastHttpUser`): 3 visitors for 2 members. Visitors: `/` (3), "
        "`/tokens/` (2), a random token's page (3), `/markets/` (2). Members: "
        "their profile page (8) and an avatar upload (1), a 640x480 JPEG posted "
        "as the page's script does (`X-Requested-With`, the CSRF token of the "
        "page), which the app resizes and stores in the bucket. No think time: a "
        f"closed loop of {USERS} concurrent users, so requests/s is what the "
        "stack sustains and the latencies include the wait for a free worker.",
        f"- {ROUNDS} rounds; in each, one configuration and then the other "
        "(1, 3, 1, 3, …), so that drift and other work on the machine hit both "
        "alike. Requests/s, p50, p95 and p99 are medians over the rounds of "
        "locust's numbers (its percentiles are rounded to 2 significant "
        "digits); requests and errors are sums. An error is a locust failure "
        "(a status other than 200, or a page that is not the member's) or a "
        "status of 400 or more in nginx's access log.",
        f"- CPU: every {CPU_SAMPLE_SECONDS} s while locust runs, the CPU time of "
        "each process tree (`/proc/<pid>/stat`: gunicorn's masters and workers, "
        "recycled workers included; PostgreSQL's server; the S3 server; locust; "
        "nginx) and the machine's busy time (`/proc/stat`); the rate over the "
        "seconds in which locust's history shows requests.",
        "",
        "Findings:",
        "",
        f"- **{ratio:.2f}x, not {three.instances}x.** The machine has {cores} "
        "cores, and every request costs CPU in the app (rendering, image "
        "resizing), nginx, PostgreSQL, Redis, the S3 server and locust itself, "
        "all on those cores. With one instance they were busy "
        f"{one.cpu['machine']:.2f} of {cores} on average, "
        f"{one.cpu['gunicorn']:.2f} of that in its {WORKERS} workers and "
        f"{one.cpu['postgres']:.2f} in PostgreSQL; {three.instances} instances "
        f"add workers, not cores ({three.cpu['machine']:.2f} busy, "
        f"{three.cpu['gunicorn']:.2f} in gunicorn). With "
        f"{three.instances * WORKERS} workers on {cores} cores a request waits "
        "for a core rather than for a free worker, and each request costs "
        f"gunicorn more CPU ({per_request(one)} with one instance, "
        f"{per_request(three)} with {three.instances}: more processes take "
        "turns on the same cores, which likely costs context switches and colder "
        "CPU caches). More instances can "
        "only win what one instance's workers leave idle while they wait on "
        "PostgreSQL, Redis or the S3 server; "
        + (
            "here the extra processes cost more than that."
            if ratio < 1
            else f"here that wins {ratio - 1:.0%} more requests per second."
        )
        + " Throughput grows with the instances when each has cores of its own "
        "(another machine, or a container with its CPU share): they share "
        "nothing but the database, the cache and the bucket.",
    ]
    if errors:
        lines.append(
            f"- **{errors} errors** (locust's list above, and the statuses nginx "
            "logged): the target is missed."
        )
    else:
        lines.append(
            "- **What this run does show**: no errors, and nginx spreads the "
            "requests evenly (the access-log counts above): sessions, CSRF "
            "tokens, the shared page cache and uploaded files work whichever "
            "instance a request reaches, under concurrent load."
        )
    return "\n".join(lines) + "\n"


def main() -> int:
    started = datetime.now(UTC)
    clock = time.monotonic()

    def log(message: str) -> None:
        print(f"[{time.monotonic() - clock:5.1f}s] {message}", flush=True)

    rounds: dict[int, list[Round]] = {instances: [] for instances in CONFIGURATIONS}
    try:
        with contextlib.ExitStack() as stack:
            static = stack.enter_context(
                tempfile.TemporaryDirectory(prefix="bench-load-static-")
            )
            server = s3_server.start(
                access_key=f"load-{secrets.token_hex(4)}",
                secret_key=secrets.token_urlsafe(24),
            )
            stack.callback(server.stop)
            stands = [
                stack.enter_context(stand(instances, server, Path(static), log))
                for instances in CONFIGURATIONS
            ]
            for number in range(1, ROUNDS + 1):
                for stand_ in stands:
                    result = round_run(stand_, number, s3_pid=server.process.pid)
                    rounds[stand_.instances].append(result)
                    total = result.total
                    log(
                        f"round {number}/{ROUNDS}, {_label(stand_.instances)}: "
                        f"{total.requests_per_second:.1f} req/s, p50 {total.p50:.0f} "
                        f"ms, p95 {total.p95:.0f} ms, p99 {total.p99:.0f} ms, "
                        f"{total.failures} failures"
                    )
    except (BenchError, TopologyError, ScenarioError) as error:
        print(f"bench.load failed: {error}", file=sys.stderr)
        return 1
    results = [Result(instances, rounds[instances]) for instances in CONFIGURATIONS]
    text = section(results, started=started, elapsed=time.monotonic() - clock)
    report.section_write(text, heading=SECTION_HEADING)
    print(text)
    log(f"wrote the section {SECTION_HEADING!r} of {report.REPORT_PATH}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
