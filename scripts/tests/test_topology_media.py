"""Media handed to nginx (MEDIA_ACCEL_REDIRECT) in the loopback topology.

One gunicorn instance of this checkout with two workers, Debian's nginx with
deploy/nginx.conf's locations, and an S3 server of this module's own (it is
paused with SIGSTOP at the end; the session's server is never frozen). The
app checks each /media/ path and answers with an X-Accel-Redirect to a
presigned GET; nginx fetches the object from the store. Every request goes
through nginx, as a browser's would.
"""

from __future__ import annotations

import http.client
import io
import os
import signal
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import timedelta
from urllib.parse import quote, urlsplit

import pytest

from conftest import S3_ACCESS_KEY, S3_SECRET_KEY
from core.tests.processes import process_pause
from scripts import s3_server as s3_server_module
from scripts.topology import Topology, parse_key_values

pytestmark = pytest.mark.postgres

WORKERS = 2
IMMUTABLE = "public, max-age=31536000, immutable"
PNG = b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 40
PDF = b"%PDF-1.4 identity document"
LOGO = "token_logo/logo_AbCdEfGh123.png"
ODD_NAME = "profile_pics/a photo é+(1)_AbCdEfGh123.png"
PAGE = "profile_pics/page_AbCdEfGh123.html"
PRIVATE = "private/identity/passport_AbCdEfGh123.pdf"
# What deploy/nginx.conf puts on every answer it makes, the store's included.
SECURITY_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Content-Security-Policy": "default-src 'none'; frame-ancestors 'none'",
}


@dataclass
class Answer:
    status: int
    headers: http.client.HTTPMessage
    body: bytes


def fetch(topology: Topology, path: str, method: str = "GET", **headers) -> Answer:
    connection = http.client.HTTPConnection(
        "127.0.0.1", topology.nginx_port, timeout=60
    )
    try:
        connection.request(
            method,
            path,
            headers={
                "Host": "127.0.0.1",
                **{k.replace("_", "-"): v for k, v in headers.items()},
            },
        )
        answer = connection.getresponse()
        return Answer(answer.status, answer.headers, answer.read())
    finally:
        connection.close()


@pytest.fixture(scope="module")
def own_s3_server(tmp_path_factory):
    """An S3 server of this module's own: a test pauses it."""
    server = s3_server_module.start(
        access_key=S3_ACCESS_KEY,
        secret_key=S3_SECRET_KEY,
        data_dir=tmp_path_factory.mktemp("seaweedfs-media"),
    )
    try:
        yield server
    finally:
        os.kill(server.process.pid, signal.SIGCONT)
        server.stop()


@pytest.fixture(scope="module")
def topology(own_s3_server, postgres_url):
    with Topology(
        instances=1,
        workers=WORKERS,
        s3=own_s3_server,
        postgres_url=postgres_url,
        media_accel=True,
    ) as topology:
        client = topology.minio_client()
        # As MinIOStorage stores them: the type read from the content, the
        # immutable Cache-Control as metadata.
        for key, payload, content_type in (
            (LOGO, PNG, "image/png"),
            (ODD_NAME, PNG, "image/png"),
            (PAGE, b"<script>alert(1)</script>", "text/html"),
            (PRIVATE, PDF, "application/pdf"),
        ):
            client.put_object(
                bucket_name=topology.bucket,
                object_name=key,
                data=io.BytesIO(payload),
                length=len(payload),
                content_type=content_type,
                metadata={"Cache-Control": IMMUTABLE},
            )
        yield topology


def media_path(key: str) -> str:
    return "/media/" + quote(key)


def app_record(topology: Topology, request_id: str) -> dict[str, str] | None:
    for line in topology.instances[0].log_path.read_text().splitlines():
        if line.startswith("remote=") and f"rid={request_id} " in line:
            return parse_key_values(line)
    return None


def app_record_written(topology: Topology, request_id: str) -> dict[str, str]:
    """The app's access line, which gunicorn writes just after answering."""
    deadline = time.monotonic() + 10
    while (record := app_record(topology, request_id)) is None:
        assert time.monotonic() < deadline, f"no access line for rid={request_id}"
        time.sleep(0.05)
    return record


def nginx_line(topology: Topology, request_id: str) -> str:
    deadline = time.monotonic() + 10
    while True:
        lines = topology.nginx_access_log.read_text().splitlines()
        found = [
            line for line in lines if parse_key_values(line).get("rid") == request_id
        ]
        if found:
            return found[0]
        assert time.monotonic() < deadline, f"no nginx line for rid={request_id}"
        time.sleep(0.05)


def test_a_media_file_comes_from_the_store_through_nginx_not_from_the_app(
    topology, own_s3_server
):
    request_id = uuid.uuid4().hex
    stat = topology.minio_client().stat_object(
        bucket_name=topology.bucket, object_name=LOGO
    )

    answer = fetch(topology, media_path(LOGO), X_Request_ID=request_id)

    assert answer.status == 200
    assert answer.body == PNG
    assert answer.headers["Content-Type"] == "image/png"
    assert answer.headers["Content-Length"] == str(len(PNG))
    assert answer.headers.get_all("Cache-Control") == [IMMUTABLE]
    assert answer.headers["ETag"] == f'"{stat.etag}"'
    assert answer.headers["Last-Modified"]
    assert answer.headers["X-Content-Type-Options"] == "nosniff"
    assert "Content-Disposition" not in answer.headers
    assert "X-Amz-Request-Id" not in answer.headers
    # The app answered with an empty body; nginx then asked the store.
    app = app_record_written(topology, request_id)
    assert (app["status"], app["bytes"]) in {("200", "0"), ("200", "-")}
    assert f" : {own_s3_server.endpoint} " in nginx_line(topology, request_id)


@pytest.mark.parametrize(
    ("name", "value"),
    [
        # Read by the store too: what it checks the signature against.
        ("X-Forwarded-Host", "evil.example"),
        ("X-Forwarded-Proto", "https"),
        ("X-Forwarded-Port", "1"),
        ("X-Amz-Date", "20200101T000000Z"),
        ("X-Amz-Content-Sha256", "abc"),
        ("Authorization", "AWS4-HMAC-SHA256 Credential=x/20200101/us-east-1/s3"),
        # Dates the store cannot read (RFC 9110: ignored).
        ("If-Modified-Since", "garbage"),
        ("If-Modified-Since", "Sun, 6 Nov 1994 08:49:37 GMT"),
        ("If-Modified-Since", "Wed, 31 Apr 2024 08:49:37 GMT"),
        ("If-Modified-Since", "Sat, 29 Feb 2025 08:49:37 GMT"),
        ("If-Modified-Since", "Sun, 06 Nov 2094 24:00:00 GMT"),
        ("If-Unmodified-Since", "garbage"),
        ("If-Unmodified-Since", "Sunday, 06-Nov-94 08:49:37"),
    ],
)
def test_a_header_the_store_would_refuse_does_not_break_the_file(topology, name, value):
    answer = fetch(topology, media_path(LOGO), **{name.replace("-", "_"): value})

    assert answer.status == 200
    assert answer.body == PNG


def test_the_browsers_conditions_and_range_reach_the_store(topology):
    first = fetch(topology, media_path(LOGO))
    etag, last_modified = first.headers["ETag"], first.headers["Last-Modified"]
    before = "Sun, 06 Nov 1994 08:49:37 GMT"
    leap_day = "Sun, 29 Feb 2004 08:49:37 GMT"

    def status(**headers) -> int:
        return fetch(topology, media_path(LOGO), **headers).status

    assert status(If_Modified_Since=last_modified) == 304
    assert status(If_Modified_Since=before) == 200
    assert status(If_Unmodified_Since=before) == 412
    assert status(If_Unmodified_Since=leap_day) == 412
    assert status(If_Unmodified_Since=last_modified) == 200
    assert status(If_Match='"another"') == 412
    assert status(If_Match=etag) == 200
    # SeaweedFS answers a range whatever If-Range says (a replaced file has a
    # new key, so there is no other version to resume).
    assert status(Range="bytes=0-9", If_Range=etag) == 206


def test_every_media_answer_carries_the_security_headers(topology):
    answers = [
        fetch(topology, media_path(LOGO)),
        fetch(topology, media_path(PAGE)),
        fetch(topology, "/media/profile_pics/nobody_AbCdEfGh123.png"),
        fetch(topology, media_path(LOGO), Range=f"bytes={len(PNG) + 10}-"),
    ]

    assert [answer.status for answer in answers] == [200, 200, 404, 416]
    for answer in answers:
        for name, value in SECURITY_HEADERS.items():
            assert answer.headers.get_all(name) == [value], (answer.status, name)


def test_a_name_that_needs_quoting_is_served(topology):
    answer = fetch(topology, media_path(ODD_NAME))

    assert answer.status == 200
    assert answer.body == PNG


def test_a_matching_etag_gets_304(topology):
    etag = fetch(topology, media_path(LOGO)).headers["ETag"]

    answer = fetch(topology, media_path(LOGO), If_None_Match=etag)

    assert answer.status == 304
    assert answer.body == b""
    assert answer.headers["ETag"] == etag


def test_a_range_gets_206_with_those_bytes(topology):
    answer = fetch(topology, media_path(LOGO), Range="bytes=10-19")

    assert answer.status == 206
    assert answer.body == PNG[10:20]
    assert answer.headers["Content-Range"] == f"bytes 10-19/{len(PNG)}"


def test_head_gets_the_headers_without_the_body(topology):
    answer = fetch(topology, media_path(LOGO), method="HEAD")

    assert answer.status == 200
    assert answer.headers["Content-Length"] == str(len(PNG))
    assert answer.body == b""


def test_the_default_avatar_is_cached_for_a_day(topology):
    answer = fetch(topology, "/media/default_avatar.jpg")

    assert answer.status == 200
    assert answer.headers["Content-Type"] == "image/jpeg"
    assert answer.headers.get_all("Cache-Control") == ["public, max-age=86400"]


@pytest.mark.reliability("upload-served")
def test_anything_but_an_image_is_a_download(topology):
    answer = fetch(topology, media_path(PAGE))

    assert answer.status == 200
    assert answer.headers["Content-Disposition"] == "attachment"
    assert answer.headers["X-Content-Type-Options"] == "nosniff"


def test_a_missing_file_is_a_plain_404_that_names_no_bucket(topology):
    answer = fetch(topology, "/media/profile_pics/nobody_AbCdEfGh123.png")

    assert answer.status == 404
    assert answer.headers["Content-Type"] == "text/plain"
    assert b"<Error>" not in answer.body
    assert topology.bucket.encode() not in answer.body
    assert "Cache-Control" not in answer.headers


def test_an_unsatisfiable_range_is_a_plain_416(topology):
    answer = fetch(topology, media_path(LOGO), Range=f"bytes={len(PNG) + 10}-")

    assert answer.status == 416
    assert topology.bucket.encode() not in answer.body


@pytest.mark.reliability("private-documents")
def test_a_private_file_is_refused(topology):
    answer = fetch(topology, media_path(PRIVATE))

    assert answer.status == 404
    assert PDF not in answer.body


@pytest.mark.reliability("hostile-paths")
def test_the_store_location_is_not_reachable_from_outside(topology):
    # Even with a valid signature for the object.
    signed = urlsplit(
        topology.minio_client().presigned_get_object(
            bucket_name=topology.bucket,
            object_name=PRIVATE,
            expires=timedelta(minutes=5),
        )
    )
    for path in (
        f"/_media_store{signed.path}?{signed.query}",
        f"/%5Fmedia_store{signed.path}?{signed.query}",
        f"//_media_store{signed.path}",
    ):
        answer = fetch(topology, path)

        assert answer.status == 404, path
        assert PDF not in answer.body


@pytest.mark.reliability("store-hung")
def test_hung_store_holds_no_worker_while_media_requests_wait_on_it(
    topology, own_s3_server
):
    # Twice as many media requests as the instance has workers, all waiting
    # on the paused store at once: the app has answered every one, so pages
    # are still served, and each media request ends as a plain 503.
    request_ids = [uuid.uuid4().hex for _ in range(2 * WORKERS)]
    process_pause(own_s3_server.process.pid)
    try:
        with ThreadPoolExecutor(len(request_ids)) as pool:
            waiting = [
                pool.submit(fetch, topology, media_path(LOGO), X_Request_ID=rid)
                for rid in request_ids
            ]
            deadline = time.monotonic() + 30
            while not all(app_record(topology, rid) for rid in request_ids):
                assert time.monotonic() < deadline, "the app did not answer them"
                time.sleep(0.1)
            assert not any(future.done() for future in waiting)

            page = fetch(topology, "/tokens/")
            health = fetch(topology, "/healthz/")

            assert not all(future.done() for future in waiting)
            answers = [future.result() for future in waiting]
    finally:
        os.kill(own_s3_server.process.pid, signal.SIGCONT)

    assert page.status == 200
    assert health.status == 200
    for answer in answers:
        assert answer.status == 503
        assert answer.headers["Retry-After"]
        assert answer.headers.get_all("Cache-Control") == ["no-store"]
        assert topology.bucket.encode() not in answer.body
        for name, value in SECURITY_HEADERS.items():
            assert answer.headers.get_all(name) == [value]
    assert fetch(topology, media_path(LOGO)).body == PNG
