"""Hostile input is refused at the door, in the format the client reads: NUL
characters (which PostgreSQL refuses in any query: each of these was a 500
there), bodies too large to read, chunked bodies, forged cookies."""

from __future__ import annotations

import pytest
from django.test import Client
from rest_framework.test import APIClient

from core.tests.answers import api_error, error_page
from tests.factories import PASSWORD
from trading.models import Order, SavedAddress, Withdrawal

pytestmark = pytest.mark.django_db

BTC_ADDRESS = "bc1qexample"


# --- NUL in the path: 404 ----------------------------------------------------


@pytest.mark.parametrize(
    "path", ["/markets/%00/", "/markets/BTC-USDT%00/live/", "/tokens/%00/", "/%00"]
)
@pytest.mark.reliability("nul-bytes")
def test_a_nul_in_a_page_path_is_the_not_found_page(client, market, path):
    error_page(client.get(path), 404)


@pytest.mark.parametrize(
    "path",
    [
        "/api/v1/markets/%00/ticker/",
        "/api/v1/markets/BTC-USDT%00/depth/",
        "/api/v1/orders/%00/",
        "/api/%00/",
    ],
)
@pytest.mark.reliability("nul-bytes")
def test_a_nul_in_an_api_path_is_a_json_404(market, path):
    api_error(APIClient().get(path), 404, "not_found")


# --- NUL in the query or a form field: 400 -----------------------------------


@pytest.mark.parametrize(
    "path",
    [
        "/tokens/?q=%00",
        "/tokens/?q=BTC%00",
        "/markets/BTC-USDT/?interval=1h%00",
        "/?%00=1",
        "/accounts/login/?next=/%00",
    ],
)
@pytest.mark.reliability("nul-bytes")
def test_a_nul_in_a_page_query_is_the_bad_request_page(client, market, path):
    page = error_page(client.get(path), 400)

    assert "NUL character" in page


@pytest.mark.parametrize(
    "path",
    [
        "/api/v1/markets/?x=%00",
        "/api/v1/markets/BTC-USDT/trades/?limit=%00",
        "/api/v1/markets/BTC-USDT/candles/?interval=1h%00",
    ],
)
@pytest.mark.reliability("nul-bytes")
def test_a_nul_in_an_api_query_is_a_json_400(market, path):
    api_error(APIClient().get(path), 400, "null_character")


@pytest.mark.parametrize(
    ("path", "reason"),
    [
        ("/tokens/?q=%00", "NUL in the query string: /tokens/"),
        ("/api/v1/markets/?x=%00", "NUL in the query string: /api/v1/markets/"),
        ("/tokens/%00/", "NUL in the path: /tokens/\\x00/"),
    ],
)
def test_a_nul_refusal_is_logged_once_with_its_reason(
    client, market, caplog, path, reason
):
    with caplog.at_level("WARNING", logger="django.request"):
        client.get(path)

    assert [record.getMessage() for record in caplog.records] == [reason]


@pytest.mark.reliability("nul-bytes")
def test_with_debug_on_a_nul_is_still_refused_in_the_clients_format(
    settings, client, as_alice, market, funded
):
    """As under make run: a raised refusal would be Django's debug page there."""
    settings.DEBUG = True
    fields = {"book-label": "Cold", "book-token": "BTC\x00", "book-address": "x"}

    api_error(APIClient().get("/api/v1/markets/%00/ticker/"), 404, "not_found")
    api_error(APIClient().get("/api/v1/markets/?x=%00"), 400, "null_character")
    error_page(client.get("/markets/%00/"), 404)
    assert "NUL character" in error_page(client.get("/tokens/?q=%00"), 400)
    error_page(as_alice.post("/wallet/addresses/", fields), 400)
    assert not SavedAddress.objects.exists()


@pytest.mark.parametrize("encoding", ["multipart", "urlencoded"])
@pytest.mark.reliability("nul-bytes")
def test_a_nul_in_a_form_field_is_refused_and_saves_nothing(as_alice, encoding, funded):
    fields = {"book-label": "Cold", "book-token": "BTC\x00", "book-address": "x"}
    if encoding == "multipart":
        response = as_alice.post("/wallet/addresses/", fields)
    else:
        response = as_alice.post(
            "/wallet/addresses/",
            "&".join(f"{k}={v.replace(chr(0), '%00')}" for k, v in fields.items()),
            content_type="application/x-www-form-urlencoded",
        )

    error_page(response, 400)
    assert not SavedAddress.objects.exists()


@pytest.mark.reliability("nul-bytes")
def test_a_nul_in_the_log_in_name_signs_nobody_in(client, alice, funded):
    response = client.post(
        "/accounts/login/", {"login": "alice\x00", "password": PASSWORD}
    )

    error_page(response, 400)
    assert "_auth_user_id" not in client.session


@pytest.mark.reliability("nul-bytes")
def test_nul_bytes_in_an_uploaded_file_are_not_refused(client, alice, funded):
    """Files are bytes: only the text fields around them are checked."""
    from django.core.files.uploadedfile import SimpleUploadedFile

    response = client.post(
        "/accounts/login/",
        {
            "login": "alice",
            "password": PASSWORD,
            "attachment": SimpleUploadedFile("a.bin", b"\x00\x01\x00"),
        },
    )

    assert response.status_code == 302
    assert client.session["_auth_user_id"] == str(alice.pk)


# NUL in JSON strings: the API's serializers refuse it per field.


@pytest.mark.parametrize(
    "fields",
    [
        {"market": "BTC-USDT\x00"},
        {"client_order_id": "a\x00b"},
        {"side": "buy\x00"},
        {"price": "100\x00"},
    ],
)
@pytest.mark.reliability("nul-bytes")
def test_a_nul_in_an_order_is_a_json_400_and_places_nothing(
    alice, key_client, fields, funded
):
    order = {
        "market": "BTC-USDT",
        "side": "buy",
        "type": "limit",
        "quantity": "0.5",
        "price": "100",
        **fields,
    }

    response = key_client(alice, "trade").post("/api/v1/orders/", order, format="json")

    api_error(response, 400, "invalid")
    assert fields.keys() <= response.json()["error"]["fields"].keys()
    assert not Order.objects.exists()


@pytest.mark.parametrize(
    "fields", [{"token": "BTC\x00"}, {"address": "bc1\x00q"}, {"reference": "w\x00"}]
)
@pytest.mark.reliability("nul-bytes")
def test_a_nul_in_a_withdrawal_is_a_json_400_and_requests_nothing(
    as_alice, fields, funded
):
    withdrawal = {
        "token": "BTC",
        "amount": "1",
        "address": BTC_ADDRESS,
        "reference": "w-1",
        **fields,
    }

    response = as_alice.post("/api/v1/withdrawals/", withdrawal, format="json")

    api_error(response, 400, "invalid")
    assert fields.keys() <= response.json()["error"]["fields"].keys()
    assert not Withdrawal.objects.exists()


@pytest.mark.reliability("nul-bytes")
def test_a_nul_in_a_saved_address_label_is_a_json_400(as_alice, funded):
    response = as_alice.post(
        "/api/v1/addresses/",
        {"token": "BTC", "address": BTC_ADDRESS, "label": "cold\x00"},
        format="json",
    )

    api_error(response, 400, "invalid")
    assert response.json()["error"]["fields"].keys() == {"label"}
    assert not SavedAddress.objects.exists()


# --- Cookies -----------------------------------------------------------------


@pytest.mark.reliability("nul-bytes")
def test_a_session_cookie_with_nul_characters_is_no_session(market):
    # A quoted cookie value may carry octal escapes, which Django decodes.
    forged = Client(HTTP_COOKIE='sessionid="\\000\\000\\000\\000\\000\\000\\000\\000"')

    response = forged.get("/markets/")

    assert response.status_code == 200
    assert response.wsgi_request.user.is_anonymous


# --- Bodies ------------------------------------------------------------------


@pytest.fixture
def small_body_limit(settings):
    settings.MAX_REQUEST_BODY_SIZE = 1000
    return 1000


@pytest.mark.reliability("huge-bodies")
def test_a_page_body_over_the_limit_is_the_too_large_page(client, small_body_limit):
    response = client.post(
        "/accounts/login/",
        f"login=alice&password={'x' * small_body_limit}",
        content_type="application/x-www-form-urlencoded",
    )

    page = error_page(response, 413)
    assert "0.0 MB" not in page and "nothing was read" in page


@pytest.mark.reliability("huge-bodies")
def test_the_too_large_page_offers_no_log_in_to_someone_signed_in(
    client, alice, small_body_limit
):
    """The refusal comes before the session is read: the page cannot tell
    who is signed in, so it offers neither the account's links nor "Log in"."""
    client.force_login(alice)

    response = client.post(
        "/accounts/profile/",
        "x" * (small_body_limit + 1),
        content_type="application/octet-stream",
    )

    page = error_page(response, 413)
    assert "Log in" not in page and "Sign up" not in page


@pytest.mark.reliability("huge-bodies")
def test_an_api_body_over_the_limit_is_a_json_413_and_places_nothing(
    alice, key_client, small_body_limit, funded
):
    order = {
        "market": "BTC-USDT",
        "side": "buy",
        "type": "limit",
        "quantity": "0.5",
        "price": "100",
        "client_order_id": "x" * small_body_limit,
    }

    response = key_client(alice, "trade").post("/api/v1/orders/", order, format="json")

    api_error(response, 413, "request_too_large")
    assert not Order.objects.exists()


@pytest.mark.reliability("huge-bodies")
def test_a_body_at_the_limit_is_read(client, alice, small_body_limit, funded):
    body = f"login=alice&password={PASSWORD}&pad="
    body += "x" * (small_body_limit - len(body))

    response = client.post(
        "/accounts/login/", body, content_type="application/x-www-form-urlencoded"
    )

    assert response.status_code == 302
    assert client.session["_auth_user_id"] == str(alice.pk)


@pytest.mark.reliability("huge-bodies")
def test_the_default_limit_takes_the_largest_form_and_refuses_60_mb():
    from django.conf import settings

    three_documents = 3 * settings.IDENTITY_DOCUMENT_MAX_SIZE
    fields = settings.DATA_UPLOAD_MAX_MEMORY_SIZE
    assert three_documents + fields <= settings.MAX_REQUEST_BODY_SIZE
    assert settings.MAX_UPLOAD_SIZE + fields <= settings.MAX_REQUEST_BODY_SIZE
    assert settings.MAX_REQUEST_BODY_SIZE < 60 * 1024 * 1024


@pytest.mark.parametrize("path", ["/accounts/login/", "/api/v1/orders/"])
@pytest.mark.reliability("huge-bodies")
def test_a_chunked_body_is_refused_with_411(alice, key_client, path, funded):
    client = key_client(alice, "trade")

    response = client.post(
        path, b"", content_type="application/json", HTTP_TRANSFER_ENCODING="chunked"
    )

    if path.startswith("/api/"):
        api_error(response, 411, "length_required")
    else:
        error_page(response, 411)
