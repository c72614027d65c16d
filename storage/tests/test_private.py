"""The private storage: its folder outside MEDIA_ROOT, and moving files there."""

import errno
import json
import os
from pathlib import Path

import pytest
from django.core.exceptions import ImproperlyConfigured
from django.core.files.base import ContentFile
from django.core.files.storage import FileSystemStorage

from conftest import storages_setting
from storage import private
from storage.config import validate_private_media_root
from storage.private import private_files_move, private_storage
from verification.models import IdentityDocument

KEY = "private/identity/7/Zx3kq9.jpg"


# --- the setting ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("media", "private_root"),
    [
        ("srv/media", "srv/media"),
        ("srv/media", "srv/media/private"),
        ("srv/media", "srv/media/a/b"),
        ("srv/media", "srv"),
        ("srv/media", "srv/media/../media"),
    ],
)
def test_a_private_root_overlapping_media_root_is_refused(
    tmp_path, media, private_root
):
    with pytest.raises(ImproperlyConfigured, match="PRIVATE_MEDIA_ROOT"):
        validate_private_media_root(
            tmp_path / private_root, media_root=tmp_path / media
        )


@pytest.mark.reliability("hostile-paths")
def test_a_link_into_media_root_is_refused(tmp_path):
    (tmp_path / "media" / "hidden").mkdir(parents=True)
    (tmp_path / "private_media").symlink_to(tmp_path / "media" / "hidden")

    with pytest.raises(ImproperlyConfigured, match="outside MEDIA_ROOT"):
        validate_private_media_root(
            tmp_path / "private_media", media_root=tmp_path / "media"
        )


def test_a_sibling_folder_is_accepted(tmp_path):
    # A common prefix of the names is not containment.
    chosen = tmp_path / "media_private"

    assert validate_private_media_root(chosen, media_root=tmp_path / "media") == chosen


@pytest.mark.parametrize(
    ("media", "private_root"),
    [("{tmp}/media", "{tmp}/media/private"), ("{tmp}/media", "{tmp}")],
)
def test_start_up_stops_on_an_overlapping_private_root(
    run_python, tmp_path, media, private_root
):
    env = {
        "DJANGO_SETTINGS_MODULE": "crypto_exchange.settings",
        "MEDIA_ROOT": media.format(tmp=tmp_path),
        "PRIVATE_MEDIA_ROOT": private_root.format(tmp=tmp_path),
    }

    result = run_python(["manage.py", "check"], env)

    assert result.returncode != 0
    assert "ImproperlyConfigured: PRIVATE_MEDIA_ROOT" in result.stderr
    assert "would serve identity documents" in result.stderr


def test_the_default_private_root_is_beside_media_and_has_a_storage(run_python):
    code = (
        "import django, json; django.setup(); from django.conf import settings as s; "
        "from django.core.files.storage import storages as t; "
        "print(json.dumps([str(s.MEDIA_ROOT), str(s.PRIVATE_MEDIA_ROOT), "
        "t['private'].location, t['default'].location]))"
    )

    result = run_python(
        ["-c", code], {"DJANGO_SETTINGS_MODULE": "crypto_exchange.settings"}
    )

    assert result.returncode == 0, result.stderr
    media, private_root, private_location, default_location = json.loads(result.stdout)
    root = Path(__file__).resolve().parents[2]
    assert (media, private_root) == (str(root / "media"), str(root / "private_media"))
    assert (private_location, default_location) == (private_root, media)


# --- the storage the field uses ------------------------------------------------


def test_the_field_names_a_callable_and_follows_storages(settings, tmp_path):
    field = IdentityDocument._meta.get_field("file")
    assert field.deconstruct()[3]["storage"] is private_storage

    elsewhere = tmp_path / "elsewhere"
    settings.STORAGES = storages_setting(
        settings.STORAGES["default"],
        {
            "BACKEND": "django.core.files.storage.FileSystemStorage",
            "OPTIONS": {"location": elsewhere},
        },
    )
    name = field.storage.save(KEY, ContentFile(b"id"))

    assert (elsewhere / name).read_bytes() == b"id"
    assert isinstance(field.storage, FileSystemStorage)


def test_in_local_mode_private_files_are_outside_the_media_folder(
    media_root, private_media_root
):
    name = private_storage().save(KEY, ContentFile(b"passport"))

    assert (private_media_root / name).read_bytes() == b"passport"
    assert not private_media_root.is_relative_to(media_root)
    assert list(media_root.rglob("*")) == []


# --- moving MEDIA_ROOT/private/ out ------------------------------------------


def write(root: Path, files: dict[str, bytes]) -> None:
    for relative, content in files.items():
        path = root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content)


def contents(root: Path) -> dict[str, bytes]:
    return {
        path.relative_to(root).as_posix(): path.read_bytes()
        for path in sorted(root.rglob("*"))
        if path.is_file()
    }


FILES = {
    "identity/1/a.jpg": b"front of one",
    "identity/1/b.pdf": b"%PDF- selfie of one",
    "identity/2/c.jpg": b"front of two",
}


def test_every_file_is_moved_under_the_same_path_and_the_folders_removed(tmp_path):
    source, destination = tmp_path / "media/private", tmp_path / "private_media/private"
    write(source, FILES)

    report = private_files_move(source=source, destination=destination)

    assert sorted(report.moved) == sorted(FILES)
    assert report.left == []
    assert contents(destination) == FILES
    assert not source.exists()
    assert (tmp_path / "media").is_dir()


def test_nothing_to_move_is_nothing_done(tmp_path):
    report = private_files_move(
        source=tmp_path / "media/private", destination=tmp_path / "private"
    )

    assert (report.moved, report.left) == ([], [])
    assert not (tmp_path / "private").exists()


@pytest.mark.reliability("store-migration-cut")
def test_an_interrupted_copy_across_file_systems_is_finished_by_the_next_run(
    tmp_path, monkeypatch
):
    source, destination = tmp_path / "media/private", tmp_path / "private_media/private"
    write(source, FILES)
    real_rename = os.rename
    into_place = []

    def across_devices(old, new):
        # Renaming a source file fails as it does across file systems; the
        # process "dies" just before its second copy is renamed into place.
        if Path(old).is_relative_to(source):
            raise OSError(errno.EXDEV, "Invalid cross-device link")
        into_place.append(new)
        if len(into_place) == 2:
            raise KeyboardInterrupt
        real_rename(old, new)

    monkeypatch.setattr(private.os, "rename", across_devices)
    with pytest.raises(KeyboardInterrupt):
        private_files_move(source=source, destination=destination)

    # Every file is whole in one place or the other; the copy being made is
    # only under a hidden temporary name.
    assert contents(source) == {
        "identity/1/b.pdf": FILES["identity/1/b.pdf"],
        "identity/2/c.jpg": FILES["identity/2/c.jpg"],
    }
    assert contents(destination) == {
        "identity/1/a.jpg": FILES["identity/1/a.jpg"],
        "identity/1/.b.pdf.moving": FILES["identity/1/b.pdf"],
    }

    report = private_files_move(source=source, destination=destination)

    assert sorted(report.moved) == ["identity/1/b.pdf", "identity/2/c.jpg"]
    assert contents(destination) == FILES
    assert not source.exists()


def test_a_file_already_moved_but_not_yet_removed_is_removed(tmp_path):
    source, destination = tmp_path / "media/private", tmp_path / "private_media/private"
    write(source, FILES)
    write(destination, {"identity/1/a.jpg": FILES["identity/1/a.jpg"]})

    report = private_files_move(source=source, destination=destination)

    assert sorted(report.moved) == sorted(FILES)
    assert contents(destination) == FILES
    assert not source.exists()


def test_a_different_file_at_the_destination_is_never_overwritten(tmp_path):
    source, destination = tmp_path / "media/private", tmp_path / "private_media/private"
    write(source, FILES)
    write(destination, {"identity/2/c.jpg": b"something else"})
    (source / "identity/link.jpg").symlink_to(source / "identity/1/a.jpg")

    report = private_files_move(source=source, destination=destination)

    assert dict(report.left).keys() == {"identity/2/c.jpg", "identity/link.jpg"}
    assert "other content" in dict(report.left)["identity/2/c.jpg"]
    assert (destination / "identity/2/c.jpg").read_bytes() == b"something else"
    assert (source / "identity/2/c.jpg").read_bytes() == FILES["identity/2/c.jpg"]
    assert (destination / "identity/1/a.jpg").read_bytes() == FILES["identity/1/a.jpg"]


# --- the warning after a move to the bucket ----------------------------------


def _storage_warnings() -> list[str]:
    from django.core import checks

    return [message.id for message in checks.run_checks(tags=[checks.Tags.files])]


def test_documents_left_on_disk_with_minio_are_reported(settings, tmp_path):
    settings.USE_MINIO = True
    settings.PRIVATE_MEDIA_ROOT = tmp_path
    (tmp_path / "private" / "identity" / "7").mkdir(parents=True)

    assert "storage.W001" not in _storage_warnings()

    (tmp_path / "private" / "identity" / "7" / "front.jpg").write_bytes(b"x")

    assert "storage.W001" in _storage_warnings()
    settings.USE_MINIO = False
    assert "storage.W001" not in _storage_warnings()


def test_documents_in_a_folder_linked_to_another_disk_are_reported(settings, tmp_path):
    settings.USE_MINIO = True
    settings.PRIVATE_MEDIA_ROOT = tmp_path / "private_media"
    (tmp_path / "private_media" / "private").mkdir(parents=True)
    disk = tmp_path / "disk2" / "identity"
    (disk / "7").mkdir(parents=True)
    (tmp_path / "private_media" / "private" / "identity").symlink_to(disk)
    (disk / "loop").symlink_to(disk)

    assert "storage.W001" not in _storage_warnings()

    (disk / "7" / "front.jpg").write_bytes(b"x")

    assert "storage.W001" in _storage_warnings()
