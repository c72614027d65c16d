import io
import struct
import subprocess
import sys
import textwrap
import warnings
import zlib
from pathlib import Path

import pytest
from django.core.exceptions import ValidationError
from django.core.files.base import ContentFile, File
from django.core.files.uploadedfile import SimpleUploadedFile, TemporaryUploadedFile
from PIL import ExifTags, Image, ImageCms, ImageOps

from storage.images import (
    AVATAR,
    MAX_JPEG_SCANS,
    TOKEN_LOGO,
    ImageSpec,
    ProcessedImage,
    image_process,
    image_validate_header,
)
from tests.factories import jpeg_repeating_its_last_scan, scan_count

PROJECT_ROOT = Path(__file__).resolve().parents[2]
RED, GREEN, BLUE, WHITE = (255, 0, 0), (0, 255, 0), (0, 0, 255), (255, 255, 255)


# --- Building test images ---------------------------------------------------


def encode(img: Image.Image, format: str, **params) -> bytes:
    buffer = io.BytesIO()
    img.save(buffer, format=format, **params)
    return buffer.getvalue()


def halves(size: tuple[int, int], left, right, mode: str = "RGB") -> Image.Image:
    img = Image.new(mode, size, left)
    img.paste(right, (size[0] // 2, 0, size[0], size[1]))
    return img


def transparent_corners(mode: str = "RGBA", size: int = 400) -> Image.Image:
    """A red disc-like square on a fully transparent background."""
    img = Image.new(mode, (size, size), (0, 0, 0, 0) if mode == "RGBA" else (0, 0))
    fill = (255, 0, 0, 255) if mode == "RGBA" else (80, 255)
    img.paste(fill, (size // 4, size // 4, 3 * size // 4, 3 * size // 4))
    return img


def noise(size: tuple[int, int]) -> Image.Image:
    # Noise spreads image data over the whole file, so a cut always hits pixels.
    return Image.merge("RGB", [Image.effect_noise(size, 80) for _ in range(3)])


def smooth_photo(size: tuple[int, int]) -> Image.Image:
    red = Image.linear_gradient("L").resize(size)
    green = Image.radial_gradient("L").resize(size)
    return Image.merge("RGB", [red, green, red.transpose(Image.Transpose.ROTATE_180)])


def exif_with_a_tag_of_the_wrong_type(orientation: int) -> bytes:
    """EXIF with an Orientation, and XResolution (a fraction) as the text "abc".

    Pillow reads it, but raises TypeError writing it back.
    """
    entries = [
        struct.pack("<HHI", 0x011A, 2, 4) + b"abc\x00",
        struct.pack("<HHIHH", ExifTags.Base.Orientation, 3, 1, orientation, 0),
    ]
    tiff = b"II*\x00" + struct.pack("<IH", 8, len(entries)) + b"".join(entries)
    return b"Exif\x00\x00" + tiff + struct.pack("<I", 0)


def quadrants(size: tuple[int, int]) -> Image.Image:
    width, height = size
    img = Image.new("RGB", size, RED)
    img.paste(GREEN, (width // 2, 0, width, height // 2))
    img.paste(BLUE, (0, height // 2, width // 2, height))
    img.paste(WHITE, (width // 2, height // 2, width, height))
    return img


def png_declaring_size(width: int, height: int) -> bytes:
    """A valid 1x1 PNG whose IHDR claims width x height, with a correct CRC."""
    data = bytearray(encode(Image.new("L", (1, 1)), "PNG"))
    ihdr_start = 8 + 4 + 4  # signature, chunk length, chunk type
    data[ihdr_start : ihdr_start + 8] = struct.pack(">II", width, height)
    crc = zlib.crc32(bytes(data[ihdr_start - 4 : ihdr_start + 13]))
    data[ihdr_start + 13 : ihdr_start + 17] = struct.pack(">I", crc)
    return bytes(data)


def _s15_fixed16(*values: float) -> bytes:
    return b"".join(struct.pack(">i", round(value * 65536)) for value in values)


def rgb_icc_profile_with_swapped_primaries() -> bytes:
    """A matrix/TRC RGB ICC profile whose red and blue colorants are swapped.

    In this colour space (255, 0, 0) is sRGB blue, so a pipeline that ignores or
    merely strips the profile produces red where a converting one produces blue.
    """
    xyz = {  # sRGB colorants adapted to D50, as in ICC sRGB profiles
        "red": (0.4361, 0.2225, 0.0139),
        "green": (0.3851, 0.7169, 0.0971),
        "blue": (0.1431, 0.0606, 0.7141),
    }
    curve = b"curv" + bytes(4) + struct.pack(">IH", 1, 0x0233) + bytes(2)
    tags = [
        (b"wtpt", b"XYZ " + bytes(4) + _s15_fixed16(0.9642, 1.0, 0.8249)),
        (b"rXYZ", b"XYZ " + bytes(4) + _s15_fixed16(*xyz["blue"])),
        (b"gXYZ", b"XYZ " + bytes(4) + _s15_fixed16(*xyz["green"])),
        (b"bXYZ", b"XYZ " + bytes(4) + _s15_fixed16(*xyz["red"])),
        (b"rTRC", curve),
        (b"gTRC", curve),
        (b"bTRC", curve),
    ]
    offset = 128 + 4 + 12 * len(tags)
    table, body = struct.pack(">I", len(tags)), b""
    for signature, data in tags:
        table += signature + struct.pack(">II", offset + len(body), len(data))
        body += data + bytes(-len(data) % 4)
    size = offset + len(body)
    header = (
        struct.pack(">I", size)
        + bytes(4)
        + struct.pack(">I", 0x02100000)
        + b"mntrRGB XYZ "
        + bytes(12)
        + b"acsp"
        + bytes(24)
        + struct.pack(">I", 0)
        + _s15_fixed16(0.9642, 1.0, 0.8249)
        + bytes(48)
    )
    assert len(header) == 128
    return header + table + body


# --- Checking results -------------------------------------------------------


def reopen(processed: ProcessedImage) -> Image.Image:
    img = Image.open(io.BytesIO(processed.file.getvalue()))
    img.load()
    return img


def near(pixel, expected, tolerance: int = 40) -> bool:
    return all(abs(a - b) <= tolerance for a, b in zip(pixel, expected, strict=False))


def assert_square_output(processed: ProcessedImage, spec: ImageSpec, format: str):
    img = reopen(processed)
    assert img.format == format
    assert img.size == (spec.size, spec.size)
    assert (processed.width, processed.height) == (spec.size, spec.size)
    assert processed.spec == spec
    if format == "JPEG":
        assert img.mode == "RGB"
        assert processed.content_type == "image/jpeg"
        assert processed.name.endswith(".jpg")
    else:
        assert img.mode == "RGBA"
        assert processed.content_type == "image/png"
        assert processed.name.endswith(".png")
    return img


def refusal(data: bytes, spec: ImageSpec = AVATAR, **kwargs) -> ValidationError:
    with pytest.raises(ValidationError) as caught:
        image_process(io.BytesIO(data), spec=spec, name="upload.jpg", **kwargs)
    return caught.value


# --- Normal images ----------------------------------------------------------


def test_large_jpeg_is_cropped_to_an_exact_square_jpeg():
    photo = encode(smooth_photo((4000, 3000)), "JPEG", quality=90)

    processed = image_process(io.BytesIO(photo), spec=AVATAR, name="holiday.jpg")

    assert_square_output(processed, AVATAR, "JPEG")
    assert processed.name == "holiday.jpg"


def test_exif_orientation_is_applied():
    # Orientation 6 means "rotate 90 degrees clockwise to display": the stored
    # left half (red) ends up at the top, the right half (blue) at the bottom.
    exif = Image.Exif()
    exif[ExifTags.Base.Orientation] = 6
    photo = encode(halves((4000, 3000), RED, BLUE), "JPEG", exif=exif)

    img = assert_square_output(
        image_process(io.BytesIO(photo), spec=AVATAR), AVATAR, "JPEG"
    )

    assert near(img.getpixel((150, 20)), RED)
    assert near(img.getpixel((150, 280)), BLUE)
    assert not img.getexif()


def test_a_tag_of_the_wrong_type_does_not_stop_orientation():
    exif = exif_with_a_tag_of_the_wrong_type(6)
    photo = encode(halves((400, 300), RED, BLUE), "JPEG", exif=exif)

    img = assert_square_output(
        image_process(io.BytesIO(photo), spec=AVATAR), AVATAR, "JPEG"
    )

    assert near(img.getpixel((150, 20)), RED)
    assert near(img.getpixel((150, 280)), BLUE)
    assert not img.getexif()


@pytest.mark.parametrize("orientation", range(1, 9))
def test_every_exif_orientation_turns_the_avatar_as_pillow_does(orientation):
    exif = Image.Exif()
    exif[ExifTags.Base.Orientation] = orientation
    photo = encode(quadrants((800, 600)), "JPEG", exif=exif)
    expected = ImageOps.fit(
        ImageOps.exif_transpose(Image.open(io.BytesIO(photo))), (AVATAR.size,) * 2
    )

    img = reopen(image_process(io.BytesIO(photo), spec=AVATAR))

    for point in ((75, 75), (225, 75), (75, 225), (225, 225)):
        assert near(img.getpixel(point), expected.getpixel(point))


@pytest.mark.django_db
def test_a_photo_whose_exif_has_a_tag_of_the_wrong_type_becomes_the_avatar(
    alice_client, alice
):
    exif = exif_with_a_tag_of_the_wrong_type(6)
    photo = encode(halves((400, 300), RED, BLUE), "JPEG", exif=exif)

    response = alice_client.post(
        "/accounts/profile/",
        {"avatar": SimpleUploadedFile("me.jpg", photo, content_type="image/jpeg")},
    )

    assert response.status_code == 302
    alice.profile.refresh_from_db()
    with alice.profile.avatar.open("rb") as stored:
        img = Image.open(io.BytesIO(stored.read()))
    assert near(img.getpixel((150, 20)), RED)
    assert near(img.getpixel((150, 280)), BLUE)


@pytest.mark.reliability("upload-broken")
def test_metadata_does_not_survive():
    exif = Image.Exif()
    exif[ExifTags.Base.Make] = "SecretCam"
    gps = exif.get_ifd(ExifTags.IFD.GPSInfo)
    gps[ExifTags.GPS.GPSLatitudeRef] = "N"
    gps[ExifTags.GPS.GPSLatitude] = (52.0, 31.0, 12.0)
    srgb = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    photo = encode(
        Image.new("RGB", (800, 600), (30, 120, 200)),
        "JPEG",
        exif=exif,
        comment=b"secret comment",
        xmp=b"<x:xmpmeta>secret-xmp</x:xmpmeta>",
        icc_profile=srgb,
    )
    assert {"exif", "comment", "xmp", "icc_profile"} <= Image.open(
        io.BytesIO(photo)
    ).info.keys()

    processed = image_process(io.BytesIO(photo), spec=AVATAR)

    img = reopen(processed)
    assert not {"exif", "comment", "xmp", "icc_profile"} & img.info.keys()
    assert len(img.getexif()) == 0
    raw = processed.file.getvalue()
    for secret in (b"SecretCam", b"secret comment", b"secret-xmp"):
        assert secret not in raw
    assert near(img.getpixel((150, 150)), (30, 120, 200), tolerance=6)


@pytest.mark.reliability("upload-broken")
def test_trailing_payload_after_the_image_is_dropped():
    polyglot = encode(Image.new("RGB", (400, 400), GREEN), "JPEG") + b"<?php ?>"

    processed = image_process(io.BytesIO(polyglot), spec=AVATAR)

    assert b"<?php" not in processed.file.getvalue()


@pytest.mark.parametrize("format", ["PNG", "JPEG"])
def test_embedded_icc_profile_is_converted_to_srgb(format):
    profile = rgb_icc_profile_with_swapped_primaries()
    source = encode(
        Image.new("RGB", (400, 400), RED), format, icc_profile=profile, quality=95
    )

    img = assert_square_output(
        image_process(io.BytesIO(source), spec=AVATAR), AVATAR, "JPEG"
    )

    assert near(img.getpixel((150, 150)), BLUE, tolerance=50)
    assert "icc_profile" not in img.info


@pytest.mark.reliability("upload-broken")
def test_broken_icc_profile_is_ignored():
    source = encode(
        Image.new("RGB", (400, 400), GREEN), "PNG", icc_profile=b"not a profile"
    )

    img = reopen(image_process(io.BytesIO(source), spec=AVATAR))

    assert near(img.getpixel((150, 150)), GREEN)


def test_cmyk_jpeg_becomes_rgb():
    source = encode(Image.new("CMYK", (500, 400), (0, 255, 255, 0)), "JPEG")
    assert Image.open(io.BytesIO(source)).mode == "CMYK"

    img = assert_square_output(
        image_process(io.BytesIO(source), spec=AVATAR), AVATAR, "JPEG"
    )

    assert near(img.getpixel((150, 150)), RED)


def palette_with_transparency() -> bytes:
    img = Image.new("P", (400, 400), 0)
    img.putpalette([0, 0, 0, 255, 0, 0])
    img.paste(1, (100, 100, 300, 300))
    return encode(img, "PNG", transparency=0)


@pytest.mark.parametrize(
    "source",
    [
        pytest.param(lambda: encode(transparent_corners(), "PNG"), id="rgba"),
        pytest.param(palette_with_transparency, id="palette"),
        pytest.param(lambda: encode(transparent_corners(), "WEBP"), id="webp"),
    ],
)
def test_logo_keeps_transparency_as_png(source):
    img = assert_square_output(
        image_process(io.BytesIO(source()), spec=TOKEN_LOGO), TOKEN_LOGO, "PNG"
    )

    assert img.getpixel((2, 2))[3] == 0
    assert near(img.getpixel((100, 100)), (255, 0, 0, 255), tolerance=2)


@pytest.mark.parametrize(
    "source",
    [
        pytest.param(lambda: encode(transparent_corners(), "PNG"), id="rgba"),
        pytest.param(palette_with_transparency, id="palette"),
        pytest.param(lambda: encode(transparent_corners("LA"), "PNG"), id="la"),
    ],
)
def test_avatar_composites_transparency_onto_white(source):
    img = assert_square_output(
        image_process(io.BytesIO(source()), spec=AVATAR), AVATAR, "JPEG"
    )

    assert near(img.getpixel((2, 2)), WHITE, tolerance=3)


def test_grey_logo_with_alpha_keeps_transparency():
    source = encode(transparent_corners("LA"), "PNG")

    img = assert_square_output(
        image_process(io.BytesIO(source), spec=TOKEN_LOGO), TOKEN_LOGO, "PNG"
    )

    assert img.getpixel((2, 2))[3] == 0
    assert near(img.getpixel((100, 100)), (80, 80, 80, 255), tolerance=2)


def test_opaque_logo_with_alpha_channel_becomes_jpeg():
    source = encode(Image.new("RGBA", (300, 300), (0, 0, 255, 255)), "PNG")

    img = assert_square_output(
        image_process(io.BytesIO(source), spec=TOKEN_LOGO), TOKEN_LOGO, "JPEG"
    )

    assert near(img.getpixel((100, 100)), BLUE)


def test_sixteen_bit_greyscale_is_scaled_not_clipped():
    source = encode(Image.new("I;16", (400, 400), 32768), "PNG")
    assert Image.open(io.BytesIO(source)).mode.startswith("I")

    img = assert_square_output(
        image_process(io.BytesIO(source), spec=AVATAR), AVATAR, "JPEG"
    )

    assert near(img.getpixel((150, 150)), (128, 128, 128), tolerance=3)


def test_bilevel_image():
    source = encode(halves((400, 400), 0, 255, mode="1"), "PNG")

    img = assert_square_output(
        image_process(io.BytesIO(source), spec=AVATAR), AVATAR, "JPEG"
    )

    assert near(img.getpixel((20, 150)), (0, 0, 0), tolerance=10)
    assert near(img.getpixel((280, 150)), WHITE, tolerance=10)


@pytest.mark.parametrize("format", ["GIF", "PNG", "WEBP"])
@pytest.mark.reliability("upload-broken")
def test_animation_keeps_only_the_first_frame(format):
    first, second = Image.new("RGB", (300, 300), RED), Image.new("RGB", (300, 300))
    second.paste(BLUE, (0, 0, 300, 300))
    params = {"lossless": True} if format == "WEBP" else {}
    source = encode(
        first, format, save_all=True, append_images=[second], duration=100, **params
    )
    assert getattr(Image.open(io.BytesIO(source)), "n_frames", 1) == 2

    img = assert_square_output(
        image_process(io.BytesIO(source), spec=TOKEN_LOGO), TOKEN_LOGO, "JPEG"
    )

    assert near(img.getpixel((100, 100)), RED)


def test_webp_photo():
    source = encode(halves((600, 400), RED, GREEN), "WEBP", quality=90)

    img = assert_square_output(
        image_process(io.BytesIO(source), spec=AVATAR), AVATAR, "JPEG"
    )

    assert near(img.getpixel((20, 150)), RED)
    assert near(img.getpixel((280, 150)), GREEN)


@pytest.mark.parametrize("size", [(10, 10), (3000, 10), (10, 3000), (1, 1)])
def test_any_aspect_ratio_gives_an_exact_square(size):
    source = encode(Image.new("RGB", size, GREEN), "PNG")

    for spec in (AVATAR, TOKEN_LOGO):
        img = assert_square_output(
            image_process(io.BytesIO(source), spec=spec), spec, "JPEG"
        )
        assert near(img.getpixel((spec.size // 2, spec.size // 2)), GREEN)


@pytest.mark.parametrize(
    ("original", "expected"),
    [
        ("../../etc/Photo Été 2024.PNG", "photo-ete-2024.jpg"),
        ("C:\\Users\\me\\avatar.final.webp", "avatarfinal.jpg"),
        ("x" * 100 + ".jpg", "x" * 40 + ".jpg"),
        ("....png", "image.jpg"),
        ("中文.png", "image.jpg"),
        (None, "image.jpg"),
    ],
)
@pytest.mark.reliability("upload-served")
def test_output_name_is_safe_and_has_the_written_extension(original, expected):
    source = encode(Image.new("RGB", (50, 50)), "PNG")

    processed = image_process(io.BytesIO(source), spec=AVATAR, name=original)

    assert processed.name == expected


# --- Kinds of input ---------------------------------------------------------


def upload_kinds(data: bytes, tmp_path: Path):
    temporary = TemporaryUploadedFile("photo.png", "image/png", len(data), None)
    temporary.write(data)
    path = tmp_path / "photo.png"
    path.write_bytes(data)
    at_end = io.BytesIO(data)
    at_end.seek(0, io.SEEK_END)
    return {
        "in-memory upload": SimpleUploadedFile("photo.png", data, "image/png"),
        "temporary upload": temporary,
        "file on disk": File(path.open("rb"), name="photo.png"),
        "closed file on disk": File(None, name=str(path)),
        "content file": ContentFile(data, name="photo.png"),
        "raw binary file": path.open("rb"),
        "bytes io at its end": at_end,
        "pipe": NonSeekable(data),
    }


class NonSeekable(io.RawIOBase):
    def __init__(self, data: bytes) -> None:
        self._data = io.BytesIO(data)

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        chunk = self._data.read(len(buffer))
        buffer[: len(chunk)] = chunk
        return len(chunk)


def test_every_kind_of_upload_is_accepted(tmp_path):
    data = encode(Image.new("RGB", (640, 480), BLUE), "PNG")

    for kind, upload in upload_kinds(data, tmp_path).items():
        processed = image_process(upload, spec=AVATAR)
        img = assert_square_output(processed, AVATAR, "JPEG")
        assert near(img.getpixel((150, 150)), BLUE), kind
        if hasattr(upload, "close"):
            upload.close()


def test_validate_header_names_the_format_and_rewinds(tmp_path):
    data = encode(Image.new("RGB", (64, 64)), "WEBP")
    upload = SimpleUploadedFile("photo.jpg", data, "image/jpeg")

    assert image_validate_header(upload) == "WEBP"
    assert upload.tell() == 0
    assert upload.read() == data


@pytest.mark.reliability("upload-bombs")
def test_validate_header_does_not_decode_pixels():
    truncated = encode(noise((400, 400)), "JPEG")[:5000]

    assert image_validate_header(io.BytesIO(truncated)) == "JPEG"


# --- Hostile and refused input ----------------------------------------------

SVG = b'<svg xmlns="http://www.w3.org/2000/svg"><script>alert(1)</script></svg>'


@pytest.mark.parametrize(
    "data",
    [
        pytest.param(SVG, id="bare"),
        pytest.param(b'<?xml version="1.0"?>\n' + SVG, id="prolog"),
        pytest.param(b"\xef\xbb\xbf \n\t" + SVG, id="bom-and-whitespace"),
        pytest.param(b'<!DOCTYPE svg PUBLIC "-//W3C//DTD SVG 1.1//EN">' + SVG, id="dt"),
        pytest.param("\ufeff".encode("utf-16-le") + SVG.decode().encode("utf-16-le")),
    ],
)
@pytest.mark.reliability("upload-types")
def test_svg_is_refused(data):
    error = refusal(data)

    assert error.code == "format_not_allowed"
    assert error.messages == [
        "SVG images are not allowed. Please upload a JPEG, PNG, WebP or GIF image."
    ]


@pytest.mark.parametrize(
    ("format", "name"),
    [
        ("BMP", "BMP"),
        ("TIFF", "TIFF"),
        ("ICO", "ICO"),
        ("PDF", "PDF"),
        ("AVIF", "AVIF"),
        ("JPEG2000", "JPEG 2000"),
    ],
)
@pytest.mark.reliability("upload-types")
def test_other_image_formats_are_refused_by_name(format, name):
    error = refusal(encode(Image.new("RGB", (64, 64), RED), format))

    assert error.code == "format_not_allowed"
    assert error.messages == [
        f"{name} images are not allowed. Please upload a JPEG, PNG, WebP or GIF image."
    ]


@pytest.mark.parametrize(
    "data",
    [b"just some text, named photo.jpg", b"", b"\xff\xd8\xff", b"\x89PNG\r\n\x1a\n"],
)
@pytest.mark.reliability("upload-types")
def test_non_images_are_refused(data):
    error = refusal(data)

    assert error.code == "not_an_image"
    assert error.messages == ["This file is not an image, or it is damaged."]


@pytest.mark.parametrize("format", ["JPEG", "PNG", "GIF", "WEBP"])
@pytest.mark.reliability("upload-broken")
def test_truncated_images_are_refused_not_grey_filled(format):
    complete = encode(noise((600, 600)), format)

    error = refusal(complete[: len(complete) // 2])

    assert error.code == "truncated"
    assert error.messages == [
        "The image file is incomplete or damaged. Please upload it again."
    ]


@pytest.mark.reliability("upload-bombs")
def test_huge_declared_dimensions_are_refused_before_decoding():
    # The file really holds a single pixel: decoding would fail as damaged,
    # so this code shows the header alone decided.
    error = refusal(png_declaring_size(20000, 20000))

    assert error.code == "too_many_pixels"
    assert error.messages == [
        "The image is too large: 20000x20000 pixels. The maximum is 40 megapixels."
    ]


@pytest.mark.reliability("upload-bombs")
def test_dimensions_over_our_limit_but_under_pillows_are_refused():
    error = refusal(png_declaring_size(8000, 6000))

    assert error.code == "too_many_pixels"
    assert "8000x6000 pixels" in error.messages[0]


@pytest.mark.parametrize("action", ["error", "ignore"])
@pytest.mark.reliability("upload-bombs")
def test_pillow_bomb_warning_becomes_the_same_error(action):
    # 100 megapixels is past Pillow's warning threshold but under its error one;
    # the result must not depend on how warnings are filtered.
    with warnings.catch_warnings():
        warnings.simplefilter(action, Image.DecompressionBombWarning)
        error = refusal(png_declaring_size(10000, 10000), max_pixels=10**9)

    assert error.code == "too_many_pixels"
    assert "10000x10000 pixels" in error.messages[0]


@pytest.mark.reliability("upload-bombs")
def test_highly_compressed_bomb_is_refused_by_its_pixel_count():
    bomb = encode(Image.new("1", (4000, 4000)), "PNG", optimize=True)
    assert len(bomb) < 10_000

    error = refusal(bomb, max_pixels=1_000_000)

    assert error.code == "too_many_pixels"
    assert error.messages == [
        "The image is too large: 4000x4000 pixels. The maximum is 1 megapixels."
    ]


@pytest.mark.reliability("upload-huge")
def test_too_large_upload_is_refused_before_reading(settings):
    settings.MAX_UPLOAD_SIZE = 10 * 1024 * 1024
    upload = SimpleUploadedFile("big.jpg", bytes(int(12.3 * 1024 * 1024)))

    with pytest.raises(ValidationError) as caught:
        image_process(upload, spec=AVATAR)

    assert caught.value.code == "file_too_large"
    assert caught.value.messages == [
        "The file is too large (12.3 MB). The maximum is 10 MB."
    ]


@pytest.mark.reliability("upload-huge")
def test_explicit_byte_limit():
    error = refusal(encode(noise((200, 200)), "PNG"), max_bytes=2048)

    assert error.code == "file_too_large"
    assert error.messages[0].endswith("The maximum is 2 KB.")


@pytest.mark.reliability("upload-huge")
def test_non_seekable_upload_is_not_buffered_beyond_the_limit():
    stream = NonSeekable(bytes(1_000_000))

    with pytest.raises(ValidationError) as caught:
        image_process(stream, spec=AVATAR, max_bytes=1000)

    assert caught.value.code == "file_too_large"
    assert stream._data.tell() == 1001


def test_limits_fall_back_to_defaults_without_settings(settings):
    del settings.MAX_UPLOAD_SIZE
    del settings.MAX_IMAGE_PIXELS

    assert refusal(bytes(10 * 1024 * 1024 + 1)).code == "file_too_large"
    error = refusal(png_declaring_size(8000, 6000))
    assert error.code == "too_many_pixels"
    assert error.messages[0].endswith("The maximum is 40 megapixels.")


# --- Decoding cost ----------------------------------------------------------


def png_raw(width: int, height: int, *, depth: int, color_type: int) -> bytes:
    """A PNG of black pixels written by hand: Pillow cannot save 16-bit RGBA."""
    channels = {0: 1, 2: 3, 4: 2, 6: 4}[color_type]
    row = bytes(1 + width * channels * depth // 8)
    header = struct.pack(">IIBBBBB", width, height, depth, color_type, 0, 0, 0)

    def chunk(kind: bytes, payload: bytes) -> bytes:
        crc = zlib.crc32(kind + payload)
        return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", crc)

    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(row * height, 9))
        + chunk(b"IEND", b"")
    )


def png_header_only(width: int, height: int, *, depth: int, color_type: int) -> bytes:
    """A PNG that declares a size and bit depth and holds one pixel's data:
    decoding it would fail as truncated, so a refusal for its size shows the
    header alone decided."""
    data = bytearray(png_raw(1, 1, depth=depth, color_type=color_type))
    data[16:24] = struct.pack(">II", width, height)
    data[29:33] = struct.pack(">I", zlib.crc32(bytes(data[12:29])))
    return bytes(data)


@pytest.mark.reliability("upload-bombs")
def test_the_issues_16_bit_rgba_bomb_is_refused_from_its_header():
    # 6320x6320 is under the 40 megapixel limit, but 16-bit RGBA pixels cost 8
    # bytes each to decode: 320 MB and seconds of CPU for a 310 KB file.
    error = refusal(png_header_only(6320, 6320, depth=16, color_type=6))

    assert error.code == "too_many_pixels"
    assert error.messages == [
        "The image is too large: 6320x6320 pixels. "
        "A 16-bit PNG image may have at most 8.4 megapixels."
    ]


@pytest.mark.reliability("upload-bombs")
def test_sixteen_bits_per_channel_get_half_the_pixels_of_eight():
    budget = 6_000_000  # 1000x1000 RGBA: 4 MB at 8 bits, 8 MB at 16

    eight_bit = image_process(
        ContentFile(png_raw(1000, 1000, depth=8, color_type=6)),
        spec=AVATAR,
        max_decode_bytes=budget,
    )
    error = refusal(
        png_raw(1000, 1000, depth=16, color_type=6), max_decode_bytes=budget
    )

    assert eight_bit.width == AVATAR.size
    assert error.code == "too_many_pixels"
    assert "16-bit PNG" in error.messages[0]


def test_sixteen_bit_greyscale_is_counted_at_its_conversion_cost():
    error = refusal(
        png_raw(1000, 1000, depth=16, color_type=0), max_decode_bytes=6_000_000
    )

    assert error.code == "too_many_pixels"
    assert "16-bit PNG" in error.messages[0]


@pytest.mark.reliability("upload-huge")
def test_a_large_baseline_jpeg_fits_the_budget_through_reduced_decoding():
    photo = encode(Image.new("RGB", (4800, 4800), (9, 99, 199)), "JPEG")

    # Decoded at 1/8 scale: 600x600 pixels, about 1.4 MB.
    processed = image_process(ContentFile(photo), spec=AVATAR, max_decode_bytes=2**21)

    assert processed.width == AVATAR.size


@pytest.mark.reliability("upload-bombs")
def test_a_progressive_jpeg_counts_the_coefficients_of_the_full_image():
    image = Image.new("RGB", (4800, 4800), (9, 99, 199))
    baseline = encode(image, "JPEG")
    progressive = encode(image, "JPEG", progressive=True)
    budget = 32 * 1024 * 1024  # under the ~35 MB a 4:2:0 progressive one buffers

    assert image_process(ContentFile(baseline), spec=AVATAR, max_decode_bytes=budget)
    error = refusal(progressive, max_decode_bytes=budget)

    assert error.code == "too_many_pixels"
    assert "progressive JPEG" in error.messages[0]


@pytest.mark.reliability("upload-bombs")
def test_webp_is_counted_at_its_decoders_higher_cost():
    image = Image.new("RGB", (1000, 1000), (9, 99, 199))
    budget = 8_000_000

    assert image_process(
        ContentFile(encode(image, "PNG")), spec=AVATAR, max_decode_bytes=budget
    )
    error = refusal(encode(image, "WEBP"), max_decode_bytes=budget)

    assert error.code == "too_many_pixels"
    assert "WebP" in error.messages[0]


def test_the_decoding_budget_comes_from_settings(settings):
    settings.MAX_IMAGE_DECODE_BYTES = 3_000_000

    error = refusal(png_raw(1000, 1000, depth=8, color_type=6))

    assert error.code == "too_many_pixels"
    assert image_validate_header(ContentFile(png_raw(500, 500, depth=8, color_type=6)))


@pytest.mark.reliability("upload-bombs")
def test_the_header_check_applies_the_same_budget():
    with pytest.raises(ValidationError) as caught:
        image_validate_header(
            ContentFile(png_header_only(6320, 6320, depth=16, color_type=6))
        )

    assert caught.value.code == "too_many_pixels"


# --- Scans of a JPEG ---------------------------------------------------------

TOO_MANY_SCANS = (
    "The JPEG image has more than 100 scans, far more than cameras and image "
    "editors write, and would take too long to process. "
    "Please save it again as a standard JPEG or as a PNG."
)


@pytest.mark.reliability("upload-bombs")
def test_a_jpeg_repeating_a_scan_is_refused_from_every_kind_of_upload(tmp_path):
    # A 5000x5000 one (178 KB) took 30 s of CPU to decode; how many scans
    # there are decides, not the size of the image.
    bomb = jpeg_repeating_its_last_scan(2000)

    for kind, upload in upload_kinds(bomb, tmp_path).items():
        with pytest.raises(ValidationError) as caught:
            image_process(upload, spec=AVATAR)
        assert caught.value.code == "too_many_scans", kind
        assert caught.value.messages == [TOO_MANY_SCANS], kind
        if hasattr(upload, "close"):
            upload.close()


@pytest.mark.reliability("upload-bombs")
def test_the_header_check_refuses_a_jpeg_repeating_a_scan():
    with pytest.raises(ValidationError) as caught:
        image_validate_header(ContentFile(jpeg_repeating_its_last_scan(2000)))

    assert caught.value.messages == [TOO_MANY_SCANS]


def test_a_jpeg_may_have_as_many_scans_as_the_limit():
    written_by_pillow = scan_count(jpeg_repeating_its_last_scan(0))
    at_limit = jpeg_repeating_its_last_scan(MAX_JPEG_SCANS - written_by_pillow)
    over_limit = jpeg_repeating_its_last_scan(MAX_JPEG_SCANS - written_by_pillow + 1)
    assert scan_count(at_limit) == MAX_JPEG_SCANS

    assert image_process(ContentFile(at_limit), spec=AVATAR).width == AVATAR.size
    assert refusal(over_limit).code == "too_many_scans"


@pytest.mark.parametrize(
    ("mode", "params"),
    [
        pytest.param("L", {}, id="greyscale"),
        pytest.param("RGB", {}, id="colour"),
        pytest.param("RGB", {"optimize": True}, id="colour-optimized"),
        pytest.param("RGB", {"restart_marker_blocks": 1}, id="restart-markers"),
        pytest.param("CMYK", {}, id="cmyk"),
    ],
)
def test_progressive_jpegs_from_an_encoder_are_accepted(mode, params):
    # Noise fills the scans with stuffed 0xFF bytes over many chunks of reading.
    photo = noise((1200, 900)).convert(mode)
    data = encode(photo, "JPEG", progressive=True, quality=85, **params)
    assert len(data) > 512 * 1024

    processed = image_process(ContentFile(data), spec=AVATAR)

    assert_square_output(processed, AVATAR, "JPEG")


def test_scan_markers_inside_metadata_are_not_counted():
    jpeg = encode(Image.new("RGB", (64, 64), BLUE), "JPEG", progressive=True)
    # Read as segments, the payload would be 16,000 empty scans.
    payload = b"\xff\xda\x00\x02" * 16_000
    comment = b"\xff\xfe" + struct.pack(">H", len(payload) + 2) + payload
    # Two of nearly the largest segment there is: one runs past a chunk of reading.
    data = jpeg[:2] + comment * 2 + jpeg[2:]

    img = assert_square_output(
        image_process(ContentFile(data), spec=AVATAR), AVATAR, "JPEG"
    )
    assert near(img.getpixel((150, 150)), BLUE)


@pytest.mark.reliability("upload-bombs")
def test_a_jpeg_padded_with_thousands_of_empty_segments_is_refused():
    # libjpeg skips them in no time, but walking them in Python (Pillow's header
    # parser too) would take seconds for a 10 MB upload.
    jpeg = encode(Image.new("RGB", (64, 64), BLUE), "JPEG", progressive=True)
    empty_comment = b"\xff\xfe\x00\x02"

    error = refusal(jpeg[:-2] + empty_comment * 5000 + jpeg[-2:])

    assert error.code == "truncated"
    assert error.messages == [
        "The image file is incomplete or damaged. Please upload it again."
    ]


# --- Resources --------------------------------------------------------------

PEAK_MEMORY_SCRIPT = textwrap.dedent(
    """
    import io, re, sys
    from PIL import Image
    from storage.images import AVATAR, image_process

    def reset_peak_kib():
        with open("/proc/self/clear_refs", "w") as clear_refs:
            clear_refs.write("5")
        return peak_kib()

    def peak_kib():
        with open("/proc/self/status") as status:
            return int(re.search(r"VmHWM:\\s+(\\d+)", status.read())[1])

    warm_up = io.BytesIO()
    Image.new("RGB", (640, 480)).save(warm_up, "JPEG")
    image_process(warm_up, spec=AVATAR, max_bytes=10**8, max_pixels=10**8)

    before = reset_peak_kib()
    with open(sys.argv[1], "rb") as photo:
        image_process(photo, spec=AVATAR, max_bytes=10**8, max_pixels=10**8)
    pipeline = peak_kib() - before

    before = reset_peak_kib()
    with Image.open(sys.argv[1]) as photo:
        photo.load()
    print(pipeline, peak_kib() - before)
    """
)


@pytest.mark.skipif(
    not Path("/proc/self/clear_refs").exists(), reason="needs Linux peak RSS reset"
)
def test_large_jpeg_is_decoded_at_reduced_scale(tmp_path):
    # Pillow allocates pixels outside Python's allocator, so tracemalloc cannot
    # see them; the peak resident size can. It is measured in a fresh process
    # because a child inherits its parent's peak. A full decode of 4000x3000 RGB
    # needs 48 MB, as Pillow stores RGB in 4 bytes per pixel.
    path = tmp_path / "photo.jpg"
    path.write_bytes(encode(smooth_photo((4000, 3000)), "JPEG", quality=90))

    result = subprocess.run(
        [sys.executable, "-c", PEAK_MEMORY_SCRIPT, str(path)],
        cwd=PROJECT_ROOT,
        capture_output=True,
        text=True,
        check=True,
    )
    pipeline_kib, full_decode_kib = map(int, result.stdout.split())

    assert full_decode_kib > 30 * 1024, "the measurement does not see decoding"
    assert pipeline_kib < 15 * 1024
