"""deploy/nginx.conf's per-client limit on upload POSTs, in the loopback topology.

One gunicorn instance of this checkout behind Debian's nginx with the limit as
deploy/nginx.conf has it (the scenario of test_topology.py raises its rate):
a burst of uploads from one client address is answered by nginx itself, while
pages and other clients' uploads pass.
"""

from __future__ import annotations

import http.client
import secrets
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from scripts.tests.test_topology import _postgres_url
from scripts.topology import (
    DEPLOY_NGINX_CONF,
    Browser,
    Response,
    Topology,
    client_address,
    colour,
    csrf_token,
    deploy_upload_limits,
    image_bytes,
    multipart_body,
    parse_key_values,
)

pytestmark = pytest.mark.postgres


@pytest.fixture(scope="module")
def limited(s3_server):
    """One instance behind nginx with deploy/nginx.conf's upload limit as it is
    (the scenario's topology raises its rate)."""
    with Topology(
        instances=1, workers=2, s3=s3_server, postgres_url=_postgres_url()
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


def _avatar_post(browser: Browser, token: str, number: int) -> Response:
    return browser.post(
        "/accounts/profile/",
        {"csrfmiddlewaretoken": token},
        files={"avatar": image_bytes(colour(number), kind="avatar")},
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


def _avatar_post_quick(browser: Browser, token: str, number: int) -> Response:
    """An upload as ``browser`` would post it, from its client address, whose
    client gives up after 5 s (one held back by the rate limit)."""
    body, content_type = multipart_body(
        {"csrfmiddlewaretoken": token},
        {"avatar": image_bytes(colour(number), kind="avatar")},
    )
    headers = {
        "Content-Type": content_type,
        "Origin": f"http://127.0.0.1:{browser.port}",
        "X-Requested-With": "XMLHttpRequest",
        "X-Forwarded-For": browser.client_address,
        "Cookie": "; ".join(f"{k}={v}" for k, v in browser.cookies.items()),
    }
    connection = http.client.HTTPConnection("127.0.0.1", browser.port, timeout=5)
    started = time.monotonic()
    try:
        connection.request("POST", "/accounts/profile/", body=body, headers=headers)
        answer = connection.getresponse()
        payload = answer.read()
    except OSError as exc:
        return Response("POST", "/accounts/profile/", 0, {}, str(exc).encode(), 0, 0)
    finally:
        connection.close()
    received = {key.lower(): value for key, value in answer.headers.items()}
    return Response(
        "POST", "/accounts/profile/", answer.status, received, payload, started, 0
    )


def test_the_topology_has_deploys_upload_limit_unchanged(limited):
    config = limited.nginx_conf.read_text()
    limits = deploy_upload_limits(DEPLOY_NGINX_CONF.read_text())
    for line in limits["zones"] + limits["server"] + limits["locations"]:
        assert line in config
    assert "rate=6r/m;" in config


@pytest.mark.reliability("throttle-uploads")
def test_nginx_answers_a_burst_of_uploads_from_one_client_itself(limited):
    flooder, other = _signed_up(limited, 900), _signed_up(limited, 901)
    token = csrf_token(flooder.get("/accounts/profile/"))
    burst = 10

    # All at once: past the burst, or past 2 in progress, nginx answers; the
    # few it holds back to fit the rate are abandoned by the client.
    with ThreadPoolExecutor(max_workers=burst) as pool:
        answers = list(
            pool.map(lambda n: _avatar_post_quick(flooder, token, n), range(burst))
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
