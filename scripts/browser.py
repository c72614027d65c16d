"""A browser for the loopback topology's tests and the load benchmark, on
``requests``, and the pictures they upload.

It keeps cookies (per host, any port, as browsers do), posts forms with the
Origin header, never follows redirects, opens a connection per request, and
says where it is as the load balancer in front of nginx would
(X-Forwarded-For). Every answer is kept with when it was sent and received.
"""

from __future__ import annotations

import colorsys
import html
import io
import re
import time
from dataclasses import dataclass

import requests

from scripts.processes import LOOPBACK

REQUEST_TIMEOUT = 60.0


@dataclass
class Response:
    method: str
    path: str
    status: int  # 0: no whole HTTP answer (none, or its body cut)
    headers: dict[str, str]  # names in lower case; kept when the body was cut
    body: bytes
    started: float  # time.monotonic()
    ended: float

    @property
    def upstreams(self) -> list[str]:
        """The instances nginx tried, in order (the last one answered)."""
        value = self.headers.get("x-upstream", "")
        return [part.strip() for part in value.split(",") if part.strip()]

    @property
    def upstream(self) -> str | None:
        return self.upstreams[-1] if self.upstreams else None

    @property
    def request_id(self) -> str:
        return self.headers.get("x-request-id", "")

    @property
    def text(self) -> str:
        return self.body.decode("utf-8", errors="replace")

    def describe(self) -> str:
        return (
            f"{self.method} {self.path} -> "
            f"{self.status or ('answer cut' if self.headers else 'no answer')} "
            f"via {', '.join(self.upstreams) or 'no instance'} rid={self.request_id}"
        )


class Browser:
    """Requests to nginx on ``port``, or to an instance (``port=`` of a call,
    with X-Forwarded-For as nginx would have passed it on). Without a
    ``client_address``, no X-Forwarded-For: the connection's address counts.
    Header names may use underscores: ``X_Requested_With="XMLHttpRequest"``."""

    def __init__(self, port: int, *, client_address: str | None = None) -> None:
        self.port, self.client_address = port, client_address
        self.session = requests.Session()

    @property
    def cookies(self) -> dict[str, str]:
        return self.session.cookies.get_dict()

    @cookies.setter
    def cookies(self, values: dict[str, str]) -> None:
        self.session.cookies.clear()
        self.session.cookies.update(values)

    def get(self, path: str, *, port: int | None = None, **headers) -> Response:
        return self.request("GET", path, port=port, headers=headers)

    def post(
        self,
        path: str,
        fields: dict,
        *,
        files=None,
        port=None,
        timeout=REQUEST_TIMEOUT,
        **headers,
    ) -> Response:
        """A form; ``files``: {field: (file name, content type, bytes)}."""
        headers["Origin"] = f"http://{LOOPBACK}:{port or self.port}"
        files = {
            k: (name, data, kind) for k, (name, kind, data) in (files or {}).items()
        }
        return self.request(
            "POST",
            path,
            port=port,
            headers=headers,
            timeout=timeout,
            data=fields,
            files=files,
        )

    def post_json(self, path: str, data: object, *, port=None, **headers) -> Response:
        """As an API client does: no Origin, no form."""
        return self.request("POST", path, port=port, headers=headers, json=data)

    def request(
        self,
        method: str,
        path: str,
        *,
        port: int | None = None,
        headers: dict[str, str] | None = None,
        timeout: float = REQUEST_TIMEOUT,
        **body,
    ) -> Response:
        headers = {k.replace("_", "-"): v for k, v in (headers or {}).items()}
        headers["Connection"] = "close"
        if self.client_address:
            headers["X-Forwarded-For"] = (
                self.client_address
                if port in (None, self.port)
                else f"{self.client_address}, {LOOPBACK}"  # as nginx appends
            )
        url = f"http://{LOOPBACK}:{port or self.port}{path}"
        started, received = time.monotonic(), {}
        try:
            answer = self.session.request(
                method,
                url,
                headers=headers,
                timeout=timeout,
                allow_redirects=False,
                stream=True,
                **body,
            )
            received = {key.lower(): value for key, value in answer.headers.items()}
            content = answer.content
        except requests.RequestException as exc:
            ended = time.monotonic()
            return Response(
                method, path, 0, received, str(exc).encode(), started, ended
            )
        return Response(
            method,
            path,
            answer.status_code,
            received,
            content,
            started,
            time.monotonic(),
        )


def client_address(number: int) -> str:
    """A loopback address per simulated client: 127.0.1.1, 127.0.1.2, ...
    (never 127.0.0.X, where the load balancer and nginx would be)."""
    if not 0 <= number < 255 * 254:
        raise ValueError(f"no loopback client address number {number}")
    return f"127.0.{number // 254 + 1}.{number % 254 + 1}"


def csrf_token(page: Response) -> str:
    found = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page.text)
    if not found:
        raise AssertionError(f"no CSRF token in {page.describe()}")
    return found[1]


def img_src(page: Response, marker: str) -> str | None:
    """The src of the first <img> whose attributes contain ``marker``."""
    for tag in re.findall(r"<img\s[^>]*>", page.text):
        if marker in tag:
            found = re.search(r'\ssrc="([^"]*)"', tag)
            return html.unescape(found[1]) if found else None
    return None


def colour(number: int) -> tuple[int, int, int]:
    """Distinct, saturated colours: consecutive numbers are far apart."""
    red, green, blue = colorsys.hsv_to_rgb((number * 0.618034) % 1.0, 0.85, 0.9)
    return round(red * 255), round(green * 255), round(blue * 255)


def upload_file(rgb: tuple[int, int, int], *, kind: str) -> tuple[str, str, bytes]:
    """A photo-sized JPEG (``avatar``) or a PNG with transparency around one
    colour (``logo``), as (file name, content type, bytes)."""
    from PIL import Image

    buffer = io.BytesIO()
    if kind == "avatar":
        Image.new("RGB", (640, 480), rgb).save(buffer, format="JPEG", quality=92)
        return "photo.jpg", "image/jpeg", buffer.getvalue()
    image = Image.new("RGBA", (256, 256), (0, 0, 0, 0))
    image.paste((*rgb, 255), (32, 32, 224, 224))
    image.save(buffer, format="PNG")
    return "logo.png", "image/png", buffer.getvalue()
