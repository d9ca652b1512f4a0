"""Admission control: a replica that already has more requests in flight than it can answer in
time refuses the next one at once (503 with Retry-After) instead of queueing it.

Without it, a replica past its capacity queues every request; latency grows with the queue
until callers time out (the gateway answers 504 after its backend timeout), having cost the
replica its CPU for answers nobody reads. A quick 503 lets the gateway say "busy, retry" in
milliseconds, and a load balancer or an autoscaler sees the pressure. Sized well above the
concurrency that saturates a replica (see docs/performance.md), it never refuses in normal
operation.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import structlog
from prometheus_client import Counter, Gauge

from marquee_shared.asgi import send_json_error
from marquee_shared.health import PROBE_PATHS

if TYPE_CHECKING:
    from starlette.types import ASGIApp, Receive, Scope, Send

# Probes and scrapes are answered even under overload: a busy replica is not a dead one.
EXEMPT_PATHS = PROBE_PATHS

IN_FLIGHT = Gauge("marquee_search_requests_in_flight", "Requests this replica is answering")
REFUSED = Counter(
    "marquee_search_requests_refused_total",
    "Requests refused with 503 at once because MARQUEE_SEARCH_MAX_IN_FLIGHT were in flight",
)

log = structlog.get_logger(__name__)


class AdmissionLimit:
    """Pure ASGI: at most ``limit`` HTTP requests in flight (0: no limit)."""

    def __init__(self, app: ASGIApp, limit: int, retry_after_s: int = 1) -> None:
        self.app = app
        self._limit = limit
        self._retry_after = str(retry_after_s).encode()
        self._in_flight = 0

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] in EXEMPT_PATHS:
            await self.app(scope, receive, send)
            return
        if self._limit and self._in_flight >= self._limit:
            REFUSED.inc()
            log.warning("request_refused", reason="overloaded", in_flight=self._in_flight)
            await send_json_error(
                send,
                503,
                "the search service is overloaded; retry shortly",
                [(b"retry-after", self._retry_after)],
            )
            return
        # One event loop per process: a plain counter is enough, no lock.
        self._in_flight += 1
        IN_FLIGHT.inc()
        try:
            await self.app(scope, receive, send)
        finally:
            self._in_flight -= 1
            IN_FLIGHT.dec()
