"""The storage contract for opened files, after Django's tests/files and
tests/file_storage: what a file returned by ``open()`` must do, on both
storages (local media/ and MinIOStorage on the real S3 server of the run).
"""

import io
import os

import pytest
from django.core.files.base import ContentFile, File


@pytest.fixture
def stored(any_storage):
    """Save bytes and return the name they were stored under."""

    def store(payload: bytes, name: str = "profile_pics/file.txt") -> str:
        return any_storage.save(name, ContentFile(payload))

    return store


def test_text_mode_reads_text_with_universal_newlines(any_storage, stored):
    name = stored("vive l'été\r\ntwo\rthree\n".encode())

    with any_storage.open(name, "r") as opened:
        assert opened.read() == "vive l'été\ntwo\nthree\n"


def test_binary_mode_reads_the_bytes_unchanged(any_storage, stored):
    name = stored(b"one\r\ntwo\rthree")

    with any_storage.open(name, "rb") as opened:
        assert opened.read() == b"one\r\ntwo\rthree"


def test_an_opened_file_can_seek_and_tell(any_storage, stored):
    name = stored(b"0123456789")

    with any_storage.open(name) as opened:
        assert opened.seekable()
        assert opened.read(4) == b"0123"
        assert opened.tell() == 4
        opened.seek(2)
        assert opened.read(3) == b"234"
        opened.seek(-2, io.SEEK_END)
        assert opened.read() == b"89"
        assert opened.read() == b""
        opened.seek(0)
        assert opened.read() == b"0123456789"


def test_reading_in_pieces_then_chunks_gives_the_whole_file(any_storage, stored):
    name = stored(b"content")

    with any_storage.open(name) as opened:
        assert opened.read(3) == b"con"
        assert opened.read() == b"tent"
        assert list(opened.chunks(chunk_size=2)) == [b"co", b"nt", b"en", b"t"]


def test_open_of_an_opened_file_rewinds_it(any_storage, stored):
    name = stored(b"content")
    opened = any_storage.open(name)
    opened.read()

    with opened.open() as again:
        assert again.read() == b"content"
    assert opened.closed


def test_a_closed_file_can_be_opened_again(any_storage, stored):
    name = stored(b"content")
    opened = any_storage.open(name)
    opened.close()

    with opened.open() as again:
        assert not again.closed
        assert again.read() == b"content"


def test_a_closed_binary_file_can_be_reopened_as_text(any_storage, stored):
    name = stored(b"a\r\nb")
    opened = any_storage.open(name, "rb")
    assert opened.read() == b"a\r\nb"
    opened.close()

    with opened.open("r") as text:
        assert text.read() == "a\nb"


WRITE_MODES = ["w", "wb", "a", "ab", "r+", "rb+", "x"]


@pytest.mark.parametrize("mode", WRITE_MODES)
def test_opening_a_stored_file_for_writing_is_refused_and_leaves_it_whole(
    any_storage, stored, mode
):
    # Served with a year of immutable caching: it must never change.
    name = stored(b"content")

    with pytest.raises(ValueError, match=r"reading only.*Use save\(\)"):
        any_storage.open(name, mode)

    assert any_storage.open(name).read() == b"content"


@pytest.mark.parametrize("mode", WRITE_MODES)
def test_a_closed_file_cannot_be_reopened_for_writing(any_storage, stored, mode):
    name = stored(b"content")
    opened = any_storage.open(name)
    opened.close()

    with pytest.raises(ValueError, match="reading only"):
        opened.open(mode)

    assert any_storage.open(name).read() == b"content"


def test_the_context_manager_closes_the_file(any_storage, stored):
    name = stored(b"x")

    with any_storage.open(name) as opened:
        assert opened.readable()
        assert not opened.closed
    assert opened.closed
    assert not opened.readable()


@pytest.mark.parametrize(
    ("payload", "lines"),
    [
        (b"one\ntwo\nthree", [b"one\n", b"two\n", b"three"]),
        (b"one\r\ntwo\r\nthree", [b"one\r\n", b"two\r\n", b"three"]),
        (b"one\rtwo\nthree\r\nfour", [b"one\r", b"two\n", b"three\r\n", b"four"]),
    ],
)
def test_iterating_an_opened_file_yields_its_lines(any_storage, stored, payload, lines):
    name = stored(payload)

    with any_storage.open(name) as opened:
        opened.DEFAULT_CHUNK_SIZE = 4  # line ends across chunk boundaries
        assert list(opened) == lines


def test_a_large_file_reads_back_from_anywhere(any_storage, stored):
    payload = os.urandom(700 * 1024)
    name = stored(payload, "token_logo/large.bin")

    with any_storage.open(name) as opened:
        assert opened.read() == payload
        opened.seek(100)
        assert opened.read(10) == payload[100:110]
        opened.seek(600 * 1024)
        assert opened.read(10) == payload[600 * 1024 : 600 * 1024 + 10]
        opened.seek(5)
        assert opened.read(5) == payload[5:10]
        assert b"".join(opened.chunks(chunk_size=64 * 1024)) == payload


def test_an_opened_file_has_its_size_in_bytes(any_storage):
    name = any_storage.save("profile_pics/sized.txt", ContentFile("è"))

    with any_storage.open(name, "r") as opened:
        assert opened.size == 2
        assert opened.read() == "è"


def test_an_opened_file_is_a_django_file_of_its_name(any_storage, stored):
    name = stored(b"x")

    with any_storage.open(name) as opened:
        assert isinstance(opened, File)
        assert opened.name.endswith(os.path.basename(name))
        assert bool(opened)


def test_a_stored_file_can_be_read_through_text_io_wrapper(any_storage, stored):
    name = stored("vive l'été\n".encode())

    with any_storage.open(name) as opened:
        wrapper = io.TextIOWrapper(opened, "utf-8", newline="\n")
        assert wrapper.read() == "vive l'été\n"
        wrapper.detach()
