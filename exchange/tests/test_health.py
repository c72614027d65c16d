import http.server
import threading

import pytest
from django.test import Client

from conftest import S3_ACCESS_KEY, S3_SECRET_KEY, storages_setting

pytestmark = pytest.mark.django_db


@pytest.mark.reliability("probes")
def test_liveness_touches_nothing_and_answers(django_assert_num_queries, dead_storage):
    with django_assert_num_queries(0):
        response = Client().get("/healthz/")

    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


def test_readiness_is_ok_when_database_cache_and_store_answer(use_minio):
    from django.core.files.base import ContentFile

    use_minio.save("profile_pics/x.txt", ContentFile(b"x"))  # creates the bucket

    response = Client().get("/readyz/")

    assert response.status_code == 200
    assert response.json() == {
        "status": "ok",
        "checks": {
            "database": "ok",
            "cache": "ok",
            "object_store": "ok",
            "matcher_queues": "ok",
        },
    }


def failing_reasons(caplog) -> dict[str, str]:
    """Why each check failed, as logged (the answer does not say)."""
    return {
        record.check: record.reason
        for record in caplog.records
        if record.getMessage() == "readiness check failing"
    }


@pytest.mark.reliability("probes")
def test_readiness_says_which_check_fails_with_a_503_and_logs_why(dead_storage, caplog):
    response = Client().get("/readyz/", headers={"accept": "text/html"})

    body = response.json()
    assert response.status_code == 503
    assert body["status"] == "unavailable"
    assert body["checks"]["database"] == "ok"
    assert body["checks"]["object_store"] == "failing"
    assert set(body["checks"].values()) <= {"ok", "failing"}
    assert "cannot connect" in failing_reasons(caplog)["object_store"]


@pytest.mark.reliability("probes")
def test_readiness_does_not_name_a_missing_bucket_but_logs_it(
    use_minio, bucket_name, caplog
):
    response = Client().get("/readyz/")

    assert response.status_code == 503
    assert response.json()["checks"]["object_store"] == "failing"
    assert bucket_name not in response.content.decode()
    reason = failing_reasons(caplog)["object_store"]
    assert bucket_name in reason and "does not exist" in reason


class _WebPage(http.server.BaseHTTPRequestHandler):
    """Not an S3 API: a page and 200 to every request, as the port of MinIO's
    console answers."""

    def do_GET(self, body: bool = True):
        page = b"<!doctype html><html><body>MinIO Console</body></html>"
        self.send_response(200)
        self.send_header("Content-Type", "text/html")
        self.send_header("Content-Length", str(len(page)))
        self.end_headers()
        if body:
            self.wfile.write(page)

    def do_HEAD(self):
        self.do_GET(body=False)

    def log_message(self, *args):
        pass


@pytest.fixture
def console_storage(settings):
    """MinIOStorage whose MINIO_ENDPOINT is a web server, not an S3 API."""
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _WebPage)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    settings.USE_MINIO = True
    settings.STORAGES = storages_setting(
        {
            "BACKEND": "storage.backends.MinIOStorage",
            "OPTIONS": {
                "endpoint": f"127.0.0.1:{server.server_address[1]}",
                "access_key": S3_ACCESS_KEY,
                "secret_key": S3_SECRET_KEY,
                "bucket_name": "crypto-exchange",
                "use_ssl": False,
                "max_retries": 0,
            },
        }
    )
    yield
    server.shutdown()
    server.server_close()


def test_readiness_fails_when_the_endpoint_is_a_web_server_not_an_s3_api(
    console_storage, caplog
):
    response = Client().get("/readyz/")

    assert response.status_code == 503
    assert response.json()["checks"]["object_store"] == "failing"
    assert "does not look like an S3 API" in failing_reasons(caplog)["object_store"]
