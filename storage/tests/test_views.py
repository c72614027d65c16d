"""The media view: /media/ served by Django (development, MinIO proxy mode)."""

import io
import logging

import pytest
from django.core.files.base import ContentFile
from django.test import Client
from PIL import Image


@pytest.fixture
def media_client(settings):
    settings.MEDIA_SERVE = True
    return Client()


def png_bytes() -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (20, 20), (1, 2, 3)).save(buffer, "PNG")
    return buffer.getvalue()


@pytest.fixture
def proxy_storage(use_minio, settings, minio_options):
    settings.STORAGES = {
        **settings.STORAGES,
        "default": {
            "BACKEND": "storage.backends.MinIOStorage",
            "OPTIONS": {**minio_options, "url_mode": "proxy"},
        },
    }
    from django.core.files.storage import default_storage

    return default_storage


@pytest.fixture(params=["local", "proxy"])
def served_storage(request):
    if request.param == "proxy":
        return request.getfixturevalue("proxy_storage")
    from django.core.files.storage import default_storage

    return default_storage


def test_media_is_served_with_type_length_and_validators(media_client, served_storage):
    name = served_storage.save("token_logo/logo.png", ContentFile(png_bytes()))

    response = media_client.get(served_storage.url(name))

    assert response.status_code == 200
    assert b"".join(response.streaming_content) == png_bytes()
    assert response["Content-Type"] == "image/png"
    assert response["Content-Length"] == str(len(png_bytes()))
    assert response["ETag"]
    assert response["Last-Modified"]
    assert "immutable" in response["Cache-Control"]


def test_a_matching_etag_gets_304_without_a_body(media_client, served_storage):
    name = served_storage.save("token_logo/logo.png", ContentFile(png_bytes()))
    url = served_storage.url(name)
    etag = media_client.get(url)["ETag"]

    response = media_client.get(url, headers={"if-none-match": etag})

    assert response.status_code == 304
    assert response.content == b""


def test_a_missing_file_is_404(media_client, served_storage):
    assert media_client.get("/media/profile_pics/nobody.jpg").status_code == 404


def test_only_media_folders_are_served(media_client, served_storage):
    served_storage.save("private/notes.txt", ContentFile(b"secret"))

    assert media_client.get("/media/private/notes.txt").status_code == 404


def test_non_images_are_downloads_never_rendered(media_client, served_storage):
    name = served_storage.save(
        "profile_pics/page.html", ContentFile(b"<script>x</script>")
    )

    response = media_client.get(served_storage.url(name))

    assert response["Content-Disposition"] == "attachment"
    assert response["X-Content-Type-Options"] == "nosniff"


def test_a_storage_outage_is_a_503_not_a_500(media_client, settings, minio_options):
    settings.STORAGES = {
        **settings.STORAGES,
        "default": {
            "BACKEND": "storage.backends.MinIOStorage",
            "OPTIONS": {
                **minio_options,
                "endpoint": "127.0.0.1:9",
                "url_mode": "proxy",
                "max_retries": 0,
            },
        },
    }

    response = media_client.get("/media/profile_pics/a.jpg")

    assert response.status_code == 503


def test_nothing_is_served_when_media_serving_is_off(settings, served_storage):
    name = served_storage.save("token_logo/logo.png", ContentFile(png_bytes()))
    settings.MEDIA_SERVE = False

    assert Client().get(f"/media/{name}").status_code == 404


@pytest.mark.parametrize(
    "path",
    [
        "/media/profile_pics/../secret.txt",
        "/media/profile_pics/%2e%2e/secret.txt",
        "/media/profile_pics/%2E%2E/%2e%2e/secret.txt",
        "/media/token_logo/./../secret.txt",
    ],
)
def test_a_path_leaving_the_media_folders_is_404(media_client, served_storage, path):
    served_storage.save("secret.txt", ContentFile(b"secret"))

    response = media_client.get(path)

    assert response.status_code == 404
    assert b"secret" not in response.content


def test_a_path_is_normalised_before_it_is_served(media_client, served_storage):
    name = served_storage.save("token_logo/logo.png", ContentFile(png_bytes()))

    response = media_client.get(f"/media/token_logo/x/../{name.split('/')[-1]}")

    assert response.status_code == 200
    assert b"".join(response.streaming_content) == png_bytes()


@pytest.mark.parametrize(
    "path",
    [
        "/media/profile_pics/a%00.jpg",
        "/media/profile_pics/%00",
        "/media/profile_pics/" + "a" * 300 + ".jpg",
        "/media/profile_pics/" + "/".join(["a" * 200] * 3),
    ],
)
def test_hostile_names_are_404_without_a_storage_failure(
    media_client, served_storage, path, caplog
):
    with caplog.at_level(logging.INFO):
        response = media_client.get(path)

    assert response.status_code == 404
    assert not [r for r in caplog.records if r.getMessage() == "storage failure"]
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]


def test_the_default_avatar_is_cached_for_a_day_never_immutable(
    media_client, served_storage, put_exact
):
    put_exact(served_storage, "default_avatar.jpg", png_bytes())

    response = media_client.get("/media/default_avatar.jpg")
    revalidated = media_client.get(
        "/media/default_avatar.jpg", headers={"if-none-match": response["ETag"]}
    )

    assert response.status_code == 200
    assert revalidated.status_code == 304
    for answer in (response, revalidated):
        assert "immutable" not in answer["Cache-Control"]
        assert "max-age=86400" in answer["Cache-Control"]
