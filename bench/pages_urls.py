"""The project's URLs plus the floors ``bench.pages`` compares pages with.

Used only by ``bench/pages_wsgi.py``: the floors answer in the same gunicorn
workers, through the same middleware, as the pages they are compared with.
"""

from django.http import HttpRequest, HttpResponse
from django.urls import path

from crypto_exchange.urls import urlpatterns as project_urlpatterns


def floor(request: HttpRequest) -> HttpResponse:
    return HttpResponse(b"ok", content_type="text/plain")


def floor_signed_in(request: HttpRequest) -> HttpResponse:
    """The floor once the signed-in user is loaded, by the session engine and
    authentication backends in the settings, as for any signed-in page."""
    if not request.user.is_authenticated:
        return HttpResponse(b"signed out", content_type="text/plain", status=403)
    return HttpResponse(b"ok", content_type="text/plain")


# First, so that the floors pay no more URL resolving than they must: the
# framework's own cost per request, and nothing of the project's.
urlpatterns = [
    path("bench/floor/", floor),
    path("bench/floor/signed-in/", floor_signed_in),
    *project_urlpatterns,
]
