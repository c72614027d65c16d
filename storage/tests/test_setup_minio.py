"""setup_minio and its default avatar: where it is taken from, and the run
failing when there is none, against the real S3 server."""

import subprocess

import pytest

from conftest import S3_ACCESS_KEY, S3_SECRET_KEY
from tests.checkout import clean_environment, copy_checkout
from tests.factories import image_bytes

AVATAR = "default_avatar.jpg"


@pytest.fixture
def env(s3_server, bucket_name):
    return {
        "USE_MINIO": "true",
        "MINIO_ENDPOINT": s3_server.endpoint,
        "MINIO_ACCESS_KEY": S3_ACCESS_KEY,
        "MINIO_SECRET_KEY": S3_SECRET_KEY,
        "MINIO_BUCKET_NAME": bucket_name,
        "MINIO_USE_SSL": "false",
    }


def object_content(s3_client, bucket_name, key) -> bytes:
    response = s3_client.get_object(bucket_name=bucket_name, object_name=key)
    try:
        return response.read()
    finally:
        response.close()
        response.release_conn()


def test_the_default_avatar_is_uploaded_from_media_root(
    run_python, env, media_root, s3_client, bucket_name
):
    own = image_bytes("JPEG", (80, 80), (200, 10, 10))
    (media_root / AVATAR).write_bytes(own)

    result = run_python(
        ["scripts/setup_minio.py"], {**env, "MEDIA_ROOT": str(media_root)}
    )

    assert result.returncode == 0, result.stderr
    assert f"{AVATAR} uploaded from {media_root / AVATAR}" in result.stdout
    assert object_content(s3_client, bucket_name, AVATAR) == own
    stored = s3_client.stat_object(bucket_name=bucket_name, object_name=AVATAR)
    assert stored.content_type == "image/jpeg"


def test_without_a_default_avatar_anywhere_setup_fails_saying_where_to_put_one(
    tmp_path, env, s3_client, bucket_name
):
    # A checkout whose media/ holds no default avatar (a bind mount over it,
    # or the file deleted), and MEDIA_ROOT left at that media/.
    checkout = copy_checkout(tmp_path / "checkout")
    (checkout / "media" / AVATAR).unlink()
    shell = {**clean_environment(tmp_path, activated=checkout), **env}

    for command in (["scripts/setup_minio.py"], ["manage.py", "setup_minio"]):
        result = subprocess.run(
            [str(checkout / ".venv/bin/python"), *command],
            cwd=checkout,
            env=shell,
            capture_output=True,
            text=True,
            timeout=120,
        )

        assert result.returncode == 1, result.stdout
        assert f"The bucket '{bucket_name}' has no {AVATAR}" in result.stderr
        assert str(checkout / "media" / AVATAR) in result.stderr
        assert "Put default_avatar.jpg in MEDIA_ROOT" in result.stderr
        assert "Traceback" not in result.stderr
        assert "ready" not in result.stdout
        assert f"{AVATAR} missing" in result.stdout
    names = [o.object_name for o in s3_client.list_objects(bucket_name=bucket_name)]
    assert AVATAR not in names
