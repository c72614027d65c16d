"""The users of the load benchmark (``bench/load.py`` runs locust on this file).

Visitors browse without an account: the home page, the token list, a token's
page and the markets. Members are signed in (a session made through the login
form before the run, passed in ``LOAD_SESSIONS``): mostly their profile page,
sometimes a new avatar, sent as the page's script sends it. No think time:
each user sends its next request as soon as the last one is answered, so the
rate is what the stack sustains for that many concurrent users. Each user
sends X-Forwarded-For with a loopback address of its own (a member, the one
it logged in from), as the load balancer in front of nginx would.

Importing locust patches the standard library for gevent, so nothing but
locust imports this module.
"""

from __future__ import annotations

import itertools
import json
import os
import random
import re
from http.cookiejar import Cookie
from pathlib import Path

from locust import FastHttpUser, constant, task

from scripts.topology import client_address, colour, image_bytes, multipart_body

SESSIONS = json.loads(Path(os.environ["LOAD_SESSIONS"]).read_text())
SYMBOLS = os.environ["LOAD_SYMBOLS"].split(",")
CSRF = re.compile(r'name="csrfmiddlewaretoken" value="([^"]+)"')
AVATARS = [image_bytes(colour(number), kind="avatar") for number in range(8)]
_sessions = itertools.count()
_visitors = itertools.count(len(SESSIONS))  # after the members' addresses


def _cookie(name: str, value: str, host: str) -> Cookie:
    return Cookie(
        version=0,
        name=name,
        value=value,
        port=None,
        port_specified=False,
        domain=host,
        domain_specified=False,
        domain_initial_dot=False,
        path="/",
        path_specified=True,
        secure=False,
        expires=None,
        discard=True,
        comment=None,
        comment_url=None,
        rest={},
    )


class Visitor(FastHttpUser):
    weight = 3
    wait_time = constant(0)

    def __init__(self, environment) -> None:
        # Read when the client is made, for every request it sends.
        self.default_headers = {"X-Forwarded-For": client_address(next(_visitors))}
        super().__init__(environment)

    @task(3)
    def home(self) -> None:
        self.client.get("/")

    @task(2)
    def token_list(self) -> None:
        self.client.get("/tokens/")

    @task(3)
    def token_page(self) -> None:
        self.client.get(f"/tokens/{random.choice(SYMBOLS)}/", name="/tokens/<symbol>/")

    @task(2)
    def markets(self) -> None:
        self.client.get("/markets/")


class Member(FastHttpUser):
    weight = 2
    wait_time = constant(0)

    def __init__(self, environment) -> None:
        self.session = SESSIONS[next(_sessions) % len(SESSIONS)]
        self.default_headers = {"X-Forwarded-For": self.session["address"]}
        super().__init__(environment)

    def on_start(self) -> None:
        self.username = self.session["username"]
        host = self.host.split("://", 1)[1].split(":")[0]
        for name, value in self.session["cookies"].items():
            self.client.cookiejar.set_cookie(_cookie(name, value, host))
        self.csrf_token = ""

    @task(8)
    def profile(self) -> None:
        with self.client.get("/accounts/profile/", catch_response=True) as response:
            found = CSRF.search(response.text or "")
            if f"<h1>{self.username}</h1>" not in (response.text or "") or not found:
                response.failure("not the member's profile page")
                return
            self.csrf_token = found[1]

    @task(1)
    def avatar_upload(self) -> None:
        if not self.csrf_token:
            self.profile()
        body, content_type = multipart_body(
            {"csrfmiddlewaretoken": self.csrf_token},
            {"avatar": random.choice(AVATARS)},
        )
        with self.client.post(
            "/accounts/profile/",
            data=body,
            headers={
                "Content-Type": content_type,
                "X-Requested-With": "XMLHttpRequest",
                "Origin": self.host,
            },
            name="/accounts/profile/ (avatar upload)",
            catch_response=True,
        ) as response:
            try:
                stored = "avatar_url" in json.loads(response.text or "")
            except ValueError:
                stored = False
            if response.status_code != 200 or not stored:
                response.failure(f"upload answered {response.status_code}")
