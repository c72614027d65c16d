import io
import re
from pathlib import Path

import pytest
from django import forms
from django.contrib.auth import get_user_model
from django.core.files.base import ContentFile, File
from django.core.files.storage import default_storage
from django.core.files.uploadedfile import SimpleUploadedFile
from PIL import Image

from accounts.models import Profile
from storage.fields import ProcessedImageField, ProcessedImageFormField
from storage.images import TOKEN_LOGO, ImageSpec, ProcessedImage, image_process
from tests.factories import jpeg_repeating_its_last_scan
from tokens.models import Token

pytestmark = pytest.mark.django_db

SVG = b'<?xml version="1.0"?><svg xmlns="http://www.w3.org/2000/svg"></svg>'


class TokenForm(forms.ModelForm):
    class Meta:
        model = Token
        fields = ["name", "symbol", "logo"]


@pytest.fixture
def media(media_root: Path) -> Path:
    """The empty folder every stored file of the test lands in.

    The root conftest points `STORAGES["default"]` at it through pytest-django's
    `settings` fixture. That is enough in Django 5.2: a FileField without its own
    storage holds the `default_storage` lazy object, which Django's
    `setting_changed` receiver (`django.test.signals.storages_changed`) empties
    whenever STORAGES changes, so the fields rebuild it from the new setting.
    Setting MEDIA_ROOT alone would not reach a storage already built.
    """
    assert Path(default_storage.location) == media_root
    return media_root


def stored_files(media: Path) -> list[str]:
    return sorted(str(p.relative_to(media)) for p in media.rglob("*") if p.is_file())


def named(name: str, expected: str) -> bool:
    """``name`` is ``expected`` with the random part every save adds."""
    stem, _, ext = expected.rpartition(".")
    return re.fullmatch(rf"{re.escape(stem)}_[\w-]{{11}}\.{ext}", name) is not None


def stored_image(media: Path, name: str) -> Image.Image:
    img = Image.open(media / name)
    img.load()
    return img


def encode(img: Image.Image, format: str) -> bytes:
    buffer = io.BytesIO()
    img.save(buffer, format=format)
    return buffer.getvalue()


def photo_jpeg() -> bytes:
    gradient = Image.linear_gradient("L").resize((4000, 3000))
    return encode(Image.merge("RGB", [gradient, gradient, gradient]), "JPEG")


def transparent_png() -> bytes:
    img = Image.new("RGBA", (400, 400), (0, 0, 0, 0))
    img.paste((0, 128, 255, 255), (100, 100, 300, 300))
    return encode(img, "PNG")


def opaque_png() -> bytes:
    return encode(Image.new("RGB", (400, 400), (0, 128, 255)), "PNG")


def token_form(logo: SimpleUploadedFile | None, **data) -> TokenForm:
    data = {"name": "Bitcoin", "symbol": "BTC", **data}
    return TokenForm(data=data, files={"logo": logo} if logo else {})


def test_model_form_stores_a_square_jpeg_of_an_uploaded_photo(media):
    form = token_form(SimpleUploadedFile("My Photo.JPG", photo_jpeg(), "image/jpeg"))

    assert form.is_valid(), form.errors
    token = form.save()

    assert named(token.logo.name, "token_logo/my-photo.jpg")
    img = stored_image(media, token.logo.name)
    assert (img.format, img.mode, img.size) == ("JPEG", "RGB", (200, 200))


def test_model_form_hands_the_processed_image_to_the_field(media):
    form = token_form(SimpleUploadedFile("logo.png", transparent_png(), "image/png"))
    assert form.is_valid(), form.errors
    processed = form.cleaned_data["logo"]
    assert isinstance(processed, ProcessedImage)
    assert processed.spec == Token._meta.get_field("logo").spec

    token = form.save()

    assert (media / token.logo.name).read_bytes() == processed.file.getvalue()


def test_content_processed_for_the_same_spec_is_stored_as_is(media):
    # Bytes that processing would change (10x10, not 200x200) show that content
    # already processed for this spec, as a form hands it over, is not redone.
    token = Token.objects.create(name="Tether", symbol="USDT")
    small = encode(Image.new("RGB", (10, 10), (0, 128, 255)), "JPEG")
    already = ProcessedImage(
        small,
        name="small.jpg",
        spec=TOKEN_LOGO,
        content_type="image/jpeg",
        width=10,
        height=10,
    )

    token.logo.save("small.jpg", already)

    assert (media / token.logo.name).read_bytes() == small


def test_transparent_logo_stays_png(media):
    form = token_form(SimpleUploadedFile("logo.webp", transparent_png(), "image/webp"))

    assert form.is_valid(), form.errors
    token = form.save()

    assert named(token.logo.name, "token_logo/logo.png")
    img = stored_image(media, token.logo.name)
    assert (img.format, img.mode, img.size) == ("PNG", "RGBA", (200, 200))
    assert img.getpixel((0, 0))[3] == 0


def test_shell_assignment_of_a_file_is_processed(media, tmp_path):
    path = tmp_path / "Downloaded Logo.png"
    path.write_bytes(opaque_png())
    token = Token(name="Ether", symbol="ETH")

    with path.open("rb") as handle:
        token.logo = File(handle)
        token.save()

    token.refresh_from_db()
    assert named(token.logo.name, "token_logo/downloaded-logo.jpg")
    img = stored_image(media, token.logo.name)
    assert (img.format, img.size) == ("JPEG", (200, 200))


@pytest.mark.parametrize(
    ("data", "stored_name", "format"),
    [
        (opaque_png, "token_logo/x.jpg", "JPEG"),
        (transparent_png, "token_logo/x.png", "PNG"),
    ],
)
def test_field_file_save_processes_the_content(media, data, stored_name, format):
    token = Token.objects.create(name="Tether", symbol="USDT")

    token.logo.save("x.png", ContentFile(data()))

    token.refresh_from_db()
    assert named(token.logo.name, stored_name)
    img = stored_image(media, token.logo.name)
    assert (img.format, img.size) == (format, (200, 200))
    assert stored_files(media) == [token.logo.name]


def test_field_file_save_keeps_the_given_name_for_processed_content(media):
    token = Token.objects.create(name="Tether", symbol="USDT")
    processed = image_process(io.BytesIO(opaque_png()), spec=TOKEN_LOGO, name="a.png")

    token.logo.save("chosen.png", processed)

    assert named(token.logo.name, "token_logo/chosen.jpg")
    assert (media / token.logo.name).read_bytes() == processed.file.getvalue()


def test_content_processed_for_another_spec_is_processed_again(media):
    token = Token.objects.create(name="Tether", symbol="USDT")
    big = image_process(
        io.BytesIO(opaque_png()), spec=ImageSpec(size=350, keep_alpha=False)
    )

    token.logo.save("big.jpg", big)

    assert stored_image(media, token.logo.name).size == (200, 200)


def test_profile_avatar_is_a_300_pixel_jpeg(media):
    user = get_user_model().objects.create_user("alice", password="x-Very-long-1")
    profile, _ = Profile.objects.get_or_create(user=user)

    profile.avatar.save("Alice.png", ContentFile(transparent_png()))

    assert named(profile.avatar.name, "profile_pics/alice.jpg")
    img = stored_image(media, profile.avatar.name)
    assert (img.format, img.mode, img.size) == ("JPEG", "RGB", (300, 300))
    assert img.getpixel((0, 0)) == (255, 255, 255)


@pytest.mark.parametrize(
    ("data", "code", "message"),
    [
        (SVG, "format_not_allowed", "SVG images are not allowed."),
        (photo_jpeg()[:20000], "truncated", "The image file is incomplete"),
        (b"hello", "not_an_image", "This file is not an image"),
        (
            jpeg_repeating_its_last_scan(2000),
            "too_many_scans",
            "The JPEG image has more than 100 scans",
        ),
    ],
)
def test_refused_upload_shows_on_the_logo_field_and_stores_nothing(
    media, data, code, message
):
    form = token_form(SimpleUploadedFile("logo.jpg", data, "image/jpeg"))

    assert not form.is_valid()
    assert list(form.errors) == ["logo"]
    assert form.errors["logo"][0].startswith(message)
    assert form.has_error("logo", code)
    assert stored_files(media) == []
    assert not Token.objects.exists()


def test_editing_without_a_new_upload_keeps_the_logo(media):
    token = Token.objects.create(name="Tether", symbol="USDT")
    token.logo.save("logo.png", ContentFile(opaque_png()))
    files_before = stored_files(media)

    form = TokenForm(
        data={"name": "Tether USD", "symbol": "USDT"}, files={}, instance=token
    )
    assert form.is_valid(), form.errors
    form.save()

    token.refresh_from_db()
    assert token.name == "Tether USD"
    assert named(token.logo.name, "token_logo/logo.jpg")
    assert stored_files(media) == files_before


def test_clearing_the_logo(media):
    token = Token.objects.create(name="Tether", symbol="USDT")
    token.logo.save("logo.png", ContentFile(opaque_png()))

    form = TokenForm(
        data={"name": "Tether", "symbol": "USDT", "logo-clear": "on"},
        files={},
        instance=token,
    )
    assert form.is_valid(), form.errors
    form.save()

    token.refresh_from_db()
    assert not token.logo


def test_form_field_restricts_the_file_picker_to_allowed_types():
    field = TokenForm().fields["logo"]

    assert isinstance(field, ProcessedImageFormField)
    assert field.spec == TOKEN_LOGO
    assert field.widget.attrs["accept"] == "image/jpeg,image/png,image/webp,image/gif"
    assert 'accept="image/jpeg,image/png,image/webp,image/gif"' in str(
        TokenForm()["logo"]
    )


def test_field_deconstructs_with_its_image_spec():
    field = Token._meta.get_field("logo")

    _name, path, args, kwargs = field.deconstruct()

    assert path == "storage.fields.ProcessedImageField"
    assert kwargs["size"] == 200
    assert kwargs["keep_alpha"] is True
    assert kwargs["upload_to"] == "token_logo/"
    assert kwargs["max_length"] == 255
    assert ProcessedImageField(*args, **kwargs).spec == field.spec

    avatar_kwargs = Profile._meta.get_field("avatar").deconstruct()[3]
    assert (avatar_kwargs["size"], avatar_kwargs["keep_alpha"]) == (300, False)
