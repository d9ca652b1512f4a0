"""Composition root of the explainer. For now it only reports health: explanations are their
own issue. Run: ``uvicorn marquee_explainer.app:create_app --factory --port 8082``."""

from __future__ import annotations

from contextlib import asynccontextmanager
from typing import TYPE_CHECKING

from fastapi import FastAPI
from redis.asyncio import Redis

from marquee_explainer.settings import ExplainerSettings
from marquee_shared.health import Check, health_routes
from marquee_shared.logging import configure_logging
from marquee_shared.requests import RequestContextMiddleware

if TYPE_CHECKING:
    from collections.abc import AsyncIterator


def create_app(settings: ExplainerSettings | None = None) -> FastAPI:
    settings = settings or ExplainerSettings()
    configure_logging(settings.log_level, settings.log_format)
    checks: dict[str, Check] = {}

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        # Redis will hold the explanation cache; readiness already checks it.
        redis: Redis = Redis.from_url(str(settings.redis_url))
        checks["redis"] = redis.ping
        try:
            yield
        finally:
            await redis.aclose()

    app = FastAPI(title="Marquee explainer (internal)", version="0.1.0", lifespan=lifespan)
    app.add_middleware(RequestContextMiddleware, service="explainer")
    app.router.routes.extend(health_routes("explainer", lambda: checks))
    return app
