"""Composition root of the ingest service: the scheduled TMDB sync and its admin endpoints.

Run: ``uvicorn marquee_ingest.app:create_app --factory --port 8084``. Without TMDB credentials
it still starts, serves its status and publishes nothing on its own (``make run`` without a
key). The one-shot commands stay in the CLI (``marquee-ingest``).
"""

from __future__ import annotations

import uuid
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING

import structlog
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from redis.asyncio import Redis
from redis.exceptions import RedisError

from marquee_ingest.ingest import ingest_demo, redact_url
from marquee_ingest.routes import router
from marquee_ingest.schedule import Schedule
from marquee_ingest.service import SyncService
from marquee_ingest.settings import IngestSettings, log_deprecated_names
from marquee_ingest.sync import TmdbSync
from marquee_ingest.tmdb import TmdbClient
from marquee_shared.health import Check, health_routes
from marquee_shared.internal_auth import InternalTokenMiddleware
from marquee_shared.jsonbody import install_validation_errors
from marquee_shared.logging import configure_logging
from marquee_shared.requests import RequestContextMiddleware

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

log = structlog.get_logger(__name__)


def create_app(settings: IngestSettings | None = None, *, poll_seconds: float = 15.0) -> FastAPI:
    settings = settings or IngestSettings()
    configure_logging(settings.log_level, settings.log_format)
    log_deprecated_names()
    checks: dict[str, Check] = {}

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        redis: Redis = Redis.from_url(
            str(settings.redis_url), socket_connect_timeout=5, socket_timeout=30
        )
        tmdb = TmdbClient.from_settings(settings) if settings.has_tmdb_credentials else None
        sync = TmdbSync(redis, tmdb, settings)
        schedule = Schedule.from_settings(settings.sync_interval_s, settings.sync_cron)
        service = SyncService(sync, schedule, poll_seconds=poll_seconds)
        app.state.sync_service = service
        checks["redis"] = redis.ping
        seed = (
            # Its own run id on the entries, like every ingest run (request_id).
            (lambda: ingest_demo(redis, settings, request_id=f"seed-{uuid.uuid4().hex[:12]}"))
            if settings.sync_seed_demo
            else None
        )
        service.start(seed)
        log.info(
            "ingest_started",
            redis=redact_url(str(settings.redis_url)),
            tmdb=str(settings.tmdb_base_url) if tmdb else None,
            schedule=schedule.describe() if schedule and tmdb else None,
            instance=settings.instance_name,
        )
        try:
            yield
        finally:
            # Cancelling a run mid-way is safe: the watermark moves only after a whole window.
            await service.stop()
            if tmdb is not None:
                await tmdb.aclose()
            await redis.aclose()

    app = FastAPI(
        title="Marquee ingest (internal)",
        version="0.1.0",
        lifespan=lifespan,
        description="Keeps the catalog in step with TMDB. Internal: the gateway exposes the "
        "admin endpoints behind its API key (/v1/admin/sync).",
    )
    # Only the gateway may start syncs (MARQUEE_INTERNAL_TOKEN, when set).
    app.add_middleware(InternalTokenMiddleware, token=settings.internal_token)
    app.add_middleware(RequestContextMiddleware, service="ingest")
    app.include_router(router)
    install_validation_errors(app)
    app.router.routes.extend(health_routes("ingest", lambda: checks))

    @app.exception_handler(RedisError)
    async def redis_down(_: Request, exc: RedisError) -> JSONResponse:
        log.warning("redis_unavailable", error=str(exc))
        return JSONResponse({"detail": f"Redis is unavailable: {exc}"}, status_code=503)

    return app
