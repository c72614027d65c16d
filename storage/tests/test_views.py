"""The media view: /media/ served by Django (development, MinIO proxy mode)."""

import http.client
import logging
from urllib.parse import parse_qs, urlsplit

import pytest
from django.core.exceptions import ImproperlyConfigured
from django.core.files.base import ContentFile
from django.test import Client

from storage.config import validate_accel_redirect
from tests.factories import image_bytes

PNG = image_bytes("PNG", (20, 20), (1, 2, 3))


@pytest.fixture
def media_client(settings):
    settings.MEDIA_SERVE = True
    return Client()


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
    name = served_storage.save("token_logo/logo.png", ContentFile(PNG))

    response = media_client.get(served_storage.url(name))

    assert response.status_code == 200
    assert b"".join(response.streaming_content) == PNG
    assert response["Content-Type"] == "image/png"
    assert response["Content-Length"] == str(len(PNG))
    assert response["ETag"]
    assert response["Last-Modified"]
    assert "immutable" in response["Cache-Control"]


def test_a_matching_etag_gets_304_without_a_body(media_client, served_storage):
    name = served_storage.save("token_logo/logo.png", ContentFile(PNG))
    url = served_storage.url(name)
    etag = media_client.get(url)["ETag"]

    response = media_client.get(url, headers={"if-none-match": etag})

    assert response.status_code == 304
    assert response.content == b""
    assert response["ETag"] == etag


def test_a_missing_file_is_404(media_client, served_storage):
    assert media_client.get("/media/profile_pics/nobody.jpg").status_code == 404


@pytest.mark.parametrize(
    "precondition",
    [
        {"if-match": '"nope"'},
        {"if-unmodified-since": "Sat, 01 Jan 2000 00:00:00 GMT"},
    ],
)
def test_a_failed_precondition_is_a_412_no_cache_may_keep(
    media_client, served_storage, precondition
):
    name = served_storage.save("token_logo/logo.png", ContentFile(PNG))

    response = media_client.get(served_storage.url(name), headers=precondition)

    assert response.status_code == 412
    assert "max-age" not in response.get("Cache-Control", "")
    assert "immutable" not in response.get("Cache-Control", "")
    assert not response.has_header("ETag")


@pytest.mark.parametrize("method", ["get", "head"])
def test_a_path_continuing_past_a_file_is_404(media_client, served_storage, method):
    name = served_storage.save("profile_pics/a.jpg", ContentFile(PNG))

    response = getattr(media_client, method)(f"/media/{name}/x")

    assert response.status_code == 404


def test_a_link_loop_on_local_disk_is_404(media_client, media_root):
    folder = media_root / "profile_pics"
    folder.mkdir()
    (folder / "loop.jpg").symlink_to("loop.jpg")

    assert media_client.get("/media/profile_pics/loop.jpg").status_code == 404


@pytest.mark.reliability("hostile-paths")
def test_only_media_folders_are_served(media_client, served_storage):
    served_storage.save("private/notes.txt", ContentFile(b"secret"))

    assert media_client.get("/media/private/notes.txt").status_code == 404


@pytest.mark.reliability("upload-served")
def test_non_images_are_downloads_never_rendered(media_client, served_storage):
    name = served_storage.save(
        "profile_pics/page.html", ContentFile(b"<script>x</script>")
    )

    response = media_client.get(served_storage.url(name))

    assert response["Content-Disposition"] == "attachment"
    assert response["X-Content-Type-Options"] == "nosniff"


@pytest.mark.reliability("store-refused")
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
    name = served_storage.save("token_logo/logo.png", ContentFile(PNG))
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
@pytest.mark.reliability("hostile-paths")
def test_a_path_leaving_the_media_folders_is_404(media_client, served_storage, path):
    served_storage.save("secret.txt", ContentFile(b"secret"))

    response = media_client.get(path)

    assert response.status_code == 404
    assert b"secret" not in response.content


@pytest.mark.reliability("hostile-paths")
def test_a_path_is_normalised_before_it_is_served(media_client, served_storage):
    name = served_storage.save("token_logo/logo.png", ContentFile(PNG))

    response = media_client.get(f"/media/token_logo/x/../{name.split('/')[-1]}")

    assert response.status_code == 200
    assert b"".join(response.streaming_content) == PNG


@pytest.mark.parametrize(
    "path",
    [
        "/media/profile_pics/a%00.jpg",
        "/media/profile_pics/%00",
        "/media/profile_pics/" + "a" * 300 + ".jpg",
        "/media/profile_pics/" + "/".join(["a" * 200] * 3),
    ],
)
@pytest.mark.reliability("hostile-paths")
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
    put_exact(served_storage, "default_avatar.jpg", PNG)

    response = media_client.get("/media/default_avatar.jpg")
    revalidated = media_client.get(
        "/media/default_avatar.jpg", headers={"if-none-match": response["ETag"]}
    )

    assert response.status_code == 200
    assert revalidated.status_code == 304
    for answer in (response, revalidated):
        assert "immutable" not in answer["Cache-Control"]
        assert "max-age=86400" in answer["Cache-Control"]


# --- MEDIA_ACCEL_REDIRECT: nginx fetches the object (scripts/tests has the
# end-to-end tests through a real nginx) ---

ACCEL = "/_media_store/"


@pytest.fixture
def accel_storage(proxy_storage, settings):
    settings.MEDIA_ACCEL_REDIRECT = ACCEL
    return proxy_storage


def store_fetch(response, s3_server, method: str = "GET"):
    """Ask the S3 server what nginx would ask it: the redirect's path and
    signed query, sent to the endpoint the URL was signed for."""
    target = response["X-Accel-Redirect"]
    assert target.startswith(ACCEL)
    connection = http.client.HTTPConnection(s3_server.endpoint, timeout=10)
    try:
        connection.request(method, "/" + target[len(ACCEL) :])
        answer = connection.getresponse()
        return answer.status, dict(answer.headers), answer.read()
    finally:
        connection.close()


def test_nginx_is_handed_a_signed_get_and_the_store_answers_it_with_the_app_headers(
    media_client, accel_storage, s3_server
):
    name = accel_storage.save("token_logo/logo.png", ContentFile(PNG))

    response = media_client.get(accel_storage.url(name))
    status, headers, body = store_fetch(response, s3_server)

    assert response.status_code == 200
    assert response.content == b""
    signed = parse_qs(urlsplit(response["X-Accel-Redirect"]).query)
    assert signed["X-Amz-Expires"] == ["60"]
    assert status == 200
    assert body == PNG
    assert headers["Content-Type"] == "image/png"
    assert headers["Cache-Control"] == "public, max-age=31536000, immutable"


def test_nginx_keeps_no_header_of_the_redirect_answer_for_its_error_pages(
    media_client, accel_storage, django_user_model
):
    # nginx carries Content-Type, Cache-Control and Content-Disposition over
    # the redirect, onto a 404 or 503 page too. A signed-in request, whose
    # answers otherwise get "private, no-store", included.
    name = accel_storage.save("token_logo/logo.png", ContentFile(PNG))
    media_client.force_login(django_user_model.objects.create_user("alice"))

    response = media_client.get(accel_storage.url(name))

    assert response.status_code == 200
    for header in ("Content-Type", "Cache-Control", "Content-Disposition"):
        assert header not in response


def test_the_default_avatar_is_handed_over_with_its_day_of_caching(
    media_client, accel_storage, s3_server, put_exact
):
    put_exact(accel_storage, "default_avatar.jpg", PNG)

    response = media_client.get("/media/default_avatar.jpg")
    status, headers, _ = store_fetch(response, s3_server)

    assert status == 200
    assert headers["Cache-Control"] == "public, max-age=86400"


def test_a_head_request_is_signed_for_head_only(media_client, accel_storage, s3_server):
    name = accel_storage.save("token_logo/logo.png", ContentFile(PNG))

    response = media_client.head(accel_storage.url(name))

    assert store_fetch(response, s3_server, "HEAD")[0] == 200
    assert store_fetch(response, s3_server, "GET")[0] == 403


def test_handing_over_makes_no_request_to_the_store(
    media_client, settings, minio_options
):
    settings.MEDIA_ACCEL_REDIRECT = ACCEL
    settings.STORAGES = {
        **settings.STORAGES,
        "default": {
            "BACKEND": "storage.backends.MinIOStorage",
            "OPTIONS": {
                **minio_options,
                "endpoint": "127.0.0.1:9",  # nothing listens
                "url_mode": "proxy",
                "max_retries": 0,
            },
        },
    }

    response = media_client.get("/media/profile_pics/a.jpg")

    assert response.status_code == 200
    assert response["X-Accel-Redirect"].startswith(
        f"{ACCEL}{minio_options['bucket_name']}/profile_pics/a.jpg?"
    )


@pytest.mark.parametrize(
    "path",
    [
        "/media/private/identity/passport.pdf",
        "/media/profile_pics/../private/identity/passport.pdf",
        "/media/secret.txt",
        "/media/profile_pics/a%00.jpg",
        "/media/profile_pics/" + "a" * 300 + ".jpg",
    ],
)
@pytest.mark.reliability("hostile-paths")
def test_paths_that_are_never_served_are_not_handed_over(
    media_client, accel_storage, path
):
    response = media_client.get(path)

    assert response.status_code == 404
    assert "X-Accel-Redirect" not in response


def test_handing_over_applies_to_the_proxy_mode_only(media_client, settings):
    from django.core.files.storage import default_storage

    settings.MEDIA_ACCEL_REDIRECT = ACCEL
    name = default_storage.save("token_logo/logo.png", ContentFile(PNG))

    response = media_client.get(default_storage.url(name))

    assert "X-Accel-Redirect" not in response
    assert b"".join(response.streaming_content) == PNG


@pytest.mark.parametrize(
    "value",
    [
        "_media_store/",
        "/_media_store",
        "/media/",
        "/media/store/",
        "/",
        "/a b/",
        "/x/../y/",
        "/x?y/",
        "http://store/",
    ],
)
@pytest.mark.reliability("hostile-paths")
def test_a_redirect_location_nginx_could_not_have_is_refused(value):
    with pytest.raises(ImproperlyConfigured, match="MEDIA_ACCEL_REDIRECT"):
        validate_accel_redirect(value, media_url="/media/")


@pytest.mark.parametrize("value", ["", "/_media_store/", "/internal/s3/"])
@pytest.mark.reliability("open-redirect-media")
def test_a_redirect_location_is_accepted(value):
    assert validate_accel_redirect(value, media_url="/media/") == value
