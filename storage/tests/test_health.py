import pytest
from django.test import Client

pytestmark = pytest.mark.django_db


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
        "checks": {"database": "ok", "cache": "ok", "object_store": "ok"},
    }


def test_readiness_names_an_unreachable_store_with_a_503(dead_storage):
    response = Client().get("/readyz/", headers={"accept": "text/html"})

    body = response.json()
    assert response.status_code == 503
    assert body["status"] == "unavailable"
    assert body["checks"]["database"] == "ok"
    assert "cannot connect" in body["checks"]["object_store"]


def test_readiness_names_a_missing_bucket(use_minio):
    response = Client().get("/readyz/")

    assert response.status_code == 503
    assert "does not exist" in response.json()["checks"]["object_store"]
