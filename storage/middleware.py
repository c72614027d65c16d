import logging

from django.shortcuts import render

from storage.exceptions import StorageUnavailable

logger = logging.getLogger(__name__)


class StorageUnavailableMiddleware:
    """The last line of defence: an outage of the object store is a 503 page.

    Views handle StorageUnavailable where they can say something better (an
    upload form keeps the user's input and shows a message); anything that
    slips through becomes a page that says what happened, never a traceback.
    """

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        return self.get_response(request)

    def process_exception(self, request, exception):
        if not isinstance(exception, StorageUnavailable):
            return None
        return render(request, "503.html", status=503)
