"""Sign-up and profile pictures in a real browser, on every storage.

Each test of storing a picture runs four times: media on local disk, and on
MinIO (the test run's SeaweedFS) in the public, presigned and proxy URL modes;
the refusals by size, which store nothing, on local disk only.
"""

import io
import re

import pytest
from django.contrib.auth import get_user_model
from django.core.files.storage import default_storage
from PIL import Image
from playwright.sync_api import expect

from accounts.services import avatar_replace
from tests.factories import image_bytes, jpeg_upload

pytestmark = pytest.mark.django_db(transaction=True)

PASSWORD = "correct-horse-battery-9"


def photo_with_exif(path):
    """A 4000x3000 camera-like JPEG carrying EXIF (with GPS) and a comment."""
    image = Image.linear_gradient("L").resize((4000, 3000)).convert("RGB")
    exif = Image.Exif()
    exif[0x010F] = "PhoneMaker"  # Make
    exif[0x0112] = 1  # orientation
    exif.get_ifd(0x8825)[2] = (52.0, 22.0, 1.0)  # GPS latitude
    image.save(path, "JPEG", quality=90, exif=exif.tobytes(), comment=b"secret")
    return path


def sign_up(page, live_server, username):
    page.goto(f"{live_server.url}/accounts/signup/")
    page.get_by_label("Username").fill(username)
    page.get_by_label("Email").fill(f"{username}@example.com")
    page.locator('input[name="password1"]').fill(PASSWORD)
    page.locator('input[name="password2"]').fill(PASSWORD)
    page.get_by_role("button", name="Sign Up").click()
    page.wait_for_url("**/accounts/profile/")


def all_images_loaded(page) -> bool:
    """Every <img> with a source has loaded (a broken one has no natural width)."""
    page.wait_for_load_state("load")
    return page.evaluate(
        """Array.from(document.images)
             .filter(i => i.getAttribute("src"))
             .every(i => i.complete && i.naturalWidth > 0)"""
    )


def broken_images(page) -> list[str]:
    """The pictures shown as a broken-image icon: a source, not hidden, and
    nothing in it once the browser has tried (lazy ones scrolled into view)."""
    page.evaluate("window.scrollTo(0, document.body.scrollHeight)")
    page.wait_for_function("() => Array.from(document.images).every(i => i.complete)")
    return page.evaluate(
        """Array.from(document.images)
             .filter(i => i.getAttribute("src") && !i.hidden)
             .filter(i => i.naturalWidth === 0)
             .map(i => i.outerHTML)"""
    )


@pytest.mark.reliability("upload-huge")
def test_sign_up_and_replace_the_avatar_with_a_big_photo(
    page, live_server, site_storage, tmp_path
):
    sign_up(page, live_server, "alice")
    page.reload()
    page.screenshot_step("profile-default")
    assert all_images_loaded(page)
    before = page.locator("#avatar-current").get_attribute("src")

    page.get_by_label("New picture").set_input_files(
        photo_with_exif(tmp_path / "me.jpg")
    )
    page.locator("#avatar-preview").wait_for(state="visible")
    page.screenshot_step("preview")
    # The page's messages, empty now (signing up's were shown once): a live
    # region from the start all the same, which screen readers announce what
    # is written into.
    messages = page.locator('#main .messages[role="status"]')
    expect(messages).to_have_count(1)
    expect(messages).to_be_empty()
    upload = page.get_by_role("button", name="Upload picture")
    upload.press("Enter")
    expect(messages).to_have_text("Your profile picture was updated.")
    # Disabled while sending, the button has focus again for the keyboard.
    expect(upload).to_be_focused()
    page.screenshot_step("uploaded")

    after = page.locator("#avatar-current").get_attribute("src")
    assert after != before
    page.reload()
    assert all_images_loaded(page)
    shown = page.locator("#avatar-current").get_attribute("src")
    response = page.request.get(shown if "://" in shown else live_server.url + shown)
    assert response.status == 200
    assert response.headers["content-type"] == "image/jpeg"
    picture = Image.open(io.BytesIO(response.body()))
    assert (picture.format, picture.size) == ("JPEG", (300, 300))
    assert not picture.getexif()
    assert "comment" not in picture.info and "exif" not in picture.info


def test_an_avatar_whose_file_is_gone_shows_a_letter_until_a_new_one(
    page, live_server, site_storage, tmp_path
):
    def letters_shown():
        assert broken_images(page) == []
        for place in (".nav-profile", ".profile-picture"):
            letter = page.locator(place).get_by_role("img", name="Your profile picture")
            expect(letter).to_have_text("A")
            expect(letter).to_have_class(re.compile(r"\bavatar\b.*token-logo-empty"))

    # The default picture deleted from the store by hand.
    default_storage.delete("default_avatar.jpg")
    sign_up(page, live_server, "alice")
    letters_shown()
    page.screenshot_step("default-gone")

    # A database restored newer than the bucket: the row names a file the
    # store no longer has.
    profile = get_user_model().objects.get().profile
    avatar_replace(profile=profile, upload=jpeg_upload())
    default_storage.delete(profile.avatar.name)
    page.reload()
    letters_shown()
    page.screenshot_step("picture-gone")

    # A new picture takes the letter's place, without reloading.
    (tmp_path / "me.jpg").write_bytes(image_bytes("JPEG", (400, 300)))
    page.get_by_label("New picture").set_input_files(tmp_path / "me.jpg")
    page.get_by_role("button", name="Upload picture").click()
    expect(page.get_by_text("Your profile picture was updated.")).to_be_visible()
    expect(page.locator("#avatar-current")).to_be_visible()
    expect(page.locator(".nav-profile img")).to_be_visible()
    expect(page.locator(".token-logo-empty")).to_have_count(0)
    assert broken_images(page) == []


@pytest.mark.parametrize(
    ("filename", "content", "message"),
    [
        ("notes.jpg", b"this is just text, not a picture", "not an image"),
        (
            "drawing.svg",
            b'<svg xmlns="http://www.w3.org/2000/svg"><script>alert(1)</script></svg>',
            "SVG images are not allowed",
        ),
    ],
    ids=["text-named-jpg", "svg"],
)
@pytest.mark.reliability("upload-types")
def test_a_file_that_is_not_an_allowed_image_is_refused_with_a_message(
    page, live_server, site_storage, stored_names, tmp_path, filename, content, message
):
    sign_up(page, live_server, "bob")
    before = page.locator("#avatar-current").get_attribute("src")
    upload = tmp_path / filename
    upload.write_bytes(content)

    page.get_by_label("New picture").set_input_files(upload)
    page.get_by_role("button", name="Upload picture").click()
    error = page.locator(".field ul.errors")
    error.wait_for()
    page.screenshot_step("refused")

    assert message in error.inner_text()
    assert page.locator("#avatar-current").get_attribute("src") == before
    profile = get_user_model().objects.get(username="bob").profile
    assert profile.avatar.name == "default_avatar.jpg"
    assert stored_names(default_storage, "profile_pics") == []


# 1.5 MB that starts as a JPEG does: over the limits the tests below set.
HOLIDAY_PHOTO = {
    "name": "holiday.jpg",
    "mimeType": "image/jpeg",
    "buffer": b"\xff\xd8\xff\xe0" + b"\0" * (1536 * 1024 - 4),
}


def avatar_posts(page) -> list[str]:
    """The upload requests the page sends from now on."""
    sent: list[str] = []
    page.on(
        "request",
        lambda request: (
            sent.append(request.url)
            if request.method == "POST" and request.url.endswith("/accounts/profile/")
            else None
        ),
    )
    return sent


@pytest.mark.parametrize("site_storage", ["local"], indirect=True)
def test_a_picture_over_the_size_limit_is_refused_unsent_naming_the_limit(
    page, live_server, site_storage, settings
):
    settings.MAX_UPLOAD_SIZE = 512 * 1024
    sign_up(page, live_server, "carol")
    before = page.locator("#avatar-current").get_attribute("src")
    sent = avatar_posts(page)
    picture = page.get_by_label("New picture")

    picture.set_input_files(files=[HOLIDAY_PHOTO])
    page.get_by_role("button", name="Upload picture").click()
    error = page.locator(".field ul.errors")
    error.wait_for()
    page.screenshot_step("refused")

    # The words the server uses for the same file sent without script.
    assert error.inner_text() == (
        "The file is too large (1.5 MB). The maximum is 512 KB."
    )
    expect(picture).to_have_accessible_description(re.compile("file is too large"))
    expect(picture).to_have_attribute("aria-invalid", "true")
    assert sent == []
    assert page.locator("#avatar-current").get_attribute("src") == before
    profile = get_user_model().objects.get(username="carol").profile
    assert profile.avatar.name == "default_avatar.jpg"


@pytest.mark.parametrize("site_storage", ["local"], indirect=True)
def test_a_request_over_the_body_limit_says_too_large_with_the_limit(
    page, live_server, site_storage, settings
):
    # The picture limit allows the file, the request limit does not: the
    # answer is the 413 page, before the app reads the form.
    settings.MAX_REQUEST_BODY_SIZE = 1024 * 1024
    sign_up(page, live_server, "dave")
    before = page.locator("#avatar-current").get_attribute("src")
    sent = avatar_posts(page)

    page.get_by_label("New picture").set_input_files(files=[HOLIDAY_PHOTO])
    page.get_by_role("button", name="Upload picture").click()
    error = page.locator(".field ul.errors")
    error.wait_for()
    page.screenshot_step("refused")

    assert len(sent) == 1
    assert error.inner_text() == (
        "The file is too large to send: the server accepts at most 1 MB. "
        "Nothing was changed."
    )
    assert page.locator("#avatar-current").get_attribute("src") == before
    profile = get_user_model().objects.get(username="dave").profile
    assert profile.avatar.name == "default_avatar.jpg"


@pytest.mark.parametrize("site_storage", ["local"], indirect=True)
@pytest.mark.parametrize(
    ("limits", "shown"),
    [
        (
            {"MAX_UPLOAD_SIZE": 512 * 1024},
            "The file is too large (1.5 MB). The maximum is 512 KB.",
        ),
        (
            {"MAX_REQUEST_BODY_SIZE": 1024 * 1024},
            "The request is larger than the 1 MB the server accepts",
        ),
    ],
    ids=["picture-limit", "request-limit"],
)
def test_without_script_the_same_files_are_refused_in_the_same_words(
    browser, watch_headers, live_server, site_storage, settings, limits, shown
):
    for name, value in limits.items():
        setattr(settings, name, value)
    context = browser.new_context(java_script_enabled=False)
    watch_headers(context)
    page = context.new_page()
    try:
        sign_up(page, live_server, "erin")
        page.get_by_label("New picture").set_input_files(files=[HOLIDAY_PHOTO])
        page.get_by_role("button", name="Upload picture").click()
        page.wait_for_load_state()

        assert shown in page.locator("main").inner_text()
    finally:
        context.close()
    profile = get_user_model().objects.get(username="erin").profile
    assert profile.avatar.name == "default_avatar.jpg"


def test_a_refused_log_in_and_the_second_factor_put_focus_where_to_type(
    page, live_server, mfa_enable
):
    user = get_user_model().objects.create_user("frank", password=PASSWORD)
    mfa_enable(user)
    page.goto(f"{live_server.url}/accounts/login/")
    page.locator('input[name="login"]').fill("frank")
    page.locator('input[name="password"]').fill("not-the-password")
    page.get_by_role("button", name="Sign In").click()

    # The refusal is about the whole form: its alert has focus, not the top
    # of the new page.
    alert = page.locator("form").get_by_role("alert")
    expect(alert).to_contain_text("not correct")
    expect(alert).to_be_focused()

    page.locator('input[name="password"]').fill(PASSWORD)
    page.get_by_role("button", name="Sign In").click()
    page.wait_for_url("**/accounts/2fa/authenticate/")
    expect(page).to_have_title("Two-factor authentication · Crypto Exchange")
    expect(page.get_by_role("textbox", name="Code")).to_be_focused()
    page.screenshot_step("second-factor")
