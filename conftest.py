"""Shared fixtures: the real S3 server of the run, and storage switches.

One SeaweedFS server (``weed mini`` via scripts/s3_server.py, with -ip=127.0.0.1
-ip.bind=127.0.0.1 -master.telemetry=false: loopback only) serves the whole run: it
listens on about a dozen ports, so it is started once, lazily, by the first
test that needs it, and stopped at the end.
"""

from __future__ import annotations

import re
import uuid
from pathlib import Path

import pytest

from scripts import s3_server as s3_server_module

S3_ACCESS_KEY = "test-access-key"
S3_SECRET_KEY = "test-secret-key-0123456789"


def pytest_configure(config):
    config.addinivalue_line(
        "markers",
        "postgres: needs PostgreSQL (row locks, real concurrency); deselected on "
        "SQLite, run by the PostgreSQL pass of `make test`",
    )
    config.addinivalue_line(
        "markers",
        "reliability(id, ...): tries the fault, attack or hostile input of that "
        "row of core/tests/reliability.py; listed in docs/RELIABILITY.md",
    )


def pytest_collection_modifyitems(config, items):
    from django.db import connection

    if connection.vendor == "postgresql":
        return
    kept = [item for item in items if item.get_closest_marker("postgres") is None]
    dropped = [item for item in items if item.get_closest_marker("postgres")]
    if dropped:
        config.hook.pytest_deselected(items=dropped)
        items[:] = kept


def storages_setting(default: dict, private: dict | None = None) -> dict:
    """STORAGES as settings.py builds it. ``private`` defaults, as there, to
    the default's bucket on MinIO, else to a folder at PRIVATE_MEDIA_ROOT."""
    if private is None and default["BACKEND"] == "storage.backends.MinIOStorage":
        private = default
    elif private is None:
        from django.conf import settings

        private = {
            "BACKEND": "storage.filesystem.FileSystemStorage",
            "OPTIONS": {"location": settings.PRIVATE_MEDIA_ROOT, "base_url": None},
        }
    # Tests do not run collectstatic, so static files use the plain storage;
    # the manifest storage of production is exercised by `make check`.
    return {
        "default": default,
        "private": private,
        "staticfiles": {
            "BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"
        },
    }


@pytest.fixture(scope="session")
def django_db_modify_db_settings(django_db_modify_db_settings_parallel_suffix):
    """A PostgreSQL test database of this run's own: two runs on one server
    (a developer's and CI's, or two checkouts) must not drop each other's."""
    import os

    from django.db import connections

    for connection in connections.all():
        if connection.vendor == "postgresql":
            base = connection.settings_dict["NAME"]
            test = connection.settings_dict.setdefault("TEST", {})
            test["NAME"] = f"test_{base}_{os.getpid()}"


@pytest.fixture(scope="session")
def s3_server(tmp_path_factory):
    server = s3_server_module.start(
        access_key=S3_ACCESS_KEY,
        secret_key=S3_SECRET_KEY,
        data_dir=tmp_path_factory.mktemp("seaweedfs"),
    )
    yield server
    server.stop()


@pytest.fixture(autouse=True)
def order_match_inline(settings):
    """Requests that place, cancel or amend an order run the market's matcher
    in the test's own process (trading.matcher.drain) instead of waiting for
    a run_matcher process: results are immediate and deterministic. Tests of
    the real processes turn it off."""
    settings.ORDER_MATCH_INLINE = True


@pytest.fixture(autouse=True)
def fast_password_hasher(settings):
    """Passwords hashed in microseconds: the real hasher is slow on purpose."""
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture
def reauthenticate():
    """Confirm the password of a signed-in test client, as allauth asks before
    sensitive actions (API keys, withdrawals, e-mail and password changes)."""

    def confirm(client, password: str) -> None:
        response = client.post("/accounts/reauthenticate/", {"password": password})
        assert response.status_code == 302, response.content.decode()[:500]

    return confirm


@pytest.fixture
def mfa_enable():
    """Give a user an authenticator app (TOTP) and return its base32 secret,
    as turning it on from the profile does; staff need one for the admin."""
    import base64
    import secrets

    from allauth.mfa.models import Authenticator
    from allauth.mfa.utils import encrypt

    def enable(user) -> str:
        secret = base64.b32encode(secrets.token_bytes(20)).decode()
        Authenticator.objects.create(
            user=user, type=Authenticator.Type.TOTP, data={"secret": encrypt(secret)}
        )
        return secret

    return enable


# -- People, tokens and a market, built through the real services
# (tests.factories); every app's tests share these.


@pytest.fixture
def btc(db):
    from tests.factories import token_make

    return token_make("BTC", decimals=8)


@pytest.fixture
def usdt(db):
    from tests.factories import token_make

    return token_make("USDT", decimals=6)


@pytest.fixture
def market(btc, usdt):
    """BTC-USDT: price step 0.01, amount step 0.0001, minimum 1 USDT,
    maker 0.1 %, taker 0.2 %."""
    from tests.factories import market_make

    return market_make(btc, usdt)


def _user(username: str):
    from tests.factories import user_make

    return user_make(username)


@pytest.fixture
def alice(db):
    """A member with a verified e-mail address and the factories' PASSWORD."""
    return _user("alice")


@pytest.fixture
def bob(db):
    return _user("bob")


@pytest.fixture
def carol(db):
    return _user("carol")


@pytest.fixture
def funded(alice, bob, carol, btc, usdt):
    """alice, bob and carol each hold 10 BTC and 10,000 USDT."""
    from tests.factories import fund

    for user in (alice, bob, carol):
        fund(user, btc, "10")
        fund(user, usdt, "10000")


@pytest.fixture
def alice_client(client, alice, reauthenticate):
    """A client signed in as alice, who has just confirmed her password (as
    API keys, withdrawals and address changes ask)."""
    from tests.factories import PASSWORD

    client.force_login(alice)
    reauthenticate(client, PASSWORD)
    return client


def _api_client(user, reauthenticate):
    from rest_framework.test import APIClient

    from tests.factories import PASSWORD

    client = APIClient()
    client.force_login(user)
    reauthenticate(client, PASSWORD)
    return client


@pytest.fixture
def as_alice(alice, reauthenticate):
    """The API as alice, signed in by session, her password just confirmed."""
    return _api_client(alice, reauthenticate)


@pytest.fixture
def as_bob(bob, reauthenticate):
    return _api_client(bob, reauthenticate)


@pytest.fixture
def staff(db):
    """A superuser (no second factor: only the admin asks for one)."""
    from django.contrib.auth import get_user_model

    from tests.factories import PASSWORD

    return get_user_model().objects.create_superuser(
        "root", email="root@example.com", password=PASSWORD
    )


@pytest.fixture
def staff_client(client, staff, mfa_enable):
    """A client signed in as ``staff``, with the second factor the admin needs."""
    mfa_enable(staff)
    client.force_login(staff)
    return client


@pytest.fixture
def staff_clients(db, mfa_enable):
    """``staff_clients(2)``: clients signed in as that many superusers of
    their own (with the second factor), as staff at different desks."""
    from django.contrib.auth import get_user_model
    from django.test import Client

    def make(count: int) -> list[Client]:
        clients = []
        for number in range(1, count + 1):
            user = get_user_model().objects.create_superuser(
                f"staff{number}", email=f"staff{number}@example.com"
            )
            mfa_enable(user)
            client = Client()
            client.force_login(user)
            clients.append(client)
        return clients

    return make


@pytest.fixture
def desk(db):
    """A group of staff named "desk", with no permissions yet."""
    from django.contrib.auth.models import Group

    return Group.objects.create(name="desk")


@pytest.fixture
def redis_server(tmp_path):
    """A Redis of the test's own (core/tests/redis_server.py): the machine's
    is shared with other runs, whose processes use the same keys and
    channels."""
    from core.tests.redis_server import redis_running

    with redis_running(tmp_path) as server:
        yield server


@pytest.fixture(autouse=True)
def empty_cache():
    """Each test starts with an empty cache: nothing rendered for another
    test's database can be served."""
    from django.core.cache import cache

    cache.clear()
    yield
    cache.clear()


@pytest.fixture(autouse=True)
def media_root(settings, tmp_path):
    """Every test gets an empty local media folder, and a private one beside
    it (``private_media_root``); nothing touches media/ or private_media/."""
    root = tmp_path / "media"
    root.mkdir()
    settings.MEDIA_ROOT = root
    settings.PRIVATE_MEDIA_ROOT = tmp_path / "private_media"
    settings.USE_MINIO = False
    settings.STORAGES = storages_setting(
        {
            "BACKEND": "storage.filesystem.FileSystemStorage",
            "OPTIONS": {"location": root, "base_url": "/media/"},
        }
    )
    return root


@pytest.fixture
def private_media_root(settings, media_root) -> Path:
    """The folder of the private storage in local mode (not created)."""
    return settings.PRIVATE_MEDIA_ROOT


@pytest.fixture(autouse=True)
def image_decode_slots_dir(settings, tmp_path):
    """Decode slots of the test's own: another run on this machine holding the
    host's slots must not refuse this one's uploads, nor the reverse."""
    settings.IMAGE_DECODE_SLOTS_DIR = tmp_path / "decode-slots"
    return settings.IMAGE_DECODE_SLOTS_DIR


# Takes `count` slots through storage.decode_slots, as that many workers
# decoding at once would, and keeps them until its stdin closes.
_SLOTS_HOLDER = """
import contextlib, sys
from django.conf import settings
directory, count = sys.argv[1], int(sys.argv[2])
settings.configure(IMAGE_DECODE_SLOTS_DIR=directory, IMAGE_DECODE_SLOTS=count)
from storage.decode_slots import image_decode_slot
with contextlib.ExitStack() as slots:
    for _ in range(count):
        slots.enter_context(image_decode_slot())
    print("held", flush=True)
    sys.stdin.read()
"""


class SlotsHolder:
    """Another real process holding decode slots of the test's folder."""

    def __init__(self, directory: Path, count: int) -> None:
        import subprocess
        import sys

        self.process = subprocess.Popen(
            [sys.executable, "-c", _SLOTS_HOLDER, str(directory), str(count)],
            cwd=Path(__file__).resolve().parent,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        line = self.process.stdout.readline()
        assert line == "held\n", f"the holder did not take its slots: {line!r}"

    def release(self) -> None:
        """The holder finishes normally, closing its slots."""
        self.process.stdin.close()
        self.process.wait(timeout=10)

    def kill(self) -> None:
        """SIGKILL: no chance to release anything; the kernel drops the locks."""
        self.process.kill()
        self.process.wait(timeout=10)


@pytest.fixture
def decode_slots_holder(image_decode_slots_dir):
    """``decode_slots_holder(count)``: a process holding ``count`` slots."""
    holders: list[SlotsHolder] = []

    def start(count: int) -> SlotsHolder:
        holders.append(SlotsHolder(image_decode_slots_dir, count))
        return holders[-1]

    yield start
    for holder in holders:
        if holder.process.poll() is None:
            holder.kill()


@pytest.fixture
def bucket_name(s3_server) -> str:
    name = f"test-{uuid.uuid4().hex[:12]}"
    yield name
    _bucket_remove(s3_server, name)


def _bucket_remove(server, name: str) -> None:
    """Drop a test's bucket and its objects, so the server's volumes are freed."""
    from minio import Minio
    from minio.deleteobjects import DeleteObject

    client = Minio(
        endpoint=server.endpoint,
        access_key=S3_ACCESS_KEY,
        secret_key=S3_SECRET_KEY,
        secure=False,
        region="us-east-1",
    )
    if not client.bucket_exists(bucket_name=name):
        return
    objects = client.list_objects(bucket_name=name, recursive=True)
    errors = client.remove_objects(
        bucket_name=name,
        delete_object_list=(DeleteObject(obj.object_name) for obj in objects),
    )
    for error in errors:
        raise AssertionError(f"could not delete {error}")
    client.remove_bucket(bucket_name=name)


@pytest.fixture
def minio_options(s3_server, bucket_name) -> dict:
    return {
        "endpoint": s3_server.endpoint,
        "access_key": S3_ACCESS_KEY,
        "secret_key": S3_SECRET_KEY,
        "bucket_name": bucket_name,
        "use_ssl": False,
        "region": "us-east-1",
        "url_mode": "public",
    }


@pytest.fixture
def s3_client(s3_server):
    """A raw minio client on the test server, to look behind the storage."""
    from minio import Minio

    return Minio(
        endpoint=s3_server.endpoint,
        access_key=S3_ACCESS_KEY,
        secret_key=S3_SECRET_KEY,
        secure=False,
        region="us-east-1",
    )


@pytest.fixture
def storage(minio_options):
    """A MinIOStorage on the run's S3 server and a bucket of the test's own."""
    from storage.backends import MinIOStorage

    return MinIOStorage(**minio_options)


@pytest.fixture
def profile(any_storage, put_exact, alice):
    """alice's profile, in a storage that holds the default avatar (as
    setup_minio and the repository's media/ put it there)."""
    from accounts.models import DEFAULT_AVATAR

    put_exact(any_storage, DEFAULT_AVATAR, b"default")
    return alice.profile


@pytest.fixture
def use_minio(settings, minio_options):
    """Make MinIOStorage (on a fresh bucket of the test server) the default."""
    settings.USE_MINIO = True
    settings.MINIO_ENDPOINT = minio_options["endpoint"]
    settings.MINIO_ACCESS_KEY = S3_ACCESS_KEY
    settings.MINIO_SECRET_KEY = S3_SECRET_KEY
    settings.MINIO_BUCKET_NAME = minio_options["bucket_name"]
    settings.STORAGES = storages_setting(
        {"BACKEND": "storage.backends.MinIOStorage", "OPTIONS": minio_options}
    )
    from django.core.files.storage import default_storage

    return default_storage


@pytest.fixture
def dead_storage(settings, minio_options):
    """MinIOStorage configured on a loopback port where nothing listens."""
    settings.USE_MINIO = True
    settings.STORAGES = storages_setting(
        {
            "BACKEND": "storage.backends.MinIOStorage",
            "OPTIONS": {**minio_options, "endpoint": "127.0.0.1:9", "max_retries": 0},
        }
    )


@pytest.fixture(params=["local", "minio"])
def any_storage(request):
    """The default storage, once as the file system and once as MinIOStorage."""
    if request.param == "minio":
        request.getfixturevalue("use_minio")
    from django.core.files.storage import default_storage

    return default_storage


@pytest.fixture
def any_private_storage(any_storage):
    """The private storage in the mode ``any_storage`` chose: a folder outside
    the media folder on local disk, the same bucket on MinIO."""
    from storage.private import private_storage

    return private_storage()


@pytest.fixture
def put_exact():
    """Store bytes under exactly this name, as setup_minio and media/ do for
    default_avatar.jpg (Storage.save would make the name unique)."""
    from django.core.files.base import ContentFile

    def put(storage, name: str, payload: bytes) -> None:
        storage._save(name, ContentFile(payload))

    return put


@pytest.fixture
def stored_names():
    """Every name stored under a folder (recursively), on any storage."""

    def names(storage, folder: str = "") -> list[str]:
        found = []
        try:
            folders, files = storage.listdir(folder)
        except FileNotFoundError:
            return []
        prefix = f"{folder}/" if folder else ""
        found += [prefix + name for name in files]
        for sub in folders:
            found += names(storage, prefix + sub)
        return sorted(found)

    return names


@pytest.fixture
def run_python():
    """Run a Python command of the project in a clean environment.

    Only what the test passes is set: no .env file, no variable of the
    developer's shell, so that defaults are really the defaults.
    """
    import os
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parent

    def run(args: list[str], env: dict[str, str] | None = None, timeout: float = 60):
        clean = {
            "PATH": os.environ.get("PATH", ""),
            "HOME": os.environ.get("HOME", str(root)),
            "ENV_FILE": str(root / "no-such.env"),
            "PYTHONPATH": str(root),
            **(env or {}),
        }
        return subprocess.run(
            [sys.executable, *args],
            cwd=root,
            env=clean,
            capture_output=True,
            text=True,
            timeout=timeout,
        )

    return run


# --- Browser tests ------------------------------------------------------------

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
]
ARTIFACTS = Path(__file__).resolve().parent / "test-artifacts"


@pytest.fixture(scope="session")
def browser():
    """Debian's Chromium driven by Playwright; never a downloaded browser."""
    import os

    from playwright.sync_api import sync_playwright

    # Playwright's sync API runs an event loop in the test thread, which makes
    # Django refuse ORM calls there; the tests use the ORM between page steps.
    os.environ.setdefault("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} is missing: `make test` installs Debian's chromium.")
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(
            executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS
        )
        yield chromium
        chromium.close()


# Reports every Content-Security-Policy violation of every page to the test.
CSP_VIOLATION_LISTENER = """
document.addEventListener("securitypolicyviolation", (event) => {
  window.__cspViolation(
    `${event.effectiveDirective} blocked ${event.blockedURI || "inline code"} ` +
    `on ${event.documentURI} (${event.sourceFile}:${event.lineNumber})`
  );
});
"""
# A page that offers to sign out (the site's navigation, the admin's) is a
# signed-in user's page.
SIGNED_IN_PAGE = re.compile(r'<form[^>]*action="[^"]*/logout/"')


class HeaderWatch:
    """What browser contexts load, checked when the test ends: every HTML page
    carries the site's Content-Security-Policy and nothing on it breaks the
    policy; every signed-in user's page says Cache-Control: private, no-store."""

    def __init__(self) -> None:
        self.problems: list[str] = []
        self.pages: list[str] = []

    def attach(self, context) -> None:
        context.expose_binding(
            "__cspViolation", lambda source, text: self.problems.append(text)
        )
        context.add_init_script(CSP_VIOLATION_LISTENER)
        context.on("requestfinished", self._finished)

    def _finished(self, request) -> None:
        response = request.response()
        if request.resource_type != "document" or response is None:
            return
        headers = response.all_headers()
        if 300 <= response.status < 400 or not headers.get(
            "content-type", ""
        ).startswith("text/html"):
            return
        self.pages.append(response.url)
        policy = headers.get("content-security-policy", "")
        if "script-src 'self'" not in policy or "unsafe-inline" in policy:
            self.problems.append(f"{response.url}: Content-Security-Policy {policy!r}")
        if SIGNED_IN_PAGE.search(response.text()):
            cache_control = headers.get("cache-control", "")
            directives = {part.strip() for part in cache_control.split(",")}
            if not {"private", "no-store"} <= directives:
                self.problems.append(
                    f"{response.url}: signed in, Cache-Control {cache_control!r}"
                )

    def check(self) -> None:
        if self.problems:
            pytest.fail("\n".join(["Headers and policy:", *self.problems]))


@pytest.fixture
def watch_headers():
    """Attach a browser context to the header and CSP checks of this test (the
    ``page`` fixture attaches its own); problems fail the test at its end."""
    watch = HeaderWatch()
    yield watch.attach
    watch.check()


@pytest.fixture
def page(browser, request, watch_headers):
    """A fresh browser tab; a screenshot of it is kept in test-artifacts/.
    Every page it loads is checked for the Content-Security-Policy, for
    ``no-store`` when signed in, and for violations of the policy."""
    context = browser.new_context(viewport={"width": 1200, "height": 900})
    watch_headers(context)
    tab = context.new_page()
    tab.set_default_timeout(15_000)
    shots = []

    def screenshot(step: str) -> None:
        ARTIFACTS.mkdir(exist_ok=True)
        test = re.sub(r"[^A-Za-z0-9_.-]+", "_", request.node.name).strip("_")
        name = f"{test}-{len(shots):02d}-{step}.png"
        tab.screenshot(path=str(ARTIFACTS / name), full_page=True)
        shots.append(name)

    tab.screenshot_step = screenshot
    yield tab
    context.close()


@pytest.fixture(params=["local", "public", "presigned", "proxy"])
def site_storage(request, settings, tmp_path):
    """The site's media on local disk, or on MinIO in each URL mode, ready as
    after setup: the default avatar in place, the bucket's policy set."""
    from django.core.files.storage import storages

    from storage.services import bucket_setup

    default_avatar = Path(__file__).resolve().parent / "media" / "default_avatar.jpg"
    settings.MEDIA_SERVE = request.param in ("local", "proxy")
    if request.param == "local":
        media = settings.MEDIA_ROOT
        (media / "default_avatar.jpg").write_bytes(default_avatar.read_bytes())
    else:
        options = request.getfixturevalue("minio_options")
        settings.USE_MINIO = True
        settings.STORAGES = storages_setting(
            {
                "BACKEND": "storage.backends.MinIOStorage",
                "OPTIONS": {**options, "url_mode": request.param},
            }
        )
        bucket_setup(storage=storages["default"], default_avatar=default_avatar)
    return request.param


# --- A real SMTP server on loopback -------------------------------------------


class ReceivedMail:
    """One message as the SMTP server got it, parsed with the email package."""

    def __init__(self, envelope) -> None:
        from email import message_from_bytes
        from email.policy import default

        message = message_from_bytes(envelope.original_content, policy=default)
        self.envelope_to = list(envelope.rcpt_tos)
        self.subject = str(message["Subject"] or "")
        self.to = str(message["To"] or "")
        plain = message.get_body(preferencelist=("plain",))
        html = message.get_body(preferencelist=("html",))
        self.text = plain.get_content() if plain is not None else ""
        self.html = html.get_content() if html is not None else ""

    def __repr__(self) -> str:
        return f"<ReceivedMail to={self.to!r} subject={self.subject!r}>"


class SmtpServer:
    """What the SMTP server received, in order; ``wait_for`` waits for a mail
    (the app sends some after its transaction commits, the server runs in a
    thread of its own)."""

    def __init__(self) -> None:
        import threading

        self.messages: list[ReceivedMail] = []
        self._arrived = threading.Condition()

    async def handle_DATA(self, server, session, envelope) -> str:
        mail = ReceivedMail(envelope)
        with self._arrived:
            self.messages.append(mail)
            self._arrived.notify_all()
        return "250 Message accepted for delivery"

    def wait_for(self, subject: str, *, to: str = "", timeout: float = 10):
        """The first mail whose subject contains ``subject`` (and whose To
        contains ``to``); fails the test when none arrives in time."""

        def found():
            return next(
                (
                    mail
                    for mail in self.messages
                    if subject in mail.subject and to in mail.to
                ),
                None,
            )

        with self._arrived:
            if self._arrived.wait_for(found, timeout=timeout) is None:
                pytest.fail(
                    f"no mail with {subject!r} in the subject arrived; "
                    f"got {self.messages}"
                )
            return found()


def _free_loopback_port() -> int:
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture
def smtp_server(settings):
    """An aiosmtpd server on 127.0.0.1 that Django sends every mail to, in
    plain SMTP (no TLS, no login), for this test."""
    from aiosmtpd.controller import Controller

    server = SmtpServer()
    controller = Controller(server, hostname="127.0.0.1", port=_free_loopback_port())
    controller.start()
    settings.EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
    settings.EMAIL_HOST = "127.0.0.1"
    settings.EMAIL_PORT = controller.port
    settings.EMAIL_HOST_USER = ""
    settings.EMAIL_HOST_PASSWORD = ""
    settings.EMAIL_USE_TLS = False
    settings.EMAIL_USE_SSL = False
    settings.EMAIL_TIMEOUT = 10
    yield server
    controller.stop()
