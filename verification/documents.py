"""Checking and cleaning identity document uploads: JPEG, PNG or PDF.

Images go through the same checks as every image upload (``storage.images``:
identified from the content, byte and pixel limits before decoding), then are
decoded, oriented and re-encoded from pixels alone, so no EXIF (GPS, camera,
dates) or other metadata survives. Unlike avatars they are not cropped: only
made to fit ``DOCUMENT_MAX_SIDE`` so that the text stays readable.

PDFs are stored as sent once they are shown to be PDFs: the ``%PDF-`` header,
an ``%%EOF`` trailer, parsed by qpdf (pikepdf) without a password, and no
active content (JavaScript, launch actions, embedded files) that a viewer on a
staff machine might run. Every object is looked at as a viewer reads it: with
``#xx`` escapes in names decoded and object streams unpacked, in a child
process whose memory and CPU time are capped (``verification.pdf_scan``).
"""

from __future__ import annotations

import io
import re
from typing import IO

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.files.base import ContentFile, File
from PIL import Image

from storage.decode_slots import image_decode_slot
from storage.images import image_upright_transpose, image_validate_header
from verification.pdf_scan import PdfVerdict, pdf_scan_isolated

DOCUMENT_MAX_SIDE = 2000
ACCEPTED_CONTENT_TYPES = "image/jpeg,image/png,application/pdf"
_IMAGE_FORMATS = ("JPEG", "MPO", "PNG")
_PDF_HEADER = re.compile(rb"^%PDF-[12]\.\d")
# A PDF ends with %%EOF and at most a line break or some padding after it.
_PDF_TRAILER_WINDOW = 1024
_DECODE_ERRORS = (OSError, SyntaxError, ValueError, EOFError, IndexError)
_BOMB_ERRORS = (Image.DecompressionBombError, Image.DecompressionBombWarning)


class ProcessedDocument(ContentFile):
    """A document ready to store: a clean JPEG, or a checked PDF."""

    def __init__(self, content: bytes, *, content_type: str) -> None:
        self.content_type = content_type
        self.extension = "pdf" if content_type == "application/pdf" else "jpg"
        super().__init__(content, name=f"document.{self.extension}")


def document_process(
    upload: File | IO[bytes], *, max_bytes: int | None = None
) -> ProcessedDocument:
    """Validate an untrusted upload and return what may be stored.

    Raises ``ValidationError`` with codes file_too_large, format_not_allowed,
    too_many_pixels, truncated, pdf_invalid, pdf_encrypted, pdf_too_complex or
    pdf_active_content, each with a message for the user, and
    ``ImageDecodersBusy`` when every decode slot of the host is taken.
    """
    if max_bytes is None:
        max_bytes = settings.IDENTITY_DOCUMENT_MAX_SIZE
    size = getattr(upload, "size", None)
    if isinstance(size, int) and size > max_bytes:
        raise _too_large(size, max_bytes)
    upload.seek(0)
    head = upload.read(8)
    upload.seek(0)
    if head.startswith(b"%PDF"):
        return _pdf_check(upload, max_bytes=max_bytes)
    return _image_clean(upload, max_bytes=max_bytes)


def _image_clean(upload: File | IO[bytes], *, max_bytes: int) -> ProcessedDocument:
    try:
        image_format = image_validate_header(upload, max_bytes=max_bytes)
    except ValidationError as error:
        if error.code in ("not_an_image", "format_not_allowed"):
            raise _format_not_allowed() from None
        raise
    if image_format not in _IMAGE_FORMATS:
        raise _format_not_allowed()
    # Decoding, resizing and re-encoding at up to 2000 px all cost CPU: one
    # decode slot of the host for the whole of it.
    with image_decode_slot():
        return _image_reencode(upload)


def _image_reencode(upload: File | IO[bytes]) -> ProcessedDocument:
    try:
        with Image.open(upload, formats=("JPEG", "PNG")) as img:
            if img.format in ("JPEG", "MPO"):
                # libjpeg decodes at a reduced scale that still covers the
                # target size, instead of the whole sensor resolution.
                img.draft("RGB", (DOCUMENT_MAX_SIDE, DOCUMENT_MAX_SIDE))
            upright = image_upright_transpose(img)
            rgb = _flatten(img)
            rgb.thumbnail(
                (DOCUMENT_MAX_SIDE, DOCUMENT_MAX_SIDE), Image.Resampling.LANCZOS
            )
            # Fitting into a square gives the same picture turned before or
            # after; after, only the smaller image is copied.
            if upright is not None:
                rgb = rgb.transpose(upright)
    except _BOMB_ERRORS:
        raise ValidationError(
            "The image has too many pixels.", code="too_many_pixels"
        ) from None
    except _DECODE_ERRORS:
        raise ValidationError(
            "The image file is incomplete or damaged. Please upload it again.",
            code="truncated",
        ) from None
    # A fresh image carries none of the source's metadata (EXIF, ICC, comments).
    clean = Image.new("RGB", rgb.size)
    clean.paste(rgb)
    buffer = io.BytesIO()
    clean.save(buffer, format="JPEG", quality=90, optimize=True)
    return ProcessedDocument(buffer.getvalue(), content_type="image/jpeg")


def _flatten(img: Image.Image) -> Image.Image:
    """RGB pixels; transparency (a scanned PNG's) composited onto white."""
    if img.mode in ("RGBA", "LA", "P", "PA") and img.has_transparency_data:
        rgba = img.convert("RGBA")
        flat = Image.new("RGB", rgba.size, (255, 255, 255))
        flat.paste(rgba, mask=rgba.getchannel("A"))
        return flat
    if img.mode == "I" or img.mode.startswith("I;16"):
        # Pillow's own conversion clips 16-bit values at 255 instead of scaling.
        return img.convert("I").point(lambda value: value / 257).convert("RGB")
    return img.convert("RGB")


def _pdf_check(upload: File | IO[bytes], *, max_bytes: int) -> ProcessedDocument:
    content = upload.read(max_bytes + 1)
    upload.seek(0)
    if len(content) > max_bytes:
        raise _too_large(len(content), max_bytes)
    if not _PDF_HEADER.match(content):
        raise _pdf_invalid()
    if b"%%EOF" not in content[-_PDF_TRAILER_WINDOW:]:
        raise ValidationError(
            "The PDF is incomplete (it has no end). Please upload it again.",
            code="pdf_invalid",
        )
    # Parsing a hostile PDF costs at least as much CPU and memory as decoding an
    # image.
    with image_decode_slot():
        verdict = pdf_scan_isolated(content)
    if verdict != PdfVerdict.PLAIN:
        raise _PDF_REFUSALS[verdict]()
    return ProcessedDocument(content, content_type="application/pdf")


def _too_large(size: int, limit: int) -> ValidationError:
    return ValidationError(
        "The file is too large (%(size)s). The maximum is %(limit)s.",
        code="file_too_large",
        params={"size": _megabytes(size), "limit": _megabytes(limit)},
    )


def _megabytes(count: int) -> str:
    return f"{count / (1024 * 1024):.1f}".removesuffix(".0") + " MB"


def _format_not_allowed() -> ValidationError:
    return ValidationError(
        "This file is not a JPEG, PNG or PDF. Please upload a photo or scan of "
        "your document in one of these formats.",
        code="format_not_allowed",
    )


def _pdf_active_content() -> ValidationError:
    return ValidationError(
        "This PDF contains scripts, actions or attached files, which are "
        "not accepted. Please upload a plain scan or a photo instead.",
        code="pdf_active_content",
    )


def _pdf_too_complex() -> ValidationError:
    return ValidationError(
        "This PDF is too complex to check. Please upload a plain scan or a "
        "photo instead.",
        code="pdf_too_complex",
    )


def _pdf_encrypted() -> ValidationError:
    return ValidationError(
        "This PDF is protected by a password or encrypted, so it cannot be "
        "checked. Please upload an unprotected copy, or a photo.",
        code="pdf_encrypted",
    )


def _pdf_invalid() -> ValidationError:
    return ValidationError(
        "This file is not a valid PDF. Please upload it again, or send a photo.",
        code="pdf_invalid",
    )


_PDF_REFUSALS = {
    PdfVerdict.ACTIVE: _pdf_active_content,
    PdfVerdict.ENCRYPTED: _pdf_encrypted,
    PdfVerdict.INVALID: _pdf_invalid,
    PdfVerdict.TOO_COMPLEX: _pdf_too_complex,
}
