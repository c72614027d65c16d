"""MinIOStorage against the real S3 server of the test run.

Faults that a running server cannot be made to produce on demand (a port
that refuses connections, a server that never answers, one that answers
503) are real sockets opened here, not mocks of the client.
"""

import http.server
import io
import socket
import threading
import time
import urllib.error
import urllib.request
from urllib.parse import urlsplit

import pytest
from django.core.exceptions import ImproperlyConfigured, SuspiciousFileOperation
from django.core.files.base import ContentFile, File
from django.core.files.uploadedfile import SimpleUploadedFile

from storage.backends import MinIOStorage, normalize_key
from storage.exceptions import StorageUnavailable
from storage.tests.conftest import CONSOLE_PAGE
from tests.factories import image_bytes

PNG = image_bytes("PNG", (8, 8), (10, 20, 30))


class RequestLog(list):
    def methods(self) -> list[str]:
        return [method for method, _ in self]


@pytest.fixture
def requests_of(monkeypatch):
    """Record every HTTP request a storage's client sends (they still go out)."""

    def spy(storage: MinIOStorage) -> RequestLog:
        log = RequestLog()
        http = storage.client._http
        real_urlopen = http.urlopen

        def urlopen(method, url, *args, **kwargs):
            log.append((method, url))
            return real_urlopen(method, url, *args, **kwargs)

        monkeypatch.setattr(http, "urlopen", urlopen)
        return log

    return spy


# --- construction and configuration -------------------------------------------


@pytest.mark.reliability("store-refused")
def test_constructing_and_url_contact_nothing(requests_of):
    storage = MinIOStorage(
        endpoint="127.0.0.1:1", access_key="a", secret_key="b", bucket_name="nowhere"
    )
    log = requests_of(storage)

    assert storage.url("profile_pics/x.jpg") == (
        "http://127.0.0.1:1/nowhere/profile_pics/x.jpg"
    )
    assert log == []


def test_storage_deconstructs_to_its_import_path_and_options(minio_options):
    path, args, kwargs = MinIOStorage(**minio_options).deconstruct()

    assert path == "storage.backends.MinIOStorage"
    assert args == ()
    assert kwargs == minio_options


@pytest.mark.parametrize(
    ("options", "named"),
    [
        ({"endpoint": "http://localhost:9000"}, "endpoint"),
        ({"bucket_name": "Bad_Bucket"}, "bucket_name"),
        ({"url_mode": "cdn"}, "url_mode"),
        ({"public_url": "media.example.com"}, "public_url"),
        ({"deadline": 0}, "deadline"),
        ({"deadline": 25}, "deadline"),
        ({"connect_timeout": -1}, "connect_timeout"),
        ({"read_timeout": 0}, "read_timeout"),
        ({"max_retries": -3}, "max_retries"),
        (
            {"url_mode": "presigned", "public_url": "https://cdn.example.com/sub"},
            "public_url",
        ),
    ],
)
def test_malformed_options_are_refused_naming_the_option(minio_options, options, named):
    with pytest.raises(ImproperlyConfigured, match=named):
        MinIOStorage(**{**minio_options, **options})


def test_missing_setting_is_refused_naming_the_variable(settings):
    settings.MINIO_ACCESS_KEY = ""

    with pytest.raises(ImproperlyConfigured, match="MINIO_ACCESS_KEY"):
        MinIOStorage()


def test_one_client_per_process_for_the_same_configuration(minio_options):
    assert MinIOStorage(**minio_options).client is MinIOStorage(**minio_options).client


# --- requests per operation -----------------------------------------------------


def test_save_is_exactly_one_put(storage, requests_of):
    storage.save("profile_pics/warm.txt", ContentFile(b"creates the bucket"))
    log = requests_of(storage)

    storage.save("profile_pics/one.txt", ContentFile(b"x" * 20_000))

    assert log.methods() == ["PUT"]


def test_open_and_read_is_one_get_and_exists_one_head(storage, requests_of):
    name = storage.save("profile_pics/r.txt", ContentFile(b"payload"))
    log = requests_of(storage)

    with storage.open(name) as stored:
        assert stored.read() == b"payload"
    assert log.methods() == ["GET"]

    log.clear()
    assert storage.exists(name)
    assert log.methods() == ["HEAD"]


def test_url_makes_no_request_in_any_mode(minio_options, requests_of):
    for mode in ("public", "presigned", "proxy"):
        storage = MinIOStorage(**{**minio_options, "url_mode": mode})
        log = requests_of(storage)
        storage.url("profile_pics/a.jpg")
        assert log == [], mode


def test_large_file_is_uploaded_in_parts(storage, requests_of):
    storage.save("profile_pics/warm.txt", ContentFile(b"creates the bucket"))
    payload = bytes(range(256)) * (12 * 1024 * 4)  # 12 MiB
    log = requests_of(storage)

    name = storage.save("token_logo/big.bin", ContentFile(payload))

    # initiate, two or more part PUTs, complete
    assert log.methods()[0] == "POST" and log.methods()[-1] == "POST"
    assert log.methods().count("PUT") >= 2
    assert storage.size(name) == len(payload)
    assert storage.open(name).read() == payload


# --- objects as stored --------------------------------------------------------


@pytest.mark.reliability("upload-types")
def test_content_type_follows_the_content_not_the_name(storage, s3_client):
    name = storage.save("token_logo/looks-like.jpg", ContentFile(PNG))
    stat = s3_client.stat_object(bucket_name=storage.bucket_name, object_name=name)

    assert stat.content_type == "image/png"
    assert stat.metadata["Cache-Control"] == "public, max-age=31536000, immutable"


@pytest.mark.reliability("upload-types")
def test_a_non_image_named_jpg_is_not_stored_as_an_image(storage, s3_client):
    name = storage.save("profile_pics/fake.jpg", ContentFile(b"just text"))
    stat = s3_client.stat_object(bucket_name=storage.bucket_name, object_name=name)

    assert stat.content_type == "binary/octet-stream"


def test_keys_are_the_media_relative_paths(storage, s3_client):
    name = storage.save("profile_pics\\win\\pic.txt", ContentFile(b"x"))

    assert name.startswith("profile_pics/win/pic")
    keys = [
        obj.object_name
        for obj in s3_client.list_objects(
            bucket_name=storage.bucket_name, recursive=True
        )
    ]
    assert keys == [name]


@pytest.mark.parametrize(
    ("name", "key"),
    [
        ("profile_pics//./a.jpg", "profile_pics/a.jpg"),
        ("token_logo\\b.png", "token_logo/b.png"),
    ],
)
def test_keys_are_normalised(name, key):
    assert normalize_key(name) == key


def test_open_streams_without_reading_the_whole_object(storage):
    name = storage.save("token_logo/stream.bin", ContentFile(b"a" * 3_000_000))

    stored = storage.open(name)
    try:
        assert stored.read(10) == b"a" * 10
        # Most of the body is still on the wire, not in a buffer of ours.
        assert stored.file.tell() == 10
        assert not stored.content_type.startswith("image/")
        assert stored.etag
    finally:
        stored.close()


# --- bucket creation and concurrency ----------------------------------------------


def test_first_save_creates_the_missing_bucket(storage, s3_client):
    assert not s3_client.bucket_exists(bucket_name=storage.bucket_name)

    storage.save("profile_pics/first.txt", ContentFile(b"x"))

    assert s3_client.bucket_exists(bucket_name=storage.bucket_name)


@pytest.mark.reliability("race-uploads")
def test_concurrent_first_saves_all_succeed_and_never_collide(minio_options):
    # Eight "app servers" (separate storage objects) save the same name into
    # a bucket that does not exist yet, released together.
    storages = [MinIOStorage(**minio_options) for _ in range(8)]
    barrier = threading.Barrier(len(storages))
    names, errors = [], []

    def upload(storage, index):
        barrier.wait()
        try:
            names.append(
                storage.save("profile_pics/avatar.jpg", ContentFile(b"%d" % index))
            )
        except Exception as exc:
            errors.append(exc)

    threads = [
        threading.Thread(target=upload, args=(s, i)) for i, s in enumerate(storages)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert errors == []
    assert len(set(names)) == 8
    contents = {storages[0].open(name).read() for name in names}
    assert contents == {b"%d" % i for i in range(8)}


def test_public_bucket_created_by_the_storage_serves_media_anonymously(storage):
    name = storage.save("token_logo/pub.png", ContentFile(PNG))

    with urllib.request.urlopen(storage.url(name)) as response:
        assert response.status == 200
        assert response.headers["Content-Type"] == "image/png"
    with pytest.raises(urllib.error.HTTPError) as listing:
        urllib.request.urlopen(f"{storage.public_url}/{storage.bucket_name}/")
    assert listing.value.code == 403


# --- URLs -------------------------------------------------------------------------


def test_public_url_uses_the_public_base(minio_options):
    storage = MinIOStorage(**minio_options, public_url="https://media.example.com/")

    assert storage.url("profile_pics/a b.jpg") == (
        f"https://media.example.com/{storage.bucket_name}/profile_pics/a%20b.jpg"
    )


def test_presigned_url_is_signed_for_the_public_host(minio_options, s3_server):
    # The app reaches the server as 127.0.0.1, browsers as localhost: both
    # are the same real server, so the signature can be checked for real.
    port = s3_server.endpoint.rsplit(":", 1)[1]
    storage = MinIOStorage(
        **{**minio_options, "url_mode": "presigned"},
        public_url=f"http://localhost:{port}",
    )
    name = storage.save("profile_pics/private.png", ContentFile(PNG))

    url = storage.url(name)
    assert urlsplit(url).netloc == f"localhost:{port}"
    with urllib.request.urlopen(url) as response:
        assert response.read() == PNG

    wrong_host = url.replace(f"localhost:{port}", s3_server.endpoint)
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(wrong_host)
    assert refused.value.code == 403


def test_presigned_urls_are_stable_for_a_while_for_browser_caching(minio_options):
    storage = MinIOStorage(**{**minio_options, "url_mode": "presigned"})

    assert storage.url("profile_pics/a.jpg") == storage.url("profile_pics/a.jpg")


@pytest.mark.reliability("private-documents")
def test_presigned_bucket_is_private(minio_options):
    storage = MinIOStorage(**{**minio_options, "url_mode": "presigned"})
    name = storage.save("profile_pics/secret.png", ContentFile(PNG))

    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(f"{storage.public_url}/{storage.bucket_name}/{name}")
    assert refused.value.code == 403


def test_proxy_url_is_under_media_url(minio_options):
    storage = MinIOStorage(**{**minio_options, "url_mode": "proxy"})

    assert storage.url("token_logo/a.png") == "/media/token_logo/a.png"


# --- failures -----------------------------------------------------------------


def _unused_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.mark.reliability("store-refused")
def test_refused_connection_is_storage_unavailable_naming_what_to_check(minio_options):
    storage = MinIOStorage(
        **{**minio_options, "endpoint": f"127.0.0.1:{_unused_port()}"}
    )

    with pytest.raises(StorageUnavailable) as failure:
        storage.save("profile_pics/x.txt", ContentFile(b"x"))

    message = str(failure.value)
    assert "cannot connect" in message
    assert "MINIO_ENDPOINT" in message
    assert failure.value.operation == "save"


@pytest.mark.reliability("store-errors")
def test_wrong_credentials_are_storage_unavailable_naming_the_keys(minio_options):
    storage = MinIOStorage(**{**minio_options, "secret_key": "not-the-secret"})

    with pytest.raises(StorageUnavailable, match="MINIO_SECRET_KEY"):
        storage.exists("profile_pics/x.txt")


@pytest.fixture
def silent_server():
    """A server that accepts connections and never answers."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(16)
    yield f"127.0.0.1:{listener.getsockname()[1]}"
    listener.close()


@pytest.mark.reliability("store-errors")
def test_a_server_that_never_answers_fails_fast(minio_options, silent_server):
    storage = MinIOStorage(
        **{**minio_options, "endpoint": silent_server},
        read_timeout=0.3,
        max_retries=1,
    )

    started = time.monotonic()
    with pytest.raises(StorageUnavailable):
        storage.exists("profile_pics/x.txt")
    # Bounded by timeout x attempts, not the client's default of minutes.
    assert time.monotonic() - started < 10


class _Always503(http.server.BaseHTTPRequestHandler):
    def _answer(self):
        self.send_response(503)
        self.send_header("Content-Length", "0")
        self.end_headers()

    do_GET = do_PUT = do_HEAD = do_POST = do_DELETE = _answer

    def log_message(self, *args):
        pass


@pytest.fixture
def failing_server():
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Always503)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


@pytest.mark.reliability("store-errors")
def test_server_errors_are_storage_unavailable_after_bounded_retries(
    minio_options, failing_server
):
    storage = MinIOStorage(
        **{**minio_options, "endpoint": failing_server}, max_retries=2
    )

    with pytest.raises(StorageUnavailable, match="5xx"):
        storage.save("profile_pics/x.txt", ContentFile(b"x"))


@pytest.mark.parametrize(
    "answer",
    [
        (200, CONSOLE_PAGE, "text/html"),  # XML enough, none of S3's elements
        (200, b"Welcome", "text/plain"),  # not XML
        (200, b"\xff\xfe\x00\x9c", "application/octet-stream"),  # not text
        (404, CONSOLE_PAGE, "text/html"),  # an error page instead of S3's
    ],
    ids=["console-page", "text", "binary", "404-page"],
)
@pytest.mark.reliability("store-errors")
def test_an_endpoint_that_is_not_an_s3_api_is_unavailable_saying_so(
    minio_options, web_server, answer
):
    storage = MinIOStorage(
        **{**minio_options, "endpoint": web_server(*answer)}, max_retries=0
    )

    with pytest.raises(StorageUnavailable) as refused:
        storage.listdir("profile_pics")

    assert "the endpoint does not look like an S3 API" in str(refused.value)
    assert "MINIO_ENDPOINT" in str(refused.value)


@pytest.mark.reliability("store-errors")
def test_retries_stop_at_the_deadline(minio_options, failing_server):
    # Fifty retries with backoff would take most of a minute.
    storage = MinIOStorage(
        **{**minio_options, "endpoint": failing_server}, max_retries=50, deadline=1
    )

    started = time.monotonic()
    with pytest.raises(StorageUnavailable, match="5xx"):
        storage.exists("profile_pics/x.txt")
    assert time.monotonic() - started < 5


@pytest.mark.reliability("store-errors")
def test_exists_raises_on_failures_instead_of_answering_false(minio_options):
    storage = MinIOStorage(
        **{**minio_options, "endpoint": f"127.0.0.1:{_unused_port()}"}
    )

    with pytest.raises(StorageUnavailable):
        storage.exists("profile_pics/x.txt")


@pytest.mark.parametrize("mode", ["w", "wb", "ab", "r+", "rb+", "x"])
def test_opening_for_writing_is_refused_before_any_request(storage, requests_of, mode):
    log = requests_of(storage)

    with pytest.raises(ValueError, match=r"reading only.*Use save\(\)"):
        storage.open("profile_pics/x.txt", mode)
    assert log == []


# --- reading: one GET, seeking without requests ------------------------------


def test_rereading_a_small_file_sends_no_second_request(storage, requests_of):
    name = storage.save("profile_pics/small.txt", ContentFile(b"0123456789" * 100))
    log = requests_of(storage)

    with storage.open(name) as opened:
        assert opened.read() == b"0123456789" * 100
        opened.seek(0)
        assert next(opened.chunks(chunk_size=300)) == b"0123456789" * 30
        with opened.open() as again:
            assert again.read(5) == b"01234"

    assert log.methods() == ["GET"]


def test_measuring_by_seeking_to_the_end_sends_no_request(storage, requests_of):
    # What FileResponse does before streaming a file.
    name = storage.save("profile_pics/measure.txt", ContentFile(b"x" * 1000))
    log = requests_of(storage)

    with storage.open(name) as opened:
        opened.seek(0, 2)
        assert opened.tell() == 1000
        opened.seek(0)
        assert opened.read() == b"x" * 1000

    assert log.methods() == ["GET"]


def test_seeking_back_far_in_a_large_file_asks_for_a_range(storage, requests_of):
    payload = bytes(range(256)) * 4096  # 1 MiB, more than is kept for rewinding
    name = storage.save("token_logo/large.bin", ContentFile(payload))
    log = requests_of(storage)

    with storage.open(name) as opened:
        assert opened.read() == payload
        opened.seek(600_000)
        assert opened.read(100) == payload[600_000:600_100]
        opened.seek(10)
        assert opened.read(10) == payload[10:20]  # kept: no request

    assert log.methods() == ["GET", "GET"]


# --- saving: one PUT whatever the content -------------------------------------


@pytest.mark.parametrize(
    "content",
    [
        lambda: ContentFile("text, encoded on the way"),
        lambda: io.BufferedReader(io.BytesIO(b"a stream")),
        lambda: File(urllib.request.urlopen("data:,unknown%20length")),
    ],
    ids=["text", "buffered", "unknown length"],
)
def test_save_of_any_small_content_is_one_put(storage, requests_of, content):
    storage.save("profile_pics/warm.txt", ContentFile(b"creates the bucket"))
    log = requests_of(storage)

    storage.save("profile_pics/one.txt", content())

    assert log.methods() == ["PUT"]


def test_a_long_stream_of_unknown_length_is_uploaded_in_parts(storage, requests_of):
    storage.save("profile_pics/warm.txt", ContentFile(b"creates the bucket"))
    payload = bytes(range(256)) * (11 * 4096)

    class ForwardOnly(io.RawIOBase):
        def __init__(self):
            self.rest = memoryview(payload)

        def readable(self):
            return True

        def readinto(self, buffer):
            count = min(len(buffer), len(self.rest))
            buffer[:count] = self.rest[:count]
            self.rest = self.rest[count:]
            return count

    log = requests_of(storage)
    name = storage.save("token_logo/long.bin", ForwardOnly())

    assert log.methods() == ["POST", "PUT", "PUT", "POST"]
    assert storage.open(name).read() == payload


@pytest.mark.reliability("upload-types")
def test_an_uploads_own_content_type_is_not_used(storage, s3_client):
    declared_html = SimpleUploadedFile("a.txt", b"<script>", content_type="text/html")
    declared_jpeg = SimpleUploadedFile("b.png", PNG, content_type="image/jpeg")

    types = [
        s3_client.stat_object(
            bucket_name=storage.bucket_name, object_name=storage.save(name, upload)
        ).content_type
        for name, upload in [
            ("profile_pics/a.txt", declared_html),
            ("profile_pics/b.png", declared_jpeg),
        ]
    ]

    assert types == ["text/plain", "image/png"]


@pytest.mark.parametrize("content", [b"raw bytes", "a str", 42])
def test_content_that_is_not_a_file_is_a_type_error(storage, requests_of, content):
    log = requests_of(storage)

    with pytest.raises(TypeError, match="ContentFile"):
        storage.save("profile_pics/x.txt", content)
    assert log == []


@pytest.mark.parametrize(
    "name",
    [
        "profile_pics/" + "a" * 256,
        "/".join(["d" * 200] * 6) + "/x.txt",
        "profile_pics/" + "é" * 128,
    ],
)
def test_a_name_too_long_for_the_store_is_refused_before_any_request(
    storage, requests_of, name
):
    log = requests_of(storage)

    with pytest.raises(SuspiciousFileOperation, match="too long for object storage"):
        storage._save(name, ContentFile(b"x"))
    assert storage.exists(name) is False
    with pytest.raises(FileNotFoundError):
        storage.open(name)
    assert log == []


def test_the_longest_names_the_store_takes_are_saved(storage):
    for name in [
        "profile_pics/" + "a" * 255,
        "/".join(["d" * 200] * 5) + "/" + "x" * 19,
    ]:
        assert len(name.encode()) <= 1024
        storage._save(name, ContentFile(b"x"))
        assert storage.open(name).read() == b"x"


# --- settings -----------------------------------------------------------------


def test_options_from_settings_follow_a_settings_change(settings, minio_options):
    settings.MINIO_ENDPOINT = minio_options["endpoint"]
    settings.MINIO_ACCESS_KEY = minio_options["access_key"]
    settings.MINIO_SECRET_KEY = minio_options["secret_key"]
    settings.MINIO_BUCKET_NAME = "first-bucket"
    follows = MinIOStorage()
    explicit = MinIOStorage(bucket_name="explicit-bucket")

    settings.MINIO_BUCKET_NAME = "second-bucket"
    settings.MINIO_MEDIA_URL_MODE = "proxy"

    assert follows.bucket_name == "second-bucket"
    assert follows.url("a.png") == "/media/a.png"
    assert explicit.bucket_name == "explicit-bucket"


def test_a_file_object_saved_twice_is_rewound(storage):
    content = File(io.BytesIO(b"rewind me"), name="r.txt")
    content.read()

    name = storage.save("profile_pics/r.txt", content)

    assert storage.open(name).read() == b"rewind me"


@pytest.mark.parametrize("mode", ["public", "proxy", "presigned"])
@pytest.mark.reliability("hostile-paths")
def test_url_refuses_traversal_every_time(minio_options, mode):
    storage = MinIOStorage(**{**minio_options, "url_mode": mode})

    for _ in range(2):  # the second call must not come from a cache
        with pytest.raises(SuspiciousFileOperation):
            storage.url("profile_pics/../../secret")
