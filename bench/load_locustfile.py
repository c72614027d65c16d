"""The users of the load benchmark (``bench/load.py`` runs locust on this file).

Visitors browse without an account; members are signed in (sessions made
through the login form before the run, in ``LOAD_SESSIONS``) and view their
profile, sometimes uploading a new avatar as the page's script does: a small
JPEG, or with ``LOAD_UPLOAD`` that file, for which a 503 (no decode slot free)
is an answer too. No think time. Each user sends X-Forwarded-For with a
loopback address of its own (a member, the one it logged in from).

Importing locust patches the standard library for gevent, so nothing but
locust imports this module.
"""

from __future__ import annotations

import itertools
import json
import os
import random
import re
from pathlib import Path

from locust import FastHttpUser, constant, task
from requests.cookies import create_cookie
from urllib3 import encode_multipart_formdata

from scripts.browser import client_address, colour, upload_file

SESSIONS = json.loads(Path(os.environ["LOAD_SESSIONS"]).read_text())
SYMBOLS = os.environ["LOAD_SYMBOLS"].split(",")
CSRF = re.compile(r'name="csrfmiddlewaretoken" value="([^"]+)"')
if os.environ.get("LOAD_UPLOAD"):
    UPLOADS = [
        ("heaviest.jpg", "image/jpeg", Path(os.environ["LOAD_UPLOAD"]).read_bytes())
    ]
    ANSWERS = (200, 503)
else:
    UPLOADS = [upload_file(colour(number), kind="avatar") for number in range(8)]
    ANSWERS = (200,)
_members = itertools.count()
_visitors = itertools.count(len(SESSIONS))  # after the members' addresses


class Visitor(FastHttpUser):
    weight = 3
    wait_time = constant(0)
    pages = {"/": 3, "/tokens/": 2, "/tokens/<symbol>/": 3, "/markets/": 2}

    def __init__(self, environment) -> None:
        # Read when the client is made, for every request it sends.
        self.default_headers = {"X-Forwarded-For": client_address(next(_visitors))}
        super().__init__(environment)

    @task
    def page(self) -> None:
        page = random.choices(list(self.pages), weights=self.pages.values())[0]
        self.client.get(page.replace("<symbol>", random.choice(SYMBOLS)), name=page)


class Member(FastHttpUser):
    weight = 2
    wait_time = constant(0)

    def __init__(self, environment) -> None:
        self.session = SESSIONS[next(_members) % len(SESSIONS)]
        self.default_headers = {"X-Forwarded-For": self.session["address"]}
        super().__init__(environment)

    def on_start(self) -> None:
        host, self.csrf_token = self.host.split("://", 1)[1].split(":")[0], ""
        for name, value in self.session["cookies"].items():
            self.client.cookiejar.set_cookie(create_cookie(name, value, domain=host))

    @task(8)
    def profile(self) -> None:
        with self.client.get("/accounts/profile/", catch_response=True) as response:
            page = response.text or ""
            found = CSRF.search(page)
            if f"<h1>{self.session['username']}</h1>" not in page or not found:
                response.failure("not the member's profile page")
                return
            self.csrf_token = found[1]

    @task(1)
    def avatar_upload(self) -> None:
        if not self.csrf_token:
            self.profile()
        name, kind, data = random.choice(UPLOADS)
        body, content_type = encode_multipart_formdata(
            {"csrfmiddlewaretoken": self.csrf_token, "avatar": (name, data, kind)}
        )
        headers = {"Content-Type": content_type, "X-Requested-With": "XMLHttpRequest"}
        with self.client.post(
            "/accounts/profile/",
            data=body,
            headers=headers | {"Origin": self.host},
            name="/accounts/profile/ (avatar upload)",
            catch_response=True,
        ) as response:
            status, text = response.status_code, response.text or ""
            if status in ANSWERS and (status != 200 or "avatar_url" in text):
                response.success()  # a 503 is an error to locust otherwise
            else:
                response.failure(f"upload answered {status}")
