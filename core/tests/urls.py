"""The site's URLs, plus views that fail on purpose and a DRF view on the
settings' defaults, for the tests of the error handlers and the parser."""

from django.core.exceptions import PermissionDenied
from django.urls import path
from rest_framework.renderers import JSONRenderer
from rest_framework.response import Response
from rest_framework.views import APIView

from crypto_exchange import urls as site


def fail(request):
    raise RuntimeError("a bug")


def refuse(request):
    raise PermissionDenied


class Echo(APIView):
    """Answers the JSON it was sent, parsed by the settings' default parser."""

    authentication_classes = ()
    permission_classes = ()
    renderer_classes = (JSONRenderer,)

    def post(self, request):
        return Response({"received": request.data})


urlpatterns = [
    path("api/v1/test/fail/", fail),
    path("test/fail/", fail),
    path("api/v1/test/refuse/", refuse),
    path("api/v1/test/echo/", Echo.as_view()),
    *site.urlpatterns,
]
handler400 = site.handler400
handler403 = site.handler403
handler404 = site.handler404
handler500 = site.handler500
