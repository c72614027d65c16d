"""A user sends identity documents; staff open one from the admin; nobody else can."""

import time

import pytest
from django.contrib.auth import get_user_model
from django.core.files.storage import default_storage
from django.test import Client

from accounts.tests.totp import AuthenticatorApp
from verification.models import IdentityDocumentAccess, IdentityVerification
from verification.tests.samples import jpeg_with_gps, pdf, png_scan

pytestmark = pytest.mark.django_db(transaction=True)


def sign_in(page, url: str, username: str, password: str, code=None) -> None:
    page.locator('input[name="login"]').fill(username)
    page.locator('input[name="password"]').fill(password)
    page.get_by_role("button", name="Sign In").click()
    if code is not None:
        page.locator('input[name="code"]').fill(code())
        page.get_by_role("button", name="Sign In").click()


def test_a_user_sends_an_id_and_only_staff_open_it_briefly(
    page,
    browser,
    watch_headers,
    live_server,
    site_storage,
    settings,
    tmp_path,
    mfa_enable,
):
    settings.IDENTITY_DOCUMENT_URL_EXPIRY = 2
    users = get_user_model().objects
    users.create_user("alice", password="alice-pass-2026")
    staff = users.create_superuser("staff", password="staff-pass-2026")
    app = AuthenticatorApp(mfa_enable(staff))
    (tmp_path / "front.jpg").write_bytes(jpeg_with_gps(2400, 1600))
    (tmp_path / "back.png").write_bytes(png_scan())
    (tmp_path / "selfie.pdf").write_bytes(pdf())

    # The user sends the documents from the verification page.
    page.goto(f"{live_server.url}/accounts/login/")
    sign_in(page, live_server.url, "alice", "alice-pass-2026")
    page.wait_for_url("**/accounts/profile/")
    page.get_by_role("link", name="Send your documents").click()
    page.get_by_label("Front of your ID document").set_input_files(
        tmp_path / "front.jpg"
    )
    page.get_by_label("Back of your ID document").set_input_files(tmp_path / "back.png")
    page.get_by_label("A selfie holding the document").set_input_files(
        tmp_path / "selfie.pdf"
    )
    page.screenshot_step("upload")
    page.get_by_role("button", name="Send for review").click()
    page.locator("#verification-state").get_by_text("under review").wait_for()
    page.screenshot_step("under-review")
    front = IdentityVerification.objects.get().documents.get(kind="front")
    key = front.file.name
    assert key.startswith("private/identity/")

    # Staff open it from the admin, after the second factor.
    staff_context = browser.new_context(viewport={"width": 1200, "height": 900})
    watch_headers(staff_context)
    staff_page = staff_context.new_page()
    staff_page.goto(f"{live_server.url}/admin/verification/identityverification/")
    sign_in(staff_page, live_server.url, "staff", "staff-pass-2026", code=app.code)
    staff_page.wait_for_url("**/admin/verification/identityverification/")
    staff_page.get_by_role("link", name="Verification #").click()
    with staff_context.expect_page() as opened:
        staff_page.get_by_role("link", name="Open front of the id").click()
    document_page = opened.value
    document_page.wait_for_load_state("load")
    shown = document_page.evaluate(
        "() => document.images.length ? document.images[0].naturalWidth : 0"
    )
    assert shown == 2000  # fitted to 2000 px, not an avatar
    access = IdentityDocumentAccess.objects.get()
    assert (access.staff_username, access.document) == ("staff", front)

    # Nobody else gets the key, however they ask: through the site's URLs, or
    # from the test server itself, which serves all of MEDIA_ROOT (Django's
    # _MediaFilesHandler) as a web server told to would. The documents are
    # not in MEDIA_ROOT.
    refused = [Client().get(f"/media/{key}").status_code]
    anonymous = browser.new_context()
    refused.append(anonymous.request.get(f"{live_server.url}/media/{key}").status)
    if site_storage != "local":
        storage = default_storage
        bucket_url = f"{storage.public_url}/{storage.bucket_name}/{key}"
        refused.append(anonymous.request.get(bucket_url).status)
    assert set(refused) <= {403, 404}, refused
    anonymous.close()

    # The presigned link staff got stops working once it expires.
    if site_storage in ("public", "presigned"):
        presigned = document_page.url
        assert "X-Amz-Signature" in presigned
        time.sleep(3)
        assert document_page.request.get(presigned).status == 403
    staff_context.close()
