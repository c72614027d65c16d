"""Liveness and readiness endpoints for load balancers and orchestrators.

``/healthz/`` answers as long as the process serves requests and touches
nothing. ``/readyz/`` checks what a request needs (database, cache, object
store, the matchers' queues) with django-health-check and answers 503 with a
JSON body saying which check fails, so a load balancer takes the instance out
until it recovers. The body is all anyone may see ("ok" or "failing" per
check); why a check fails (an endpoint, a bucket, what to run) goes to the log
only.
"""

import logging

from django.http import HttpRequest, JsonResponse
from django.views.decorators.cache import never_cache
from health_check.base import HealthCheck
from health_check.views import HealthCheckView

from storage.health import ObjectStore
from trading.health import MatcherQueues

logger = logging.getLogger(__name__)


@never_cache
def liveness(request: HttpRequest) -> JsonResponse:
    return JsonResponse({"status": "ok"})


class Readiness(HealthCheckView):
    checks = (
        ("health_check.checks.Database", {}),
        ("health_check.checks.Cache", {}),
        ObjectStore,
        MatcherQueues,
    )

    def render_to_response_json(self, status):
        # django-health-check answers 500 when a check fails; a failed
        # dependency is "unavailable", which load balancers understand.
        checks = {}
        for result in self.results:
            label = _label(result.check)
            checks[label] = "failing" if result.error else "ok"
            if result.error:
                logger.warning(
                    "readiness check failing",
                    extra={"check": label, "reason": str(result.error)},
                )
        failed = any(result.error for result in self.results)
        body = {"status": "unavailable" if failed else "ok", "checks": checks}
        # What a check measured, never why it fails: the age of each market's
        # oldest queued order command (trading.health), when one is queued.
        for result in self.results:
            body.update(getattr(result.check, "measured", {}))
        return JsonResponse(body, status=503 if failed else 200)

    async def get(self, request, *args, **kwargs):
        # Always JSON, whatever the Accept header.
        request.GET = request.GET.copy()
        request.GET["format"] = "json"
        return await super().get(request, *args, **kwargs)


def _label(check: HealthCheck) -> str:
    return getattr(check, "label", type(check).__name__.lower())
