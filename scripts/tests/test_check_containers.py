"""scripts/check_containers.sh (`make check-containers`) on this checkout, and
on copies of it where the compose file or the Dockerfile breaks a rule."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.checkout import ROOT, clean_environment, copy_checkout

BASH = shutil.which("bash")

SLOTS_VOLUME = """    volumes:
      - type: volume
        source: image-decode-slots
        target: *image-decode-slots-dir
"""


def check_containers(checkout: Path, home: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [BASH, "scripts/check_containers.sh"],
        cwd=checkout,
        env={**clean_environment(home), "BIN": str(Path(sys.executable).parent)},
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_the_checkouts_container_files_pass(tmp_path):
    result = check_containers(ROOT, tmp_path)

    assert result.returncode == 0, result.stdout + result.stderr
    assert "one image decode slots' volume for every app container" in result.stdout


@pytest.mark.parametrize(
    ("name", "old", "new", "refusal"),
    [
        # Each replica's own folder: a host would decode IMAGE_DECODE_SLOTS
        # images per replica at once.
        (
            "docker-compose.yml",
            SLOTS_VOLUME + "    deploy:\n",
            "    deploy:\n",
            "docker-compose.yml --profile minio: app has no volume at "
            "IMAGE_DECODE_SLOTS_DIR (/var/lib/crypto-exchange/image-decodes)",
        ),
        # A new volume takes the owner of the image's folder: root's, where
        # the app's user could create no slot file.
        (
            "Dockerfile",
            "chown -R 10001:10001 media private_media /var/lib/crypto-exchange",
            "chown -R 10001:10001 media private_media",
            "Dockerfile: /var/lib/crypto-exchange/image-decodes "
            "(IMAGE_DECODE_SLOTS_DIR) is not made the app user's",
        ),
    ],
    ids=["replicas-without-a-shared-volume", "folder-of-roots-in-the-image"],
)
def test_image_decode_slots_not_shared_by_the_app_containers_are_refused(
    tmp_path, name, old, new, refusal
):
    checkout = copy_checkout(tmp_path / "checkout")
    path = checkout / name
    text = path.read_text()
    assert old in text, f"{name} no longer has {old!r}"
    path.write_text(text.replace(old, new))

    result = check_containers(checkout, tmp_path)

    assert result.returncode != 0
    assert refusal in result.stderr
