"""Log-in throttles across two app instances behind one address.

Two gunicorn processes of this checkout listen on the same 127.0.0.1 port with
SO_REUSEPORT, so the kernel hands each new connection to one of them, as a
balancer would; they share the test's PostgreSQL database and a Redis database
number of their own, where allauth counts the attempts (ACCOUNT_RATE_LIMITS).

Gunicorn's sync worker closes every connection after one answer, which leaves
the kernel to pick the instance of each request. The instances run the gthread
worker (one thread, so still one request at a time) with keep-alive instead:
the test opens connections until it holds one to each instance, then chooses
the instance of every request by the connection it sends it on. Each instance
writes its own access log, and every request carries an X-Request-ID that must
appear in the log of the instance it was meant for.

The failure window is one minute (LOGIN_FAILURE_WINDOW_MINUTES cannot be
shorter), so the test of "until the window passes" waits for it.
"""

from __future__ import annotations

import html
import http.client
import json
import os
import re
import secrets
import signal
import statistics
import subprocess
import sys
import time
import urllib.parse
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from http.cookies import SimpleCookie
from pathlib import Path

import pytest
from allauth.core.internal.ratelimit import parse_rates

from core.tests.processes import free_port
from scripts.processes import die_with_parent

pytestmark = pytest.mark.postgres

ROOT = Path(__file__).resolve().parents[2]
GUNICORN = Path(sys.executable).parent / "gunicorn"
LOOPBACK = "127.0.0.1"
OTHER_ADDRESS = "127.0.0.2"  # also loopback: a second client address
REDIS_SERVER = "redis://127.0.0.1:6379"
# scripts/topology claims a Redis database number with this key; honouring it
# keeps the two from flushing each other's database.
REDIS_CLAIM_KEY = "topology:claimed-by"
APP_CACHE_KEYS = "crypto-exchange:*"  # the cache KEY_PREFIX of settings.py

FAILURES_PER_ACCOUNT = 5
WINDOW_MINUTES = 1
WINDOW_SECONDS = 60 * WINDOW_MINUTES
START_TIMEOUT = 60.0
REQUEST_TIMEOUT = 30.0
PRINT_RATE_LIMITS = (
    "import json, django; django.setup(); from django.conf import settings; "
    "print(json.dumps(settings.ACCOUNT_RATE_LIMITS))"
)

PASSWORD = "a-long-pass-2026"
MISMATCH = "The username and/or password you specified are not correct."
LOCKED = "Too many failed log-in attempts for this account or from your address."
LOCKED_WAIT = f"Try again in {WINDOW_MINUTES} minute"
USERNAME_TAKEN = "A user with that username already exists."


# --- Two instances behind one address -----------------------------------------


@dataclass
class Instance:
    name: str
    access_log: Path
    error_log: Path
    process: subprocess.Popen | None = None

    def served(self) -> dict[str, dict[str, str]]:
        """The requests in the access log, by request id."""
        records = {}
        for line in self.access_log.read_text().splitlines():
            record = dict(re.findall(r"(\w+)=(\S*)", line))
            records[record.get("rid", "")] = record
        return records

    def log_tail(self) -> str:
        return self.error_log.read_text(errors="replace")[-3000:]


@dataclass
class Instances:
    port: int
    members: list[Instance]
    rate_limits: dict[str, str]  # their ACCOUNT_RATE_LIMITS

    def per_address_limit(self, action: str) -> int:
        """The fewest requests of ``action`` one address may make in a window."""
        rates = parse_rates(self.rate_limits[action])
        return min(rate.amount for rate in rates if rate.per == "ip")

    def which(self, rid: str, timeout: float = 5.0) -> Instance:
        """The instance that logged the request (it logs after answering)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for instance in self.members:
                if rid in instance.served():
                    return instance
            time.sleep(0.01)
        raise AssertionError(f"no instance logged the request {rid}")

    def record(self, rid: str) -> dict[str, str]:
        return self.which(rid).served()[rid]


def _database_url() -> str:
    from django.db import connection

    db = connection.settings_dict
    user = urllib.parse.quote(db["USER"] or "", safe="")
    password = urllib.parse.quote(db["PASSWORD"] or "", safe="")
    credentials = f"{user}:{password}@" if password else f"{user}@"
    name = urllib.parse.quote(db["NAME"], safe="")
    address = f"{db['HOST'] or LOOPBACK}:{db['PORT'] or 5432}"
    return f"postgres://{credentials}{address}/{name}"


@pytest.fixture(scope="module")
def redis_url():
    """A Redis database number nobody uses, emptied before and after."""
    import redis

    token = f"test_throttling:{os.getpid()}:{secrets.token_hex(4)}"
    # 15 is left to crypto_exchange/tests/test_settings.py, 0 to development.
    for number in range(14, 0, -1):
        client = redis.Redis.from_url(f"{REDIS_SERVER}/{number}")
        # Empty, so flushed before; the claim expires should this run be killed.
        if client.dbsize() == 0 and client.set(
            REDIS_CLAIM_KEY, token, nx=True, ex=3600
        ):
            break
        client.close()
    else:
        pytest.fail(f"no empty Redis database number on {REDIS_SERVER}")
    yield f"{REDIS_SERVER}/{number}"
    client.flushdb()
    client.close()


@pytest.fixture
def fresh_counters(redis_url):
    """Every test starts with no attempt counted."""
    import redis

    with redis.Redis.from_url(redis_url) as client:
        for key in client.scan_iter(match=APP_CACHE_KEYS):
            client.delete(key)


@pytest.fixture(scope="module")
def instances(django_db_setup, redis_url, tmp_path_factory):
    """Two gunicorn processes of this checkout on one 127.0.0.1 port."""
    directory = tmp_path_factory.mktemp("instances")
    empty_config = directory / "empty.conf.py"  # ./gunicorn.conf.py is not read
    empty_config.write_text("")
    (directory / "media").mkdir()
    port = free_port()
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(directory),
        "LANG": "C.UTF-8",
        "PYTHONUNBUFFERED": "1",
        "DJANGO_SETTINGS_MODULE": "crypto_exchange.settings",
        "ENV_FILE": "/dev/null",
        "DEBUG": "true",  # static files are not collected for tests
        "SECRET_KEY": secrets.token_urlsafe(50),
        "DATABASE_URL": _database_url(),
        "REDIS_URL": redis_url,
        "MEDIA_ROOT": str(directory / "media"),
        "LOGIN_FAILURES_PER_ACCOUNT": str(FAILURES_PER_ACCOUNT),
        "LOGIN_FAILURE_WINDOW_MINUTES": str(WINDOW_MINUTES),
        "LOG_LEVEL": "WARNING",
    }
    members = [
        Instance(name, directory / f"{name}-access.log", directory / f"{name}.log")
        for name in ("one", "two")
    ]
    # Finalisers run even when starting the second instance fails.
    try:
        for instance in members:
            instance.access_log.touch()
            command = [
                str(GUNICORN),
                "--config",
                str(empty_config),
                "crypto_exchange.wsgi:application",
                "--bind",
                f"{LOOPBACK}:{port}",
                "--reuse-port",
                "--workers",
                "1",
                "--worker-class",
                "gthread",
                "--threads",
                "1",
                # Longer than the test's wait for the failure window.
                "--keep-alive",
                str(2 * WINDOW_SECONDS),
                "--timeout",
                "30",
                "--graceful-timeout",
                "5",
                # The default control socket is one path per user ($HOME):
                # two instances, or a developer's gunicorn, would share it.
                "--no-control-socket",
                "--access-logfile",
                str(instance.access_log),
                "--access-logformat",
                "rid=%({x-request-id}i)s method=%(m)s path=%(U)s status=%(s)s "
                "ms=%(M)s pid=%(p)s remote=%(h)s",
                "--error-logfile",
                str(instance.error_log),
            ]
            instance.process = subprocess.Popen(
                command,
                cwd=ROOT,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                start_new_session=True,
                # Not thread-safe in general; no thread runs at this point.
                # Should pytest be killed outright, the server stops too.
                preexec_fn=die_with_parent,
            )
        settings_read = subprocess.run(
            [sys.executable, "-c", PRINT_RATE_LIMITS],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=START_TIMEOUT,
            check=False,
        )
        assert settings_read.returncode == 0, settings_read.stderr
        yield Instances(
            port=port, members=members, rate_limits=json.loads(settings_read.stdout)
        )
    finally:
        for instance in members:
            if instance.process and instance.process.poll() is None:
                # SIGINT: a quick stop; no request is in flight any more.
                instance.process.send_signal(signal.SIGINT)
        for instance in members:
            if instance.process is None:
                continue
            try:
                instance.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                instance.process.kill()
                instance.process.wait(timeout=10)


# --- A client that chooses the instance ----------------------------------------


@dataclass
class Answer:
    status: int
    text: str
    rid: str
    set_cookies: list[str]


@dataclass
class Line:
    """A keep-alive connection that the kernel gave to one instance."""

    instances: Instances
    connection: http.client.HTTPConnection
    instance: Instance | None = None

    def send(
        self, method: str, path: str, headers: dict[str, str], body: bytes | None
    ) -> Answer:
        rid = secrets.token_hex(8)
        self.connection.request(
            method, path, body=body, headers={**headers, "X-Request-ID": rid}
        )
        response = self.connection.getresponse()
        answer = Answer(
            status=response.status,
            text=response.read().decode(errors="replace"),
            rid=rid,
            set_cookies=response.msg.get_all("Set-Cookie") or [],
        )
        served_by = self.instances.which(rid)
        if self.instance is None:
            self.instance = served_by
        assert served_by is self.instance, "the connection changed instance"
        return answer

    def close(self) -> None:
        self.connection.close()


def open_lines(instances: Instances, *, source: str = LOOPBACK) -> list[Line]:
    """One connection to each instance, from ``source``, in instance order."""
    held: dict[str, Line] = {}
    spare: list[Line] = []
    deadline = time.monotonic() + START_TIMEOUT
    while len(held) < len(instances.members):
        for instance in instances.members:
            if instance.process.poll() is not None:
                pytest.fail(f"instance {instance.name} exited:\n{instance.log_tail()}")
        if time.monotonic() > deadline:
            pytest.fail(
                f"not every instance answered on port {instances.port} within "
                f"{START_TIMEOUT:.0f} s: "
                + "\n".join(i.log_tail() for i in instances.members)
            )
        connection = http.client.HTTPConnection(
            LOOPBACK,
            instances.port,
            timeout=REQUEST_TIMEOUT,
            source_address=(source, 0),
        )
        # Never reconnect behind the test's back: a new connection may land on
        # the other instance.
        connection.auto_open = 0
        try:
            connection.connect()
            line = Line(instances, connection)
            line.send("GET", "/healthz/", {}, None)
        except OSError:  # not listening yet
            connection.close()
            time.sleep(0.2)
            continue
        if line.instance.name in held:
            spare.append(line)
        else:
            held[line.instance.name] = line
    for line in spare:
        line.close()
    return [held[instance.name] for instance in instances.members]


@pytest.fixture
def lines(instances, fresh_counters):
    """Connections to instance one and instance two, from 127.0.0.1."""
    opened = open_lines(instances)
    yield opened
    for line in opened:
        line.close()


@pytest.fixture
def other_lines(instances, fresh_counters):
    """The same, from another client address (127.0.0.2)."""
    opened = open_lines(instances, source=OTHER_ADDRESS)
    yield opened
    for line in opened:
        line.close()


@dataclass
class Browser:
    """Keeps its cookies and posts forms with their CSRF token, on any line.

    ``host``: the Host header it sends (``127.0.0.1:<port>`` otherwise).
    """

    cookies: dict[str, str] = field(default_factory=dict)
    host: str | None = None

    def get(self, line: Line, path: str) -> Answer:
        return self._send(line, "GET", path)

    def post_form(self, line: Line, path: str, fields: dict[str, str]) -> Answer:
        page = self.get(line, path)
        assert page.status == 200, page.text[:500]
        token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page.text)
        assert token, page.text[:500]
        body = urllib.parse.urlencode(
            {**fields, "csrfmiddlewaretoken": token[1]}
        ).encode()
        return self._send(
            line,
            "POST",
            path,
            body=body,
            headers={
                "Content-Type": "application/x-www-form-urlencoded",
                "Origin": f"http://{self.host or f'{LOOPBACK}:{line.instances.port}'}",
            },
        )

    def log_in(self, line: Line, login: str, password: str) -> Answer:
        return self.post_form(
            line, "/accounts/login/", {"login": login, "password": password}
        )

    def signed_in(self, line: Line) -> bool:
        answer = self.get(line, "/accounts/profile/")
        assert answer.status in (200, 302), answer.status
        return answer.status == 200

    def _send(
        self,
        line: Line,
        method: str,
        path: str,
        *,
        body: bytes | None = None,
        headers: dict[str, str] | None = None,
    ) -> Answer:
        headers = dict(headers or {})
        if self.host:
            headers["Host"] = self.host
        if self.cookies:
            headers["Cookie"] = "; ".join(f"{k}={v}" for k, v in self.cookies.items())
        answer = line.send(method, path, headers, body)
        for header in answer.set_cookies:
            cookie = SimpleCookie()
            cookie.load(header)
            for name, morsel in cookie.items():
                if morsel["max-age"] == "0" or "1970" in morsel["expires"]:
                    self.cookies.pop(name, None)
                else:
                    self.cookies[name] = morsel.value
        return answer


# --- The tests -------------------------------------------------------------------


@pytest.fixture
def accounts(transactional_db) -> list[str]:
    """alice, bob and carol, committed so that the instances see them."""
    from django.contrib.auth import get_user_model
    from django.contrib.auth.hashers import PBKDF2PasswordHasher

    # The hasher the instances use; the test settings' fast one (conftest.py)
    # is not among theirs.
    hasher = PBKDF2PasswordHasher()
    hashed = hasher.encode(PASSWORD, hasher.salt())
    names = ["alice", "bob", "carol"]
    for name in names:
        get_user_model().objects.create(
            username=name, email=f"{name}@example.com", password=hashed
        )
    return names


def errors(answer: Answer) -> list[str]:
    """The form's errors on the page, as the user reads them."""
    blocks = re.findall(
        r'<div class="alert" role="alert">(.*?)</div>', answer.text, re.S
    )
    blocks += re.findall(r'<ul class="errors"[^>]*>(.*?)</ul>', answer.text, re.S)
    return [
        html.unescape(re.sub(r"\s+", " ", message).strip())
        for block in blocks
        for message in re.findall(r"<(?:p|li)>(.*?)</(?:p|li)>", block, re.S)
    ]


def locked_out(answer: Answer) -> bool:
    """The log-in form's refusal of a closed account or address."""
    return answer.status == 200 and any(
        message.startswith(LOCKED) and LOCKED_WAIT in message
        for message in errors(answer)
    )


def refused(answer: Answer) -> bool:
    return answer.status == 429 or locked_out(answer)


def spread(lines: list[Line], count: int, send) -> list[Answer]:
    """``send(number, line, browser)`` for numbers 0 to count - 1, round-robin
    over the instances and at the same time on each, one browser per instance;
    the answers in number order."""

    def run(start: int, line: Line) -> list[tuple[int, Answer]]:
        browser = Browser()
        numbers = range(start, count, len(lines))
        return [(number, send(number, line, browser)) for number in numbers]

    with ThreadPoolExecutor(max_workers=len(lines)) as pool:
        runs = [pool.submit(run, start, line) for start, line in enumerate(lines)]
        numbered = [pair for done in runs for pair in done.result()]
    return [answer for _, answer in sorted(numbered, key=lambda pair: pair[0])]


@pytest.mark.reliability("throttle-login")
def test_the_right_password_is_refused_on_both_instances_until_the_window_passes(
    accounts, instances, lines, other_lines
):
    def guess(number: int, line: Line, browser: Browser) -> Answer:
        return browser.log_in(line, "alice", f"wrong-guess-{number}")

    first_attempt = time.monotonic()
    failures = spread(lines, FAILURES_PER_ACCOUNT, guess)
    last_failure = time.monotonic()
    assert [errors(answer) for answer in failures] == [[MISMATCH]] * len(failures)
    # Spread over both instances, as their access logs show.
    assert {instances.which(a.rid).name for a in failures} == {"one", "two"}

    owner = Browser()
    for line in lines:
        answer = owner.log_in(line, "alice", PASSWORD)
        assert locked_out(answer), (line.instance.name, answer.status, errors(answer))
    assert "sessionid" not in owner.cookies
    assert not any(owner.signed_in(line) for line in lines)

    # The address has not reached its own limit: bob signs in from it, and his
    # session is good on the other instance too.
    bob = Browser()
    answer = bob.log_in(lines[0], "bob", PASSWORD)
    assert answer.status == 302, errors(answer)
    assert bob.signed_in(lines[1])

    # Just before the first failure leaves the window, and from another
    # address: the account is still closed.
    late = first_attempt + WINDOW_SECONDS - 5
    assert time.monotonic() < late, "too slow to look before the window ends"
    time.sleep(max(0.0, late - time.monotonic()))
    elsewhere = Browser()
    for line in other_lines:
        answer = elsewhere.log_in(line, "alice", PASSWORD)
        assert locked_out(answer), (line.instance.name, answer.status, errors(answer))
    assert not any(elsewhere.signed_in(line) for line in other_lines)

    # Refusals do not extend the window: once the last failure is older than
    # it, the right password works again, nothing having been cleared.
    time.sleep(max(0.0, last_failure + WINDOW_SECONDS + 1 - time.monotonic()))
    answer = owner.log_in(lines[1], "alice", PASSWORD)
    assert answer.status == 302, errors(answer)
    assert owner.signed_in(lines[0])


@pytest.mark.reliability("throttle-login")
def test_the_account_limit_holds_whatever_host_or_login_name_is_sent(
    accounts, instances, lines, other_lines
):
    def guess(number: int, line: Line, browser: Browser) -> Answer:
        return browser.log_in(line, "alice", f"wrong-guess-{number}")

    failures = spread(lines, FAILURES_PER_ACCOUNT, guess)
    assert [errors(answer) for answer in failures] == [[MISMATCH]] * len(failures)

    let_in = []
    for host, login in [
        (f"LOCALHOST:{instances.port}", "alice"),
        (f"{LOOPBACK}:{instances.port + 1}", "alice"),
        (None, "alice@example.com"),
    ]:
        answer = Browser(host=host).log_in(other_lines[0], login, PASSWORD)
        if not locked_out(answer):
            let_in.append((host, login, answer.status))
    assert let_in == []


@pytest.mark.reliability("throttle-login")
def test_a_burst_of_log_ins_for_unknown_users_stops_being_hashed_at_the_address_limit(
    accounts, instances, lines, other_lines
):
    limit = min(
        instances.per_address_limit("login"),
        instances.per_address_limit("login_failed"),
    )

    def unknown(number: int, line: Line, browser: Browser) -> Answer:
        return browser.log_in(line, f"nobody-{number}", "any-password-2026")

    answers = spread(lines, limit + 6, unknown)

    checked = [a for a in answers if a.status == 200 and errors(a) == [MISMATCH]]
    stopped = [a for a in answers if refused(a)]
    assert len(checked) + len(stopped) == len(answers), [
        (a.status, errors(a)) for a in answers
    ]
    assert 0 < len(checked) <= limit
    # A refusal comes before any password is hashed: it costs a fraction of
    # an answer that hashed one.
    milliseconds = {a.rid: int(instances.record(a.rid)["ms"]) for a in answers}
    checking = statistics.median(milliseconds[a.rid] for a in checked)
    refusing = statistics.median(milliseconds[a.rid] for a in stopped)
    assert refusing < checking / 4, (refusing, checking)

    # Other addresses are served as before.
    answer = Browser().log_in(other_lines[0], "alice", PASSWORD)
    assert answer.status == 302, errors(answer)


@pytest.mark.reliability("throttle-login")
def test_sign_up_reveals_taken_usernames_no_faster_than_log_in_guessing(
    accounts, instances, lines
):
    attempts = instances.per_address_limit("login") + 4

    def sign_up(number: int, line: Line, browser: Browser) -> Answer:
        fields = {
            "username": accounts[number % len(accounts)],
            "email": f"probe-{number}@example.net",
            "password1": PASSWORD,
            "password2": PASSWORD,
        }
        return browser.post_form(line, "/accounts/signup/", fields)

    def log_in(number: int, line: Line, browser: Browser) -> Answer:
        name = accounts[number % len(accounts)]
        return browser.log_in(line, name, f"guess-{number}")

    def answered(answers: list[Answer], reveals: str) -> int:
        assert all(refused(a) or reveals in errors(a) for a in answers), [
            (a.status, errors(a)) for a in answers
        ]
        assert any(refused(a) for a in answers), f"{len(answers)}, none refused"
        return sum(not refused(a) for a in answers)

    by_sign_up = answered(spread(lines, attempts, sign_up), USERNAME_TAKEN)
    by_log_in = answered(spread(lines, attempts, log_in), MISMATCH)

    assert 0 < by_sign_up <= by_log_in
