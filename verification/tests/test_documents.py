import io

import pytest
from django.core.exceptions import ValidationError
from PIL import Image

from verification.documents import DOCUMENT_MAX_SIDE, document_process
from verification.tests.samples import jpeg_with_gps, pdf, png_scan, upload


@pytest.mark.reliability("upload-broken")
def test_a_photo_is_re_encoded_readable_and_without_metadata():
    processed = document_process(upload("id.jpg", jpeg_with_gps(3000, 2000)))
    image = Image.open(io.BytesIO(processed.read()))
    assert processed.content_type == "image/jpeg"
    assert image.format == "JPEG"
    # Fitted, not cropped to a square like an avatar.
    assert image.size == (DOCUMENT_MAX_SIDE, DOCUMENT_MAX_SIDE * 2 // 3)
    assert not image.getexif()
    assert "comment" not in image.info and "exif" not in image.info
    processed.seek(0)
    raw = processed.read()
    assert b"PhoneMaker" not in raw and b"secret comment" not in raw


def test_a_small_png_scan_keeps_its_size_and_becomes_jpeg():
    processed = document_process(upload("scan.png", png_scan(800, 500)))
    image = Image.open(io.BytesIO(processed.read()))
    assert (image.format, image.size) == ("JPEG", (800, 500))
    assert processed.name.endswith(".jpg")


def test_a_pdf_is_kept_as_sent():
    content = pdf()
    processed = document_process(upload("id.pdf", content))
    assert processed.content_type == "application/pdf"
    assert processed.read() == content
    assert processed.name.endswith(".pdf")


@pytest.mark.parametrize(
    ("content", "code", "words"),
    [
        (b"%PDF-1.4\nnothing else", "pdf_invalid", "incomplete"),
        (b"%PDF-x not a version\n%%EOF", "pdf_invalid", "not a valid PDF"),
        (
            pdf(b"3 0 obj << /S /JavaScript /JS (app.alert(1)) >> endobj\n"),
            "pdf_active_content",
            "scripts",
        ),
        (
            pdf(b"3 0 obj << /Type /EmbeddedFile >> endobj\n"),
            "pdf_active_content",
            "attached files",
        ),
        (b"<html><script>alert(1)</script></html>", "format_not_allowed", "JPEG, PNG"),
        (b"GIF89a" + b"\x00" * 40, "format_not_allowed", "JPEG, PNG"),
    ],
)
@pytest.mark.reliability("upload-types")
def test_refusals_say_why(content, code, words):
    with pytest.raises(ValidationError) as refused:
        document_process(upload("doc.pdf", content))
    assert refused.value.code == code
    assert words in " ".join(refused.value.messages)


@pytest.mark.reliability("upload-types")
def test_a_webp_image_is_refused_naming_the_formats():
    buffer = io.BytesIO()
    Image.new("RGB", (50, 50)).save(buffer, "WEBP")
    with pytest.raises(ValidationError) as refused:
        document_process(upload("id.webp", buffer.getvalue()))
    assert refused.value.code == "format_not_allowed"


def test_the_size_limit_comes_from_the_setting(settings):
    settings.IDENTITY_DOCUMENT_MAX_SIZE = 1024
    with pytest.raises(ValidationError) as refused:
        document_process(upload("id.pdf", pdf(b"%" + b"x" * 2000 + b"\n")))
    assert refused.value.code == "file_too_large"
    assert "The maximum is" in refused.value.messages[0]
