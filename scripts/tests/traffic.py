"""Clients that keep the loopback topology busy while a test breaks a part of it.

Every answer is kept with when it was sent and received, so that a test can
say afterwards what held before, during and after the fault.
"""

from __future__ import annotations

import io
import itertools
import json
import secrets
import threading
import time
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass, field

from scripts.browser import (
    Browser,
    Response,
    client_address,
    colour,
    csrf_token,
    img_src,
    upload_file,
)
from scripts.topology import Topology

WAIT_TIMEOUT = 90.0


@dataclass
class Sent:
    """One request a client made, and what it got."""

    kind: str  # page, upload, media, order, ...
    client: str
    response: Response
    key: str | None = None  # an upload: the object it was stored under
    detail: dict = field(default_factory=dict)

    @property
    def started(self) -> float:
        return self.response.started

    @property
    def ended(self) -> float:
        return self.response.ended


class Member:
    """A person signed up through nginx's sign-up form, with a browser of a
    client address of its own."""

    _numbers = itertools.count()

    def __init__(self, topology: Topology) -> None:
        self.topology = topology
        number = next(self._numbers)
        self.browser = Browser(
            topology.nginx_port, client_address=client_address(number)
        )
        self.username = f"member{number}-{secrets.token_hex(3)}"
        password = secrets.token_urlsafe(18)
        topology.secret_values.append(password)
        form = self.browser.get("/accounts/signup/")
        response = self.browser.post(
            "/accounts/signup/",
            {
                "csrfmiddlewaretoken": csrf_token(form),
                "username": self.username,
                "email": f"{self.username}@example.com",
                "password1": password,
                "password2": password,
            },
        )
        assert response.status == 302, response.describe()
        self._colours = itertools.count(number * 1000)

    def avatar_upload(self, *, xhr: bool, record: Callable[[Sent], Sent]) -> Sent:
        """The profile form as a person sends it, from script (JSON back) or
        without (a redirect, then the page); every request is recorded. The
        upload's key is that of the stored object, None when it was refused."""
        page = record(self.page("/accounts/profile/"))
        if page.response.status != 200:
            return page
        rgb = colour(next(self._colours))
        response = self.browser.post(
            "/accounts/profile/",
            {"csrfmiddlewaretoken": csrf_token(page.response)},
            files={"avatar": upload_file(rgb, kind="avatar")},
            **({"X_Requested_With": "XMLHttpRequest"} if xhr else {}),
        )
        key = None
        if xhr and response.status == 200:
            key = self.media_key(json.loads(response.body)["avatar_url"])
        elif not xhr and response.status == 302:
            after = record(self.page("/accounts/profile/"))
            key = after.detail.get("avatar_key")
        upload = Sent("upload", self.username, response, key, {"xhr": xhr, "rgb": rgb})
        return record(upload)

    def page(self, path: str) -> Sent:
        """A page; for the profile, the picture it shows is in ``avatar`` (its
        URL) and ``avatar_key`` (the object)."""
        response = self.browser.get(path)
        detail = {}
        if path == "/accounts/profile/" and response.status == 200:
            detail["avatar"] = img_src(response, 'id="avatar-current"')
            detail["avatar_key"] = self.media_key(detail["avatar"])
        return Sent("page", self.username, response, detail=detail)

    def media_key(self, url: str | None) -> str | None:
        prefix = self.topology.media_prefix
        if not url or not url.startswith(prefix):
            return None
        return urllib.parse.unquote(url[len(prefix) :])


class Traffic:
    """One thread per client, each calling its step in a loop until stopped;
    a step sends requests and records what they got with ``record``."""

    def __init__(self) -> None:
        self.sent: list[Sent] = []
        self.errors: list[BaseException] = []
        self._lock = threading.Lock()
        self._stopped = threading.Event()
        self._threads: list[threading.Thread] = []

    def record(self, sent: Sent) -> Sent:
        with self._lock:
            self.sent.append(sent)
        return sent

    def run(self, step: Callable[[], None]) -> None:
        def loop() -> None:
            try:
                while not self._stopped.is_set():
                    step()
            except BaseException as error:  # the test reports it
                self.errors.append(error)

        thread = threading.Thread(target=loop, daemon=True)
        self._threads.append(thread)
        thread.start()

    def answered(self) -> list[Sent]:
        with self._lock:
            return list(self.sent)

    def wait_for(self, what: str, condition: Callable[[list[Sent]], bool]) -> None:
        """Until ``condition`` holds for what was answered so far."""
        deadline = time.monotonic() + WAIT_TIMEOUT
        while not condition(self.answered()):
            if self.errors:
                raise self.errors[0]
            assert time.monotonic() < deadline, f"never: {what}"
            time.sleep(0.05)

    def stop(self) -> None:
        self._stopped.set()
        for thread in self._threads:
            thread.join(timeout=WAIT_TIMEOUT)
        if self.errors:
            raise self.errors[0]


def image_check(body: bytes, *, size: int, rgb: tuple[int, int, int]) -> str | None:
    """None when ``body`` is a size x size image of that colour in the middle
    (within 12 per channel, after JPEG re-encoding)."""
    from PIL import Image

    try:
        with Image.open(io.BytesIO(body)) as image:
            image.load()
            if image.size != (size, size):
                return f"is {image.size[0]}x{image.size[1]}, not {size}x{size}"
            middle = image.convert("RGB").getpixel((size // 2, size // 2))
    except Exception as exc:  # any decoding failure is the finding
        return f"is not an image ({exc})"
    if max(abs(a - b) for a, b in zip(middle, rgb, strict=True)) > 12:
        return f"has colour {middle} in the middle, not {rgb} (another upload)"
    return None
