"""Composition root of the public gateway.

Run: ``uvicorn marquee_gateway.app:create_app --factory --port 8080``. It never loads a model
(no torch import): it validates, routes to the internal services and publishes events.
"""

from __future__ import annotations

from contextlib import asynccontextmanager
from typing import TYPE_CHECKING

import structlog
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from redis.asyncio import Redis

from marquee_gateway.backends import Backend, BackendUnavailableError, make_session
from marquee_gateway.limits import install_limits
from marquee_gateway.routes import router
from marquee_gateway.routes_admin import router as admin_router
from marquee_gateway.routes_deadletters import router as deadletters_router
from marquee_gateway.routes_explain import router as explain_router
from marquee_gateway.routes_migration import router as migration_router
from marquee_gateway.routes_recs import router as recs_router
from marquee_gateway.settings import GatewaySettings
from marquee_gateway.web import install_web_ui
from marquee_shared.health import Check, health_routes
from marquee_shared.jsonbody import install_validation_errors
from marquee_shared.logging import configure_logging
from marquee_shared.requests import RequestContextMiddleware

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

log = structlog.get_logger(__name__)

DESCRIPTION = """
Semantic movie search, similar movies and (soon) taste recommendations with grounded
explanations. Reads are public; writing endpoints need an `X-API-Key`.

Errors are JSON `{"detail": ...}`: 404 unknown movie, 422 invalid parameters (saying which and
why), 401/403 missing or wrong API key, 503 when a backend is down.
"""


def create_app(settings: GatewaySettings | None = None) -> FastAPI:
    settings = settings or GatewaySettings()
    configure_logging(settings.log_level, settings.log_format)
    checks: dict[str, Check] = {}

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        session = make_session(
            settings.backend_timeout_s, settings.backend_connections, settings.internal_token
        )
        redis: Redis = Redis.from_url(str(settings.redis_url))
        app.state.settings = settings
        app.state.redis = redis
        app.state.search = Backend("search", str(settings.search_url), session)
        app.state.explainer = Backend("explainer", str(settings.explainer_url), session)
        # Not a readiness check: searching works while ingest is down (only admin/stats need it).
        app.state.ingest = Backend("ingest", str(settings.ingest_url), session)
        checks.update(search=app.state.search.ping, redis=redis.ping)
        if not settings.api_keys:
            log.warning("no_api_keys", hint="set MARQUEE_GATEWAY_API_KEYS to enable writes")
        log.info("gateway_started", search=str(settings.search_url))
        try:
            yield
        finally:
            await session.close()
            await redis.aclose()

    app = FastAPI(
        title="Marquee",
        version="0.1.0",
        summary="Semantic movie search, recommendations and grounded explanations.",
        description=DESCRIPTION,
        lifespan=lifespan,
    )
    install_limits(app, settings)  # body size and per-client rate limits; before the next line
    app.add_middleware(RequestContextMiddleware, service="gateway")
    app.include_router(router)
    app.include_router(deadletters_router)
    app.include_router(explain_router)
    app.include_router(admin_router)
    app.include_router(migration_router)
    app.include_router(recs_router)
    install_validation_errors(app)  # a 422 can echo any input; bodies are strict JSON
    app.router.routes.extend(health_routes("gateway", lambda: checks))
    # The page at / and its assets, /static.
    image_base = str(settings.image_base_url) if settings.image_base_url else None
    install_web_ui(app, settings.max_query_chars, image_base)

    @app.exception_handler(BackendUnavailableError)
    async def backend_down(_: Request, exc: BackendUnavailableError) -> JSONResponse:
        log.warning("backend_unavailable", backend=exc.backend, error=str(exc))
        return JSONResponse({"detail": str(exc)}, status_code=503, headers={"Retry-After": "5"})

    return app
