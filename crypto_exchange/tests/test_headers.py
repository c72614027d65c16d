"""Security headers and production defaults: the Content-Security-Policy on
every page, ``Cache-Control: private, no-store`` on everything a signed-in
request gets, HTTPS-only with DEBUG=false; and the API docs and allauth pages
working under the policy in a real browser."""

from __future__ import annotations

import re

import pytest
from django.contrib.auth import get_user_model
from django.test import Client
from playwright.sync_api import expect
from rest_framework.test import APIClient

from conftest import HeaderWatch
from tests.factories import buy, fund, market_make, sell, token_make, user_make
from trading.api_keys import api_key_create

POLICY = {
    "default-src": "'self'",
    "script-src": "'self'",
    "style-src": "'self'",
    "img-src": "'self'",
    "object-src": "'none'",
    "base-uri": "'none'",
    "form-action": "'self'",
    "frame-ancestors": "'none'",
}
PASSWORD = "header-pass-2026"

# The site's own public pages, cacheable as before; allauth's forms carry
# never_cache of their own.
PUBLIC_PAGES = [
    "/",
    "/tokens/",
    "/tokens/BTC/",
    "/markets/",
    "/markets/BTC-USDT/",
    "/api/docs/",
]
ANONYMOUS_FORMS = ["/accounts/login/", "/accounts/signup/", "/accounts/password/reset/"]
SIGNED_IN_PAGES = [
    "/",
    "/tokens/",
    "/markets/",
    "/markets/BTC-USDT/",
    "/accounts/profile/",
    "/wallet/",
    "/accounts/email/",
    "/accounts/password/change/",
    "/accounts/2fa/",
    "/accounts/sessions/",
    "/api/docs/",
]
PUBLIC_API = [("/api/v1/markets/", 200), ("/api/v1/no-such-thing/", 404)]
PRIVATE_API = [
    "/api/v1/balances/",
    "/api/v1/orders/",
    "/api/v1/fills/",
    "/api/v1/withdrawals/",
]


def policy_of(response) -> dict[str, str]:
    header = response["Content-Security-Policy"]
    directives = [part.strip().split(" ", 1) for part in header.split(";")]
    return {name: value for name, value in directives}


def policy_for(path: str) -> dict[str, str]:
    # Swagger UI's stylesheet draws its icons from data: URLs; the profile
    # previews the chosen picture from a blob: URL.
    extra = {"/api/docs/": "data:", "/accounts/profile/": "blob:"}.get(path)
    return POLICY | {"img-src": f"'self' {extra}"} if extra else POLICY


def cache_directives(response) -> set[str]:
    return {part.strip() for part in response.get("Cache-Control", "").split(",")}


@pytest.fixture
def member(market):
    user = user_make("member")
    user.set_password(PASSWORD)
    user.save()
    fund(user, market.quote, "100")
    return user


@pytest.fixture
def member_client(client, member):
    client.force_login(member)
    return client


@pytest.mark.parametrize("path", PUBLIC_PAGES)
@pytest.mark.reliability("xss-policy")
def test_every_public_page_carries_the_policy_and_stays_cacheable(client, market, path):
    response = client.get(path)

    assert response.status_code == 200
    assert policy_of(response) == policy_for(path)
    assert "no-store" not in cache_directives(response)
    assert "private" not in cache_directives(response)


@pytest.mark.parametrize("path", ANONYMOUS_FORMS)
@pytest.mark.reliability("xss-policy")
def test_every_anonymous_account_form_carries_the_policy(client, db, path):
    response = client.get(path)

    assert response.status_code == 200
    assert policy_of(response) == POLICY


@pytest.mark.parametrize("path", SIGNED_IN_PAGES)
@pytest.mark.reliability("xss-policy")
def test_every_signed_in_page_carries_the_policy_and_is_never_stored(
    member_client, path
):
    response = member_client.get(path)

    assert response.status_code == 200, response
    assert policy_of(response) == policy_for(path)
    assert {"private", "no-store"} <= cache_directives(response)


@pytest.mark.reliability("xss-policy")
def test_error_pages_carry_the_policy(client, db):
    response = client.get("/no-such-page/")

    assert response.status_code == 404
    assert policy_of(response) == POLICY


@pytest.mark.parametrize("path", ["/?q=%00", "/api/v1/markets/?q=%00"])
def test_the_request_guards_answers_carry_the_security_headers(client, db, path):
    """Answered before the session or the view; without nginx in front too."""
    response = client.get(path)

    assert response.status_code == 400
    assert response["X-Frame-Options"] == "DENY"
    assert response["X-Content-Type-Options"] == "nosniff"
    assert policy_of(response)["frame-ancestors"] == "'none'"


@pytest.mark.parametrize("path", PRIVATE_API)
def test_private_api_answers_are_never_stored_with_a_session_or_a_key(
    member_client, member, path
):
    _, key = api_key_create(user=member, name="bot", scopes=["read"])
    with_key = APIClient()
    with_key.credentials(HTTP_AUTHORIZATION=f"Api-Key {key}")

    for response in (member_client.get(path), with_key.get(path)):
        assert response.status_code == 200, response.content
        assert {"private", "no-store"} <= cache_directives(response)


@pytest.mark.parametrize(("path", "status"), PUBLIC_API)
def test_public_api_answers_are_never_stored_with_a_session_or_a_key(
    member_client, member, path, status
):
    """A public view authenticates nobody (DRF then makes request.user
    anonymous): what the request carries decides."""
    _, key = api_key_create(user=member, name="bot", scopes=["read"])
    with_key = APIClient()
    with_key.credentials(HTTP_AUTHORIZATION=f"Api-Key {key}")

    for response in (member_client.get(path), with_key.get(path)):
        assert response.status_code == status, response.content
        assert {"private", "no-store"} <= cache_directives(response)


@pytest.mark.parametrize(("path", "status"), PUBLIC_API)
def test_a_public_api_answer_stays_cacheable_for_anonymous_callers(
    client, market, path, status
):
    visitor = Client()
    session = visitor.session  # a session of a visitor, holding no user
    session["seen"] = True
    session.save()

    for response in (client.get(path), visitor.get(path)):
        assert response.status_code == status
        assert "no-store" not in cache_directives(response)
        assert "private" not in cache_directives(response)


def test_media_keep_their_public_caching_for_a_signed_in_user(
    member_client, settings, media_root
):
    settings.MEDIA_SERVE = True
    (media_root / "token_logo").mkdir()
    (media_root / "token_logo" / "btc.png").write_bytes(b"\x89PNG\r\n\x1a\n")

    response = member_client.get("/media/token_logo/btc.png")

    assert response.status_code == 200
    assert "public" in cache_directives(response)
    assert "no-store" not in cache_directives(response)


def test_images_from_the_object_store_are_allowed_where_browsers_fetch_them(
    client, market, settings, minio_options
):
    from conftest import storages_setting

    settings.STORAGES = storages_setting(
        {
            "BACKEND": "storage.backends.MinIOStorage",
            "OPTIONS": {
                **minio_options,
                "url_mode": "presigned",
                "public_url": "https://media.example.com",
            },
        }
    )

    response = client.get("/tokens/")

    assert policy_of(response)["img-src"] == "'self' https://media.example.com"


@pytest.mark.reliability("xss-policy")
def test_the_api_docs_page_has_no_inline_code(client, db):
    page = client.get("/api/docs/").content.decode()
    script = client.get("/api/docs/?script")

    assert "<style" not in page
    assert re.findall(r"<script(?![^>]*\bsrc=)", page) == []
    assert 'src="/api/docs/?script="' in page
    assert script.status_code == 200
    assert script["Content-Type"].startswith("application/javascript")
    assert "SwaggerUIBundle" in script.content.decode()


# --- HTTPS with DEBUG=false ---------------------------------------------------

PRODUCTION_ENV = {
    "DJANGO_SETTINGS_MODULE": "crypto_exchange.settings",
    "DEBUG": "false",
    "SECRET_KEY": "k" * 20 + "-production-secret-" + "x" * 20,
    "ALLOWED_HOSTS": "exchange.example.com",
    # A shared cache (accounts.W002 without one) and database (exchange.W001
    # without one); the check connects to neither.
    "REDIS_URL": "redis://127.0.0.1:6379/0",
    "DATABASE_URL": "postgres://exchange@db:5432/exchange",
}
PRINT_HTTPS_SETTINGS = (
    "import django, json; django.setup(); from django.conf import settings as s; "
    "print(json.dumps([s.SECURE_SSL_REDIRECT, s.SECURE_HSTS_SECONDS, "
    "s.SECURE_HSTS_INCLUDE_SUBDOMAINS, s.SESSION_COOKIE_SECURE, "
    "s.CSRF_COOKIE_SECURE]))"
)


def test_deploy_check_with_only_debug_secret_and_hosts_reports_only_preload(
    run_python,
):
    result = run_python(["manage.py", "check", "--deploy"], PRODUCTION_ENV)

    assert "security.W021" in result.stderr  # HSTS preload: the operator's call
    assert result.stderr.count("(security.") == 1, result.stderr
    assert "identified 1 issue" in result.stderr, result.stderr


@pytest.mark.parametrize(
    ("extra", "expected"),
    [
        ({}, "[true, 31536000, true, true, true]"),
        ({"PLAIN_HTTP": "true"}, "[false, 0, false, false, false]"),
        (
            {"PLAIN_HTTP": "true", "SECURE_COOKIES": "true"},
            "[false, 0, false, true, true]",
        ),
        ({"DEBUG": "true"}, "[false, 0, false, false, false]"),
    ],
)
def test_https_is_the_default_without_debug_and_plain_http_turns_it_off(
    run_python, extra, expected
):
    result = run_python(["-c", PRINT_HTTPS_SETTINGS], {**PRODUCTION_ENV, **extra})

    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == expected


@pytest.mark.reliability("probes")
def test_https_redirect_spares_the_health_checks_of_a_load_balancer(
    client, db, settings
):
    settings.SECURE_SSL_REDIRECT = True
    settings.SECURE_HSTS_SECONDS = 31_536_000

    page = client.get("/markets/")
    liveness = client.get("/healthz/")
    readiness = client.get("/readyz/")
    secure = client.get("/markets/", secure=True)

    assert page.status_code == 301
    assert page["Location"] == "https://testserver/markets/"
    assert liveness.status_code == 200
    assert readiness.status_code in (200, 503)  # answered, not redirected
    assert secure["Strict-Transport-Security"] == "max-age=31536000"


# --- In a real browser ----------------------------------------------------------


@pytest.mark.django_db(transaction=True)
@pytest.mark.reliability("xss-policy")
def test_a_page_that_breaks_the_policy_fails_the_header_watch(browser, live_server):
    """The check every browser test relies on notices inline code."""
    watch = HeaderWatch()
    context = browser.new_context()
    watch.attach(context)
    try:
        tab = context.new_page()
        tab.goto(f"{live_server.url}/accounts/login/")
        tab.evaluate(
            "() => { const s = document.createElement('script');"
            " s.textContent = 'window.ran = true'; document.body.append(s); }"
        )
        tab.wait_for_timeout(200)
        assert tab.evaluate("() => window.ran") is None
    finally:
        context.close()

    assert watch.pages == [f"{live_server.url}/accounts/login/"]
    assert len(watch.problems) == 1
    assert "script-src-elem blocked inline" in watch.problems[0]


@pytest.mark.django_db(transaction=True)
@pytest.mark.reliability("xss-policy")
def test_api_docs_admin_and_account_pages_work_under_the_policy(
    page, live_server, mfa_enable
):
    from accounts.tests.totp import AuthenticatorApp

    market = market_make(token_make("BTC"), token_make("USDT", decimals=6))
    seller, buyer = user_make("seller"), user_make("buyer")
    fund(seller, market.base, "1")
    fund(buyer, market.quote, "1000")
    sell(seller, market, "1", "100.00")
    buy(buyer, market, "1", "100.00")  # a trade: the page draws a candle
    staff = get_user_model().objects.create_superuser(
        "staff", email="staff@example.com", password=PASSWORD
    )
    app = AuthenticatorApp(mfa_enable(staff))

    page.goto(f"{live_server.url}/api/docs/")
    expect(page.locator(".swagger-ui .info .title")).to_contain_text(
        "Crypto Exchange API"
    )
    expect(page.locator(".opblock").first).to_be_visible()
    page.screenshot_step("api-docs")

    page.goto(f"{live_server.url}/admin/")
    page.locator('input[name="login"]').fill("staff")
    page.locator('input[name="password"]').fill(PASSWORD)
    page.get_by_role("button", name="Sign In").click()
    page.locator('input[name="code"]').fill(app.code())
    page.get_by_role("button", name="Sign In").click()
    page.wait_for_url("**/admin/")
    for path in ("/admin/trading/order/", "/admin/tokens/token/add/"):
        page.goto(live_server.url + path)
        expect(page.locator("#content")).to_be_visible()
    page.screenshot_step("admin")

    # An address waiting for verification: allauth's hidden re-send form.
    page.goto(f"{live_server.url}/accounts/email/")
    if not page.locator("form#pending-email").count():
        page.get_by_role("textbox", name="Change to:").fill("new@example.com")
        page.get_by_role("button", name="Change Email").click()
    expect(page.get_by_role("button", name="Re-send Verification")).to_be_visible()
    expect(page.locator("form#pending-email")).to_be_hidden()
    page.screenshot_step("email-pending")

    page.goto(f"{live_server.url}/markets/{market.symbol}/")
    expect(page.get_by_role("img", name=re.compile("Candle chart"))).to_be_visible()
    page.goto(f"{live_server.url}/wallet/")
    page.screenshot_step("wallet")
