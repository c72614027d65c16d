"""The readiness check of the matchers: each market's queue age."""

from __future__ import annotations

import dataclasses

from asgiref.sync import sync_to_async
from django.conf import settings
from health_check.base import HealthCheck
from health_check.exceptions import ServiceUnavailable

from trading.matcher import queue_ages


@dataclasses.dataclass
class MatcherQueues(HealthCheck):
    """Seconds since the oldest command still queued, per market (one
    query): ``/readyz/`` shows them as ``matcher_queue_seconds`` when any is
    queued. Above ``MATCHER_QUEUE_MAX_AGE_SECONDS`` (when set) the market's
    matcher is taken to be down and the check fails."""

    label = "matcher_queues"

    async def run(self) -> None:
        # On the request's own thread and database connection.
        ages = await sync_to_async(queue_ages, thread_sensitive=True)()
        self.measured = (
            {"matcher_queue_seconds": {s: round(age, 3) for s, age in ages.items()}}
            if ages
            else {}
        )
        limit = settings.MATCHER_QUEUE_MAX_AGE_SECONDS
        late = sorted(symbol for symbol, age in ages.items() if limit and age > limit)
        if late:
            raise ServiceUnavailable(
                f"commands queued longer than {limit:g} s in {', '.join(late)}: "
                "is run_matcher running?"
            )
