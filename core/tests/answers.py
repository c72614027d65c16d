"""What a refused request must look like: the site's error page, or the
API's JSON error shape (trading.api.exceptions)."""

from __future__ import annotations


def error_page(response, status: int) -> str:
    """The site's page for ``status`` (base.html, its number shown); its text."""
    assert response.status_code == status, response.content[:300]
    assert response["Content-Type"].startswith("text/html")
    page = response.content.decode()
    assert f'<p class="error-code">{status}</p>' in page
    assert 'class="site-footer' in page  # the site's layout, not Django's bare page
    return page


def api_error(response, status: int, code: str) -> str:
    """``{"error": {"code": code, "message": ...}}`` with ``status``; the message."""
    assert response.status_code == status, response.content[:300]
    assert response["Content-Type"] == "application/json"
    error = response.json()["error"]
    assert error["code"] == code, error
    assert error["message"]
    return error["message"]
