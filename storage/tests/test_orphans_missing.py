"""media_orphans --missing: rows whose object is gone (a database and a bucket
restored from different times), listed, and repaired where a row can do
without its file."""

import io
import shutil
from pathlib import Path

import pytest
from django.core.management import CommandError, call_command

from accounts.models import DEFAULT_AVATAR
from accounts.services import avatar_replace
from storage.tests.test_orphans import identity_documents_submit
from tests.factories import jpeg_upload, token_make, user_make
from tokens.services import token_logo_replace
from verification.models import IdentityDocument

pytestmark = pytest.mark.django_db


def missing(*args: str) -> tuple[str, str]:
    """The command's output, and its error ("" when it exits 0)."""
    out = io.StringIO()
    try:
        call_command("media_orphans", "--missing", *args, stdout=out)
    except CommandError as error:
        return out.getvalue(), str(error)
    return out.getvalue(), ""


@pytest.fixture
def restored(profile, any_storage, any_private_storage):
    """Rows of each kind with files, then the objects of some of them gone,
    as after restoring a bucket older than the database."""
    avatar_replace(profile=profile, upload=jpeg_upload())
    kept = user_make("bob").profile
    avatar_replace(profile=kept, upload=jpeg_upload())
    token = token_make("BTC")
    token_logo_replace(token=token, upload=jpeg_upload())
    identity_documents_submit("dora")
    document = IdentityDocument.objects.get(kind="front")
    gone = {
        "avatar": profile.avatar.name,
        "logo": token.logo.name,
        "document": document.file.name,
    }
    any_storage.delete(gone["avatar"])
    any_storage.delete(gone["logo"])
    any_private_storage.delete(gone["document"])
    return {
        "profile": profile,
        "kept": kept,
        "kept_avatar": kept.avatar.name,
        "token": token,
        "document": document,
        "gone": gone,
    }


def test_rows_whose_object_is_gone_are_listed_and_the_command_fails(restored):
    report, error = missing()

    gone, profile = restored["gone"], restored["profile"]
    assert (
        f"missing         accounts.Profile #{profile.pk} avatar {gone['avatar']} "
        "(Profile of alice): --repair: set back to the default avatar"
    ) in report
    assert (
        f"missing         tokens.Token #{restored['token'].pk} logo {gone['logo']} "
    ) in report
    assert "--repair: logo cleared (the initial letter shows)" in report
    assert (
        f"missing         verification.IdentityDocument #{restored['document'].pk} "
        f"file {gone['document']} (Front of the ID of dora): ask the user to send "
        "their documents again"
    ) in report
    assert restored["kept_avatar"] not in report
    assert "missing 3, repaired 0, default files missing 0" in report
    assert "Nothing was changed (run with --repair to repair)." in report
    assert error.startswith("3 rows name a file missing from storage")
    profile.refresh_from_db()
    assert profile.avatar.name == gone["avatar"]


def test_repair_gives_avatars_the_default_clears_logos_and_lists_documents(
    restored, any_storage
):
    dry, _ = missing("--repair", "--dry-run")
    assert "repaired 0" in dry
    assert "would be repaired: logo cleared (the initial letter shows)" in dry
    assert "Nothing was changed (dry run)." in dry

    report, error = missing("--repair")

    profile, token = restored["profile"], restored["token"]
    profile.refresh_from_db()
    token.refresh_from_db()
    assert profile.avatar.name == DEFAULT_AVATAR
    assert token.logo.name == ""
    assert restored["kept"].avatar.name == restored["kept_avatar"]
    assert any_storage.exists(restored["kept_avatar"])
    assert f"repaired        accounts.Profile #{profile.pk} avatar" in report
    assert f"repaired        tokens.Token #{token.pk} logo" in report
    assert "missing 3, repaired 2" in report
    # Only the user can send the document again: it stays, and so does the
    # failure, until they do.
    assert "ask the user to send their documents again" in report
    assert error == "1 row names a file missing from storage: see the lines above."

    restored["document"].verification.delete()
    report, error = missing()
    assert "missing 0, repaired 0, default files missing 0" in report
    assert error == ""


def test_a_missing_default_avatar_is_named_once_with_how_to_put_it_back(
    profile, any_storage, settings
):
    user_make("bob")
    any_storage.delete(DEFAULT_AVATAR)

    report, error = missing("--repair")

    assert "missing         default_avatar.jpg, the default of 2 rows: " in report
    assert "accounts.Profile #" not in report
    assert "default files missing 1" in report
    assert error == "a default file is missing: see the lines above."
    if settings.USE_MINIO:
        assert "run `python manage.py setup_minio`" in report
        call_command("setup_minio", stdout=io.StringIO())
    else:
        assert "copy default_avatar.jpg from the repository's media/ folder" in report
        shipped = Path(settings.BASE_DIR) / "media" / DEFAULT_AVATAR
        shutil.copy(shipped, Path(settings.MEDIA_ROOT) / DEFAULT_AVATAR)
    assert any_storage.exists(DEFAULT_AVATAR)
    assert missing()[1] == ""


def test_missing_does_not_go_with_delete_and_repair_needs_missing(db):
    with pytest.raises(CommandError, match="--repair goes with --missing"):
        call_command("media_orphans", "--repair", stdout=io.StringIO())
    with pytest.raises(CommandError, match="run them one after the other"):
        call_command("media_orphans", "--missing", "--delete", stdout=io.StringIO())
