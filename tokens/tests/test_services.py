import io

import pytest
from django.core.exceptions import ValidationError
from django.core.files.uploadedfile import SimpleUploadedFile
from PIL import Image

from tests.factories import png_upload
from tokens.models import Token
from tokens.services import token_create, token_logo_replace

pytestmark = pytest.mark.django_db


def logo_upload(*, transparent: bool = True) -> SimpleUploadedFile:
    """An 800 px square PNG with an alpha channel: fully transparent, or with
    every pixel opaque."""
    colour = (247, 147, 26, 0 if transparent else 255)
    return png_upload((800, 800), "btc.png", colour=colour)


def stored_image(storage, name) -> Image.Image:
    with storage.open(name) as stored:
        return Image.open(io.BytesIO(stored.read()))


def test_token_with_a_transparent_logo_keeps_it_as_a_200_square_png(any_storage):
    token = token_create(name="Bitcoin", symbol="BTC", logo=logo_upload())

    assert token.logo.name.startswith("token_logo/") and token.logo.name.endswith(
        ".png"
    )
    image = stored_image(any_storage, token.logo.name)
    assert (image.format, image.size, image.mode) == ("PNG", (200, 200), "RGBA")
    assert image.getpixel((0, 0))[3] == 0


def test_an_opaque_logo_becomes_a_jpeg(any_storage):
    token = token_create(
        name="Ether", symbol="ETH", logo=logo_upload(transparent=False)
    )

    assert token.logo.name.endswith(".jpg")
    assert stored_image(any_storage, token.logo.name).format == "JPEG"


def test_an_invalid_token_writes_no_logo(any_storage, stored_names):
    with pytest.raises(ValidationError) as refused:
        token_create(name="Bad", symbol="bad lower", logo=logo_upload())

    assert "symbol" in refused.value.message_dict
    assert not Token.objects.exists()
    assert stored_names(any_storage) == []


def test_replacing_and_deleting_remove_old_logos_after_commit(
    any_storage, django_capture_on_commit_callbacks
):
    token = token_create(name="Solana", symbol="SOL", logo=logo_upload())
    first = token.logo.name

    with django_capture_on_commit_callbacks(execute=True):
        token_logo_replace(token=token, upload=logo_upload(transparent=False))
    assert not any_storage.exists(first)

    second = token.logo.name
    with django_capture_on_commit_callbacks(execute=True):
        token.delete()
    assert not any_storage.exists(second)
