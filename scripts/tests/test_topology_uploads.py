"""deploy/nginx.conf's per-client limit on upload POSTs, in the loopback topology.

One gunicorn instance of this checkout behind Debian's nginx with the limit as
deploy/nginx.conf has it (the scenario of test_topology.py raises its rate):
a burst of uploads from one client address is answered by nginx itself, while
pages and other clients' uploads pass.
"""

from __future__ import annotations

import re
import secrets
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from scripts.browser import (
    Browser,
    Response,
    client_address,
    colour,
    csrf_token,
    upload_file,
)
from scripts.topology import Topology, parse_key_values
from scripts.topology.nginx import DEPLOY_NGINX_CONF

pytestmark = pytest.mark.postgres


@pytest.fixture(scope="module")
def limited(s3_server, postgres_url):
    """One instance behind nginx with deploy/nginx.conf's upload limit as it is
    (the scenario's topology raises its rate)."""
    with Topology(
        instances=1, workers=2, s3=s3_server, postgres_url=postgres_url
    ) as topology:
        yield topology


def _signed_up(topology: Topology, number: int) -> Browser:
    browser = Browser(topology.nginx_port, client_address=client_address(number))
    username, password = f"limited{number}-{secrets.token_hex(3)}", "x-Secret-2026!"
    form = browser.get("/accounts/signup/")
    fields = {"csrfmiddlewaretoken": csrf_token(form), "username": username}
    fields |= {"email": f"{username}@example.com", "password1": password}
    response = browser.post("/accounts/signup/", fields | {"password2": password})
    assert response.status == 302, response.describe()
    return browser


def _avatar_post(
    browser: Browser, token: str, number: int, timeout: float = 60
) -> Response:
    """An upload from script; the client gives up after ``timeout`` (on one
    held back by the rate limit, say)."""
    return browser.post(
        "/accounts/profile/",
        {"csrfmiddlewaretoken": token},
        files={"avatar": upload_file(colour(number), kind="avatar")},
        timeout=timeout,
        X_Requested_With="XMLHttpRequest",
    )


def _app_posts(topology: Topology, address: str) -> list[dict[str, str]]:
    """The upload POSTs from ``address`` that reached the instance."""
    records = [
        parse_key_values(line)
        for line in topology.instances[0].log_path.read_text().splitlines()
        if line.startswith("remote=")
    ]
    return [
        record
        for record in records
        if record["method"] == "POST"
        and record["path"] == "/accounts/profile/"
        and record["forwarded_for"].startswith(f"{address},")
    ]


def test_the_topology_has_deploys_upload_limit_unchanged(limited):
    config = limited.nginx_conf.read_text().splitlines()
    limits = [
        line
        for line in DEPLOY_NGINX_CONF.read_text().splitlines()
        if re.search(r"limit_|uploads_limited|Too many uploads", line)
    ]
    assert len(limits) >= 8
    assert [line for line in limits if line not in config] == []
    assert any("rate=6r/m;" in line for line in limits)


@pytest.mark.reliability("throttle-uploads")
def test_nginx_answers_a_burst_of_uploads_from_one_client_itself(limited):
    flooder, other = _signed_up(limited, 900), _signed_up(limited, 901)
    token = csrf_token(flooder.get("/accounts/profile/"))
    burst = 10

    # All at once: past the burst, or past 2 in progress, nginx answers; the
    # few it holds back to fit the rate are abandoned by the client.
    with ThreadPoolExecutor(max_workers=burst) as pool:
        answers = list(
            pool.map(lambda n: _avatar_post(flooder, token, n, 5), range(burst))
        )

    statuses = [answer.status for answer in answers]
    refused = [answer for answer in answers if answer.status == 429]
    stored = [answer for answer in answers if answer.status == 200]
    assert len(refused) >= burst - 6, statuses
    assert 1 <= len(stored) <= 3, statuses
    assert set(statuses) <= {200, 429, 0}, statuses  # 0: held back, given up
    for answer in refused:
        assert answer.headers["content-type"].startswith("text/plain")
        assert answer.text.startswith("Too many uploads from your address")
        assert answer.headers["retry-after"] == "60"
        assert answer.headers["x-content-type-options"] == "nosniff"
        assert answer.headers["x-frame-options"] == "DENY"
        assert answer.headers["content-security-policy"].startswith(
            "default-src 'none'"
        )
    # The app saw the stored ones only (gunicorn logs each once it has
    # answered); nginx logged the refusals as its own.
    deadline = time.monotonic() + 5
    while len(_app_posts(limited, flooder.client_address)) < len(stored):
        assert time.monotonic() < deadline, "the app did not log every upload"
        time.sleep(0.1)
    assert len(_app_posts(limited, flooder.client_address)) == len(stored)
    nginx_refusals = [
        record
        for record in limited.nginx_access_records()
        if record["status"] == "429" and record["uri"] == "/accounts/profile/"
    ]
    assert len(nginx_refusals) == len(refused)
    assert all(record["upstream"] == "-" for record in nginx_refusals)
    # Pages, even the upload form, and another client's upload still pass.
    assert flooder.get("/tokens/").status == 200
    assert flooder.get("/accounts/profile/").status == 200
    other_token = csrf_token(other.get("/accounts/profile/"))
    assert _avatar_post(other, other_token, burst).status == 200
