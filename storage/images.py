"""Validation and normalisation of untrusted image uploads.

An upload is identified from its content (never its name or declared type) among
an allow-list of formats, checked against byte and pixel limits before a single
pixel is decoded, then decoded, oriented, cropped, converted to sRGB and
re-encoded from pixel data alone. Before decoding, the memory the decoder will
need (pixels times the bytes each costs in that format and bit depth, after
JPEG's reduced decoding) is held to a budget, which bounds the CPU time too, and
a JPEG may have no more scans than real encoders write, since each scan is
decoded over the whole image again.
Nothing but pixels of the first frame reaches storage: no EXIF/GPS, XMP,
comments, ICC profile or trailing payload.
"""

from __future__ import annotations

import io
import re
import struct
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import IO

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.files.base import ContentFile, File
from django.utils.text import slugify
from django.utils.translation import gettext as _
from PIL import ExifTags, Image, ImageCms, UnidentifiedImageError

from storage.decode_slots import image_decode_slot

ALLOWED_FORMATS = ("JPEG", "PNG", "WEBP", "GIF")
ACCEPTED_CONTENT_TYPES = "image/jpeg,image/png,image/webp,image/gif"
DEFAULT_MAX_UPLOAD_SIZE = 10 * 1024 * 1024
DEFAULT_MAX_IMAGE_PIXELS = 40_000_000
DEFAULT_MAX_IMAGE_DECODE_BYTES = 64 * 1024 * 1024

_HEADER_BYTES = 4096
_NAME_MAX_LENGTH = 40
_WHITE = (255, 255, 255)
_EXTENSIONS = {"image/jpeg": "jpg", "image/png": "png"}
# Pillow raises these while decoding damaged or truncated data; none of them may
# reach the user as a traceback.
_DECODE_ERRORS = (OSError, SyntaxError, ValueError, EOFError, IndexError)
_BOMB_ERRORS = (Image.DecompressionBombError, Image.DecompressionBombWarning)
# Reading EXIF that is cut short, or has a tag of the wrong type or size.
_EXIF_ERRORS = (*_DECODE_ERRORS, TypeError, struct.error)
# The transposition that turns the stored pixels upright, for each EXIF
# Orientation value (1, upright already, needs none).
_UPRIGHT = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}

# Only used to name a refused format in the error message; Pillow never parses
# these formats here, so their header parsers are not exposed to untrusted input.
_KNOWN_FORMAT_SIGNATURES: tuple[tuple[int, tuple[bytes, ...], str], ...] = (
    (0, (b"BM",), "BMP"),
    (0, (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+"), "TIFF"),
    (0, (b"\x00\x00\x01\x00", b"\x00\x00\x02\x00"), "ICO"),
    (0, (b"%PDF",), "PDF"),
    (0, (b"%!PS", b"\xc5\xd0\xd3\xc6"), "PostScript"),
    (0, (b"8BPS",), "Photoshop"),
    (0, (b"\x00\x00\x00\x0cjP  \r\n\x87\n", b"\xff\x4f\xff\x51"), "JPEG 2000"),
    (0, (b"\x00\x00\x00\x0cJXL \r\n\x87\n", b"\xff\x0a"), "JPEG XL"),
    (0, (b"icns",), "ICNS"),
    (0, (b"qoif",), "QOI"),
    (0, (b"DDS ",), "DDS"),
    (0, (b"gimp xcf",), "XCF"),
    (4, tuple(b"ftyp" + brand for brand in (b"heic", b"heix", b"mif1")), "HEIC"),
    (4, (b"ftypavif", b"ftypavis"), "AVIF"),
)


@dataclass(frozen=True)
class ImageSpec:
    size: int
    keep_alpha: bool
    quality: int = 85


AVATAR = ImageSpec(size=300, keep_alpha=False)
TOKEN_LOGO = ImageSpec(size=200, keep_alpha=True)
# The JPEG decoding scale a header check assumes when it has no spec.
_LARGEST_SPEC_SIZE = max(AVATAR.size, TOKEN_LOGO.size)

# Bytes of memory one decoded pixel costs, measured with Pillow 13 (peak RSS
# over pixels while processing; CPU time follows the same order). Pillow keeps
# RGB, RGBA, LA and CMYK pixels in 4 bytes and expands palettes to RGB(A) for
# resizing; a 16-bit PNG inflates twice the data; libwebp decodes into buffers
# of its own that are copied twice more. A baseline JPEG is decoded at the
# reduced scale only; a progressive one also buffers every DCT coefficient of
# the full image (2 bytes a sample), which `_jpeg_coefficient_bytes` counts.
_BYTES_PER_PIXEL = {"WEBP": 12}
_FORMAT_NAMES = {"WEBP": "WebP", "MPO": "JPEG"}
_SIXTEEN_BIT_FACTOR = 2

# libjpeg decodes every scan of a JPEG over the whole image, so a scan repeated
# costs a full pass each time for a few bytes: 2,000 copies of the last scan of
# a 5000x5000 progressive JPEG (178 KB) took 30 s of CPU to decode instead of
# 0.08 s. Encoders write about 10 scans for a progressive colour JPEG (libjpeg,
# Pillow, mozjpeg, Photoshop), 6 for greyscale, 18 for CMYK: 100 leaves room for
# unusual scan scripts, and the largest greyscale JPEG the decoding budget lets
# through (5700x5700) then decodes in at most about 2.6 s. libjpeg-turbo's tools
# offer -maxscans against the same attack.
MAX_JPEG_SCANS = 100
# Walking a segment costs Python about a microsecond where libjpeg skips it in
# nanoseconds, and Pillow's header parser is as slow: a 10 MB upload of empty
# comment segments would cost seconds. Real files have a few dozen segments
# (hundreds with a large XMP packet or ICC profile split into many).
_MAX_JPEG_SEGMENTS = 1000
_JPEG_READ_BYTES = 64 * 1024
# What libjpeg takes for the next marker, after any segment and within a scan's
# entropy-coded data alike: 0xFF then a byte that is not 0x00 (a stuffed 0xFF
# data byte), 0xFF (fill before a marker) or RST0-RST7 (restart markers, which
# belong to the scan). Bytes before it are skipped, as libjpeg skips them.
_JPEG_MARKER = re.compile(rb"\xff[^\x00\xd0-\xd7\xff]")
_JPEG_SOI, _JPEG_EOI, _JPEG_SOS, _JPEG_TEM = 0xD8, 0xD9, 0xDA, 0x01


class ProcessedImage(ContentFile):
    """An image produced by `image_process`, ready to be saved to a storage."""

    def __init__(
        self,
        content: bytes,
        *,
        name: str,
        spec: ImageSpec,
        content_type: str,
        width: int,
        height: int,
    ) -> None:
        super().__init__(content, name=name)
        self.spec = spec
        self.content_type = content_type
        self.extension = _EXTENSIONS[content_type]
        self.width = width
        self.height = height


def image_validate_header(
    upload: File | IO[bytes],
    *,
    max_bytes: int | None = None,
    max_pixels: int | None = None,
    max_decode_bytes: int | None = None,
) -> str:
    """Check size, format and pixel count without decoding; return the format.

    The returned name is Pillow's ("JPEG", "MPO", "PNG", "WEBP" or "GIF"). The
    upload is rewound afterwards so it can be read again.
    """
    stream = _readable_stream(upload, max_bytes=max_bytes)
    try:
        with _opened_image(
            stream,
            max_pixels=max_pixels,
            max_decode_bytes=max_decode_bytes,
            size=_LARGEST_SPEC_SIZE,
        ) as img:
            return str(img.format)
    finally:
        stream.seek(0)


def image_process(
    upload: File | IO[bytes],
    *,
    spec: ImageSpec,
    name: str | None = None,
    max_bytes: int | None = None,
    max_pixels: int | None = None,
    max_decode_bytes: int | None = None,
) -> ProcessedImage:
    """Validate an untrusted upload and return it as a clean square image.

    The output is exactly `spec.size` pixels square: a PNG (RGBA) when the spec
    keeps alpha and the image has transparent pixels, otherwise a JPEG (RGB)
    with any transparency composited onto white. Raises `ValidationError` with
    codes file_too_large, not_an_image, format_not_allowed, too_many_pixels,
    too_many_scans or truncated, and `ImageDecodersBusy` when every decode slot
    of the host is taken (`storage.decode_slots`).
    """
    stream = _readable_stream(upload, max_bytes=max_bytes)
    # The slot is taken once the header has passed: a refused image never
    # holds one, an accepted one holds it while it is decoded.
    with (
        _opened_image(
            stream,
            max_pixels=max_pixels,
            max_decode_bytes=max_decode_bytes,
            size=spec.size,
        ) as img,
        image_decode_slot(),
    ):
        square, icc_profile = _decode_square(img, spec=spec)
    image = _pixels_only(_to_srgb(square, icc_profile))
    original_name = name if name is not None else getattr(upload, "name", None)
    return _encode(image, spec=spec, original_name=original_name)


def image_ensure_processed(
    upload: File | IO[bytes], *, spec: ImageSpec
) -> ProcessedImage:
    """`upload` itself when a form already processed it for `spec`, else processed."""
    if isinstance(upload, ProcessedImage) and upload.spec == spec:
        return upload
    return image_process(upload, spec=spec)


def image_filename(original_name: str | None, *, extension: str) -> str:
    """Build a safe file name: the slugified stem of the original plus `extension`.

    Any directory part is dropped, so the name never chooses where it is stored.
    """
    basename = (original_name or "").replace("\\", "/").rsplit("/", 1)[-1]
    stem = basename.rsplit(".", 1)[0] if "." in basename[1:] else basename
    stem = slugify(stem)[:_NAME_MAX_LENGTH].strip("-_") or "image"
    return f"{stem}.{extension}"


def image_upright_transpose(img: Image.Image) -> Image.Transpose | None:
    """The transposition that turns `img` upright by its EXIF Orientation tag.

    Only that tag is read: Pillow's ``ImageOps.exif_transpose`` also writes the
    EXIF back, which raises TypeError or struct.error when another tag has the
    wrong type (an XResolution stored as text), and the metadata is dropped here
    anyway. EXIF too damaged to read leaves the image as stored (None). The
    pixels are decoded first, as exif_transpose does (a PNG may keep its EXIF
    after them), so errors in them still reach the caller.
    """
    img.load()
    try:
        orientation = img.getexif().get(ExifTags.Base.Orientation)
    except _EXIF_ERRORS:
        return None
    return _UPRIGHT.get(orientation) if isinstance(orientation, int) else None


def _readable_stream(upload: File | IO[bytes], *, max_bytes: int | None) -> IO[bytes]:
    if max_bytes is None:
        max_bytes = getattr(settings, "MAX_UPLOAD_SIZE", DEFAULT_MAX_UPLOAD_SIZE)
    if isinstance(upload, File) and upload.closed:
        upload.open("rb")
    stream: IO[bytes] = upload  # type: ignore[assignment]
    if not _is_seekable(stream):
        stream = _buffer_up_to(stream, max_bytes + 1)
    size = getattr(upload, "size", None)
    if not isinstance(size, int) or isinstance(stream, io.BytesIO):
        size = stream.seek(0, io.SEEK_END)
    stream.seek(0)
    if size > max_bytes:
        raise ValidationError(
            _("The file is too large (%(size)s). The maximum is %(limit)s."),
            code="file_too_large",
            params={"size": _format_bytes(size), "limit": _format_bytes(max_bytes)},
        )
    return stream


def _buffer_up_to(stream: IO[bytes], limit: int) -> io.BytesIO:
    # Pillow needs to seek, so a pipe or socket is copied to memory, but never
    # more than the byte limit allows; one byte more proves it is exceeded.
    buffer = io.BytesIO()
    while buffer.tell() < limit:
        chunk = stream.read(min(limit - buffer.tell(), 1024 * 1024))
        if not chunk:
            break
        buffer.write(chunk)
    return buffer


def _is_seekable(stream: IO[bytes]) -> bool:
    try:
        return bool(stream.seekable())
    except (AttributeError, ValueError):
        return False


@contextmanager
def _opened_image(
    stream: IO[bytes],
    *,
    max_pixels: int | None,
    max_decode_bytes: int | None,
    size: int,
) -> Iterator[Image.Image]:
    if max_pixels is None:
        max_pixels = getattr(settings, "MAX_IMAGE_PIXELS", DEFAULT_MAX_IMAGE_PIXELS)
    if Image.MAX_IMAGE_PIXELS is not None:
        # Anything that makes Pillow warn about a decompression bomb is refused
        # with our own message instead of merely being logged.
        max_pixels = min(max_pixels, Image.MAX_IMAGE_PIXELS)
    # Walked before Pillow parses the header, which is as slow on a flood of
    # segments as a walk without a limit.
    _check_jpeg_scans(stream)
    try:
        img = Image.open(stream, formats=ALLOWED_FORMATS)
    except _BOMB_ERRORS:
        raise _too_many_pixels(_declared_size(stream), max_pixels) from None
    except UnidentifiedImageError:
        raise _unidentified(stream) from None
    except _DECODE_ERRORS:
        # The content starts like an allowed format, but its header or (for
        # WebP, parsed whole on open) its data is cut short or corrupt.
        raise _damaged() from None
    # A file object passed to Pillow is only closed by `close()`, which the
    # caller still needs; the context manager leaves it open.
    with img:
        width, height = img.size
        if width * height > max_pixels:
            raise _too_many_pixels((width, height), max_pixels)
        if img.format in ("JPEG", "MPO"):
            # libjpeg then decodes at 1/2, 1/4 or 1/8 scale, keeping the short
            # side at least `size`, instead of the whole sensor resolution.
            img.draft(img.mode, (size, size))
        _check_decode_cost(img, (width, height), max_decode_bytes)
        yield img


def _decode_square(img: Image.Image, *, spec: ImageSpec) -> tuple[Image.Image, bytes]:
    """Decode the first frame, crop-resize it to a square and orient it."""
    try:
        upright = image_upright_transpose(img)
        icc_profile = img.info.get("icc_profile") or b""
        working = _to_resizable_mode(img)
        square = _fit_square(working, spec.size)
        # Turned after the centred square is cut and resized, which gives the
        # same picture as turning first, without a copy of the full image.
        if upright is not None:
            square = square.transpose(upright)
    except _BOMB_ERRORS:
        raise _too_many_pixels(img.size, None) from None
    except _DECODE_ERRORS:
        raise _damaged() from None
    return square, icc_profile


def _check_decode_cost(
    img: Image.Image, declared: tuple[int, int], max_decode_bytes: int | None
) -> None:
    if max_decode_bytes is None:
        max_decode_bytes = getattr(
            settings, "MAX_IMAGE_DECODE_BYTES", DEFAULT_MAX_IMAGE_DECODE_BYTES
        )
    per_pixel, kind = _decode_bytes_per_pixel(img)
    cost = img.width * img.height * per_pixel
    if img.format in ("JPEG", "MPO") and img.info.get("progressive"):
        per_pixel, kind = _jpeg_coefficient_bytes_per_pixel(img), "progressive JPEG"
        cost += declared[0] * declared[1] * per_pixel
    if cost > max_decode_bytes:
        raise _too_costly(declared, kind, max_decode_bytes / per_pixel)


def _decode_bytes_per_pixel(img: Image.Image) -> tuple[float, str]:
    """What one decoded pixel costs, and the kind of image named to the user."""
    name = _FORMAT_NAMES.get(str(img.format), str(img.format))
    if img.format in _BYTES_PER_PIXEL:
        return _BYTES_PER_PIXEL[str(img.format)], name
    rawmode = img.tile[0].args if img.tile else None
    if img.mode.startswith("I;16"):
        # Converted through 32-bit integers to scale it down to 8 bits.
        return 4 * _SIXTEEN_BIT_FACTOR, f"16-bit {name}"
    per_pixel = 1 if img.mode in ("1", "L") else 4
    if isinstance(rawmode, str) and ";16" in rawmode:
        return per_pixel * _SIXTEEN_BIT_FACTOR, f"16-bit {name}"
    return per_pixel, name


def _jpeg_coefficient_bytes_per_pixel(img: Image.Image) -> float:
    # `layer` holds (id, horizontal, vertical sampling, table) per component; a
    # subsampled component has fewer coefficients than the image has pixels.
    layers = getattr(img, "layer", None) or [("", 1, 1, 0)] * len(img.getbands())
    h_max = max(layer[1] for layer in layers) or 1
    v_max = max(layer[2] for layer in layers) or 1
    return sum(2 * layer[1] * layer[2] / (h_max * v_max) for layer in layers)


def _check_jpeg_scans(stream: IO[bytes]) -> None:
    """Refuse a JPEG with more than `MAX_JPEG_SCANS` scans, reading no pixels.

    The segments are walked as libjpeg walks them up to the first end of image
    (where the first frame of an MPO file ends too), reading the stream a chunk
    at a time, so an upload is never held in memory twice. The stream is
    rewound afterwards.
    """
    try:
        stream.seek(0)
        if stream.read(3) == b"\xff\xd8\xff":
            stream.seek(2)
            _walk_jpeg_segments(stream)
    finally:
        stream.seek(0)


def _walk_jpeg_segments(stream: IO[bytes]) -> None:
    buffer, position, scans, segments = b"", 0, 0, 0
    while True:
        match = _JPEG_MARKER.search(buffer, position)
        if match is None or match.end() + 2 > len(buffer):
            # The marker and its length may continue in the next chunk; so may
            # a last 0xFF, which the next byte makes a marker or stuffing.
            keep_from = match.start() if match else max(position, len(buffer) - 1)
            chunk = stream.read(_JPEG_READ_BYTES)
            if not chunk:
                return
            buffer, position = buffer[keep_from:] + chunk, 0
            continue
        marker = buffer[match.start() + 1]
        if marker == _JPEG_EOI:
            return
        if marker == _JPEG_SOS:
            scans += 1
            if scans > MAX_JPEG_SCANS:
                raise _too_many_scans()
        segments += 1
        if segments > _MAX_JPEG_SEGMENTS:
            # No encoder writes this; refused before it costs seconds to walk.
            raise _damaged()
        position = match.end()
        if marker in (_JPEG_SOI, _JPEG_TEM):
            continue  # no length field
        # libjpeg reads the length, then skips or parses exactly that much.
        position += max(int.from_bytes(buffer[position : position + 2], "big"), 2)
        if position > len(buffer):
            stream.seek(position - len(buffer), io.SEEK_CUR)
            buffer, position = b"", 0


def _fit_square(img: Image.Image, size: int) -> Image.Image:
    """Crop the centred square and resize it, like ImageOps.fit.

    reducing_gap first shrinks by whole factors with a box filter, which halves
    the time of a large image; Pillow documents 3.0 as indistinguishable from
    a full Lanczos resize.
    """
    side = min(img.width, img.height)
    left, top = (img.width - side) / 2, (img.height - side) / 2
    return img.resize(
        (size, size),
        Image.Resampling.LANCZOS,
        box=(left, top, left + side, top + side),
        reducing_gap=3.0,
    )


def _to_resizable_mode(img: Image.Image) -> Image.Image:
    """Bring any decoded mode to one of L, LA, RGB, RGBA or CMYK."""
    mode = img.mode
    if mode in ("P", "PA") or ("transparency" in img.info and mode in ("L", "RGB")):
        return img.convert("RGBA" if img.has_transparency_data else "RGB")
    if mode in ("L", "LA", "RGB", "RGBA", "CMYK"):
        return img
    if mode == "1":
        return img.convert("L")
    if mode == "I" or mode.startswith("I;16"):
        # Pillow's own conversion clips 16-bit values at 255 instead of scaling.
        return img.convert("I").point(lambda value: value / 257).convert("L")
    if mode == "La":
        return img.convert("LA")
    if mode == "RGBa":
        return img.convert("RGBA")
    if mode == "F":
        return img.convert("L")
    return img.convert("RGBA" if img.has_transparency_data else "RGB")


def _to_srgb(img: Image.Image, icc_profile: bytes) -> Image.Image:
    """Return an RGB or RGBA image in sRGB, alpha kept apart from the colours."""
    alpha = img.getchannel("A") if img.mode in ("LA", "RGBA") else None
    colour = img.convert(img.mode[:-1]) if alpha is not None else img
    rgb = None
    if icc_profile:
        try:
            rgb = ImageCms.profileToProfile(
                colour,
                ImageCms.ImageCmsProfile(io.BytesIO(icc_profile)),
                ImageCms.createProfile("sRGB"),
                outputMode="RGB",
            )
        except (ImageCms.PyCMSError, OSError, ValueError, TypeError):
            # A broken profile, or one for another colour space than the pixels,
            # is ignored: the pixels are taken as sRGB like untagged ones.
            rgb = None
    if rgb is None:
        rgb = colour.convert("RGB")
    if alpha is not None:
        rgb.putalpha(alpha)
    return rgb


def _pixels_only(img: Image.Image) -> Image.Image:
    # Encoders read some metadata (comments, ICC, EXIF) from `img.info`, which
    # every Pillow operation copies along; a fresh image carries none.
    clean = Image.new(img.mode, img.size)
    clean.paste(img)
    return clean


def _encode(
    img: Image.Image, *, spec: ImageSpec, original_name: str | None
) -> ProcessedImage:
    buffer = io.BytesIO()
    alpha = img.getchannel("A") if img.mode == "RGBA" else None
    if alpha is not None and spec.keep_alpha and alpha.getextrema()[0] < 255:
        img.save(buffer, format="PNG", optimize=True)
        extension, content_type = "png", "image/png"
    else:
        if alpha is not None:
            flat = Image.new("RGB", img.size, _WHITE)
            flat.paste(img, mask=alpha)
            img = flat
        img.save(
            buffer,
            format="JPEG",
            quality=spec.quality,
            optimize=True,
            progressive=True,
        )
        extension, content_type = "jpg", "image/jpeg"
    return ProcessedImage(
        buffer.getvalue(),
        name=image_filename(original_name, extension=extension),
        spec=spec,
        content_type=content_type,
        width=img.width,
        height=img.height,
    )


def _declared_size(stream: IO[bytes]) -> tuple[int, int] | None:
    """Read the dimensions of an image that Pillow refused to open as a bomb."""
    stream.seek(0)
    prefix = stream.read(16)
    Image.init()
    for format_name in ALLOWED_FORMATS:
        factory, accept = Image.OPEN[format_name]
        if accept is not None and accept(prefix) is not True:
            continue
        stream.seek(0)
        try:
            return factory(stream, "").size
        except Exception:
            return None
    return None


def _unidentified(stream: IO[bytes]) -> ValidationError:
    stream.seek(0)
    head = stream.read(_HEADER_BYTES)
    format_name = "SVG" if _looks_like_svg(head) else _known_format(head)
    if format_name is None:
        return _not_an_image()
    return ValidationError(
        _(
            "%(format)s images are not allowed. "
            "Please upload a JPEG, PNG, WebP or GIF image."
        ),
        code="format_not_allowed",
        params={"format": format_name},
    )


def _looks_like_svg(head: bytes) -> bool:
    encoding = "latin-1"
    for bom, bom_encoding in (
        (b"\xef\xbb\xbf", "utf-8"),
        (b"\xff\xfe", "utf-16-le"),
        (b"\xfe\xff", "utf-16-be"),
    ):
        if head.startswith(bom):
            head, encoding = head[len(bom) :], bom_encoding
            break
    text = head.decode(encoding, errors="ignore").lstrip().lower()
    return text.startswith(("<?xml", "<svg")) or (
        text.startswith("<!") and "<svg" in text
    )


def _known_format(head: bytes) -> str | None:
    for offset, signatures, format_name in _KNOWN_FORMAT_SIGNATURES:
        if head[offset:].startswith(signatures):
            return format_name
    return None


def _not_an_image() -> ValidationError:
    return ValidationError(
        _("This file is not an image, or it is damaged."), code="not_an_image"
    )


def _damaged() -> ValidationError:
    return ValidationError(
        _("The image file is incomplete or damaged. Please upload it again."),
        code="truncated",
    )


def _too_many_pixels(
    size: tuple[int, int] | None, max_pixels: int | None
) -> ValidationError:
    if max_pixels is None:
        max_pixels = getattr(settings, "MAX_IMAGE_PIXELS", DEFAULT_MAX_IMAGE_PIXELS)
    limit = _format_number(max_pixels / 1_000_000)
    if size is None:
        return ValidationError(
            _("The image is too large. The maximum is %(limit)s megapixels."),
            code="too_many_pixels",
            params={"limit": limit},
        )
    return ValidationError(
        _(
            "The image is too large: %(width)sx%(height)s pixels. "
            "The maximum is %(limit)s megapixels."
        ),
        code="too_many_pixels",
        params={"width": size[0], "height": size[1], "limit": limit},
    )


def _too_costly(size: tuple[int, int], kind: str, max_pixels: float) -> ValidationError:
    return ValidationError(
        _(
            "The image is too large: %(width)sx%(height)s pixels. "
            "A %(kind)s image may have at most %(limit)s megapixels."
        ),
        code="too_many_pixels",
        params={
            "width": size[0],
            "height": size[1],
            "kind": kind,
            "limit": _format_number(max_pixels / 1_000_000),
        },
    )


def _too_many_scans() -> ValidationError:
    return ValidationError(
        _(
            "The JPEG image has more than %(limit)s scans, far more than cameras "
            "and image editors write, and would take too long to process. "
            "Please save it again as a standard JPEG or as a PNG."
        ),
        code="too_many_scans",
        params={"limit": MAX_JPEG_SCANS},
    )


def _format_bytes(count: int) -> str:
    if count >= 1024 * 1024:
        return f"{_format_number(count / (1024 * 1024))} MB"
    if count >= 1024:
        return f"{_format_number(count / 1024)} KB"
    return f"{count} bytes"


def _format_number(value: float) -> str:
    return f"{value:.1f}".removesuffix(".0")
