"""The storage contract: what every storage of the project must do alike.

Each test runs twice, against the file-system storage on a temporary media/
and against MinIOStorage on the real S3 server of the test run.
"""

import io
import os
from datetime import datetime

import pytest
from django.core.exceptions import SuspiciousFileOperation
from django.core.files.base import ContentFile, File


def test_save_then_open_returns_the_same_bytes(any_storage):
    name = any_storage.save("profile_pics/alice.txt", ContentFile(b"hello, world"))

    with any_storage.open(name) as stored:
        assert stored.read() == b"hello, world"


def test_saved_name_keeps_the_media_folder_layout(any_storage):
    name = any_storage.save("token_logo/btc.png", ContentFile(b"\x89PNG\r\n\x1a\n..."))

    assert name.startswith("token_logo/btc")
    assert name.endswith(".png")


def test_saving_the_same_name_twice_gives_two_files(any_storage):
    first = any_storage.save("profile_pics/same.txt", ContentFile(b"first"))
    second = any_storage.save("profile_pics/same.txt", ContentFile(b"second"))

    assert first != second
    assert any_storage.open(first).read() == b"first"
    assert any_storage.open(second).read() == b"second"


def test_exists_is_true_for_a_saved_file_and_false_for_a_missing_one(any_storage):
    name = any_storage.save("profile_pics/here.txt", ContentFile(b"x"))

    assert any_storage.exists(name) is True
    assert any_storage.exists("profile_pics/never-saved.txt") is False


def test_delete_removes_the_file_and_a_missing_file_is_fine(any_storage):
    name = any_storage.save("profile_pics/gone.txt", ContentFile(b"x"))

    any_storage.delete(name)
    any_storage.delete(name)

    assert any_storage.exists(name) is False


def test_size_and_modified_time_describe_the_saved_file(any_storage):
    name = any_storage.save("profile_pics/sized.txt", ContentFile(b"12345"))

    assert any_storage.size(name) == 5
    modified = any_storage.get_modified_time(name)
    assert isinstance(modified, datetime)
    assert modified.tzinfo is not None


@pytest.mark.parametrize("operation", ["open", "size", "get_modified_time"])
def test_reading_a_missing_file_raises_file_not_found(any_storage, operation):
    with pytest.raises(FileNotFoundError):
        getattr(any_storage, operation)("profile_pics/missing.txt")


def test_listdir_lists_folders_and_files_of_one_level(any_storage):
    any_storage.save("token_logo/a.txt", ContentFile(b"a"))
    any_storage.save("profile_pics/b.txt", ContentFile(b"b"))

    folders, files = any_storage.listdir("")
    assert {"token_logo", "profile_pics"} <= set(folders)

    folders, files = any_storage.listdir("token_logo")
    assert folders == []
    assert len(files) == 1 and files[0].startswith("a")


def test_large_file_streams_back_in_chunks_unchanged(any_storage):
    payload = os.urandom(2 * 1024 * 1024 + 123)
    name = any_storage.save("token_logo/big.bin", ContentFile(payload))

    with any_storage.open(name) as stored:
        chunks = list(stored.chunks(chunk_size=256 * 1024))

    assert len(chunks) > 1
    assert b"".join(chunks) == payload


def test_a_plain_file_object_can_be_saved(any_storage, tmp_path):
    source = tmp_path / "upload.txt"
    source.write_bytes(b"from disk")

    with source.open("rb") as handle:
        name = any_storage.save("profile_pics/upload.txt", File(handle))

    assert any_storage.open(name).read() == b"from disk"


def test_url_points_at_the_key(any_storage):
    name = any_storage.save("profile_pics/pic.txt", ContentFile(b"x"))

    assert any_storage.url(name).split("?")[0].endswith(name)


@pytest.mark.parametrize("name", ["../escape.txt", "profile_pics/../../etc/passwd"])
@pytest.mark.reliability("hostile-paths")
def test_path_traversal_is_refused(any_storage, name):
    with pytest.raises(SuspiciousFileOperation):
        any_storage.save(name, ContentFile(b"x"))


def test_available_name_respects_max_length(any_storage):
    name = any_storage.get_available_name("profile_pics/" + "a" * 200 + ".jpg", 60)

    assert len(name) <= 60
    assert name.startswith("profile_pics/")
    assert name.endswith(".jpg")


def test_open_file_is_a_django_file_with_a_size(any_storage):
    name = any_storage.save("profile_pics/f.txt", ContentFile(b"abc"))

    stored = any_storage.open(name)
    try:
        assert isinstance(stored, File)
        assert stored.size == 3
    finally:
        stored.close()


def test_binary_content_with_every_byte_value_survives(any_storage):
    payload = bytes(range(256)) * 4
    name = any_storage.save(
        "profile_pics/bytes.bin", File(io.BytesIO(payload), name="x")
    )

    assert any_storage.open(name).read() == payload


def test_listdir_of_a_missing_folder_differs_as_documented(any_storage):
    # docs/STORAGE.md: an object store has no folders, so the bucket lists a
    # missing one as empty; the disk raises, as Django's storage does.
    if getattr(any_storage, "bucket_name", None):
        assert any_storage.listdir("profile_pics/nothere") == ([], [])
    else:
        with pytest.raises(FileNotFoundError):
            any_storage.listdir("profile_pics/nothere")


def test_listdir_of_a_folder_lists_its_subfolders_once(any_storage):
    any_storage.save("token_logo/2026/a.txt", ContentFile(b"a"))

    assert any_storage.listdir("token_logo") == (["2026"], [])
