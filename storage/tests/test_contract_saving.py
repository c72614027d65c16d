"""The storage contract for save(), after Django's tests/file_storage: every
kind of content Django accepts, on both storages (local media/ and
MinIOStorage on the real S3 server of the run).
"""

import gzip
import http.server
import io
import tarfile
import threading
import urllib.request
from pathlib import Path

import pytest
from django.core.files.base import ContentFile, File
from django.core.files.uploadedfile import (
    InMemoryUploadedFile,
    SimpleUploadedFile,
    TemporaryUploadedFile,
)
from django.db.models.fields.files import FieldFile, FileField

from storage.exceptions import StorageUnavailable


class ForwardOnly(io.RawIOBase):
    """A stream that can only be read forward, in pieces, like a socket."""

    def __init__(self, payload: bytes, piece: int = 1000) -> None:
        self._payload = memoryview(payload)
        self._piece = piece

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        count = min(len(buffer), self._piece, len(self._payload))
        buffer[:count] = self._payload[:count]
        self._payload = self._payload[count:]
        return count


def read_back(storage, name: str) -> bytes:
    with storage.open(name) as stored:
        return stored.read()


@pytest.mark.parametrize(
    "content",
    [
        ContentFile("español"),
        ContentFile("español", name="x.txt"),
        io.StringIO("español"),
        File(io.StringIO("español")),
    ],
    ids=["ContentFile", "named ContentFile", "StringIO", "File of StringIO"],
)
def test_text_content_is_stored_as_utf8(any_storage, content):
    name = any_storage.save("profile_pics/text.txt", content)

    assert read_back(any_storage, name) == "español".encode()
    assert any_storage.size(name) == 8


def test_a_file_opened_in_text_mode_is_stored_as_its_text(any_storage, tmp_path):
    source = tmp_path / "notes.txt"
    source.write_bytes("één\r\ntwee\n".encode())

    with source.open(encoding="utf-8") as handle:
        name = any_storage.save("profile_pics/notes.txt", handle)

    # Read in text mode, the line ends were already translated, as a local
    # copy written from it in text mode would have them.
    assert read_back(any_storage, name) == "één\ntwee\n".encode()


def test_large_text_is_stored_whole(any_storage):
    text = "A" * ContentFile.DEFAULT_CHUNK_SIZE * 3 + "é"

    name = any_storage.save("profile_pics/big.txt", ContentFile(text))

    assert read_back(any_storage, name) == text.encode()


@pytest.mark.parametrize("size", [0, 10, 70_000])
def test_a_stream_that_cannot_seek_is_saved(any_storage, size):
    payload = bytes(range(256)) * (size // 256) + b"x" * (size % 256)

    name = any_storage.save("profile_pics/stream.bin", ForwardOnly(payload))

    assert read_back(any_storage, name) == payload


def test_a_stream_whose_file_is_another_size_is_saved_whole(any_storage, tmp_path):
    # Django's File.size of a GzipFile or a tar member is the size of the
    # file on disk it names: the compressed file's, the whole archive's.
    payload = b"hello world, " * 10_000
    compressed = tmp_path / "notes.gz"
    with gzip.open(compressed, "wb") as writer:
        writer.write(payload)
    archive = tmp_path / "notes.tar"
    with tarfile.open(archive, "w") as tar:
        member = tarfile.TarInfo("notes.txt")
        member.size = len(payload)
        tar.addfile(member, io.BytesIO(payload))

    with gzip.open(compressed) as reader:
        from_gzip = any_storage.save("docs/from_gzip.txt", File(reader))
    with tarfile.open(archive) as tar:
        from_tar = any_storage.save(
            "docs/from_tar.txt", File(tar.extractfile("notes.txt"))
        )

    assert read_back(any_storage, from_gzip) == payload
    assert read_back(any_storage, from_tar) == payload


def test_a_long_stream_of_unknown_length_is_saved(any_storage):
    payload = bytes(range(256)) * (11 * 4096)  # 11 MiB: more than one part

    name = any_storage.save(
        "token_logo/long.bin", File(io.BufferedReader(ForwardOnly(payload, 65536)))
    )

    assert any_storage.size(name) == len(payload)
    assert read_back(any_storage, name) == payload


@pytest.fixture
def http_source():
    """A local web server whose one page is the payload, with or without a
    Content-Length (chunked), to save what urlopen() answers."""
    payload = b"<html>" + b"remote content " * 5000 + b"</html>"

    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_GET(self):
            self.send_response(200)
            if self.path == "/chunked":
                self.send_header("Transfer-Encoding", "chunked")
                self.end_headers()
                for start in range(0, len(payload), 4096):
                    piece = payload[start : start + 4096]
                    self.wfile.write(b"%x\r\n%s\r\n" % (len(piece), piece))
                self.wfile.write(b"0\r\n\r\n")
            else:
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}", payload
    server.shutdown()
    server.server_close()


@pytest.mark.parametrize("path", ["/sized", "/chunked"])
def test_an_http_response_is_saved(any_storage, http_source, path):
    base, payload = http_source

    with urllib.request.urlopen(base + path) as response:
        name = any_storage.save("profile_pics/remote.html", File(response))

    assert read_back(any_storage, name) == payload


def test_a_file_of_another_field_is_saved(any_storage, tmp_path):
    from django.core.files.storage import FileSystemStorage

    other = FileSystemStorage(location=tmp_path / "other")
    source_name = other.save("docs/source.txt", ContentFile(b"from another field"))
    field = FileField(storage=other, name="document")
    source = FieldFile(None, field, source_name)

    name = any_storage.save("profile_pics/copy.txt", source)

    assert read_back(any_storage, name) == b"from another field"


def test_a_stored_file_is_saved_again_as_a_copy(any_storage):
    first = any_storage.save("profile_pics/a.bin", ContentFile(b"copy me" * 1000))

    with any_storage.open(first) as opened:
        opened.read(10)  # a half-read file is still saved whole
        second = any_storage.save("profile_pics/b.bin", opened)

    assert second != first
    assert read_back(any_storage, second) == b"copy me" * 1000


def test_save_without_a_name_takes_the_content_name(any_storage):
    name = any_storage.save(None, ContentFile(b"x", name="named.txt"))

    assert name.startswith("named") and name.endswith(".txt")
    assert read_back(any_storage, name) == b"x"


def test_saving_intermediate_folders_lists_them(any_storage):
    name = any_storage.save("path/to/test.file", ContentFile("saved with path"))

    assert read_back(any_storage, name) == b"saved with path"
    assert any_storage.listdir("path") == (["to"], [])


def test_save_does_not_close_the_content(any_storage):
    with TemporaryUploadedFile("test", "text/plain", 1, "utf8") as upload:
        upload.write(b"1")
        upload.seek(0)
        any_storage.save("path/to/test.file", upload)
        assert not upload.closed and not upload.file.closed

    upload = InMemoryUploadedFile(io.StringIO("1"), "", "test", "text/plain", 1, "utf8")
    with upload:
        any_storage.save("path/to/test.file", upload)
        assert not upload.closed and not upload.file.closed


def test_an_upload_is_stored_with_its_bytes(any_storage):
    upload = SimpleUploadedFile("a.txt", b"uploaded", content_type="text/plain")

    name = any_storage.save("profile_pics/a.txt", upload)

    assert read_back(any_storage, name) == b"uploaded"


@pytest.mark.parametrize(
    "name", [Path("profile_pics/p.txt"), Path("profile_pics") / "sub" / "q.txt"]
)
def test_pathlib_names_work_everywhere(any_storage, name):
    stored = any_storage.save(name, ContentFile("custom contents"))

    assert any_storage.exists(Path(stored))
    assert any_storage.size(Path(stored)) == 15
    with any_storage.open(Path(stored)) as opened:
        assert opened.read() == b"custom contents"
    assert any_storage.url(Path(stored)) == any_storage.url(stored)
    _folders, files = any_storage.listdir(Path(stored).parent)
    assert [Path(stored).name] == files
    assert "profile_pics" in any_storage.listdir(Path(""))[0]
    any_storage.delete(Path(stored))
    assert not any_storage.exists(stored)


class Unreadable(io.BytesIO):
    def read(self, *args):
        raise OSError("the upload was cut off")


def test_an_error_of_the_content_surfaces_as_itself(any_storage):
    with pytest.raises(OSError, match="the upload was cut off") as failure:
        any_storage.save("profile_pics/broken.txt", Unreadable(b"x"))

    assert not isinstance(failure.value, StorageUnavailable)
    assert type(failure.value) is OSError
