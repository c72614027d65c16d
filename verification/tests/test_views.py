import io
import json
import time

import pikepdf
import pytest
import urllib3
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Permission
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.http import Http404
from django.test import Client, RequestFactory
from django.views.static import serve
from PIL import Image

from conftest import storages_setting
from storage.bucket import public_read_policy
from storage.config import is_public_media_key
from trading.tests.test_admin import confirmation_posted
from verification.models import IdentityDocumentAccess, IdentityVerification
from verification.services import (
    document_presigned_url,
    verification_approve,
    verification_reject,
)
from verification.tests.samples import (
    full_set,
    jpeg_with_gps,
    jpeg_with_malformed_exif,
    pdf_in_object_streams,
    pdf_opening_with,
    upload,
)

pytestmark = pytest.mark.django_db

http = urllib3.PoolManager(retries=False, timeout=10)


def reviewer_client(mfa_enable, *, may_open: bool) -> Client:
    staff = get_user_model().objects.create_user(
        "reviewer" if may_open else "helper", password="pw-staff-2026", is_staff=True
    )
    staff.user_permissions.add(
        Permission.objects.get(codename="view_identityverification"),
        Permission.objects.get(codename="change_identityverification"),
    )
    if may_open:
        staff.user_permissions.add(
            Permission.objects.get(codename="view_identity_document")
        )
    mfa_enable(staff)
    client = Client()
    client.force_login(staff)
    return client


def submit(client) -> IdentityVerification:
    return submit_data(client, full_set())


def submit_data(client, data: dict) -> IdentityVerification:
    response = client.post("/accounts/verification/", data)
    assert response.status_code == 302, response.content.decode()[:2000]
    return IdentityVerification.objects.get()


def open_url(document) -> str:
    return f"/admin/verification/identityverification/document/{document.pk}/"


def test_the_page_asks_for_documents_then_shows_the_state(alice_client):
    page = alice_client.get("/accounts/verification/")
    assert page.status_code == 200
    assert 'accept="image/jpeg,image/png,application/pdf"' in page.content.decode()
    assert "no-store" in page["Cache-Control"]
    submit(alice_client)
    page = alice_client.get("/accounts/verification/").content.decode()
    assert "under review" in page
    assert 'name="front"' not in page  # no second submission while pending
    profile = alice_client.get("/accounts/profile/").content.decode()
    assert "under review" in profile and "/accounts/verification/" in profile


@pytest.mark.parametrize("decision", ["approve", "reject"])
def test_the_page_says_its_dates_are_in_utc(alice_client, staff, decision):
    verification = submit(alice_client)
    sent = f"{verification.submitted_at:%-d %b %Y %H:%M}"
    page = alice_client.get("/accounts/verification/").content.decode()
    assert f"Your documents, sent {sent} UTC, are" in page

    if decision == "approve":
        decided = verification_approve(verification=verification, staff=staff)
        IdentityVerification.objects.update(documents_deleted_at=decided.decided_at)
        shown = [f"(approved {decided.decided_at:%-d %b %Y} UTC)"]
        shown.append(f"deleted on {decided.decided_at:%-d %b %Y} UTC;")
    else:
        decided = verification_reject(
            verification=verification, staff=staff, reason="The photo is blurred."
        )
        shown = [f"rejected</strong> on {decided.decided_at:%-d %b %Y} UTC and"]
    page = alice_client.get("/accounts/verification/").content.decode()
    for words in shown:
        assert words in page


def test_refusals_are_form_errors_in_words(alice_client):
    response = alice_client.post(
        "/accounts/verification/",
        {
            "front": upload("id.svg", b"<svg xmlns='http://www.w3.org/2000/svg'/>"),
            "selfie": upload("me.jpg", jpeg_with_gps(100, 100)),
        },
    )
    assert response.status_code == 400
    assert "not a JPEG, PNG or PDF" in response.content.decode()
    assert not IdentityVerification.objects.exists()


def _open_with_a_script(document):
    document.Root.OpenAction = document.make_indirect(
        pikepdf.Dictionary(S=pikepdf.Name.JavaScript, JS=pikepdf.String("app.alert(1)"))
    )


@pytest.mark.parametrize(
    "content",
    [
        pdf_opening_with(b"<< /S /J#61vaScript /J#53 (app.alert(1)) >>"),
        pdf_in_object_streams(_open_with_a_script),
    ],
    ids=["name-escapes", "object-stream"],
)
def test_a_pdf_hiding_a_script_is_refused_in_words(alice_client, content):
    data = full_set()
    data["front"] = upload("id.pdf", content, "application/pdf")

    response = alice_client.post("/accounts/verification/", data)

    assert response.status_code == 400
    assert "scripts, actions or attached files" in response.content.decode()
    assert not IdentityVerification.objects.exists()


@pytest.mark.reliability("upload-broken")
def test_a_photo_whose_exif_has_a_tag_of_the_wrong_type_is_accepted_upright(
    alice_client,
):
    data = full_set()
    data["front"] = upload("id.jpg", jpeg_with_malformed_exif(400, 300), "image/jpeg")

    front = submit_data(alice_client, data).documents.get(kind="front")

    with front.file.open("rb") as stored:
        image = Image.open(io.BytesIO(stored.read()))
    assert image.size == (300, 400)
    assert image.getpixel((150, 20))[0] > 200  # the red half, now on top
    assert image.getpixel((150, 380))[2] > 200  # the blue half, at the bottom


def test_a_rejection_shows_its_reason_and_allows_new_documents(
    alice_client, alice, mfa_enable
):
    verification = submit(alice_client)
    staff = reviewer_client(mfa_enable, may_open=False)
    action = {"action": "reject", "_selected_action": [verification.pk]}
    confirm = staff.post("/admin/verification/identityverification/", action)
    assert confirm.status_code == 200
    assert "Yes, reject 1" in confirm.content.decode()
    assert IdentityVerification.objects.get().state == "pending"
    done = staff.post(
        "/admin/verification/identityverification/",
        {**action, "post": "yes", "reason": "The photo is too dark."},
    )
    assert done.status_code == 302
    verification.refresh_from_db()
    assert (verification.state, verification.reason) == (
        "rejected",
        "The photo is too dark.",
    )
    assert verification.decided_by.username == "helper"
    page = alice_client.get("/accounts/verification/").content.decode()
    assert "rejected" in page and "The photo is too dark." in page
    assert 'name="front"' in page


def test_approval_goes_through_a_confirmation(alice_client, mfa_enable):
    verification = submit(alice_client)
    staff = reviewer_client(mfa_enable, may_open=False)
    action = {"action": "approve", "_selected_action": [verification.pk]}
    assert (
        b"Yes, approve 1"
        in staff.post("/admin/verification/identityverification/", action).content
    )
    staff.post("/admin/verification/identityverification/", {**action, "post": "yes"})
    assert IdentityVerification.objects.get().state == "approved"
    assert "verified" in alice_client.get("/accounts/profile/").content.decode()


@pytest.mark.parametrize(
    "selection, count",
    # "Select all" of more rows than a form may have fields; and the most
    # rows a request choosing the action can tick one by one.
    [("select all", 1200), ("ticked", 1000 - 4)],
)
def test_a_decision_on_more_rows_than_a_form_has_fields_is_confirmed(
    mfa_enable, selection, count
):
    users = get_user_model().objects.bulk_create(
        get_user_model()(username=f"user-{number}") for number in range(count)
    )
    IdentityVerification.objects.bulk_create(
        IdentityVerification(user=user) for user in users
    )
    keys = list(IdentityVerification.objects.values_list("pk", flat=True))
    staff = reviewer_client(mfa_enable, may_open=False)
    # What the list's form posts: its token, the action, which of its action
    # menus, whether all rows are selected, and the rows ticked.
    chosen = {"csrfmiddlewaretoken": "t", "action": "reject", "index": 0}
    if selection == "select all":
        chosen |= {"select_across": 1, "_selected_action": keys[:100]}
    else:
        chosen |= {"select_across": 0, "_selected_action": keys}

    asked = staff.post("/admin/verification/identityverification/", chosen)
    done = confirmation_posted(staff, asked, reason="The photos are blurred.")

    assert asked.status_code == 200
    assert f"Yes, reject {count}" in asked.content.decode()
    assert done.status_code == 200
    assert f"{count} rejected.".encode() in done.content
    assert set(IdentityVerification.objects.values_list("state", "reason")) == {
        ("rejected", "The photos are blurred.")
    }


@pytest.mark.reliability("private-documents")
def test_the_public_bucket_policy_never_covers_the_private_prefix():
    resources = public_read_policy("bucket")["Statement"][0]["Resource"]
    assert resources == [
        "arn:aws:s3:::bucket/profile_pics/*",
        "arn:aws:s3:::bucket/token_logo/*",
        "arn:aws:s3:::bucket/default_avatar.jpg",
    ]
    assert not is_public_media_key("private/identity/1/x.jpg")


@pytest.mark.reliability("private-documents")
def test_in_local_mode_documents_are_in_the_private_folder_not_the_media_one(
    alice_client, media_root, private_media_root
):
    verification = submit(alice_client)

    keys = [document.file.name for document in verification.documents.all()]
    assert len(keys) == 3
    for key in keys:
        assert (private_media_root / key).is_file()
        assert not (media_root / key).exists()
    assert [path for path in media_root.rglob("*") if path.is_file()] == []
    # A web server told to serve all of MEDIA_ROOT as /media/ (one rule, none
    # for private/) has nothing to give.
    for key in keys:
        with pytest.raises(Http404):
            serve(RequestFactory().get(f"/media/{key}"), key, document_root=media_root)


@pytest.mark.reliability("private-documents")
def test_no_media_path_reaches_a_document(settings, alice_client):
    settings.MEDIA_SERVE = True
    key = submit(alice_client).documents.get(kind="front").file.name
    logo = default_storage.save("token_logo/logo.png", ContentFile(b"png"))
    anonymous = Client()
    assert anonymous.get(f"/media/{logo}").status_code == 200  # media are served

    for path in [
        f"/media/{key}",
        f"/media/profile_pics/../{key}",
        f"/media/profile_pics/%2e%2e/{key}",
        f"/media/token_logo/./../{key}",
        f"/media/%2e%2e/private_media/{key}",
        f"/media/../private_media/{key}",
        f"/media/profile_pics/..%2f..%2fprivate_media%2f{key}",
        f"/media//{key}",
    ]:
        assert anonymous.get(path).status_code == 404, path
        assert alice_client.get(path).status_code == 404, path


@pytest.mark.reliability("private-documents")
def test_an_anonymous_request_for_the_key_is_refused_in_every_url_mode(
    site_storage, alice_client, s3_client
):
    verification = submit(alice_client)
    keys = [document.file.name for document in verification.documents.all()]
    anonymous = Client()
    for key in keys:
        assert anonymous.get(f"/media/{key}").status_code == 404
        assert alice_client.get(f"/media/{key}").status_code == 404
    if site_storage == "local":
        return
    storage = default_storage
    for key in keys:
        direct = http.request(
            "GET", f"{storage.public_url}/{storage.bucket_name}/{key}"
        )
        assert direct.status in (403, 404), key
        assert b"%PDF" not in direct.data and b"JFIF" not in direct.data
    if site_storage == "public":
        policy = json.loads(
            s3_client.get_bucket_policy(bucket_name=storage.bucket_name)
        )
        resources = policy["Statement"][0]["Resource"]
        assert not any("private" in resource for resource in resources)


def test_staff_open_a_document_and_each_opening_is_recorded(
    site_storage, alice_client, mfa_enable, private_media_root
):
    verification = submit(alice_client)
    document = verification.documents.get(kind="selfie")  # the PDF
    staff = reviewer_client(mfa_enable, may_open=True)
    change = staff.get(
        f"/admin/verification/identityverification/{verification.pk}/change/"
    ).content.decode()
    assert open_url(document) in change
    assert "private/identity" not in change  # no key, no storage URL

    response = staff.get(open_url(document))
    if site_storage in ("public", "presigned"):
        assert response.status_code == 302
        assert "X-Amz-Signature" in response["Location"]
        assert "X-Amz-Expires=60&" in response["Location"]
        fetched = http.request("GET", response["Location"])
        assert fetched.status == 200
        body = fetched.data
        assert fetched.headers["Cache-Control"] == "private, no-store"
        assert fetched.headers["Content-Disposition"].startswith("attachment")
    else:
        assert response.status_code == 200
        body = b"".join(response.streaming_content)
        assert response["Content-Disposition"].startswith("attachment")
        assert response["X-Content-Type-Options"] == "nosniff"
        assert response["Content-Security-Policy"].startswith("sandbox;")
    assert body.startswith(b"%PDF-")
    if site_storage == "local":  # streamed from the private folder
        assert body == (private_media_root / document.file.name).read_bytes()
    assert "no-store" in response["Cache-Control"]
    access = IdentityDocumentAccess.objects.get()
    assert (access.staff_username, access.document) == ("reviewer", document)
    assert access.delivery == (
        "presigned" if site_storage in ("public", "presigned") else "stream"
    )


def test_a_document_whose_file_is_gone_says_so_and_records_no_opening(
    site_storage, alice_client, mfa_enable
):
    # A database restored from a later time than the bucket names documents
    # the bucket never got back.
    verification = submit(alice_client)
    document = verification.documents.get(kind="front")
    document.file.storage.delete(document.file.name)
    staff = reviewer_client(mfa_enable, may_open=True)

    response = staff.get(open_url(document))

    assert response.status_code == 404
    page = " ".join(response.content.decode().split())
    assert (
        "The file of this document is missing from storage (deleted, or not "
        "restored from a backup). Ask the user to send their documents again."
    ) in page
    assert f"/admin/verification/identityverification/{verification.pk}/" in page
    assert "no-store" in response["Cache-Control"]
    assert not IdentityDocumentAccess.objects.exists()
    # The other documents still open, and are recorded.
    other = verification.documents.get(kind="selfie")
    assert staff.get(open_url(other)).status_code in (200, 302)
    assert IdentityDocumentAccess.objects.get().document == other


@pytest.mark.reliability("private-documents")
def test_staff_without_the_permission_are_refused_and_see_no_link(
    alice_client, mfa_enable
):
    verification = submit(alice_client)
    document = verification.documents.first()
    staff = reviewer_client(mfa_enable, may_open=False)
    change = staff.get(
        f"/admin/verification/identityverification/{verification.pk}/change/"
    ).content.decode()
    assert open_url(document) not in change
    assert "Can open identity documents" in change
    assert staff.get(open_url(document)).status_code == 403
    assert alice_client.get(open_url(document)).status_code == 302  # to log-in
    assert Client().get(open_url(document)).status_code == 302
    assert not IdentityDocumentAccess.objects.exists()


@pytest.mark.reliability("access-staff")
def test_the_access_log_is_read_only_in_the_admin(alice_client, mfa_enable):
    verification = submit(alice_client)
    staff = reviewer_client(mfa_enable, may_open=True)
    staff.get(open_url(verification.documents.first()))
    superuser = get_user_model().objects.create_superuser("root", password="pw-root")
    mfa_enable(superuser)
    client = Client()
    client.force_login(superuser)
    listing = client.get("/admin/verification/identitydocumentaccess/")
    assert listing.status_code == 200 and "reviewer" in listing.content.decode()
    access = IdentityDocumentAccess.objects.get()
    delete = f"/admin/verification/identitydocumentaccess/{access.pk}/delete/"
    assert client.post(delete, {"post": "yes"}).status_code == 403
    assert (
        client.get("/admin/verification/identitydocumentaccess/add/").status_code == 403
    )


@pytest.mark.reliability("private-documents")
def test_a_presigned_link_stops_working_after_it_expires(use_minio, alice_client):
    verification = submit(alice_client)
    document = verification.documents.get(kind="front")
    url = document_presigned_url(storage=use_minio, key=document.file.name, expiry=1)
    assert http.request("GET", url).status == 200
    time.sleep(2.5)
    expired = http.request("GET", url)
    assert expired.status == 403
    assert b"JFIF" not in expired.data


@pytest.fixture
def public_url_with_a_path(use_minio, settings, minio_options):
    """Media in ``public`` mode behind a CDN that adds a path to the bucket's."""
    settings.STORAGES = storages_setting(
        {
            "BACKEND": "storage.backends.MinIOStorage",
            "OPTIONS": {**minio_options, "public_url": "https://cdn.example.com/s3"},
        }
    )
    from django.core.files.storage import storages

    return storages["private"]


def test_behind_a_public_url_with_a_path_staff_get_the_document_streamed(
    public_url_with_a_path, alice_client, mfa_enable
):
    # A presigned URL cannot carry the path (the signature covers it), and
    # one without it points where the CDN serves nothing.
    document = submit(alice_client).documents.get(kind="selfie")  # the PDF
    staff = reviewer_client(mfa_enable, may_open=True)

    response = staff.get(open_url(document))

    assert response.status_code == 200
    body = b"".join(response.streaming_content)
    with public_url_with_a_path.open(document.file.name) as stored:
        assert body == stored.read()
    assert body.startswith(b"%PDF-")
    assert response["Content-Disposition"].startswith("attachment")
    assert "no-store" in response["Cache-Control"]
    assert IdentityDocumentAccess.objects.get().delivery == "stream"
    assert default_storage.url("profile_pics/a.jpg").startswith(
        "https://cdn.example.com/s3/"
    )


def test_no_document_url_is_presigned_for_a_public_url_with_a_path(
    public_url_with_a_path,
):
    with pytest.raises(ValueError, match="MINIO_PUBLIC_URL"):
        document_presigned_url(
            storage=public_url_with_a_path, key="private/identity/1/a.jpg", expiry=60
        )


@pytest.mark.reliability("upload-slots")
def test_documents_finding_every_decode_slot_taken_are_refused_and_nothing_stored(
    alice_client, settings, decode_slots_holder
):
    settings.IMAGE_DECODE_SLOTS = 1
    holder = decode_slots_holder(1)

    response = alice_client.post("/accounts/verification/", full_set())

    assert response.status_code == 503
    assert response["Retry-After"] == "5"
    assert "Many images are being processed right now" in response.content.decode()
    assert not IdentityVerification.objects.exists()
    holder.release()
    submit(alice_client)
