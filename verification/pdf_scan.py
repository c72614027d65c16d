"""The PDF check of identity documents, run in a child process.

qpdf (pikepdf) reads the upload as a viewer would, ``#xx`` escapes in names
decoded and object streams unpacked, and every object is searched for active
content. Parsing a hostile file can take gigabytes and seconds (an LZW bomb
in a cross-reference stream: 2 GB from a 1 MB upload while merely opening,
and qpdf has no limit for LZW), so it runs in a process of its own whose
memory and CPU time are capped: a file that passes them is refused as too
complex, and the web worker never holds its memory.

    python -m verification.pdf_scan MEMORY_BYTES CPU_SECONDS < upload.pdf

prints one of ``PdfVerdict``'s values. This module imports no Django, and
pikepdf only in the child: the web worker never parses a PDF.
"""

from __future__ import annotations

import collections
import enum
import io
import re
import resource
import subprocess
import sys
from pathlib import Path

# Address space for the child, Python and qpdf included. A 20-page scan of
# 10 MB peaked at 38 MB; 7 MB of numbers in one array took 636 MB and 3.7 s
# uncapped, and under this cap qpdf gives up on it at 240 MB in 0.6 s.
MEMORY_BYTES = 256 * 1024 * 1024
CPU_SECONDS = 10
_PROJECT_ROOT = Path(__file__).resolve().parents[1]


class PdfVerdict(enum.StrEnum):
    PLAIN = "plain"
    ACTIVE = "active"  # scripts, actions or attached files
    ENCRYPTED = "encrypted"
    INVALID = "invalid"
    TOO_COMPLEX = "too_complex"  # past the memory or time the check may take


# Names that make a viewer run code, open or fetch another file, or that carry a
# file inside the PDF. Refused as a key or as a value (an action's /S, wherever
# the action is: /OpenAction, /AA, a link, a form field; a stream's /Type; an
# annotation's /Subtype).
_ACTIVE_NAMES = frozenset(
    {
        "/JavaScript",  # script actions, and the document's table of scripts
        "/JS",  # the script itself, in a JavaScript or Rendition action
        "/Launch",  # runs a program or opens a file on the staff machine
        "/EmbeddedFile",  # an attached file
        "/EmbeddedFiles",  # the document's table of attached files
        "/EF",  # a file specification that holds the file (/Type is optional)
        "/FileAttachment",  # an annotation that opens an attached file
        "/GoToE",  # opens a PDF attached to this one
        # Opens another file: a path on a network share makes Windows send the
        # staff member's credentials to it.
        "/GoToR",
        "/ImportData",  # reads form data from a file
        "/SubmitForm",  # sends form data to an address the PDF chooses
        "/XFA",  # XML forms, which run scripts of their own
        "/RichMedia",  # Flash and other players, with scripts of their own
        "/OnInstantiate",  # the script of 3D artwork
    }
)
# A URI action (/S /URI) is allowed only as the /A of a link annotation, which
# runs when staff click the link, and for a web or mail address, which viewers
# ask before they follow (a tel: one is handed to a phone app, which dials
# nothing unasked either): ordinary PDFs (statements, exported letters) have
# links. Anywhere else it runs unasked: on opening the file (/OpenAction), on
# showing a page or moving the mouse over something (/AA), or after another
# action (/Next), and so tells whoever sent the file that, when and from where
# staff opened it. A file:, smb: or \\host\share address makes Windows send
# the staff member's credentials to the share, as /GoToR does; a javascript:
# or data: address runs in the viewer or the browser.
_LINK_SCHEMES = re.compile(r"(?:https?|mailto|tel):", re.IGNORECASE)
# Keys under which an action runs without a click.
_UNASKED_ACTION_NAMES = frozenset({"/OpenAction", "/AA"})

# A name token in PDF source: a slash, then anything but white space and
# delimiters, with #xx for any other byte.
_NAME = re.compile(rb"/[^\x00\t\n\x0c\r ()<>\[\]{}/%]*")
_NAME_ESCAPE = re.compile(rb"#([0-9A-Fa-f]{2})")
# An /OpenAction written as an array is a destination, the page and zoom to
# open at (Chromium, Word and LibreOffice write one), which runs nothing: an
# array holding no dictionary, string or comment, any of which could hide one.
_WRITTEN_DESTINATION = re.compile(rb"[\x00\t\n\x0c\r ]*\[[^\[\]<>()%]*\]")

# qpdf inflates object and cross-reference streams to read the objects in them
# (page contents and images are never decoded here): without a limit, a 1 MB
# upload inflated to 5 GB. Real ones hold kilobytes. qpdf has no such limit for
# LZW, which PDFs rarely use: the child's memory cap stops that.
_MAX_INFLATED_BYTES = 16 * 1024 * 1024


def pdf_scan_isolated(content: bytes) -> PdfVerdict:
    """``pdf_scan`` of ``content`` in a child process, its memory and CPU time
    capped: ``TOO_COMPLEX`` when it passes them."""
    try:
        child = subprocess.run(  # noqa: S603 (this interpreter, this module)
            [
                sys.executable,
                *("-m", "verification.pdf_scan"),
                *(str(MEMORY_BYTES), str(CPU_SECONDS)),
            ],
            input=content,
            capture_output=True,
            cwd=_PROJECT_ROOT,
            timeout=CPU_SECONDS * 3,  # also bounds time spent waiting for CPU
            check=False,
        )
    except subprocess.TimeoutExpired:
        return PdfVerdict.TOO_COMPLEX
    try:
        return PdfVerdict(child.stdout.decode().strip())
    except ValueError:  # killed (SIGXCPU), or out of memory (MemoryError)
        return PdfVerdict.TOO_COMPLEX


def pdf_scan(content: bytes) -> PdfVerdict:
    """What the file is, parsed by qpdf: a plain document, or one to refuse."""
    import pikepdf

    try:
        # Nothing is rendered, so inherited page attributes are not copied down
        # to the pages (qpdf warns doing it for a page without resources).
        with pikepdf.open(io.BytesIO(content), inherit_page_attributes=False) as pdf:
            if pdf.is_encrypted:
                return PdfVerdict.ENCRYPTED
            # A viewer starts from the catalog and its page tree: without
            # them (or any page) there is nothing to show.
            if not pdf.pages:
                return PdfVerdict.INVALID
            active, packed_names = _has_active_content(pdf)
            # qpdf warns when it rebuilds a damaged file or cannot read an
            # object in it. A viewer may rebuild or read it differently, so
            # then the names written anywhere in the file count too.
            repaired = bool(pdf.get_warnings())
    except pikepdf.PasswordError:
        return PdfVerdict.ENCRYPTED
    except pikepdf.PdfError:
        return PdfVerdict.INVALID
    if active or (repaired and _written_active(_names(content) | packed_names)):
        return PdfVerdict.ACTIVE
    return PdfVerdict.PLAIN


def _written_active(names: set[str]) -> bool:
    """Whether names written in the source may make a viewer that reads it
    differently from qpdf run something: an active name, or a URI action in a
    file that runs actions unasked (which action runs on opening cannot be told
    from the names alone; an /OpenAction that is a destination, ``_names``
    leaves out)."""
    return bool(
        names & _ACTIVE_NAMES or ("/URI" in names and names & _UNASKED_ACTION_NAMES)
    )


def _has_active_content(pdf) -> tuple[bool, set[str]]:
    """Whether any object of the file names active content, as a key or value,
    or holds a URI action anywhere but as a link's (``_uri_action_refused``);
    and the names written in its object streams.

    Every object the file defines is looked at, whether anything refers to it or
    not, including those packed in object streams; an object nested in another
    is looked at with it, one referred to by reference on its own (and, if it
    is an action, where each reference to it is). The source of each object
    stream is searched for names as well; a URI action in an object it packs
    that qpdf does not read there (``_unlisted_packed_source``) is refused.
    """
    import pikepdf

    xref = pdf.get_xref_table()
    packed_names: set[str] = set()
    for top in (pdf.trailer, *pdf.objects):
        if isinstance(top, pikepdf.Stream) and top.get("/Type") == pikepdf.Name.ObjStm:
            source = top.read_bytes()
            names = _names(source)
            packed_names |= names
            if names & _ACTIVE_NAMES or (
                "/URI" in _names(_unlisted_packed_source(top, source, xref))
            ):
                return True, packed_names
        pending = [top]
        while pending:
            item = pending.pop()
            if isinstance(item, pikepdf.Name):
                # As qpdf writes it: ASCII, any other byte escaped.
                if item.unparse(resolved=True).decode("ascii") in _ACTIVE_NAMES:
                    return True, packed_names
            elif isinstance(item, pikepdf.Dictionary | pikepdf.Stream):
                if _is_uri_action(item) and not _web_address(item.get("/URI")):
                    return True, packed_names
                for key, value in item.items():
                    if key in _ACTIVE_NAMES or _uri_action_refused(item, key, value):
                        return True, packed_names
                    if not _is_reference(value):
                        pending.append(value)
            elif isinstance(item, pikepdf.Array):
                # An action in an array is one of a list run one after the
                # other (/Next), not a link's.
                if any(_is_uri_action(value) for value in item):
                    return True, packed_names
                pending.extend(value for value in item if not _is_reference(value))
    return False, packed_names


def _is_uri_action(value: object) -> bool:
    import pikepdf

    return (
        isinstance(value, pikepdf.Dictionary | pikepdf.Stream)
        and value.get("/S") == pikepdf.Name.URI
    )


def _uri_action_refused(holder, key: str, value: object) -> bool:
    """Whether ``value``, held under ``key`` in ``holder``, is a URI action
    run otherwise than by a click on a link: only a /Link annotation's /A is."""
    import pikepdf

    return _is_uri_action(value) and not (
        key == "/A" and holder.get("/Subtype") == pikepdf.Name.Link
    )


def _web_address(uri: object) -> bool:
    """Whether a URI action's address is a web or mail one, written from its
    first byte (a viewer may ignore what it would not)."""
    import pikepdf

    return isinstance(uri, pikepdf.String) and bool(
        _LINK_SCHEMES.match(bytes(uri).decode("latin-1"))
    )


def _unlisted_packed_source(stream, source: bytes, xref: dict) -> bytes:
    """The source of the objects the object stream packs that qpdf does not
    read from it: those the cross-reference table does not place in it, and any
    object number packed twice. A viewer that rebuilds the table (MuPDF) may
    read them instead of the objects qpdf read. All of it when its header, the
    object numbers and offsets, cannot be read as one."""
    import pikepdf

    try:
        first = int(stream.get("/First"))
        header = [int(token) for token in source[:first].split()]
    except (TypeError, ValueError, pikepdf.PdfError):
        return source
    numbers, offsets = header[::2], [first + offset for offset in header[1::2]]
    if len(numbers) != len(offsets) or offsets != sorted(set(offsets)):
        return source
    own_number = stream.objgen[0]
    packed = collections.Counter(numbers)
    unlisted = []
    for index, (number, start) in enumerate(zip(numbers, offsets, strict=True)):
        entry = xref.get((number, 0))
        if (
            packed[number] > 1
            or entry is None
            or entry.type != 2
            or entry.obj_stream_number != own_number
        ):
            end = offsets[index + 1] if index + 1 < len(offsets) else len(source)
            unlisted.append(source[start:end])
    return b"".join(unlisted)


def _names(source: bytes) -> set[str]:
    """Every name written in PDF source, ``#xx`` escapes decoded, unparsed,
    but /OpenAction when each one written is followed by a destination.

    For what a viewer may read where qpdf does not: objects that an object stream
    packs but the cross-reference table does not list (a viewer that rebuilds the
    table, as MuPDF does, may read them), and a file qpdf had to repair.
    """
    names = {_name_decoded(name) for name in set(_NAME.findall(source))}
    if "/OpenAction" in names and all(
        _WRITTEN_DESTINATION.match(source, name.end())
        for name in _NAME.finditer(source)
        if _name_decoded(name[0]) == "/OpenAction"
    ):
        names.remove("/OpenAction")
    return names


def _name_decoded(name: bytes) -> str:
    return _NAME_ESCAPE.sub(
        lambda match: bytes.fromhex(match[1].decode()), name
    ).decode("latin-1")


def _is_reference(value: object) -> bool:
    import pikepdf

    return isinstance(value, pikepdf.Object) and value.is_indirect


if __name__ == "__main__":
    import pikepdf

    memory, seconds = (int(value) for value in sys.argv[1:3])
    resource.setrlimit(resource.RLIMIT_AS, (memory, memory))
    resource.setrlimit(resource.RLIMIT_CPU, (seconds, seconds))
    pikepdf.settings.set_qpdf_limits(flate_max_memory=_MAX_INFLATED_BYTES)
    sys.stdout.write(pdf_scan(sys.stdin.buffer.read()))
