import pytest
from django.contrib.auth import get_user_model
from django.core.files.uploadedfile import SimpleUploadedFile
from django.db import connection
from django.test.utils import CaptureQueriesContext

from accounts.models import DEFAULT_AVATAR
from tests.factories import jpeg_upload

pytestmark = pytest.mark.django_db


@pytest.mark.reliability("access-anonymous")
def test_the_profile_needs_a_login(client):
    response = client.get("/accounts/profile/")

    assert response.status_code == 302
    assert response["Location"].startswith("/accounts/login/")


def test_uploading_a_picture_replaces_the_avatar(alice_client, alice):
    response = alice_client.post("/accounts/profile/", {"avatar": jpeg_upload()})

    assert response.status_code == 302
    alice.profile.refresh_from_db()
    assert alice.profile.avatar.name.startswith("profile_pics/")
    page = alice_client.get("/accounts/profile/").content.decode()
    assert alice.profile.avatar.url in page
    assert "Your profile picture was updated." in page


def test_the_upload_script_gets_json(alice_client, alice):
    response = alice_client.post(
        "/accounts/profile/",
        {"avatar": jpeg_upload()},
        headers={"x-requested-with": "XMLHttpRequest"},
    )

    assert response.status_code == 200
    alice.profile.refresh_from_db()
    assert response.json() == {"avatar_url": alice.profile.avatar.url}


@pytest.mark.parametrize(
    ("upload", "code", "words"),
    [
        (SimpleUploadedFile("a.jpg", b"plain text"), "not_an_image", "not an image"),
        (
            SimpleUploadedFile("a.svg", b"<svg xmlns='http://www.w3.org/2000/svg'/>"),
            "format_not_allowed",
            "SVG images are not allowed",
        ),
    ],
)
@pytest.mark.reliability("upload-types")
def test_refusals_come_back_as_field_errors(alice_client, alice, upload, code, words):
    page = alice_client.post("/accounts/profile/", {"avatar": upload})
    upload.seek(0)
    script = alice_client.post(
        "/accounts/profile/",
        {"avatar": upload},
        headers={"x-requested-with": "XMLHttpRequest"},
    )

    assert page.status_code == 400
    assert words in page.content.decode()
    assert script.status_code == 400
    assert script.json()["errors"]["avatar"][0]["code"] == code
    alice.profile.refresh_from_db()
    assert alice.profile.avatar.name == DEFAULT_AVATAR


@pytest.mark.reliability("upload-huge")
def test_a_file_over_the_size_limit_is_refused_in_words(alice_client, settings):
    settings.MAX_UPLOAD_SIZE = 10_000

    response = alice_client.post(
        "/accounts/profile/", {"avatar": jpeg_upload((2000, 2000))}
    )

    assert response.status_code == 400
    assert "The file is too large" in response.content.decode()


@pytest.mark.reliability("upload-bombs")
def test_an_image_with_too_many_pixels_is_refused_in_words(alice_client, settings):
    settings.MAX_IMAGE_PIXELS = 100_000

    response = alice_client.post(
        "/accounts/profile/", {"avatar": jpeg_upload((1000, 1000))}
    )

    assert "The image is too large: 1000x1000 pixels" in response.content.decode()


def test_removing_the_picture_goes_back_to_the_default(alice_client, alice):
    alice_client.post("/accounts/profile/", {"avatar": jpeg_upload()})

    response = alice_client.post("/accounts/profile/avatar/remove/")

    assert response.status_code == 302
    alice.profile.refresh_from_db()
    assert alice.profile.avatar.name == DEFAULT_AVATAR


@pytest.mark.reliability("store-refused")
def test_a_storage_outage_during_upload_is_a_message_not_an_error_page(
    alice_client, alice, dead_storage
):
    response = alice_client.post("/accounts/profile/", {"avatar": jpeg_upload()})

    assert response.status_code == 400
    assert "file storage is unavailable" in response.content.decode()
    alice.profile.refresh_from_db()
    assert alice.profile.avatar.name == DEFAULT_AVATAR


@pytest.mark.reliability("store-refused")
def test_pages_render_while_the_store_is_down(alice_client, dead_storage):
    # URLs are built locally: rendering never asks the object store.
    for url in ("/", "/tokens/", "/accounts/profile/"):
        assert alice_client.get(url).status_code == 200, url


def test_the_profile_page_costs_a_constant_number_of_queries(alice_client, alice):
    with CaptureQueriesContext(connection) as first:
        alice_client.get("/accounts/profile/")
    alice_client.post("/accounts/profile/", {"avatar": jpeg_upload()})
    with CaptureQueriesContext(connection) as second:
        alice_client.get("/accounts/profile/")

    assert len(first) == len(second) <= 5


def test_the_users_admin_shows_avatars_without_a_query_per_user(client, mfa_enable):
    root = get_user_model().objects.create_superuser("root", password="x-secret-1")
    mfa_enable(root)
    client.force_login(root)
    client.get("/admin/")  # a session's first request also records it
    with CaptureQueriesContext(connection) as few:
        client.get("/admin/auth/user/")
    for number in range(20):
        get_user_model().objects.create_user(f"user{number}", password="x-secret-1")
    with CaptureQueriesContext(connection) as many:
        page = client.get("/admin/auth/user/").content.decode()

    assert page.count('alt="Avatar of user') == 20
    assert len(few) == len(many)


# --- Upload throttling ------------------------------------------------------


@pytest.fixture
def decodes(monkeypatch):
    """Counts the images the avatar form decodes."""
    import storage.fields

    calls = []
    real = storage.fields.image_process

    def counting(*args, **kwargs):
        calls.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(storage.fields, "image_process", counting)
    return calls


@pytest.mark.reliability("throttle-uploads")
def test_uploads_past_the_limit_are_refused_before_decoding(
    alice_client, alice, settings, decodes
):
    settings.IMAGE_UPLOADS_PER_USER = 3
    settings.IMAGE_UPLOAD_WINDOW_MINUTES = 10
    for _ in range(3):
        assert (
            alice_client.post(
                "/accounts/profile/", {"avatar": jpeg_upload()}
            ).status_code
            == 302
        )
    kept = get_user_model().objects.get(pk=alice.pk).profile.avatar.name

    script = alice_client.post(
        "/accounts/profile/",
        {"avatar": jpeg_upload()},
        headers={"x-requested-with": "XMLHttpRequest"},
    )
    page = alice_client.post("/accounts/profile/", {"avatar": jpeg_upload()})

    assert script.status_code == 429
    assert 0 < int(script["Retry-After"]) <= 600
    assert script.json()["retry_after"] == int(script["Retry-After"])
    error = script.json()["errors"]["avatar"][0]
    assert error["code"] == "upload_throttled"
    assert "try again in" in error["message"]
    assert page.status_code == 429
    assert "too many pictures" in page.content.decode()
    assert len(decodes) == 3
    assert get_user_model().objects.get(pk=alice.pk).profile.avatar.name == kept


@pytest.mark.reliability("throttle-uploads")
def test_refused_uploads_count_against_the_limit(alice_client, settings, decodes):
    settings.IMAGE_UPLOADS_PER_USER = 2
    not_an_image = SimpleUploadedFile("me.jpg", b"hello", "image/jpeg")
    for _ in range(2):
        assert (
            alice_client.post(
                "/accounts/profile/", {"avatar": not_an_image}
            ).status_code
            == 400
        )

    assert (
        alice_client.post("/accounts/profile/", {"avatar": jpeg_upload()}).status_code
        == 429
    )


@pytest.mark.reliability("throttle-uploads")
def test_the_limit_is_per_user_and_ends_with_its_window(
    alice_client, client, settings, monkeypatch
):
    import storage.throttle

    settings.IMAGE_UPLOADS_PER_USER = 1
    settings.IMAGE_UPLOAD_WINDOW_MINUTES = 10
    start = 1_800_000_000.0
    monkeypatch.setattr(storage.throttle.time, "time", lambda: start)
    assert (
        alice_client.post("/accounts/profile/", {"avatar": jpeg_upload()}).status_code
        == 302
    )
    assert (
        alice_client.post("/accounts/profile/", {"avatar": jpeg_upload()}).status_code
        == 429
    )

    bob = get_user_model().objects.create_user("bob", password="x-secret-1")
    other = type(client)()
    other.force_login(bob)
    assert (
        other.post("/accounts/profile/", {"avatar": jpeg_upload()}).status_code == 302
    )

    monkeypatch.setattr(storage.throttle.time, "time", lambda: start + 600)
    assert (
        alice_client.post("/accounts/profile/", {"avatar": jpeg_upload()}).status_code
        == 302
    )


# --- Decode slots -------------------------------------------------------------


@pytest.mark.reliability("upload-slots")
def test_an_upload_finding_every_decode_slot_taken_is_refused_and_changes_nothing(
    alice_client, alice, settings, media_root, decode_slots_holder
):
    settings.IMAGE_DECODE_SLOTS = 2
    holder = decode_slots_holder(2)
    before = alice.profile.avatar.name
    files = sorted(media_root.rglob("*"))

    script = alice_client.post(
        "/accounts/profile/",
        {"avatar": jpeg_upload()},
        headers={"x-requested-with": "XMLHttpRequest"},
    )
    page = alice_client.post("/accounts/profile/", {"avatar": jpeg_upload()})

    assert script.status_code == 503
    assert script["Retry-After"] == "5"
    error = script.json()["errors"]["avatar"][0]
    assert error["code"] == "image_decoders_busy"
    assert "try again in a few seconds" in error["message"]
    assert page.status_code == 503
    assert page["Retry-After"] == "5"
    assert "Many images are being processed right now" in page.content.decode()
    assert get_user_model().objects.get(pk=alice.pk).profile.avatar.name == before
    assert sorted(media_root.rglob("*")) == files

    holder.release()
    assert (
        alice_client.post("/accounts/profile/", {"avatar": jpeg_upload()}).status_code
        == 302
    )
    assert get_user_model().objects.get(pk=alice.pk).profile.avatar.name != before


@pytest.mark.reliability("decoder-killed")
def test_a_killed_process_holding_the_slots_does_not_block_uploads(
    alice_client, settings, decode_slots_holder
):
    settings.IMAGE_DECODE_SLOTS = 1
    holder = decode_slots_holder(1)
    assert (
        alice_client.post("/accounts/profile/", {"avatar": jpeg_upload()}).status_code
        == 503
    )

    holder.kill()

    assert (
        alice_client.post("/accounts/profile/", {"avatar": jpeg_upload()}).status_code
        == 302
    )
