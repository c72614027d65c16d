"""Test documents: photos with metadata, PNG scans, small PDFs."""

from __future__ import annotations

import io
import struct
from collections.abc import Callable

import pikepdf
from django.core.files.uploadedfile import SimpleUploadedFile
from PIL import Image

RED, BLUE = (255, 0, 0), (0, 0, 255)
PAGES = b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>"
PAGE = b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 595 842] /Resources << >> >>"


def jpeg_with_gps(width: int = 3000, height: int = 2000) -> bytes:
    image = Image.new("RGB", (width, height), (200, 180, 150))
    exif = Image.Exif()
    exif[0x010F] = "PhoneMaker"  # Make
    exif[0x8825] = {1: "N", 2: (48.0, 51.0, 29.0)}  # GPSInfo
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", exif=exif, comment=b"secret comment")
    return buffer.getvalue()


def jpeg_with_malformed_exif(width: int = 400, height: int = 300) -> bytes:
    """Red left half, blue right half; EXIF says to turn it 90 degrees clockwise.

    The EXIF also stores XResolution, a fraction, as the text "abc": Pillow reads
    it, but cannot write that EXIF back.
    """
    image = Image.new("RGB", (width, height), RED)
    image.paste(BLUE, (width // 2, 0, width, height))
    entries = [
        struct.pack("<HHI", 0x011A, 2, 4) + b"abc\x00",  # XResolution, as ASCII
        struct.pack("<HHI", 0x0112, 3, 1) + struct.pack("<HH", 6, 0),  # Orientation
    ]
    tiff = (
        b"II*\x00"
        + struct.pack("<IH", 8, len(entries))
        + b"".join(entries)
        + struct.pack("<I", 0)
    )
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", exif=b"Exif\x00\x00" + tiff)
    return buffer.getvalue()


def png_scan(width: int = 800, height: int = 500) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGBA", (width, height), (10, 20, 30, 255)).save(buffer, "PNG")
    return buffer.getvalue()


def pdf(body: bytes = b"") -> bytes:
    """One blank page, and `body` (objects numbered from 4) after it.

    No cross-reference table: readers rebuild it by finding every object.
    """
    return (
        b"%PDF-1.4\n1 0 obj << /Type /Catalog /Pages 2 0 R >> endobj\n"
        b"2 0 obj << /Type /Pages /Kids [3 0 R] /Count 1 >> endobj\n"
        b"3 0 obj << /Type /Page /Parent 2 0 R /MediaBox [0 0 595 842] >> endobj\n"
        + body
        + b"trailer << /Root 1 0 R >>\nstartxref\n0\n%%EOF\n"
    )


def pdf_objects(*objects: bytes) -> bytes:
    """A PDF of `objects`, numbered from 1 (the catalog), with a correct
    cross-reference table: readers find every object without rebuilding it."""
    size = len(objects) + 1
    content, offsets = b"%PDF-1.7\n", []
    for number, body in enumerate(objects, 1):
        offsets.append(len(content))
        content += b"%d 0 obj\n%s\nendobj\n" % (number, body)
    table = len(content)
    content += b"xref\n0 %d\n0000000000 65535 f \n" % size
    content += b"".join(b"%010d 00000 n \n" % offset for offset in offsets)
    content += b"trailer\n<< /Size %d /Root 1 0 R >>\n" % size
    return content + b"startxref\n%d\n%%%%EOF\n" % table


def pdf_opening_with(action: bytes) -> bytes:
    """A one-page PDF whose catalog runs `action` (object 4) when it is opened."""
    return pdf_objects(
        b"<< /Type /Catalog /Pages 2 0 R /OpenAction 4 0 R >>", PAGES, PAGE, action
    )


def pdf_in_object_streams(change: Callable[[pikepdf.Pdf], None] | None = None) -> bytes:
    """A one-page PDF as qpdf writes it: every object but streams packed in
    compressed object streams, after `change` is made to it."""
    document = pikepdf.new()
    document.add_blank_page()
    if change is not None:
        change(document)
    buffer = io.BytesIO()
    document.save(buffer, object_stream_mode=pikepdf.ObjectStreamMode.generate)
    return buffer.getvalue()


def upload(name: str, content: bytes, content_type: str = "application/octet-stream"):
    return SimpleUploadedFile(name, content, content_type=content_type)


def full_set() -> dict:
    return {
        "front": upload("front.jpg", jpeg_with_gps(), "image/jpeg"),
        "back": upload("back.png", png_scan(), "image/png"),
        "selfie": upload("selfie.pdf", pdf(), "application/pdf"),
    }
