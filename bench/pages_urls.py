"""The project's URLs plus a minimal view, the floor ``bench.pages`` compares with.

Used only by ``bench/pages_wsgi.py``: the floor answers in the same gunicorn
workers, through the same middleware, as the pages it is compared with.
"""

from django.http import HttpRequest, HttpResponse
from django.urls import path

from crypto_exchange.urls import urlpatterns as project_urlpatterns


def floor(request: HttpRequest) -> HttpResponse:
    return HttpResponse(b"ok", content_type="text/plain")


# First, so that the floor pays no more URL resolving than it must: the
# framework's own cost per request, and nothing of the project's.
urlpatterns = [path("bench/floor/", floor), *project_urlpatterns]
