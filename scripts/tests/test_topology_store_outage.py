"""The object store stopped, restarted, paused and resumed under traffic.

nginx round robin over two gunicorn instances of this checkout (the loopback
topology of scripts/topology, media in the proxy URL mode), on an S3
server of this module's own: the session's server is never stopped. Members
keep loading pages, uploading profile pictures (from script and as a plain
form) and loading their picture through nginx while the store's process is
terminated (SIGTERM), started again on the same port and data folder, then
paused (SIGSTOP) and resumed. The app is never restarted.

One run for the module; each test checks one thing that must hold.
"""

from __future__ import annotations

import itertools
import json
import os
import signal
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import psycopg
import pytest

from conftest import S3_ACCESS_KEY, S3_SECRET_KEY
from core.tests.processes import process_pause
from scripts import s3_server as s3_server_module
from scripts.browser import Browser
from scripts.tests.traffic import Member, Sent, Traffic, image_check
from scripts.topology import (
    DEFAULT_AVATAR,
    SCENARIO_UPLOAD_RATE,
    Topology,
)

pytestmark = pytest.mark.postgres

MEMBERS = 3
# Short, so that each upload to the paused store is refused quickly.
DEADLINE_SECONDS = 3
# Besides the profile page, which every upload starts from.
PAGES = ("/", "/tokens/", "/markets/")
REFUSED = "file storage is unavailable"


class Store:
    """The module's S3 server, which the test stops and starts again on the
    same port with the same data folder, as a restarted container would."""

    def __init__(self, data_dir: Path) -> None:
        self.data_dir = data_dir
        self.access_key, self.secret_key = S3_ACCESS_KEY, S3_SECRET_KEY
        self.server = s3_server_module.start(
            access_key=self.access_key, secret_key=self.secret_key, data_dir=data_dir
        )
        self.endpoint = self.server.endpoint

    @property
    def process(self) -> subprocess.Popen:
        return self.server.process

    def terminate(self) -> None:
        self.process.terminate()
        self.process.wait(timeout=30)
        self.server.stop()  # its stale sockets

    def start(self) -> None:
        self.server = s3_server_module.start(
            access_key=self.access_key,
            secret_key=self.secret_key,
            data_dir=self.data_dir,
            port=int(self.endpoint.rsplit(":", 1)[1]),
        )

    def pause(self) -> None:
        process_pause(self.process.pid)

    def resume(self) -> None:
        os.kill(self.process.pid, signal.SIGCONT)

    def running_ensure(self) -> None:
        """Started or resumed, whatever the test stopped at."""
        if self.process.poll() is None:
            self.resume()
        else:
            self.start()

    def close(self) -> None:
        if self.process.poll() is None:
            self.resume()
        self.server.stop()


@dataclass
class Window:
    """From the moment the fault was complete to the moment it was undone."""

    begins: float
    ends: float

    def holds(self, sent: Sent) -> bool:
        return sent.started >= self.begins and sent.ended <= self.ends


@dataclass
class Run:
    sent: list[Sent]
    stopped: Window
    restarted: Window  # until the pause
    paused: Window
    resumed: Window  # until the end
    readiness: dict[str, list[tuple[int, dict]]]  # phase -> answers
    instance_pids: list[tuple[int, int]]  # (at the start, at the end)
    instances_running: bool
    objects: set[str]
    avatars: dict[str, str]  # username -> the profile row's avatar
    readable: dict[str, str | None]  # username -> image_check of its picture


@pytest.fixture(scope="module")
def outage_store(tmp_path_factory):
    store = Store(tmp_path_factory.mktemp("seaweedfs-outage"))
    try:
        yield store
    finally:
        store.close()


def _readiness(topology: Topology) -> list[tuple[int, dict]]:
    """/readyz/ of every instance, asked directly."""
    answers = []
    for instance in topology.instances:
        response = Browser(instance.port).get("/readyz/")
        answers.append((response.status, json.loads(response.body or b"{}")))
    return answers


def _counted(
    members: list[Member],
    kind: str,
    since: float,
    count: int,
    stored: bool | None = None,
) -> Callable[[list[Sent]], bool]:
    """Every member has had ``count`` answers of ``kind`` sent after ``since``
    (only stored uploads with ``stored=True``)."""

    def condition(sent: list[Sent]) -> bool:
        for member in members:
            found = [
                s
                for s in sent
                if s.client == member.username
                and s.kind == kind
                and s.started >= since
                and (stored is None or (s.key is not None) == stored)
            ]
            if len(found) < count:
                return False
        return True

    return condition


def _every_page(since: float) -> Callable[[list[Sent]], bool]:
    def condition(sent: list[Sent]) -> bool:
        pages = [s for s in sent if s.kind == "page" and s.started >= since]
        return {s.response.path for s in pages} >= set(PAGES)

    return condition


@pytest.fixture(scope="module")
def run(outage_store, postgres_url, topology_static_root) -> Run:
    with Topology(
        instances=2,
        workers=2,
        s3=outage_store,
        postgres_url=postgres_url,
        upload_rate=SCENARIO_UPLOAD_RATE,
        static_root=topology_static_root,
        environment={"MINIO_DEADLINE": str(DEADLINE_SECONDS)},
    ) as topology:
        pids = [instance.process.pid for instance in topology.instances]
        members = [Member(topology) for _ in range(MEMBERS)]
        traffic = Traffic()
        readiness = {}

        def step_of(member: Member, number: int) -> Callable[[], None]:
            turns = itertools.count(number)

            def step() -> None:
                traffic.record(member.page(PAGES[next(turns) % len(PAGES)]))
                # The first member posts the plain form (no script), the
                # others as the page's script does.
                member.avatar_upload(xhr=number > 0, record=traffic.record)
                shown = traffic.record(member.page("/accounts/profile/"))
                if shown.detail.get("avatar"):
                    media = member.browser.get(shown.detail["avatar"])
                    traffic.record(Sent("media", member.username, media))

            return step

        try:
            for number, member in enumerate(members):
                traffic.run(step_of(member, number))
            traffic.wait_for(
                "a stored upload each", _counted(members, "upload", 0, 1, True)
            )

            outage_store.terminate()
            stopped_at = time.monotonic()
            for kind in ("upload", "page", "media"):
                traffic.wait_for(
                    f"{kind}s while stopped", _counted(members, kind, stopped_at, 2)
                )
            traffic.wait_for("every page while stopped", _every_page(stopped_at))
            readiness["stopped"] = _readiness(topology)
            restart_at = time.monotonic()
            outage_store.start()
            restarted_at = time.monotonic()
            traffic.wait_for(
                "a stored upload each after the restart",
                _counted(members, "upload", restarted_at, 1, True),
            )
            traffic.wait_for(
                "pictures after the restart",
                _counted(members, "media", restarted_at, 1),
            )
            readiness["restarted"] = _readiness(topology)

            pause_at = time.monotonic()
            outage_store.pause()
            paused_at = time.monotonic()
            for kind in ("upload", "page", "media"):
                traffic.wait_for(
                    f"{kind}s while paused", _counted(members, kind, paused_at, 1)
                )
            traffic.wait_for("every page while paused", _every_page(paused_at))
            readiness["paused"] = _readiness(topology)
            resume_at = time.monotonic()
            outage_store.resume()
            resumed_at = time.monotonic()
            traffic.wait_for(
                "a stored upload each after the resume",
                _counted(members, "upload", resumed_at, 1, True),
            )
            traffic.wait_for(
                "pictures after the resume", _counted(members, "media", resumed_at, 1)
            )
            readiness["resumed"] = _readiness(topology)
            ended_at = time.monotonic()
        finally:
            outage_store.running_ensure()
            traffic.stop()

        client = topology.minio_client()
        objects = {
            o.object_name
            for o in client.list_objects(bucket_name=topology.bucket, recursive=True)
        }
        with psycopg.connect(topology.database_url) as connection:
            avatars = dict(
                connection.execute(
                    "SELECT u.username, p.avatar FROM accounts_profile p "
                    "JOIN auth_user u ON u.id = p.user_id"
                ).fetchall()
            )
        readable = {}
        for member in members:
            shown = member.page("/accounts/profile/")
            media = member.browser.get(shown.detail["avatar"])
            last = [s for s in traffic.sent if s.client == member.username and s.key]
            readable[member.username] = image_check(
                media.body, size=300, rgb=last[-1].detail["rgb"]
            )
        return Run(
            sent=traffic.sent,
            stopped=Window(stopped_at, restart_at),
            restarted=Window(restarted_at, pause_at),
            paused=Window(paused_at, resume_at),
            resumed=Window(resumed_at, ended_at),
            readiness=readiness,
            instance_pids=[
                (pid, instance.process.pid)
                for pid, instance in zip(pids, topology.instances, strict=True)
            ],
            instances_running=all(i.running for i in topology.instances),
            objects=objects,
            avatars=avatars,
            readable=readable,
        )


def _of(run: Run, kind: str, window: Window | None = None) -> list[Sent]:
    return [
        sent
        for sent in run.sent
        if sent.kind == kind and (window is None or window.holds(sent))
    ]


@pytest.mark.reliability("store-outage-topology")
def test_every_request_is_answered_and_none_with_a_server_error(run):
    for sent in run.sent:
        status = sent.response.status
        assert status != 0, sent.response.describe()
        assert status < 500 or (sent.kind == "media" and status == 503), (
            sent.response.describe()
        )


@pytest.mark.parametrize("fault", ["stopped", "paused"])
@pytest.mark.reliability("store-outage-topology")
def test_an_upload_to_the_missing_store_is_refused_saying_why(run, fault):
    window = getattr(run, fault)
    uploads = _of(run, "upload", window)

    assert {sent.detail["xhr"] for sent in uploads} == {True, False}
    for sent in uploads:
        response = sent.response
        assert response.status == 400, response.describe()
        assert sent.key is None
        if sent.detail["xhr"]:
            [error] = json.loads(response.body)["errors"]["__all__"]
            assert REFUSED in error["message"]
        else:
            assert REFUSED in response.text


@pytest.mark.parametrize("fault", ["stopped", "paused"])
@pytest.mark.reliability("store-outage-topology")
def test_pages_answer_while_the_store_is_missing(run, fault):
    window = getattr(run, fault)
    pages = _of(run, "page", window)

    assert {sent.response.path for sent in pages} >= {*PAGES, "/accounts/profile/"}
    for sent in pages:
        assert sent.response.status == 200, sent.response.describe()
    # The profile still shows the last picture stored: rendering a page never
    # asks the store.
    stored = [sent for sent in _of(run, "upload") if sent.key]
    for sent in pages:
        if sent.response.path == "/accounts/profile/":
            last = [
                upload.key
                for upload in stored
                if upload.client == sent.client and upload.ended <= sent.started
            ][-1]
            assert sent.detail["avatar_key"] == last


@pytest.mark.parametrize("fault", ["stopped", "paused"])
@pytest.mark.reliability("store-outage-topology")
def test_a_picture_is_a_503_asking_to_retry_while_the_store_is_missing(run, fault):
    window = getattr(run, fault)
    media = _of(run, "media", window)

    assert media
    for sent in media:
        response = sent.response
        assert response.status == 503, response.describe()
        assert response.headers["retry-after"]
        assert "no-store" in response.headers["cache-control"]


@pytest.mark.parametrize("fault", ["stopped", "paused"])
@pytest.mark.reliability("store-outage-topology")
def test_readiness_says_the_store_is_failing(run, fault):
    for status, body in run.readiness[fault]:
        assert status == 503
        assert body["checks"]["object_store"] == "failing"
        assert body["checks"]["database"] == "ok"


@pytest.mark.parametrize("phase", ["restarted", "resumed"])
@pytest.mark.reliability("store-outage-topology")
def test_everything_works_again_without_restarting_the_app(run, phase):
    window = getattr(run, phase)
    uploads = _of(run, "upload", window)
    media = _of(run, "media", window)

    assert uploads and media
    for sent in uploads:
        assert sent.key is not None, sent.response.describe()
    for sent in media:
        assert sent.response.status == 200, sent.response.describe()
    for status, body in run.readiness[phase]:
        assert status == 200, body
    assert run.instances_running
    assert all(before == after for before, after in run.instance_pids)


@pytest.mark.reliability("store-outage-topology")
def test_no_row_points_at_a_missing_object_and_no_refused_upload_left_one(run):
    names = set(run.avatars.values())
    stored = {sent.key for sent in _of(run, "upload") if sent.key}

    assert names <= run.objects
    assert run.objects - names == {DEFAULT_AVATAR}
    refused = [s for s in _of(run, "upload") if s.key is None]
    assert refused
    # Each profile shows its member's last stored upload, readable as stored.
    for username, name in run.avatars.items():
        last = [s.key for s in _of(run, "upload") if s.client == username and s.key]
        assert name == last[-1]
        assert run.readable[username] is None, run.readable[username]
    assert names <= stored
