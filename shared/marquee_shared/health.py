"""/health, /ready and /metrics for every service, as plain Starlette routes.

Starlette routes (not a FastAPI router) so both the FastAPI services and the FastStream ASGI
app of the embedder mount the same endpoints.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping

import structlog
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, generate_latest
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

PROBE_PATHS = frozenset({"/health", "/ready", "/metrics"})
"""The paths ``health_routes`` serves. Orchestrators and scrapers poll them: they stay open
without the internal token, out of the access log, and exempt from rate and admission limits."""

Check = Callable[[], Awaitable[object]]
"""A readiness check: returns when the dependency answers, raises otherwise."""

log = structlog.get_logger(__name__)


async def run_checks(checks: Mapping[str, Check], timeout: float = 2.0) -> dict[str, str]:
    """Run checks concurrently; maps each name to "ok" or the reason it failed."""

    async def one(name: str, check: Check) -> tuple[str, str]:
        try:
            await asyncio.wait_for(check(), timeout)
        except TimeoutError:
            return name, f"timed out after {timeout:g}s"
        except Exception as exc:  # noqa: BLE001 - any failure means "not ready", with its reason
            return name, f"{type(exc).__name__}: {exc}"[:300]
        return name, "ok"

    results = await asyncio.gather(*(one(n, c) for n, c in checks.items()))
    return dict(results)


def health_routes(
    service: str,
    checks: Callable[[], Mapping[str, Check]],
    info: Callable[[], Mapping[str, object]] | None = None,
) -> list[Route]:
    """Liveness (process answers), readiness (dependencies answer) and Prometheus metrics.

    ``checks`` is a callable so the app can hand over checks built in its lifespan; ``info``
    likewise gives facts that ``/ready`` reports beside them (the model id).
    """

    async def health(_: Request) -> Response:
        return JSONResponse({"status": "ok", "service": service})

    async def ready(_: Request) -> Response:
        results = await run_checks(checks())
        ok = all(v == "ok" for v in results.values())
        if not ok:
            log.warning("not_ready", service=service, checks=results)
        body: dict[str, object] = {"status": "ready" if ok else "not ready", "service": service}
        body.update(info() if info is not None else {})
        return JSONResponse({**body, "checks": results}, status_code=200 if ok else 503)

    async def metrics(_: Request) -> Response:
        return Response(generate_latest(REGISTRY), media_type=CONTENT_TYPE_LATEST)

    return [
        Route("/health", health, methods=["GET"], include_in_schema=False),
        Route("/ready", ready, methods=["GET"], include_in_schema=False),
        Route("/metrics", metrics, methods=["GET"], include_in_schema=False),
    ]
