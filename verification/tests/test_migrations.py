"""Documents stored under MEDIA_ROOT/private/ before the private storage existed."""

import importlib
import shutil

import pytest

from verification.tests.test_views import open_url, reviewer_client, submit

pytestmark = pytest.mark.django_db

move = importlib.import_module("verification.migrations.0002_private_storage")


def files_under(root) -> dict[str, bytes]:
    return {
        path.relative_to(root).as_posix(): path.read_bytes()
        for path in sorted(root.rglob("*"))
        if path.is_file()
    }


def test_the_migration_moves_old_documents_out_of_media_root_and_staff_open_them(
    alice_client, mfa_enable, media_root, private_media_root
):
    verification = submit(alice_client)
    stored = files_under(private_media_root)
    assert len(stored) == 3
    # As a deployment on local disk had them before this migration.
    shutil.move(private_media_root / "private", media_root / "private")
    document = verification.documents.get(kind="front")
    staff = reviewer_client(mfa_enable, may_open=True)
    assert staff.get(open_url(document)).status_code == 404

    move.move_out_of_media_root(apps=None, schema_editor=None)

    assert files_under(private_media_root) == stored
    assert list(media_root.iterdir()) == []
    response = staff.get(open_url(document))
    assert response.status_code == 200
    assert b"".join(response.streaming_content) == stored[document.file.name]


def test_running_it_again_or_on_s3_deployments_changes_nothing(
    alice_client, media_root, private_media_root
):
    move.move_out_of_media_root(apps=None, schema_editor=None)  # nothing there
    assert list(media_root.iterdir()) == []
    assert not private_media_root.exists()

    submit(alice_client)
    stored = files_under(private_media_root)
    move.move_out_of_media_root(apps=None, schema_editor=None)

    assert files_under(private_media_root) == stored


def test_unapplying_it_moves_the_documents_back(
    alice_client, media_root, private_media_root
):
    submit(alice_client)
    stored = files_under(private_media_root)

    move.move_back_into_media_root(apps=None, schema_editor=None)

    assert files_under(media_root) == stored
    assert files_under(private_media_root) == {}
