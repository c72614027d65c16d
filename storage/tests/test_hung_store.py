"""A hung object store (a real server process paused with SIGSTOP, so that it
still accepts connections but never answers) costs each request at most
MINIO_DEADLINE and never takes down the pages that do not need it.

The paused server is one of this module's own: the session's server, shared
by every other test, is never frozen. Every test resumes it (SIGCONT) at its
end, whatever happens.
"""

import os
import signal
import threading
import time
import uuid

import pytest
from django.contrib.auth import get_user_model
from django.core.files.base import ContentFile
from django.test import Client
from minio import Minio

from accounts.models import DEFAULT_AVATAR
from conftest import S3_ACCESS_KEY, S3_SECRET_KEY, storages_setting
from core.tests.processes import process_pause
from scripts import s3_server as s3_server_module
from storage.backends import MinIOStorage
from storage.exceptions import StorageUnavailable
from storage.models import PendingDeletion
from storage.orphans import pending_deletions_retry
from tests.factories import image_bytes, jpeg_upload
from verification.documents import document_process
from verification.services import verification_submit
from verification.tests.samples import full_set

PNG = image_bytes("PNG", (20, 20), (1, 2, 3))

pytestmark = pytest.mark.django_db

DEADLINE = 2.0
# Room for thread start-up, a loaded CI machine and the request around the
# store call; far less than a retried read timeout would add.
MARGIN = 3.0


@pytest.fixture(scope="module")
def own_store(tmp_path_factory):
    server = s3_server_module.start(
        access_key=S3_ACCESS_KEY,
        secret_key=S3_SECRET_KEY,
        data_dir=tmp_path_factory.mktemp("seaweedfs-paused"),
    )
    try:
        yield server
    finally:
        os.kill(server.process.pid, signal.SIGCONT)
        server.stop()


@pytest.fixture
def store_options(own_store):
    bucket = f"test-{uuid.uuid4().hex[:12]}"
    Minio(
        endpoint=own_store.endpoint,
        access_key=S3_ACCESS_KEY,
        secret_key=S3_SECRET_KEY,
        secure=False,
        region="us-east-1",
    ).make_bucket(bucket_name=bucket)
    return {
        "endpoint": own_store.endpoint,
        "access_key": S3_ACCESS_KEY,
        "secret_key": S3_SECRET_KEY,
        "bucket_name": bucket,
        "use_ssl": False,
        "region": "us-east-1",
        "url_mode": "proxy",
        "connect_timeout": 1.0,
        "deadline": DEADLINE,
    }


@pytest.fixture
def proxy_store(settings, store_options):
    """MinIOStorage in proxy mode on the module's server, deadline 2 s."""
    settings.USE_MINIO = True
    settings.MEDIA_SERVE = True
    settings.STORAGES = storages_setting(
        {"BACKEND": "storage.backends.MinIOStorage", "OPTIONS": store_options}
    )
    from django.core.files.storage import default_storage

    return default_storage


@pytest.fixture
def paused(own_store):
    """Call to freeze the module's store; it is always resumed afterwards."""
    pid = own_store.process.pid

    def pause() -> None:
        process_pause(pid)

    yield pause
    os.kill(pid, signal.SIGCONT)


def _resume(server) -> None:
    os.kill(server.process.pid, signal.SIGCONT)


def _stored(store_options, prefix: str) -> set[str]:
    client = Minio(
        endpoint=store_options["endpoint"],
        access_key=S3_ACCESS_KEY,
        secret_key=S3_SECRET_KEY,
        secure=False,
        region="us-east-1",
    )
    objects = client.list_objects(
        bucket_name=store_options["bucket_name"], prefix=prefix, recursive=True
    )
    return {o.object_name for o in objects}


def _written_late(store_options, prefix: str) -> set[str]:
    """What the resumed store writes of the requests it took while paused
    (all of each body had reached it)."""
    deadline = time.monotonic() + 20
    while not (names := _stored(store_options, prefix)):
        assert time.monotonic() < deadline, "the resumed store wrote nothing"
        time.sleep(0.1)
    return names


def _timed(call):
    started = time.monotonic()
    result = call()
    return result, time.monotonic() - started


@pytest.mark.reliability("store-hung")
def test_a_read_timeout_is_not_retried(store_options, paused):
    # Three retries of a 1 s read timeout would take at least 4 s.
    storage = MinIOStorage(
        **{**store_options, "read_timeout": 1.0, "max_retries": 3, "deadline": 20}
    )
    storage.exists("profile_pics/warm-up.png")  # the connection is pooled
    paused()

    started = time.monotonic()
    with pytest.raises(StorageUnavailable, match="did not answer in time"):
        storage.exists("profile_pics/x.png")
    assert time.monotonic() - started < 3.5


@pytest.mark.reliability("store-hung")
def test_a_proxy_media_request_is_a_503_within_the_deadline(proxy_store, paused):
    name = proxy_store.save("token_logo/logo.png", ContentFile(PNG))
    paused()

    response, took = _timed(lambda: Client().get(proxy_store.url(name)))

    assert response.status_code == 503
    assert response["Retry-After"]
    assert response["Cache-Control"] == "no-store"
    assert took < DEADLINE + MARGIN


@pytest.mark.reliability("store-hung")
def test_readiness_reports_the_paused_store_within_the_deadline(
    proxy_store, paused, caplog
):
    paused()

    response, took = _timed(lambda: Client().get("/readyz/"))

    assert response.status_code == 503
    checks = response.json()["checks"]
    assert checks["object_store"] == "failing"
    assert checks["database"] == "ok"
    assert took < DEADLINE + MARGIN
    [logged] = [
        record
        for record in caplog.records
        if record.getMessage() == "readiness check failing"
    ]
    assert "did not answer in time" in logged.reason


@pytest.mark.reliability("store-hung")
def test_pages_answer_while_a_media_request_waits_on_the_paused_store(
    proxy_store, paused
):
    name = proxy_store.save("token_logo/logo.png", ContentFile(PNG))
    paused()
    media_answers = []
    media = threading.Thread(
        target=lambda: media_answers.append(Client().get(proxy_store.url(name)))
    )
    media.start()
    time.sleep(0.3)  # the media request is sent and waits for the store

    health = Client().get("/healthz/")
    tokens = Client().get("/tokens/")
    still_waiting = media.is_alive()
    media.join(DEADLINE + MARGIN)

    assert health.status_code == 200
    assert tokens.status_code == 200
    assert still_waiting, "the media request ended before the pages answered"
    assert [answer.status_code for answer in media_answers] == [503]


@pytest.mark.reliability("store-hung")
def test_an_upload_during_the_pause_is_refused_and_changes_nothing(
    proxy_store, paused, own_store, store_options
):
    user = get_user_model().objects.create_user("alice", password="x-secret-1")
    client = Client()
    client.force_login(user)
    paused()

    response, took = _timed(
        lambda: client.post("/accounts/profile/", {"avatar": jpeg_upload()})
    )

    assert response.status_code == 400
    assert "file storage is unavailable" in response.content.decode()
    user.profile.refresh_from_db()
    assert user.profile.avatar.name == DEFAULT_AVATAR
    # The save, and the clean-up delete it may try, each within the deadline.
    assert took < 2 * DEADLINE + MARGIN


@pytest.mark.reliability("store-hung")
def test_everything_works_again_after_the_store_resumes(proxy_store, paused, own_store):
    name = proxy_store.save("token_logo/logo.png", ContentFile(PNG))
    paused()
    assert Client().get(proxy_store.url(name)).status_code == 503

    _resume(own_store)

    response = Client().get(proxy_store.url(name))
    assert response.status_code == 200
    assert b"".join(response.streaming_content) == PNG
    assert Client().get("/readyz/").status_code == 200
    user = get_user_model().objects.create_user("bob", password="x-secret-1")
    client = Client()
    client.force_login(user)
    assert (
        client.post("/accounts/profile/", {"avatar": jpeg_upload()}).status_code == 302
    )
    user.profile.refresh_from_db()
    assert user.profile.avatar.name.startswith("profile_pics/")


@pytest.mark.reliability("store-hung")
def test_a_refused_upload_the_store_writes_when_it_resumes_is_deleted(
    proxy_store, paused, own_store, store_options, django_capture_on_commit_callbacks
):
    user = get_user_model().objects.create_user("carol", password="x-secret-1")
    client = Client()
    client.force_login(user)
    paused()
    assert (
        client.post("/accounts/profile/", {"avatar": jpeg_upload()}).status_code == 400
    )
    _resume(own_store)
    assert _written_late(store_options, "profile_pics/")

    # The next write finds the store answering and finishes the queued
    # deletions once it commits.
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post("/accounts/profile/", {"avatar": jpeg_upload()})

    assert response.status_code == 302
    user.profile.refresh_from_db()
    assert _stored(store_options, "profile_pics/") == {user.profile.avatar.name}


@pytest.mark.reliability("store-hung")
def test_a_refused_identity_document_the_store_writes_when_it_resumes_is_deleted(
    proxy_store, paused, own_store, store_options
):
    user = get_user_model().objects.create_user("dave", password="x-secret-1")
    documents = {kind: document_process(f) for kind, f in full_set().items()}
    paused()
    with pytest.raises(StorageUnavailable):
        verification_submit(user=user, documents=documents)
    _resume(own_store)
    assert _written_late(store_options, "private/")

    pending_deletions_retry()

    assert _stored(store_options, "private/") == set()


@pytest.mark.reliability("store-hung")
def test_documents_stored_before_the_store_froze_are_queued_and_deleted(
    proxy_store, paused, own_store, store_options, monkeypatch
):
    user = get_user_model().objects.create_user("erin", password="x-secret-1")
    documents = {kind: document_process(f) for kind, f in full_set().items()}
    save, names = MinIOStorage._save, []

    def freeze_before_the_third(self, name, content):
        names.append(name)
        if len(names) == 3:
            paused()  # two documents are stored; the rest fails
        return save(self, name, content)

    monkeypatch.setattr(MinIOStorage, "_save", freeze_before_the_third)
    with pytest.raises(StorageUnavailable):
        verification_submit(user=user, documents=documents)

    # The two the store confirmed could not be deleted either: queued, with
    # the third, which the store may still write.
    queued = set(PendingDeletion.objects.values_list("name", flat=True))
    assert len(queued) == 3 and all(n.startswith("private/") for n in queued)
    _resume(own_store)
    deadline = time.monotonic() + 20
    while names[2] not in _stored(store_options, "private/"):  # written late
        assert time.monotonic() < deadline, "the resumed store wrote nothing"
        time.sleep(0.1)
    pending_deletions_retry()

    assert _stored(store_options, "private/") == set()
    assert not PendingDeletion.objects.exists()
