"""media_to_bucket: media/ copied into the real S3 server of the test run."""

import hashlib
import io
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import urllib.error
import urllib.request
import uuid
from dataclasses import dataclass
from pathlib import Path

import pytest
from django.contrib.auth import get_user_model
from django.core.files.base import ContentFile
from django.core.files.storage import FileSystemStorage
from django.core.files.uploadedfile import SimpleUploadedFile
from django.core.management import CommandError, call_command
from django.test import RequestFactory
from minio.error import S3Error
from minio.helpers import MIN_PART_SIZE
from PIL import Image
from urllib3.exceptions import MaxRetryError, NewConnectionError

from accounts.models import Profile
from accounts.services import avatar_replace
from conftest import S3_ACCESS_KEY, S3_SECRET_KEY
from storage.backends import IMMUTABLE_CACHE_CONTROL
from storage.migrate_media import MD5_METADATA, UNREFERENCED, Outcome, media_migrate
from storage.services import DEFAULT_AVATAR_CACHE_CONTROL
from tests.factories import image_bytes, object_bytes, token_make
from tokens.models import Token
from tokens.services import token_create, token_logo_remove
from verification.documents import document_process
from verification.models import IdentityDocument, IdentityVerification
from verification.services import (
    document_open,
    verification_reject,
    verification_submit,
)
from verification.tests.samples import full_set

LOGO_COLOUR = (247, 147, 26, 128)

REPO_DEFAULT_AVATAR = Path(__file__).resolve().parents[2] / "media/default_avatar.jpg"
BIG = "token_logo/big.png"
UNICODE = "profile_pics/my avatar é.jpg"
OTHER_PART_SIZE = MIN_PART_SIZE + 1024 * 1024  # as another tool (mc) may split


def md5_hex(content: bytes) -> str:
    return hashlib.md5(content, usedforsecurity=False).hexdigest()


def rows_reference(*keys: str) -> None:
    """Rows naming ``keys``, as the app leaves them: a member's avatar for a
    key under profile_pics/, a token's logo for one under token_logo/."""
    for key in keys:
        tag = uuid.uuid4().hex[:8]
        if key.startswith("token_logo/"):
            token = token_make(f"T{tag.upper()}")
            Token.objects.filter(pk=token.pk).update(logo=key)
        else:
            user = get_user_model().objects.create_user(f"member-{tag}")
            Profile.objects.filter(user=user).update(avatar=key)


@pytest.fixture
def tree(media_root, db) -> dict[str, bytes]:
    """A media/ as the app lays it out, each avatar and logo named by a row:
    key -> content."""
    files = {
        "default_avatar.jpg": REPO_DEFAULT_AVATAR.read_bytes(),
        "profile_pics/alice_k3J9x.jpg": image_bytes("JPEG", (64, 64)),
        "profile_pics/2024/06/bob.png": image_bytes("PNG", (32, 32), LOGO_COLOUR),
        UNICODE: image_bytes("JPEG", (64, 64), (1, 2, 3)),
        "token_logo/btc.png": image_bytes("PNG", (48, 48), LOGO_COLOUR),
        BIG: image_bytes("PNG", (1600, 1600), noise=True),
    }
    # Uploaded in parts; and in other parts by OTHER_PART_SIZE.
    assert len(files[BIG]) > OTHER_PART_SIZE > MIN_PART_SIZE
    for key, content in files.items():
        path = media_root / key
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content)
    rows_reference(*(key for key in files if key != "default_avatar.jpg"))
    return files


def flipped(content: bytes) -> bytes:
    """The same size, one byte different."""
    changed = bytearray(content)
    changed[len(changed) // 2] ^= 0xFF
    return bytes(changed)


def bucket_keys(s3_client, bucket_name) -> list[str]:
    try:
        found = s3_client.list_objects(bucket_name=bucket_name, recursive=True)
        return sorted(obj.object_name for obj in found)
    except S3Error as exc:
        if exc.code == "NoSuchBucket":
            return []
        raise


def stored_as_the_app_stores(s3_client, bucket_name, key, content):
    """The object's stat, once its content and headers are checked to be the
    app's: the type read from the content, the avatar's day of caching or the
    immutable caching of every other name."""
    stored = s3_client.stat_object(bucket_name=bucket_name, object_name=key)
    assert object_bytes(s3_client, bucket_name, key) == content
    assert stored.content_type == (
        "image/png" if key.endswith(".png") else "image/jpeg"
    )
    assert stored.metadata["Cache-Control"] == (
        DEFAULT_AVATAR_CACHE_CONTROL
        if key == "default_avatar.jpg"
        else IMMUTABLE_CACHE_CONTROL
    )
    return stored


def keys(report, outcome) -> list[str]:
    return [result.key for result in report.with_outcome(outcome)]


# --- the copy --------------------------------------------------------------------


def test_every_file_is_copied_under_its_relative_key_with_type_and_caching(
    storage, tree, media_root, s3_client, bucket_name
):
    report = media_migrate(storage=storage, source=media_root)

    assert keys(report, Outcome.COPIED) == sorted(tree)
    assert report.bytes_copied == sum(len(content) for content in tree.values())
    assert bucket_keys(s3_client, bucket_name) == sorted(tree)
    for key, content in tree.items():
        stored = stored_as_the_app_stores(s3_client, bucket_name, key, content)
        assert stored.metadata[MD5_METADATA] == md5_hex(content)
    big = s3_client.stat_object(bucket_name=bucket_name, object_name=BIG)
    assert big.etag.endswith("-2")  # really a multipart object


def test_a_second_run_finds_everything_identical_and_writes_nothing(
    storage, tree, media_root, s3_client, bucket_name
):
    media_migrate(storage=storage, source=media_root)
    before = {
        key: s3_client.stat_object(bucket_name=bucket_name, object_name=key)
        for key in tree
    }

    report = media_migrate(storage=storage, source=media_root)

    assert keys(report, Outcome.IDENTICAL) == sorted(tree)
    assert keys(report, Outcome.COPIED) == []
    for key, stat in before.items():
        again = s3_client.stat_object(bucket_name=bucket_name, object_name=key)
        assert (again.etag, again.last_modified) == (stat.etag, stat.last_modified)


def test_objects_the_app_stored_itself_count_as_identical(storage, tree, media_root):
    # MinIOStorage stores no MD5 metadata: the multipart ETag is matched by
    # computing it locally with the client's part size.
    for key in (BIG, "token_logo/btc.png"):
        storage._save(key, ContentFile(tree[key]))

    report = media_migrate(storage=storage, source=media_root)

    assert keys(report, Outcome.IDENTICAL) == [BIG, "token_logo/btc.png"]
    assert len(keys(report, Outcome.COPIED)) == len(tree) - 2


@pytest.mark.parametrize(
    ("with_md5", "outcome"), [(True, "identical"), (False, "copied")]
)
def test_a_multipart_object_split_otherwise_is_compared_by_its_md5_metadata(
    storage, tree, media_root, s3_client, bucket_name, with_md5, outcome
):
    s3_client.make_bucket(bucket_name=bucket_name)
    s3_client.put_object(  # the same bytes in other parts: another ETag
        bucket_name=bucket_name,
        object_name=BIG,
        data=io.BytesIO(tree[BIG]),
        length=len(tree[BIG]),
        content_type="image/png",
        metadata={"Cache-Control": IMMUTABLE_CACHE_CONTROL}
        | ({MD5_METADATA: md5_hex(tree[BIG])} if with_md5 else {}),
        part_size=OTHER_PART_SIZE,
    )

    report = media_migrate(storage=storage, source=media_root)

    assert BIG in keys(report, Outcome(outcome))


def test_dry_run_writes_nothing_not_even_the_bucket(
    storage, tree, media_root, s3_client, bucket_name
):
    report = media_migrate(storage=storage, source=media_root, dry_run=True)

    assert keys(report, Outcome.COPIED) == sorted(tree)
    assert report.bucket_missing
    assert not s3_client.bucket_exists(bucket_name=bucket_name)


def test_dry_run_lists_only_what_changed(
    storage, tree, media_root, s3_client, bucket_name
):
    media_migrate(storage=storage, source=media_root)
    (media_root / "token_logo/btc.png").write_bytes(
        image_bytes("PNG", (40, 40), LOGO_COLOUR)
    )
    (media_root / BIG).write_bytes(flipped(tree[BIG]))  # same size

    report = media_migrate(storage=storage, source=media_root, dry_run=True)

    assert keys(report, Outcome.COPIED) == [BIG, "token_logo/btc.png"]
    for key in (BIG, "token_logo/btc.png"):
        assert object_bytes(s3_client, bucket_name, key) == tree[key]


# --- resuming ----------------------------------------------------------------------


def test_a_rerun_copies_only_a_deleted_and_a_corrupted_object(
    storage, tree, media_root, s3_client, bucket_name
):
    media_migrate(storage=storage, source=media_root)
    s3_client.remove_object(bucket_name=bucket_name, object_name=UNICODE)
    corrupt = flipped(tree[BIG])  # overwritten by another tool, same size
    s3_client.put_object(
        bucket_name=bucket_name,
        object_name=BIG,
        data=io.BytesIO(corrupt),
        length=len(corrupt),
        content_type="image/png",
        part_size=OTHER_PART_SIZE,
    )

    report = media_migrate(storage=storage, source=media_root)

    assert keys(report, Outcome.COPIED) == sorted([UNICODE, BIG])
    assert len(keys(report, Outcome.IDENTICAL)) == len(tree) - 2
    for key in (UNICODE, BIG):
        assert object_bytes(s3_client, bucket_name, key) == tree[key]


def test_objects_copied_with_other_headers_get_the_apps_and_a_rerun_leaves_them(
    minio_settings, tree, s3_client, bucket_name
):
    # As `mc cp` leaves them: the same bytes, no Cache-Control, a type of its
    # own choosing.
    s3_client.make_bucket(bucket_name=bucket_name)
    for key, content in tree.items():
        s3_client.put_object(
            bucket_name=bucket_name,
            object_name=key,
            data=io.BytesIO(content),
            length=len(content),
            content_type="text/plain",
        )

    dry = run_command("media_to_bucket", "--dry-run")
    assert f"Headers:    {len(tree)} to fix" in dry
    stat = s3_client.stat_object(bucket_name=bucket_name, object_name=BIG)
    assert stat.content_type == "text/plain"

    report = run_command("media_to_bucket")

    assert f"Headers:    {len(tree)} fixed" in report
    assert "Copied:     0 files" in report
    for key, content in tree.items():
        stored_as_the_app_stores(s3_client, bucket_name, key, content)

    again = run_command("media_to_bucket")

    assert f"Identical:  {len(tree)} (skipped)" in again
    assert "Headers:    0 fixed" in again


@pytest.mark.reliability("store-migration-cut")
def test_an_interrupted_run_leaves_only_whole_objects_and_the_next_one_finishes(
    storage, tree, media_root, s3_client, bucket_name
):
    seen = []

    def interrupt(result, report):
        seen.append(result)
        if len(seen) == 2:
            raise KeyboardInterrupt  # Ctrl+C reaches the main thread here

    first = media_migrate(
        storage=storage, source=media_root, workers=2, on_result=interrupt
    )

    assert first.stopped == "interrupted"
    copied_first = keys(first, Outcome.COPIED)
    assert 2 <= len(copied_first) < len(tree)
    assert bucket_keys(s3_client, bucket_name) == copied_first
    for key in copied_first:
        assert object_bytes(s3_client, bucket_name, key) == tree[key]

    second = media_migrate(storage=storage, source=media_root)

    assert keys(second, Outcome.IDENTICAL) == copied_first
    assert sorted(keys(second, Outcome.COPIED) + copied_first) == sorted(tree)
    assert bucket_keys(s3_client, bucket_name) == sorted(tree)


def test_a_multipart_upload_is_invisible_under_its_key_until_complete(
    storage, tree, media_root, s3_client, bucket_name, monkeypatch
):
    client = storage.client
    complete = client._complete_multipart_upload
    completed, visible_before_completion = [], []

    def completing(bucket, key, *args, **kwargs):
        completed.append(key)
        try:
            s3_client.stat_object(bucket_name=bucket, object_name=key)
            visible_before_completion.append(key)
        except S3Error:
            pass
        return complete(bucket, key, *args, **kwargs)

    monkeypatch.setattr(client, "_complete_multipart_upload", completing)

    report = media_migrate(storage=storage, source=media_root)

    assert BIG in keys(report, Outcome.COPIED)
    assert completed == [BIG]
    assert visible_before_completion == []


# --- what fails, what is left out ----------------------------------------------


@pytest.mark.parametrize(
    "new_content", [image_bytes("PNG", (50, 50), LOGO_COLOUR), b"short"]
)
@pytest.mark.reliability("store-migration-cut")
def test_a_file_changed_during_its_upload_fails_and_the_next_run_copies_it(
    storage, tree, media_root, s3_client, bucket_name, monkeypatch, new_content
):
    client = storage.client
    put_object = client.put_object
    changed = media_root / "token_logo/btc.png"

    def put_while_the_file_changes(**kwargs):
        if kwargs["object_name"] == "token_logo/btc.png":
            changed.write_bytes(new_content)  # a new logo, meanwhile
        return put_object(**kwargs)

    monkeypatch.setattr(client, "put_object", put_while_the_file_changes)
    report = media_migrate(storage=storage, source=media_root)
    monkeypatch.undo()

    [failure] = report.with_outcome(Outcome.FAILED)
    assert failure.key == "token_logo/btc.png"
    assert "changed while it was being copied" in failure.reason
    assert len(keys(report, Outcome.COPIED)) == len(tree) - 1
    assert not report.stopped

    again = media_migrate(storage=storage, source=media_root)

    assert keys(again, Outcome.COPIED) == ["token_logo/btc.png"]
    stored = object_bytes(s3_client, bucket_name, "token_logo/btc.png")
    assert stored == new_content


@pytest.mark.reliability("store-migration-cut")
def test_the_server_going_away_mid_run_stops_it_with_what_to_check(
    use_minio, tree, monkeypatch
):
    client = use_minio.client
    put_object = client.put_object
    puts = []

    def put_until_the_server_dies(**kwargs):
        puts.append(kwargs["object_name"])
        if len(puts) == 3:
            refused = NewConnectionError(None, "[Errno 111] Connection refused")
            raise MaxRetryError(None, "/", refused)
        return put_object(**kwargs)

    monkeypatch.setattr(client, "put_object", put_until_the_server_dies)
    out = io.StringIO()

    with pytest.raises(CommandError, match="Run the command again") as stopped:
        call_command("media_to_bucket", "--workers", "1", stdout=out)

    assert "cannot connect" in str(stopped.value)
    report = out.getvalue()
    assert "Failed:     1\n  profile_pics/my avatar é.jpg: " in report
    copied = int(re.search(r"Copied: +(\d+) files", report).group(1))
    remaining = int(re.search(r"Remaining: +(\d+)", report).group(1))
    # The file being copied when the failure came in still finishes.
    assert copied in (2, 3)
    assert copied + 1 + remaining == len(tree)
    assert len(puts) == copied + 1  # nothing queued was tried after


@pytest.mark.reliability("store-migration-cut")
def test_a_vanished_file_fails_with_its_reason_and_the_rest_is_copied(
    storage, tree, media_root, s3_client, bucket_name
):
    (media_root / "profile_pics/gone.jpg").symlink_to("deleted_meanwhile.jpg")
    rows_reference("profile_pics/gone.jpg")

    report = media_migrate(storage=storage, source=media_root)

    [failure] = report.with_outcome(Outcome.FAILED)
    assert failure.key == "profile_pics/gone.jpg"
    assert "No such file" in failure.reason
    assert bucket_keys(s3_client, bucket_name) == sorted(tree)


@pytest.mark.reliability("hostile-paths")
def test_hidden_files_odd_names_and_links_looping_back_are_left_out(
    storage, media_root, s3_client, bucket_name, db
):
    (media_root / "profile_pics").mkdir()
    (media_root / "profile_pics/ok.jpg").write_bytes(image_bytes("JPEG", (64, 64)))
    (media_root / "profile_pics/loop").symlink_to(media_root)
    (media_root / ".DS_Store").write_bytes(b"finder")
    (media_root / ".cache").mkdir()
    (media_root / ".cache/x.jpg").write_bytes(image_bytes("JPEG", (64, 64)))
    (media_root / "back\\slash.jpg").write_bytes(image_bytes("JPEG", (64, 64)))
    os.mkfifo(media_root / "pipe")
    rows_reference("profile_pics/ok.jpg")

    report = media_migrate(storage=storage, source=media_root)

    assert bucket_keys(s3_client, bucket_name) == ["profile_pics/ok.jpg"]
    assert report.with_outcome(Outcome.FAILED) == []
    ignored = dict(report.ignored)
    assert set(ignored) == {
        ".DS_Store",
        ".cache/",
        "back\\slash.jpg",
        "pipe",
        "profile_pics/loop/",
    }
    assert "a folder it is in" in ignored["profile_pics/loop/"]


@pytest.mark.reliability("hostile-paths")
def test_files_and_folders_reached_through_links_are_copied_as_the_app_serves_them(
    storage, media_root, tmp_path, s3_client, bucket_name, db
):
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    (outside / "moved.jpg").write_bytes(image_bytes("JPEG", (64, 64), (5, 5, 5)))
    (media_root / "profile_pics").mkdir()
    (media_root / "profile_pics/ok.jpg").write_bytes(image_bytes("JPEG", (64, 64)))
    (media_root / "profile_pics/alias.jpg").symlink_to("ok.jpg")
    (media_root / "profile_pics/moved.jpg").symlink_to(outside / "moved.jpg")
    (media_root / "token_logo").symlink_to(outside)  # a folder on another disk
    expected = [
        "profile_pics/alias.jpg",
        "profile_pics/moved.jpg",
        "profile_pics/ok.jpg",
        "token_logo/moved.jpg",
    ]
    rows_reference(*expected)

    report = media_migrate(storage=storage, source=media_root)

    on_disk = FileSystemStorage(location=media_root)
    assert all(on_disk.exists(key) for key in expected)
    assert bucket_keys(s3_client, bucket_name) == expected
    for key in expected:
        assert object_bytes(s3_client, bucket_name, key) == on_disk.open(key).read()
    assert report.ignored == []


@pytest.mark.reliability("hostile-paths")
def test_folders_linking_to_each_other_are_copied_under_each_path_without_looping(
    minio_settings, media_root, s3_client, bucket_name, db
):
    x, y = media_root / "profile_pics/x", media_root / "profile_pics/y"
    x.mkdir(parents=True)
    y.mkdir()
    (x / "a.jpg").write_bytes(image_bytes("JPEG", (64, 64)))
    (x / "toy").symlink_to("../y")
    (y / "tox").symlink_to("../x")
    (media_root / "token_logo").mkdir()
    (media_root / "token_logo/pics").symlink_to("../profile_pics")
    expected = [
        "profile_pics/x/a.jpg",
        "profile_pics/y/tox/a.jpg",
        "token_logo/pics/x/a.jpg",
        "token_logo/pics/y/tox/a.jpg",
    ]
    rows_reference(*expected)

    report = run_command("media_to_bucket")

    assert bucket_keys(s3_client, bucket_name) == expected
    assert "Found:      4 files" in report
    for loop in [
        "profile_pics/x/toy/tox/",
        "profile_pics/y/tox/toy/",
        "token_logo/pics/x/toy/tox/",
        "token_logo/pics/y/tox/toy/",
    ]:
        assert f"  {loop}: a link to " in report


@pytest.mark.django_db
def test_command_copies_the_avatars_of_a_media_folder_linked_to_another_disk(
    minio_settings, media_root, tmp_path, alice, s3_client, bucket_name
):
    disk = tmp_path / "disk2" / "profile_pics"
    disk.mkdir(parents=True)
    avatar = image_bytes("JPEG", (64, 64), (7, 7, 7))
    (disk / "alice_abc.jpg").write_bytes(avatar)
    (media_root / "profile_pics").symlink_to(disk)
    Profile.objects.filter(user=alice).update(avatar="profile_pics/alice_abc.jpg")

    report = run_command("media_to_bucket")

    assert object_bytes(s3_client, bucket_name, "profile_pics/alice_abc.jpg") == avatar
    assert "holds every file" in report


@pytest.mark.django_db
def test_command_copies_identity_documents_of_a_folder_linked_to_another_disk(
    minio_settings, private_media_root, tmp_path, s3_client, bucket_name
):
    key = "private/identity/7/doc.pdf"
    disk = tmp_path / "disk2" / "identity"
    (disk / "7").mkdir(parents=True)
    (disk / "7" / "doc.pdf").write_bytes(PRIVATE["private/identity/1/Zr8k.pdf"])
    (private_media_root / "private").mkdir(parents=True)
    (private_media_root / "private/identity").symlink_to(disk)
    identity_documents_name(key)

    report = run_command("media_to_bucket")

    assert bucket_keys(s3_client, bucket_name) == [key]
    assert "holds every file" in report


@pytest.mark.django_db
def test_command_fails_when_a_file_a_row_references_is_left_out(
    minio_settings, media_root, alice, bob, s3_client, bucket_name
):
    name = "profile_pics/.old/alice.jpg"
    (media_root / name).parent.mkdir(parents=True)
    (media_root / name).write_bytes(image_bytes("JPEG", (64, 64)))
    (media_root / "profile_pics/bob.jpg").write_bytes(image_bytes("JPEG", (64, 64)))
    Profile.objects.filter(user=alice).update(avatar=name)
    Profile.objects.filter(user=bob).update(avatar="profile_pics/bob.jpg")
    out = io.StringIO()

    with pytest.raises(CommandError, match="1 of 2 files failed"):
        call_command("media_to_bucket", stdout=out, stderr=io.StringIO())

    assert (
        f"  {name}: a row references it, but profile_pics/.old/ is not copied: "
        "hidden" in out.getvalue()
    )
    assert "holds every file" not in out.getvalue()
    assert bucket_keys(s3_client, bucket_name) == ["profile_pics/bob.jpg"]


# --- private files, from PRIVATE_MEDIA_ROOT --------------------------------------

PRIVATE = {
    "private/identity/1/Qm3x.jpg": image_bytes("JPEG", (64, 64), (9, 9, 9)),
    "private/identity/1/Zr8k.pdf": b"%PDF-1.4 a selfie\n%%EOF\n",
}


def identity_documents_name(*keys: str) -> None:
    """Rows naming ``keys``, as a submitted verification leaves them."""
    user = get_user_model().objects.create_user(f"owner-{uuid.uuid4().hex[:8]}")
    verification = IdentityVerification.objects.create(user=user)
    for kind, key in zip(("front", "back", "selfie"), keys, strict=False):
        IdentityDocument.objects.create(
            verification=verification, kind=kind, file=key, content_type="x", size=1
        )


@pytest.fixture
def private_tree(private_media_root, db) -> dict[str, bytes]:
    """PRIVATE_MEDIA_ROOT as the app lays it out, its files referenced by
    rows, and two strays."""
    identity_documents_name(*PRIVATE)
    for key, content in PRIVATE.items():
        path = private_media_root / key
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content)
    (private_media_root / "profile_pics").mkdir()
    (private_media_root / "profile_pics/stray.jpg").write_bytes(
        image_bytes("JPEG", (64, 64))
    )
    (private_media_root / "notes.txt").write_bytes(b"not a private file")
    return PRIVATE


def test_private_files_are_copied_under_their_keys_and_nothing_else_of_the_folder(
    storage, tree, private_tree, media_root, private_media_root, s3_client, bucket_name
):
    report = media_migrate(
        storage=storage, source=media_root, private_source=private_media_root
    )

    assert sorted(keys(report, Outcome.COPIED)) == sorted(tree | private_tree)
    assert bucket_keys(s3_client, bucket_name) == sorted(tree | private_tree)
    for key, content in private_tree.items():
        assert object_bytes(s3_client, bucket_name, key) == content
    ignored = dict(report.ignored)
    assert "only private files" in ignored["profile_pics/"]
    assert "only private files" in ignored["notes.txt"]
    # The public policy of the bucket does not reach them.
    for key in private_tree:
        url = f"{storage.public_url}/{bucket_name}/{key}"
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(url)
        assert refused.value.code == 403


def test_a_private_file_left_in_media_root_is_copied_once_from_the_private_folder(
    storage, private_tree, media_root, private_media_root, s3_client, bucket_name
):
    key = "private/identity/1/Qm3x.jpg"
    (media_root / key).parent.mkdir(parents=True)
    (media_root / key).write_bytes(b"an older copy")
    (media_root / "private/identity/2/old.jpg").parent.mkdir(parents=True)
    (media_root / "private/identity/2/old.jpg").write_bytes(b"not moved yet")
    identity_documents_name("private/identity/2/old.jpg")

    report = media_migrate(
        storage=storage, source=media_root, private_source=private_media_root
    )

    assert sorted(keys(report, Outcome.COPIED)) == sorted(
        [*private_tree, "private/identity/2/old.jpg"]
    )
    assert object_bytes(s3_client, bucket_name, key) == private_tree[key]
    assert "copied from there" in dict(report.ignored)[key]


@pytest.mark.reliability("private-documents")
def test_a_link_from_media_into_the_private_folder_never_makes_a_public_object(
    storage, private_tree, media_root, private_media_root, s3_client, bucket_name
):
    (media_root / "profile_pics").mkdir()
    (media_root / "profile_pics/docs").symlink_to(private_media_root / "private")

    report = media_migrate(
        storage=storage, source=media_root, private_source=private_media_root
    )

    assert bucket_keys(s3_client, bucket_name) == sorted(private_tree)
    ignored = dict(report.ignored)
    for key in private_tree:
        linked = key.replace("private/", "profile_pics/docs/", 1)
        assert "never copied under a public key" in ignored[linked]


@pytest.fixture
def minio_settings(settings, s3_server, bucket_name):
    """The bucket in MINIO_*, media still on disk (USE_MINIO=false), for
    commands run in the test's process, which see its database rows."""
    settings.MINIO_ENDPOINT = s3_server.endpoint
    settings.MINIO_ACCESS_KEY = S3_ACCESS_KEY
    settings.MINIO_SECRET_KEY = S3_SECRET_KEY
    settings.MINIO_BUCKET_NAME = bucket_name
    settings.MINIO_USE_SSL = False


def run_command(*args: str) -> str:
    out = io.StringIO()
    call_command(*args, stdout=out, stderr=io.StringIO())
    return out.getvalue()


def test_private_files_no_row_references_are_listed_and_not_copied(
    minio_settings, private_tree, private_media_root, s3_client, bucket_name
):
    rejected = "private/identity/4/rejected.jpg"
    (private_media_root / rejected).parent.mkdir(parents=True)
    (private_media_root / rejected).write_bytes(image_bytes("JPEG", (64, 64)))

    report = run_command("media_to_bucket")

    assert bucket_keys(s3_client, bucket_name) == sorted(private_tree)
    assert f"  {rejected}: {UNREFERENCED}" in report
    assert "that a row references" in report


@pytest.mark.django_db
def test_a_rerun_after_the_switch_does_not_bring_back_documents_staff_rejected(
    minio_settings,
    private_media_root,
    s3_client,
    bucket_name,
    request,
    django_capture_on_commit_callbacks,
):
    users = get_user_model().objects
    documents = {kind: document_process(file) for kind, file in full_set().items()}
    verification = verification_submit(
        user=users.create_user("alice", password="x-secret-1"), documents=documents
    )
    names = sorted(document.file.name for document in verification.documents.all())
    run_command("media_to_bucket")
    assert bucket_keys(s3_client, bucket_name) == names

    request.getfixturevalue("use_minio")  # USE_MINIO=true, the same bucket
    with django_capture_on_commit_callbacks(execute=True):
        verification_reject(
            verification=verification,
            staff=users.create_user("staff", is_staff=True),
            reason="blurry",
        )
    assert bucket_keys(s3_client, bucket_name) == []
    assert all((private_media_root / name).is_file() for name in names)

    report = run_command("media_to_bucket")

    assert bucket_keys(s3_client, bucket_name) == []
    for name in names:
        assert f"  {name}: {UNREFERENCED}" in report


@pytest.mark.django_db
def test_a_rerun_after_the_switch_does_not_bring_back_avatars_and_logos_the_app_deleted(
    minio_settings,
    s3_server,
    media_root,
    s3_client,
    bucket_name,
    request,
    django_capture_on_commit_callbacks,
):
    # The app fills media/ itself, as it does with USE_MINIO=false.
    shutil.copy(REPO_DEFAULT_AVATAR, media_root / "default_avatar.jpg")
    users = get_user_model().objects
    alice = users.create_user("alice").profile
    bob = users.create_user("bob").profile
    for profile in (alice, bob):
        avatar_replace(profile=profile, upload=image_upload("me.png", "PNG", "RGB"))
    token = token_create(
        name="Bitcoin", symbol="BTC", logo=image_upload("b.png", "PNG", "RGBA")
    )
    stale = sorted([alice.avatar.name, bob.avatar.name, token.logo.name])
    run_command("media_to_bucket")
    assert bucket_keys(s3_client, bucket_name) == ["default_avatar.jpg", *stale]

    # After the switch: alice replaces her picture, the logo is removed, bob
    # deletes his account. The app deletes each file from the bucket.
    request.getfixturevalue("use_minio")  # USE_MINIO=true, the same bucket
    with django_capture_on_commit_callbacks(execute=True):
        avatar_replace(profile=alice, upload=image_upload("new.png", "PNG", "RGB"))
        token_logo_remove(token=token)
        users.get(username="bob").delete()
    alice.refresh_from_db()
    assert bucket_keys(s3_client, bucket_name) == [
        "default_avatar.jpg",
        alice.avatar.name,
    ]
    assert all((media_root / key).is_file() for key in stale)

    dry_run = run_command("media_to_bucket", "--dry-run")
    report = run_command("media_to_bucket")

    assert bucket_keys(s3_client, bucket_name) == [
        "default_avatar.jpg",
        alice.avatar.name,
    ]
    for key in stale:  # not public again, not for a year
        with pytest.raises(urllib.error.HTTPError) as missing:
            urllib.request.urlopen(f"http://{s3_server.endpoint}/{bucket_name}/{key}")
        assert missing.value.code in (403, 404)
    for output in (dry_run, report):
        assert "Unused:     not referenced by any row, not copied: 3\n" in output
        for key in stale:
            assert f"\n  {key}\n" in output
        assert "Found:      1 files" in output  # the default avatar, always


def test_unreferenced_avatars_and_logos_are_counted_and_a_few_named(
    minio_settings, tree, media_root
):
    left = [f"profile_pics/old_{number}.jpg" for number in range(6)]
    left.append("token_logo/removed.png")
    for key in left:
        (media_root / key).write_bytes(image_bytes("JPEG", (16, 16)))
    (media_root / "uploads").mkdir()
    (media_root / "uploads/notes.txt").write_bytes(b"no folder of the app's")
    out = io.StringIO()

    call_command("media_to_bucket", "--dry-run", stdout=out, stderr=io.StringIO())

    report = out.getvalue()
    assert "Unused:     not referenced by any row, not copied: 7\n" in report
    named = [key for key in left if f"\n  {key}\n" in report]
    assert len(named) == 5
    assert "\n  and 2 more\n" in report
    assert f"Would copy: {len(tree) + 1} files" in report  # uploads/ as before


@pytest.mark.parametrize("dry_run", [[], ["--dry-run"]], ids=["copy", "dry-run"])
@pytest.mark.reliability("store-errors")
def test_command_on_an_endpoint_that_is_not_an_s3_api_stops_saying_so(
    minio_settings, settings, tree, web_server, dry_run
):
    # MINIO_ENDPOINT on MinIO's console port: 200 and a page to everything.
    settings.MINIO_ENDPOINT = web_server()
    settings.MINIO_MAX_RETRIES = 0

    result = media_to_bucket(*dry_run)

    assert result.returncode == 1
    assert "the endpoint does not look like an S3 API" in result.stderr
    assert "MINIO_ENDPOINT" in result.stderr
    assert "Would copy" not in result.stdout
    assert "Copied" not in result.stdout


@pytest.mark.django_db
def test_after_the_copy_the_start_up_warning_asks_only_to_empty_the_folder(
    minio_settings, private_media_root, request
):
    documents = {kind: document_process(file) for kind, file in full_set().items()}
    verification_submit(
        user=get_user_model().objects.create_user("alice"), documents=documents
    )
    run_command("media_to_bucket")
    request.getfixturevalue("use_minio")  # USE_MINIO=true, the same bucket
    out, err = io.StringIO(), io.StringIO()

    call_command("check", stdout=out, stderr=err)

    warning = out.getvalue() + err.getvalue()
    assert "storage.W001" in warning
    # Staff can open every document now: the warning must not say otherwise,
    # nor send the operator to copy again with a tool that would bring back
    # documents staff reject meanwhile.
    assert "staff cannot open them" not in warning
    assert "mc cp" not in warning
    assert "then delete the folder: this warning stays until it is empty" in warning


@pytest.mark.django_db
def test_after_the_copy_staff_open_documents_sent_on_local_disk(
    minio_settings, private_media_root, request
):
    users = get_user_model().objects
    staff = users.create_superuser("staff", password="x-secret-1")
    documents = {kind: document_process(file) for kind, file in full_set().items()}
    verification_submit(
        user=users.create_user("alice", password="x-secret-1"), documents=documents
    )
    stored = {
        path.relative_to(private_media_root).as_posix(): path.read_bytes()
        for path in private_media_root.rglob("*")
        if path.is_file()
    }
    assert len(stored) == 3

    out = io.StringIO()
    call_command("media_to_bucket", stdout=out, stderr=io.StringIO())
    assert f"Private:    {private_media_root}" in out.getvalue()
    assert "Copied:     3 files" in out.getvalue()

    request.getfixturevalue("use_minio")  # USE_MINIO=true, public URLs
    verification = users.get(username="alice").identity_verifications.get()
    for document in verification.documents.all():
        http_request = RequestFactory().get("/")
        http_request.user = staff
        delivery = document_open(request=http_request, document=document)
        with urllib.request.urlopen(delivery.presigned_url) as response:
            assert response.read() == stored[document.file.name]


def test_command_without_a_private_folder_copies_media_alone(
    minio_settings, tree, private_media_root, s3_client, bucket_name
):
    assert not private_media_root.exists()

    result = media_to_bucket()

    assert result.returncode == 0, result.stderr
    assert "Private:    none" in result.stdout
    assert bucket_keys(s3_client, bucket_name) == sorted(tree)


# --- the command, as an operator runs it ---------------------------------------


@pytest.fixture
def env(s3_server, bucket_name, media_root, private_media_root):
    """media/ still on disk (USE_MINIO=false), the bucket in MINIO_*, for a
    command run in a process of its own. Its database is not the test's: the
    files it is given are outside profile_pics/, token_logo/ and private/,
    which are copied only when a row of that database references them."""
    return {
        "USE_MINIO": "false",
        "MEDIA_ROOT": str(media_root),
        "PRIVATE_MEDIA_ROOT": str(private_media_root),
        "MINIO_ENDPOINT": s3_server.endpoint,
        "MINIO_ACCESS_KEY": S3_ACCESS_KEY,
        "MINIO_SECRET_KEY": S3_SECRET_KEY,
        "MINIO_BUCKET_NAME": bucket_name,
    }


@dataclass
class Run:
    returncode: int
    stdout: str
    stderr: str


def media_to_bucket(*args: str) -> Run:
    """The command as ``manage.py`` runs it, in the test's process, where it
    reads the test's rows: a CommandError is exit 1 and its message on stderr."""
    out, err = io.StringIO(), io.StringIO()
    try:
        call_command("media_to_bucket", *args, stdout=out, stderr=err)
    except CommandError as exc:
        err.write(f"CommandError: {exc}\n")
        return Run(1, out.getvalue(), err.getvalue())
    return Run(0, out.getvalue(), err.getvalue())


def test_command_copies_reports_and_a_second_run_copies_nothing(
    minio_settings, tree, s3_client, bucket_name
):
    result = media_to_bucket()

    assert result.returncode == 0, result.stderr
    assert f"Found:      {len(tree)} files" in result.stdout
    assert f"Copied:     {len(tree)} files" in result.stdout
    assert "Failed:     0" in result.stdout
    assert "100%" in result.stderr  # progress, on stderr
    assert bucket_keys(s3_client, bucket_name) == sorted(tree)

    again = media_to_bucket("--workers", "1")

    assert again.returncode == 0, again.stderr
    assert "Copied:     0 files" in again.stdout
    assert f"Identical:  {len(tree)}" in again.stdout


def test_command_dry_run_says_what_it_would_copy_and_writes_nothing(
    minio_settings, tree, s3_client, bucket_name
):
    result = media_to_bucket("--dry-run")

    assert result.returncode == 0, result.stderr
    assert f"Would copy: {len(tree)} files" in result.stdout
    assert "nothing was written" in result.stdout
    assert not s3_client.bucket_exists(bucket_name=bucket_name)


def test_command_exits_1_naming_each_failed_file_after_copying_the_rest(
    minio_settings, tree, media_root, s3_client, bucket_name
):
    (media_root / "profile_pics/gone.jpg").symlink_to("deleted_meanwhile.jpg")
    rows_reference("profile_pics/gone.jpg")

    result = media_to_bucket("-v", "2")

    assert result.returncode == 1
    assert "profile_pics/gone.jpg: cannot read: No such file" in result.stdout
    assert f"1 of {len(tree) + 1} files failed" in result.stderr
    assert bucket_keys(s3_client, bucket_name) == sorted(tree)


@pytest.mark.reliability("store-errors")
def test_command_on_an_unreachable_endpoint_names_what_to_check(
    minio_settings, settings, tree
):
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        settings.MINIO_ENDPOINT = f"127.0.0.1:{sock.getsockname()[1]}"

    result = media_to_bucket()

    assert result.returncode == 1
    assert "cannot connect" in result.stderr
    assert "MINIO_ENDPOINT" in result.stderr


@pytest.mark.reliability("store-errors")
def test_command_with_wrong_credentials_names_the_keys(
    minio_settings, settings, tree, s3_client, bucket_name
):
    settings.MINIO_SECRET_KEY = "wrong-secret"

    result = media_to_bucket()

    assert result.returncode == 1
    assert "MINIO_ACCESS_KEY and MINIO_SECRET_KEY" in result.stderr
    assert not s3_client.bucket_exists(bucket_name=bucket_name)


@pytest.mark.reliability("store-migration-cut")
def test_command_interrupted_by_ctrl_c_exits_1_and_the_next_run_finishes(
    env, media_root, s3_client, bucket_name
):
    (media_root / "uploads").mkdir()
    for number in range(400):
        path = media_root / f"uploads/{number:03d}.jpg"
        path.write_bytes(b"\xff\xd8\xff" + os.urandom(50_000))
    clean = {"PATH": os.environ["PATH"], "ENV_FILE": "/dev/null", **env}
    command = [sys.executable, "manage.py", "media_to_bucket"]
    root = Path(__file__).resolve().parents[2]
    with subprocess.Popen(
        command, cwd=root, env=clean, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    ) as process:
        # The first progress line (10% done), after any system check warning.
        line = b""
        while b"files processed" not in line:
            line = process.stderr.readline()
            assert line, "media_to_bucket ended without a progress line"
        process.send_signal(signal.SIGINT)
        out, err = process.communicate(timeout=60)

    assert process.returncode == 1
    assert b"Stopped before the end (interrupted)" in err
    assert b"Traceback" not in err
    copied = int(re.search(rb"Copied: +(\d+) files", out).group(1))
    assert 40 <= copied < 400
    assert len(bucket_keys(s3_client, bucket_name)) == copied

    again = subprocess.run(command, cwd=root, env=clean, capture_output=True)

    assert again.returncode == 0, again.stderr
    assert f"Identical:  {copied} ".encode() in again.stdout
    assert f"Copied:     {400 - copied} files".encode() in again.stdout


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--source", "/no/such/folder"], "is not a folder"),
        (["--workers", "0"], "--workers must be between 1 and 32"),
    ],
)
def test_command_refuses_bad_arguments(minio_settings, args, message):
    result = media_to_bucket(*args)

    assert result.returncode == 1
    assert message in result.stderr


def test_progress_on_a_terminal_is_one_rewritten_line(use_minio, tree):
    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    stderr = Terminal()

    call_command("media_to_bucket", stdout=io.StringIO(), stderr=stderr)

    text = stderr.getvalue()
    assert text.startswith("\r[")
    assert text.endswith("\n") and text.count("\n") == 1
    assert f"{len(tree)}/{len(tree)} files" in text.rsplit("\r", 1)[-1]


# --- acceptance: switching USE_MINIO=true afterwards shows every image -----------


def image_upload(name: str, fmt: str, mode: str) -> SimpleUploadedFile:
    buffer = io.BytesIO()
    Image.new(mode, (400, 400), (30, 120, 200, 255)[: len(mode)]).save(buffer, fmt)
    return SimpleUploadedFile(name, buffer.getvalue())


@pytest.mark.django_db
def test_after_the_copy_every_avatar_and_logo_url_serves_the_image(
    minio_settings, media_root, request
):
    # The app fills media/ itself, as it does with USE_MINIO=false.
    shutil.copy(REPO_DEFAULT_AVATAR, media_root / "default_avatar.jpg")
    users = get_user_model().objects
    for name in ("alice", "bob", "carol"):
        profile = users.create_user(name, password="x-secret-1").profile
        if name != "carol":  # carol keeps the default avatar
            avatar_replace(profile=profile, upload=image_upload("me.png", "PNG", "RGB"))
    token_create(
        name="Bitcoin", symbol="BTC", logo=image_upload("b.png", "PNG", "RGBA")
    )
    token_create(name="Ether", symbol="ETH", logo=image_upload("e.png", "PNG", "RGB"))

    result = media_to_bucket()
    assert result.returncode == 0, result.stderr

    request.getfixturevalue("use_minio")  # USE_MINIO=true, public URLs
    images = [profile.avatar for profile in Profile.objects.all()]
    images += [token.logo for token in Token.objects.all()]
    assert {image.name.split("/")[0] for image in images} == {
        "default_avatar.jpg",
        "profile_pics",
        "token_logo",
    }
    for image in images:
        assert image.url.startswith("http://")
        with urllib.request.urlopen(image.url) as response:
            assert response.status == 200
            assert response.headers["Content-Type"] == (
                "image/png" if image.name.endswith(".png") else "image/jpeg"
            )
            assert response.read() == (media_root / image.name).read_bytes()
