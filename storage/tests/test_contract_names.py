"""The storage contract for names, URLs and the storage object itself, after
Django's tests/file_storage, on both storages (local media/ and MinIOStorage
on the real S3 server of the run).
"""

import pickle
import re

import pytest
from django.core.exceptions import SuspiciousFileOperation
from django.core.files.base import ContentFile
from django.core.files.storage import FileSystemStorage, storages

from storage.backends import MinIOStorage

SUFFIX = r"_[A-Za-z0-9_-]{7,11}"


@pytest.fixture(params=["local", "minio"])
def make_storage(request, tmp_path):
    """Build a storage of each kind; ``base_url`` is the URL prefix of local
    files (FileSystemStorage's option, MinIOStorage's ``media_url`` in the
    proxy mode, the one where it serves under MEDIA_URL)."""

    def make(**options):
        base_url = options.pop("base_url", None)
        if request.param == "local":
            return FileSystemStorage(location=tmp_path / "made", base_url=base_url)
        minio_options = request.getfixturevalue("minio_options")
        return MinIOStorage(
            **{**minio_options, "url_mode": "proxy"}, media_url=base_url
        )

    return make


def test_url_of_no_name_is_the_base(make_storage):
    storage = make_storage(base_url="/test_media_url/")

    assert storage.url(None) == "/test_media_url/"
    assert storage.url("") == "/test_media_url/"


def test_url_quotes_as_encode_uri_component(make_storage):
    storage = make_storage(base_url="/test_media_url/")

    assert storage.url("test.file") == "/test_media_url/test.file"
    assert (
        storage.url(r"~!*()'@#$%^&*abc`+ =.file")
        == "/test_media_url/~!*()'%40%23%24%25%5E%26*abc%60%2B%20%3D.file"
    )
    assert storage.url("a/b\\c.file") == "/test_media_url/a/b/c.file"


@pytest.mark.parametrize("name", ["/evil.com", r"\evil.com", "///evil.com"])
@pytest.mark.reliability("open-redirect-media")
def test_url_drops_leading_slashes(make_storage, name):
    storage = make_storage(base_url="/test_media_url/")

    assert storage.url(name) == "/test_media_url/evil.com"


def test_base_url_without_a_trailing_slash_gets_one(make_storage):
    storage = make_storage(base_url="/no_ending_slash")

    assert storage.url("test.file") == "/no_ending_slash/test.file"


def test_url_follows_media_url_changed_after_the_storage_was_made(
    make_storage, settings
):
    follows = make_storage()
    explicit = make_storage(base_url="/explicit/")

    settings.MEDIA_URL = "/overridden_media_url/"

    assert follows.url("a.txt") == "/overridden_media_url/a.txt"
    assert explicit.url("a.txt") == "/explicit/a.txt"


def test_the_storage_pickles_and_the_copy_works(any_storage):
    name = any_storage.save("profile_pics/pickled.txt", ContentFile(b"cached"))
    storage = storages["default"]

    copy = pickle.loads(pickle.dumps(storage))  # noqa: S301 (our own bytes)

    assert copy.url(name) == storage.url(name)
    assert copy.deconstruct() == storage.deconstruct()
    with copy.open(name) as opened:
        assert opened.read() == b"cached"
    again = copy.save("profile_pics/pickled.txt", ContentFile(b"again"))
    assert storage.open(again).read() == b"again"


def test_a_model_instance_with_a_stored_file_pickles(any_storage):
    from accounts.models import Profile

    name = any_storage.save("profile_pics/avatar.txt", ContentFile(b"avatar"))
    profile = pickle.loads(pickle.dumps(Profile(avatar=name)))  # noqa: S301

    assert profile.avatar.name == name
    with profile.avatar.open() as avatar:
        assert avatar.read() == b"avatar"


def test_deconstruct_gives_a_storage_with_the_same_options(any_storage):
    storage = storages["default"]
    path, args, kwargs = storage.deconstruct()

    assert path in (
        "storage.filesystem.FileSystemStorage",
        "storage.backends.MinIOStorage",
    )
    rebuilt = type(storage)(*args, **kwargs)
    assert rebuilt.url("a/b.txt") == storage.url("a/b.txt")


@pytest.mark.parametrize(
    ("name", "pattern"),
    [
        ("tests/multiple_files.txt", rf"tests/multiple_files{SUFFIX}\.txt"),
        ("tests/archive.tar.gz", rf"tests/archive{SUFFIX}\.tar\.gz"),
        ("dotted.path/test", rf"dotted\.path/test{SUFFIX}"),
        ("dotted.path/.test", rf"dotted\.path/\.test{SUFFIX}"),
    ],
)
def test_a_taken_name_gets_a_random_part_before_its_extensions(
    any_storage, name, pattern
):
    first = any_storage.save(name, ContentFile(b"1"))
    second = any_storage.save(name, ContentFile(b"2"))

    assert second != first
    assert re.fullmatch(pattern, second), second
    assert any_storage.open(first).read() == b"1"
    assert any_storage.open(second).read() == b"2"


def test_a_name_freed_by_a_deletion_is_never_given_again(any_storage):
    # Files are served as immutable for a year: a URL that named a deleted
    # picture must not come to name another one.
    first = any_storage.save("profile_pics/me.jpg", ContentFile(b"red"))
    any_storage.delete(first)
    second = any_storage.save("profile_pics/me.jpg", ContentFile(b"blue"))

    assert second != first
    assert re.fullmatch(rf"profile_pics/me{SUFFIX}\.jpg", first), first
    assert any_storage.url(second) != any_storage.url(first)


def test_a_name_is_truncated_to_max_length_keeping_its_extension(any_storage):
    for _ in range(2):
        name = any_storage.save(
            "tests/a_rather_long_file_name.txt", ContentFile(b"x"), max_length=30
        )
        assert len(name) <= 30
        assert name.startswith("tests/a_") and name.endswith(".txt")


def test_a_max_length_with_no_room_for_the_name_is_refused(any_storage):
    with pytest.raises(
        SuspiciousFileOperation, match="Storage can not find an available filename"
    ):
        for _ in range(2):
            any_storage.save("file_name.longext", ContentFile(b"x"), max_length=5)


@pytest.mark.parametrize(
    "name",
    [
        "profile_pics/" + "a" * 300 + ".txt",  # a file name over 255 bytes
        "profile_pics/" + "é" * 130 + ".txt",  # 130 characters, 260 bytes
        "profile_pics/" + "b" * 300 + "/x.txt",  # a folder name over 255 bytes
        "profile_pics/" + "c/" * 510 + "x.txt",  # 1024 bytes in all
    ],
    ids=["file-name", "file-name-utf8", "folder-name", "whole-name"],
)
def test_a_name_too_long_for_the_store_is_refused(any_storage, stored_names, name):
    # Refused alike on disk and in the bucket (before sending anything): a
    # name that saves in development saves in production. Bad input, not an
    # outage; nothing is stored.
    with pytest.raises(SuspiciousFileOperation, match="too long"):
        any_storage.save(name, ContentFile(b"x"))

    assert stored_names(any_storage, "profile_pics") == []


def test_a_name_that_fits_the_store_still_fits_with_its_random_part(any_storage):
    # 244 bytes of UTF-8: MinIOStorage's random part would take it past the
    # 255 bytes a folder or file name may have.
    name = any_storage.save("docs/" + "文" * 80 + ".pdf", ContentFile(b"x"))

    assert name.startswith("docs/文") and name.endswith(".pdf")
    assert any_storage.open(name).read() == b"x"


@pytest.mark.parametrize("name", ["..", "../x.txt", "a/../../x.txt"])
@pytest.mark.reliability("hostile-paths")
def test_traversal_is_refused_by_every_method(any_storage, name):
    for method in (any_storage.exists, any_storage.open, any_storage.size):
        with pytest.raises(SuspiciousFileOperation):
            method(name)


@pytest.mark.parametrize("name", ["..", "../", "./..", "a/../.."])
@pytest.mark.reliability("hostile-paths")
def test_listing_a_parent_folder_is_refused(any_storage, name):
    with pytest.raises(SuspiciousFileOperation):
        any_storage.listdir(name)


def test_a_folder_named_with_dots_lists_its_own_files(any_storage):
    name = any_storage.save(".../inside.txt", ContentFile(b"x"))

    assert any_storage.listdir("...") == ([], [name.removeprefix(".../")])
    assert "..." in any_storage.listdir("")[0]


@pytest.mark.reliability("nul-bytes")
def test_a_name_with_a_nul_byte_is_refused_as_bad_input_not_as_an_outage(
    any_storage,
):
    name = "profile_pics/a\x00b.jpg"
    calls = [
        lambda: any_storage.save(name, ContentFile(b"x")),
        lambda: any_storage.open(name),
        lambda: any_storage.size(name),
        lambda: any_storage.get_modified_time(name),
        lambda: any_storage.delete(name),
        lambda: any_storage.listdir("profile_pics/a\x00b"),
    ]
    for call in calls:
        with pytest.raises(ValueError):
            call()

    assert any_storage.exists(name) is False
    assert any_storage.listdir("profile_pics") == ([], [])


def test_delete_without_a_name_is_refused(any_storage):
    for name in (None, ""):
        with pytest.raises(ValueError, match=r"The name must be given to delete\(\)"):
            any_storage.delete(name)


def test_names_keep_their_case(any_storage):
    name = any_storage.save("CaSe/CaSe_SeNsItIvE.txt", ContentFile(b"x"))

    assert name.startswith("CaSe/CaSe_SeNsItIvE")
    _folders, files = any_storage.listdir("CaSe")
    assert files == [name.split("/")[1]]


@pytest.mark.parametrize(
    "operation",
    [
        lambda storage: storage.save("/absolute.txt", ContentFile(b"x")),
        lambda storage: storage.open("/absolute.txt"),
        lambda storage: storage.exists("/absolute.txt"),
        lambda storage: storage.size("/absolute.txt"),
        lambda storage: storage.delete("/absolute.txt"),
        lambda storage: storage.listdir("/"),
    ],
    ids=["save", "open", "exists", "size", "delete", "listdir"],
)
@pytest.mark.reliability("hostile-paths")
def test_an_absolute_name_is_refused(make_storage, operation):
    storage = make_storage()

    with pytest.raises(SuspiciousFileOperation):
        operation(storage)
