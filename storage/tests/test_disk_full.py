"""A full disk under local media (USE_MINIO=false), for real.

Each test mounts a small tmpfs of its own, fills it to a few KiB, and points
MEDIA_ROOT or PRIVATE_MEDIA_ROOT at it, so writes end with ENOSPC from the
kernel. Mounting needs root (CI runs as root) or password-less sudo; without
either the tests are skipped with that reason, and under CI=true they fail.
"""

from __future__ import annotations

import io
import os
import shutil
import subprocess
from pathlib import Path

import pytest
from django.contrib.auth import get_user_model
from django.core.files.base import ContentFile
from django.core.files.uploadedfile import SimpleUploadedFile
from PIL import Image

from accounts.models import DEFAULT_AVATAR, Profile
from conftest import storages_setting
from storage.exceptions import StorageFull
from storage.filesystem import FileSystemStorage
from verification.models import IdentityDocument, IdentityVerification
from verification.tests.samples import pdf

pytestmark = pytest.mark.django_db

DISK_SIZE = 512 * 1024
FILLER = "filler.bin"
DISK_FULL = "could not be saved: the server&#x27;s disk is full"


def _privileged() -> list[str] | None:
    if os.geteuid() == 0:
        return []
    sudo = shutil.which("sudo")
    if sudo and subprocess.run([sudo, "-n", "true"]).returncode == 0:
        return [sudo, "-n"]
    return None


def _cannot(reason: str) -> None:
    if os.environ.get("CI"):
        pytest.fail(f"{reason} (CI must run these tests)")
    pytest.skip(reason)


@pytest.fixture
def small_disk(tmp_path):
    """Mount a tmpfs of DISK_SIZE bytes; yield a function that fills it up
    to ``free`` bytes and returns the mount point."""
    prefix = _privileged()
    if prefix is None:
        _cannot("mounting a small tmpfs needs root or password-less sudo")
    mount_point = tmp_path / "disk"
    mount_point.mkdir()
    mounted = subprocess.run(
        [
            *prefix,
            *("mount", "-t", "tmpfs", "-o", f"size={DISK_SIZE},mode=0777"),
            *("tmpfs", str(mount_point)),
        ],
        capture_output=True,
        text=True,
    )
    if mounted.returncode != 0:
        _cannot(f"cannot mount a tmpfs here: {mounted.stderr.strip()}")

    def fill(*, free: int) -> Path:
        stat = os.statvfs(mount_point)
        available = stat.f_bavail * stat.f_frsize
        (mount_point / FILLER).write_bytes(b"\0" * (available - free))
        stat = os.statvfs(mount_point)
        assert stat.f_bavail * stat.f_frsize == free
        return mount_point

    try:
        yield fill
    finally:
        subprocess.run([*prefix, "umount", str(mount_point)], check=True)


def files_under(root: Path) -> set[str]:
    return {
        path.relative_to(root).as_posix() for path in root.rglob("*") if path.is_file()
    }


def noise_jpeg(name: str, size: tuple[int, int]) -> SimpleUploadedFile:
    """A photo that compresses badly: tens of KiB even at 300x300."""
    image = Image.merge("RGB", [Image.effect_noise(size, 80) for _ in range(3)])
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=95)
    return SimpleUploadedFile(name, buffer.getvalue(), "image/jpeg")


def plain_jpeg(name: str) -> SimpleUploadedFile:
    buffer = io.BytesIO()
    Image.new("RGB", (600, 400), (200, 180, 150)).save(buffer, "JPEG")
    return SimpleUploadedFile(name, buffer.getvalue(), "image/jpeg")


@pytest.mark.reliability("disk-full")
def test_a_file_the_disk_has_no_room_for_is_refused_and_removed(small_disk):
    root = small_disk(free=8 * 1024)
    storage = FileSystemStorage(location=root)

    with pytest.raises(StorageFull, match="is full") as refused:
        storage.save("uploads/big.bin", ContentFile(os.urandom(64 * 1024)))

    assert refused.value.reason == "ENOSPC"
    assert files_under(root) == {FILLER}
    small = storage.save("uploads/small.bin", ContentFile(b"fits"))
    assert files_under(root) == {FILLER, small}


@pytest.mark.reliability("disk-full")
def test_the_partial_file_removed_is_the_one_this_save_created(small_disk):
    # Another upload takes the name first: Django writes under another one,
    # and only that one is removed.
    root = small_disk(free=16 * 1024)
    storage = FileSystemStorage(location=root)
    (root / "uploads").mkdir()
    (root / "uploads" / "photo.jpg").write_bytes(b"someone else's")

    with pytest.raises(StorageFull):
        storage._save("uploads/photo.jpg", ContentFile(os.urandom(64 * 1024)))

    assert files_under(root) == {FILLER, "uploads/photo.jpg"}
    assert (root / "uploads" / "photo.jpg").read_bytes() == b"someone else's"


@pytest.mark.reliability("disk-full")
def test_any_other_failed_write_is_raised_as_itself_and_leaves_nothing(tmp_path):
    class CutOff(io.BytesIO):
        def read(self, *args):
            if self.tell():
                raise OSError("the upload was cut off")
            return super().read(64 * 1024)

    storage = FileSystemStorage(location=tmp_path)

    with pytest.raises(OSError, match="cut off") as failure:
        storage.save("uploads/cut.bin", CutOff(os.urandom(256 * 1024)))

    assert type(failure.value) is OSError
    assert files_under(tmp_path) == set()


@pytest.mark.reliability("disk-full")
def test_an_avatar_upload_on_a_full_disk_is_refused_and_changes_nothing(
    client, settings, small_disk
):
    user = get_user_model().objects.create_user("alice", password="x-secret-1")
    client.force_login(user)
    root = small_disk(free=8 * 1024)
    settings.MEDIA_ROOT = root
    settings.STORAGES = storages_setting(
        {
            "BACKEND": "storage.filesystem.FileSystemStorage",
            "OPTIONS": {"location": root, "base_url": "/media/"},
        }
    )
    before = Profile.objects.get(user=user)

    page = client.post(
        "/accounts/profile/", {"avatar": noise_jpeg("me.jpg", (600, 600))}
    )
    script = client.post(
        "/accounts/profile/",
        {"avatar": noise_jpeg("me.jpg", (600, 600))},
        HTTP_X_REQUESTED_WITH="XMLHttpRequest",
    )

    assert page.status_code == 400
    assert DISK_FULL in page.content.decode()
    assert script.status_code == 400
    assert "the server's disk is full" in str(script.json()["errors"])
    after = Profile.objects.get(user=user)
    assert after.avatar.name == before.avatar.name == DEFAULT_AVATAR
    assert after.updated_at == before.updated_at
    assert files_under(root) == {FILLER}


@pytest.mark.reliability("disk-full")
def test_identity_documents_on_a_full_disk_are_refused_and_leave_nothing(
    client, settings, small_disk
):
    # The front fits; the back does not: both are gone afterwards.
    user = get_user_model().objects.create_user("alice", password="x-secret-1")
    client.force_login(user)
    root = small_disk(free=64 * 1024)
    settings.PRIVATE_MEDIA_ROOT = root
    settings.STORAGES = storages_setting(
        settings.STORAGES["default"],
        {
            "BACKEND": "storage.filesystem.FileSystemStorage",
            "OPTIONS": {"location": root, "base_url": None},
        },
    )

    response = client.post(
        "/accounts/verification/",
        {
            "front": plain_jpeg("front.jpg"),
            "back": noise_jpeg("back.jpg", (1200, 1200)),
            "selfie": SimpleUploadedFile("selfie.pdf", pdf(), "application/pdf"),
        },
    )

    assert response.status_code == 400
    assert DISK_FULL in response.content.decode()
    assert not IdentityVerification.objects.exists()
    assert not IdentityDocument.objects.exists()
    assert files_under(root) == {FILLER}
