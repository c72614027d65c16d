"""Requests per second through nginx, one app instance against three, and
visitors' pages while members upload the heaviest image the app accepts.

    python -m bench.load          # or: make bench-load

Target: no errors.

Method. One S3 server and two copies of the production topology of
``scripts/topology`` side by side on 127.0.0.1: nginx with the proxy
settings of ``deploy/nginx.conf``, round robin over 1 or 3 gunicorn instances
(``gunicorn.conf.py``, 2 sync workers each), production settings (S3 media in
proxy mode, a Redis database as the shared cache), a fresh PostgreSQL database
each. The topology lifts the per-client upload limits, so only the app's
decode slots (``IMAGE_DECODE_SLOTS`` per host) stand between uploads and pages.
Each copy is seeded through the services (24 tokens with logos, 3 markets, 12
members with avatars); the members log in through nginx with the login form,
and every page is requested 4 times per worker (each answer a 200) before
anything is timed.

Load: ``locust --headless``, 12 users, no think time (a closed loop: requests/s
is what the stack sustains, latency includes the wait for a worker), users of
``bench/load_locustfile.py``: 3 visitors (``/``, ``/tokens/``, a token's page,
``/markets/``) for 2 members (their profile page 8 times for one upload of a
640x480 JPEG avatar), each from a loopback address of its own in
X-Forwarded-For. In each of 3 rounds of 12 s three configurations take turns,
so that other work on the machine hits them alike: 1 instance, 3 instances, and
1 instance whose members upload a 4672x4672 progressive JPEG of noise instead
(9.4 MB, the costliest decode the app accepts; a 503, no decode slot free
within 0.2 s, is an answer there). Requests/s and percentiles are medians of
locust's per-round numbers (2 significant digits). An error is a locust failure
(an unexpected status, a profile page not the member's) or a status of 400 or
more in nginx's access log. CPU: each group's processes (gunicorn's, ended
workers included; the PostgreSQL server; the S3 server; locust; nginx) and the
machine's busy time, from ``/proc``, while locust sends requests.
"""

from __future__ import annotations

import contextlib
import csv
import json
import os
import re
import secrets
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

from bench import report
from bench.report import Run, machine_cpu, process_cpu, process_stat, table
from scripts import s3_server
from scripts.browser import Browser, client_address, csrf_token
from scripts.topology import (
    DEFAULT_POSTGRES_URL,
    NGINX,
    SCENARIO_UPLOAD_RATE,
    Topology,
    TopologyError,
    parse_key_values,
)

HEADING = "## Load through nginx"
ROOT = Path(__file__).resolve().parent.parent
WORKERS, USERS, ROUNDS, ROUND_SECONDS, WARMUP_ROUNDS = 2, 12, 3, 12, 4
TOKENS, MARKETS, MEMBERS = 24, 3, 12
HEAVY = "1 instance, heaviest uploads"
CONFIGURATIONS = {"1 instance": 1, "3 instances": 3, HEAVY: 1}  # on which stand
PERCENTILES = ("50%", "95%", "99%")
PARTS = ("gunicorn", "postgres", "s3", "locust", "nginx", "machine")


class BenchError(RuntimeError):
    """The benchmark could not run."""


def seed() -> None:
    """In the topology's environment: tokens with logos, markets and members
    with avatars, through the services; prints the symbols and user names."""
    from bench.report import django_setup

    django_setup()
    from decimal import Decimal

    from django.contrib.auth import get_user_model
    from django.core.files.base import ContentFile

    from accounts.selectors import profile_for_user
    from accounts.services import avatar_replace
    from scripts.browser import colour, upload_file
    from tokens.services import token_create
    from trading.services import market_create

    def image(number: int, kind: str) -> ContentFile:
        name, _, data = upload_file(colour(number), kind=kind)
        return ContentFile(data, name=name)

    tokens = [
        token_create(name=f"Load {n}", symbol=f"LD{n:03d}", logo=image(n, "logo"))
        for n in range(TOKENS)
    ]
    step = Decimal("0.01")
    for base in tokens[1 : MARKETS + 1]:
        market_create(base=base, quote=tokens[0], price_step=step, amount_step=step)
    create_user, password = get_user_model().objects.create_user, os.environ["PASS"]
    for n in range(MEMBERS):
        profile = profile_for_user(user=create_user(f"member{n}", password=password))
        avatar_replace(profile=profile, upload=image(100 + n, "avatar"))
    print(json.dumps([token.symbol for token in tokens]))


def stand_prepare(topology: Topology, folder: Path) -> dict:
    """Seed, log the members in through nginx (each from an address of its
    own: the log-in throttle counts per address), warm every worker up."""
    password = secrets.token_urlsafe(18)
    code = "from bench.load import seed; seed()"
    output = topology.python("-c", code, env={"PASS": password})
    symbols, sessions = json.loads(output.splitlines()[-1]), []
    for n in range(MEMBERS):
        browser = Browser(topology.nginx_port, client_address=client_address(n))
        form = {"login": f"member{n}", "password": password}
        form["csrfmiddlewaretoken"] = csrf_token(browser.get("/accounts/login/"))
        answer = browser.post("/accounts/login/", form)
        if answer.status != 302 or "sessionid" not in browser.cookies:
            raise BenchError(f"member{n} could not log in: {answer.describe()}")
        session = {"username": f"member{n}", "address": browser.client_address}
        sessions.append(session | {"cookies": dict(browser.cookies)})
    member = Browser(topology.nginx_port, client_address=sessions[0]["address"])
    member.cookies = dict(sessions[0]["cookies"])
    visitor = Browser(topology.nginx_port, client_address=client_address(MEMBERS))
    pages = [(visitor, path) for path in ("/", "/tokens/", "/markets/")]
    pages += [(visitor, f"/tokens/{symbols[0]}/"), (member, "/accounts/profile/")]
    for _ in range(WARMUP_ROUNDS * topology.instance_count * topology.workers):
        for browser, path in pages:
            if (answer := browser.get(path)).status != 200:
                raise BenchError(f"warm-up: {answer.describe()}")
    (folder / "sessions.json").write_text(json.dumps(sessions))
    return {
        "LOAD_SYMBOLS": ",".join(symbols),
        "LOAD_SESSIONS": f"{folder}/sessions.json",
    }


def heaviest_image(path: Path) -> Path:
    """A 4672x4672 progressive JPEG of noise: its coefficients and reduced
    decoding just fit the app's 64 MiB budget, and it takes the longest to
    decode of what the app accepts."""
    from PIL import Image

    grey = Image.effect_noise((4672, 4672), 80)
    Image.merge("RGB", [grey] * 3).save(path, "JPEG", quality=60, progressive=True)
    return path


def cpu_snapshot(roots: dict[str, list[int]]) -> dict[str, float]:
    """CPU seconds of each group of processes and of their children, ended
    ones included (a parent's cutime), and the machine's busy seconds; the
    PostgreSQL group is every server (postgres whose parent is not one)."""
    owner = {pid: part for part, pids in roots.items() for pid in pids}
    seconds, parents, postgres = dict.fromkeys([*roots, "postgres"], 0.0), {}, {}
    for entry in filter(str.isdigit, os.listdir("/proc")):
        with contextlib.suppress(OSError):  # the process ended meanwhile
            parent, pid = int(process_stat(entry)[1]), int(entry)
            parents[pid] = parent
            if pid in owner:
                seconds[owner[pid]] += process_cpu(pid, children=True)
            elif parent in owner:
                seconds[owner[parent]] += process_cpu(pid)
            elif Path(f"/proc/{pid}/comm").read_text().strip() == "postgres":
                postgres[pid] = process_cpu(pid), process_cpu(pid, children=True)
    # A server's ended backends are in its cutime, its live ones on their own.
    cpu = [c[parents[pid] not in postgres] for pid, c in postgres.items()]
    return seconds | {"postgres": sum(cpu), "machine": machine_cpu()[0]}


def round_run(topology: Topology, prefix: Path, env: dict[str, str], s3: int) -> dict:
    """One locust run: its rows by request, nginx's log and the CPU used."""
    first_line = len(topology.nginx_access_log.read_text().splitlines())
    options = f"--headless --users {USERS} --spawn-rate {USERS} --run-time "
    options += f"{ROUND_SECONDS}s --stop-timeout 30 --only-summary --loglevel WARNING"
    locust = [str(Path(sys.executable).parent / "locust"), *options.split()]
    locust += ["-f", str(ROOT / "bench" / "load_locustfile.py"), "--host", topology.url]
    locust += ["--csv", str(prefix), "--exit-code-on-error", "0"]
    env |= {"PATH": os.environ["PATH"], "PYTHONPATH": str(ROOT)}
    process = subprocess.Popen(
        locust, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
    )
    roots = {
        "gunicorn": [instance.process.pid for instance in topology.instances],
        "s3": [s3],
        "locust": [process.pid],
        "nginx": [topology.nginx_process.pid],
    }
    history, deadline = Path(f"{prefix}_stats_history.csv"), time.monotonic() + 120
    while process.poll() is None and time.monotonic() < deadline:
        # From the first second locust's users run, not its start-up.
        if history.exists() and re.search(r"^\d+,[1-9]", history.read_text(), re.M):
            break
        time.sleep(0.2)
    start, started = cpu_snapshot(roots), time.monotonic()
    time.sleep(ROUND_SECONDS - 3)
    end, ended = cpu_snapshot(roots), time.monotonic()
    output = process.communicate(timeout=120)[0].decode(errors="replace")
    if process.returncode != 0 or not Path(f"{prefix}_stats.csv").exists():
        raise BenchError(f"locust failed:\n{output[-4000:]}")
    with Path(f"{prefix}_stats.csv").open() as stats:
        rows = {f"{r['Type']} {r['Name']}".strip(): r for r in csv.DictReader(stats)}
    log = topology.nginx_access_log.read_text().splitlines()[first_line:]
    records = [parse_key_values(line) for line in log]
    return {
        "rows": rows,
        "upstreams": Counter(r["upstream"] for r in records),
        "statuses": Counter(int(r["status"]) for r in records),
        "cpu": {part: (end[part] - start[part]) / (ended - started) for part in end},
    }


def summary(results: dict[str, list[dict]]) -> list[str]:
    def median(name: str, request: str, column: str) -> float:
        rows = [r["rows"][request] for r in results[name] if request in r["rows"]]
        return statistics.median(float(row[column]) for row in rows)

    def rate(name: str, request: str) -> str:
        latency = " / ".join(f"{median(name, request, p):.0f}" for p in PERCENTILES)
        return f"{median(name, request, 'Requests/s'):.1f}/s, {latency} ms"

    def total(name: str, key: str) -> Counter:
        return sum((Counter(r[key]) for r in results[name]), Counter())

    def count(name: str, column: str) -> int:
        return sum(int(r["rows"]["Aggregated"][column]) for r in results[name])

    def errors(name: str) -> int:
        """Locust's failures, or the bad statuses in nginx's log if more."""
        answers = {503} if name == HEAVY else set()  # no decode slot free
        statuses = total(name, "statuses").items()
        bad = sum(n for s, n in statuses if s >= 400 and s not in answers)
        return max(count(name, "Failure Count"), bad)

    one, rows, cpu = median("1 instance", "Aggregated", "Requests/s"), [], []
    for name, rounds in results.items():
        ratio = median(name, "Aggregated", "Requests/s") / one
        rows.append(
            {
                "Configuration": name,
                "Requests/s, p50 / p95 / p99": rate(name, "Aggregated"),
                "x 1 instance": f"{ratio:.2f}",
                "Errors": errors(name),
                "Statuses": ", ".join(
                    f"{s}: {n:,}" for s, n in sorted(total(name, "statuses").items())
                ),
                "Requests per instance": ", ".join(
                    f"{n:,}" for n in total(name, "upstreams").values()
                ),
            }
        )
        used = {part: statistics.mean(r["cpu"][part] for r in rounds) for part in PARTS}
        rest = 2 * used["machine"] - sum(used.values())
        cpu.append(
            {f"Cores used (of {report.cores()})": name}
            | {part: f"{seconds:.2f}" for part, seconds in used.items()}
            | {"other work": f"{rest:.2f}"}
        )
    requests = [n for n in results["1 instance"][0]["rows"] if n != "Aggregated"]
    by_request = [
        {"Request: requests/s, p50 / p95 / p99": f"`{request}`"}
        | {name: rate(name, request) for name in results}
        for request in requests
    ]
    failed = sum(errors(name) for name in results)
    sent = sum(count(name, "Request Count") for name in results)
    target = ("No errors", f"{failed} in {sent:,} requests", not failed)
    tables = ["", *table(rows), "", *table(by_request), "", *table(cpu)]
    return [*report.targets([target]), *tables]


def main() -> int:
    run = Run("bench.load", HEADING)
    results: dict[str, list[dict]] = {name: [] for name in CONFIGURATIONS}
    try:
        with contextlib.ExitStack() as stack:
            folder = Path(stack.enter_context(tempfile.TemporaryDirectory()))
            (folder / "static").mkdir()
            key, secret = f"load-{secrets.token_hex(4)}", secrets.token_urlsafe(24)
            server = s3_server.start(access_key=key, secret_key=secret)
            stack.callback(server.stop)
            upload = {"LOAD_UPLOAD": str(heaviest_image(folder / "heaviest.jpg"))}
            stands = {}
            for instances in (1, 3):
                topology = Topology(
                    instances=instances,
                    workers=WORKERS,
                    s3=server,
                    postgres_url=os.environ.get("POSTGRES_URL", DEFAULT_POSTGRES_URL),
                    static_root=folder / "static",
                    upload_rate=SCENARIO_UPLOAD_RATE,
                    log=run.log,
                )
                stack.enter_context(topology)
                (directory := folder / str(instances)).mkdir()
                stands[instances] = topology, stand_prepare(topology, directory)
            for number in range(ROUNDS):
                for name, instances in CONFIGURATIONS.items():
                    topology, env = stands[instances]
                    env = env | (upload if name == HEAVY else {})
                    prefix = folder / f"{number}-{list(CONFIGURATIONS).index(name)}"
                    result = round_run(topology, prefix, env, server.process.pid)
                    results[name].append(result)
                    row = result["rows"]["Aggregated"]
                    run.log(f"round {number + 1}, {name}: {row['Requests/s']}/s")
    except (BenchError, TopologyError) as error:
        print(f"bench.load failed: {error}", file=sys.stderr)
        return 1
    nginx = subprocess.run([NGINX, "-v"], capture_output=True, text=True, check=False)
    version = nginx.stderr.strip().removeprefix("nginx version: ")
    run.write(
        summary(results), packages=("Django", "gunicorn", "locust"), software=(version,)
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
