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
# Not /URI: a web link does nothing until clicked, viewers ask before they
# follow it, and ordinary PDFs (statements, exported letters) have links.

# A name token in PDF source: a slash, then anything but white space and
# delimiters, with #xx for any other byte.
_NAME = re.compile(rb"/[^\x00\t\n\x0c\r ()<>\[\]{}/%]*")
_NAME_ESCAPE = re.compile(rb"#([0-9A-Fa-f]{2})")

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
            active = _has_active_content(pdf)
            # qpdf warns when it rebuilds a damaged file or cannot read an
            # object in it. A viewer may rebuild or read it differently, so
            # then the names written anywhere in the file count too.
            repaired = bool(pdf.get_warnings())
    except pikepdf.PasswordError:
        return PdfVerdict.ENCRYPTED
    except pikepdf.PdfError:
        return PdfVerdict.INVALID
    if active or (repaired and _names(content) & _ACTIVE_NAMES):
        return PdfVerdict.ACTIVE
    return PdfVerdict.PLAIN


def _has_active_content(pdf) -> bool:
    """Whether any object of the file names active content, as a key or value.

    Every object the file defines is looked at, whether anything refers to it or
    not, including those packed in object streams; an object nested in another
    is looked at with it, one referred to by reference on its own. The source of
    each object stream is searched for names as well.
    """
    import pikepdf

    for top in (pdf.trailer, *pdf.objects):
        if (
            isinstance(top, pikepdf.Stream)
            and top.get("/Type") == pikepdf.Name.ObjStm
            and _names(top.read_bytes()) & _ACTIVE_NAMES
        ):
            return True
        pending = [top]
        while pending:
            item = pending.pop()
            if isinstance(item, pikepdf.Name):
                # As qpdf writes it: ASCII, any other byte escaped.
                if item.unparse(resolved=True).decode("ascii") in _ACTIVE_NAMES:
                    return True
            elif isinstance(item, pikepdf.Dictionary | pikepdf.Stream):
                for key, value in item.items():
                    if key in _ACTIVE_NAMES:
                        return True
                    if not _is_reference(value):
                        pending.append(value)
            elif isinstance(item, pikepdf.Array):
                pending.extend(value for value in item if not _is_reference(value))
    return False


def _names(source: bytes) -> set[str]:
    """Every name written in PDF source, ``#xx`` escapes decoded, unparsed.

    For what a viewer may read where qpdf does not: objects that an object stream
    packs but the cross-reference table does not list (a viewer that rebuilds the
    table, as MuPDF does, may read them), and a file qpdf had to repair.
    """
    return {
        _NAME_ESCAPE.sub(lambda match: bytes.fromhex(match[1].decode()), name).decode(
            "latin-1"
        )
        for name in set(_NAME.findall(source))
    }


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
