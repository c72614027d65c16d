"""media_orphans on folder links (local disk), a missing bucket, odd arguments."""

import ast
import io
import os
import time
from pathlib import Path

import pytest
from django.core.management import CommandError, call_command

from accounts.models import Profile

pytestmark = pytest.mark.django_db

TWO_DAYS = 2 * 24 * 3600


def orphans(*args: str) -> str:
    out = io.StringIO()
    call_command("media_orphans", *args, stdout=out)
    return out.getvalue()


def old_file(path, content: bytes = b"\xff\xd8\xff jpeg") -> None:
    """A file written two days ago: past any grace period."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(content)
    then = time.time() - TWO_DAYS
    os.utime(path, (then, then))


@pytest.fixture
def avatar(alice, media_root) -> str:
    """alice's avatar, an old file on disk that her profile references."""
    name = "profile_pics/alice.jpg"
    old_file(media_root / name)
    Profile.objects.filter(user=alice).update(avatar=name)
    return name


def test_a_link_to_another_media_folder_never_deletes_the_avatars_it_shows(
    avatar, media_root
):
    (media_root / "token_logo").mkdir()
    (media_root / "token_logo/pics").symlink_to("../profile_pics")
    old_file(media_root / "profile_pics/lost.jpg")

    report = orphans("--delete")

    assert (media_root / avatar).is_file()
    assert not (media_root / "profile_pics/lost.jpg").exists()
    assert (media_root / "token_logo/pics").is_symlink()
    assert "link skipped    token_logo/pics/" in report
    assert "token_logo/pics/alice.jpg" not in report
    assert "deleted 1, failed 0" in report


def test_a_link_to_a_folder_outside_the_media_folder_deletes_nothing_there(
    media_root, tmp_path
):
    outside = tmp_path / "keep"
    old_file(outside / "tax-2023.pdf", b"%PDF- important")
    (media_root / "profile_pics").mkdir()
    (media_root / "profile_pics/archive").symlink_to(outside)

    report = orphans("--delete")

    assert (outside / "tax-2023.pdf").read_bytes() == b"%PDF- important"
    assert "link skipped    profile_pics/archive/" in report
    assert "scanned 0" in report


def test_folders_linking_to_each_other_are_walked_once(media_root):
    x, y = media_root / "profile_pics/x", media_root / "profile_pics/y"
    old_file(x / "lost.jpg")
    y.mkdir()
    (x / "toy").symlink_to("../y")
    (y / "tox").symlink_to("../x")

    report = orphans("--delete")

    assert "deleted         profile_pics/x/lost.jpg" in report
    assert "scanned 1, referenced 0, younger than 60 min 0, unreferenced 1" in report
    assert not (x / "lost.jpg").exists()


def test_a_folder_that_cannot_be_listed_is_a_clear_error_and_nothing_is_deleted(
    media_root,
):
    old_file(media_root / "token_logo/lost.png")
    # A link to itself: listing its folder fails with ELOOP.
    (media_root / "profile_pics").mkdir()
    (media_root / "profile_pics/self").symlink_to("self")

    with pytest.raises(CommandError, match="profile_pics cannot be listed") as error:
        orphans("--delete")

    assert "Too many levels of symbolic links" in str(error.value)
    assert "no unreferenced file was deleted" in str(error.value)
    assert (media_root / "token_logo/lost.png").is_file()


def test_a_media_folder_that_is_a_link_to_another_stops_the_command(avatar, media_root):
    (media_root / "token_logo").symlink_to("profile_pics")

    with pytest.raises(CommandError, match="the same folder on disk"):
        orphans("--delete")

    assert (media_root / avatar).is_file()


def test_a_bucket_that_does_not_exist_is_named_in_a_clear_error(
    use_minio, bucket_name, s3_client
):
    assert not s3_client.bucket_exists(bucket_name=bucket_name)

    for args in ([], ["--delete"]):
        with pytest.raises(CommandError) as error:
            orphans(*args)

        assert f"no bucket '{bucket_name}'" in str(error.value)
        assert "MINIO_BUCKET_NAME" in str(error.value)


def test_a_grace_period_out_of_range_names_the_range():
    with pytest.raises(CommandError, match=r"between 5 and 52560000 \(100 years\)"):
        orphans("--grace-minutes", "99999999999")


@pytest.mark.parametrize("minutes", ["-1", "0", "4"])
def test_a_grace_period_too_short_for_an_upload_in_flight_says_why(minutes):
    with pytest.raises(CommandError) as error:
        orphans("--grace-minutes", minutes)

    assert "--grace-minutes must be at least 5: an upload" in str(error.value)
    assert "gunicorn's 30 s timeout" in str(error.value)


def test_the_shortest_grace_period_outlasts_gunicorns_request_timeout():
    from storage.orphans import MIN_GRACE_MINUTES

    conf = Path(__file__).resolve().parents[2] / "gunicorn.conf.py"
    [timeout] = [
        node.value.value
        for node in ast.parse(conf.read_text()).body
        if isinstance(node, ast.Assign)
        and [getattr(target, "id", "") for target in node.targets] == ["timeout"]
    ]

    assert timeout == 30  # what the refusal message says
    assert 2 * timeout <= MIN_GRACE_MINUTES * 60
