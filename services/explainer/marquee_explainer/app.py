"""Composition root of the explainer.

Run: ``uvicorn marquee_explainer.app:create_app --factory --port 8082``. It never loads a
model (no torch): it compares the vectors Chroma already stores, and writes with Claude when
``ANTHROPIC_API_KEY`` is set, else with the deterministic explainer.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING

import anthropic
import structlog
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from redis.asyncio import Redis

from marquee_explainer.cache import ExplanationCache
from marquee_explainer.catalog import Catalog, CatalogTitles, NoKnownTasteError
from marquee_explainer.claude import ClaudeWriter
from marquee_explainer.routes import router
from marquee_explainer.service import Explainer
from marquee_explainer.settings import ExplainerSettings
from marquee_shared.chroma import open_collection
from marquee_shared.health import Check, health_routes
from marquee_shared.httpapi import install_catalog_errors
from marquee_shared.internal_auth import InternalTokenMiddleware
from marquee_shared.jsonbody import install_validation_errors
from marquee_shared.logging import configure_logging
from marquee_shared.migration import AliasFollower, LiveIndex, read_live_or_configured
from marquee_shared.requests import RequestContextMiddleware

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

log = structlog.get_logger(__name__)

ALIAS_POLL_S = 1.0
"""How often the index alias is read: one HGETALL a second, and a switch is followed within it."""
LOCK_MARGIN_S = 5.0
"""The single-flight lock outlives the LLM deadline by this much, so it never expires while
its holder is still within budget."""


def create_app(settings: ExplainerSettings | None = None) -> FastAPI:
    settings = settings or ExplainerSettings()
    configure_logging(settings.log_level, settings.log_format)
    checks: dict[str, Check] = {}
    reading: dict[str, object] = {}
    """What /ready reports beside its checks: the collection read (it moves with the alias)."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        started = time.perf_counter()
        redis: Redis = Redis.from_url(str(settings.redis_url))
        # The collection the index alias names (a model migration's switch moves it), else the
        # configured one; followed while running, as search follows it.
        live = await read_live_or_configured(redis, settings.chroma_collection)
        chroma, collection = await open_collection(
            settings.chroma_url, live.collection, token=settings.chroma_token
        )
        catalog = Catalog(collection)
        titles = CatalogTitles(catalog, settings.title_refresh_s)
        await titles.refresh()
        reading.update(collection=live.collection)

        async def follow(moved: LiveIndex) -> None:
            _, new = await open_collection(
                settings.chroma_url, moved.collection, token=settings.chroma_token
            )
            catalog.use(new)
            await titles.refresh()
            reading.update(collection=moved.collection)

        follower = AliasFollower(
            redis,
            settings.chroma_collection,
            live,
            follow,
            interval_s=ALIAS_POLL_S,
            service="explainer",
        )
        following = asyncio.create_task(follower.run())
        client, writer = _claude(settings)
        budget = settings.deadline_s + LOCK_MARGIN_S
        app.state.explainer = Explainer(
            catalog,
            titles,
            ExplanationCache(redis, lock_ttl_s=budget, wait_s=budget),
            writer,
            settings,
        )
        checks.update(redis=redis.ping, chroma=chroma.heartbeat, titles=titles.check)
        refresher = asyncio.create_task(titles.keep_fresh())
        log.info(
            "explainer_started",
            generator=writer.model if writer else "deterministic",
            titles=len(titles.index),
            startup_s=round(time.perf_counter() - started, 2),
        )
        try:
            yield
        finally:
            following.cancel()
            refresher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await refresher
            if client is not None:
                await client.close()
            await redis.aclose()

    app = FastAPI(
        title="Marquee explainer (internal)",
        version="0.1.0",
        lifespan=lifespan,
        description="Internal service behind the gateway. See the gateway for the public API.",
    )
    app.add_middleware(InternalTokenMiddleware, token=settings.internal_token)
    app.add_middleware(RequestContextMiddleware, service="explainer")
    app.include_router(router)
    install_validation_errors(app)
    install_catalog_errors(app)
    app.router.routes.extend(health_routes("explainer", lambda: checks, lambda: reading))

    @app.exception_handler(NoKnownTasteError)
    async def no_known_taste(_: Request, exc: NoKnownTasteError) -> JSONResponse:
        return JSONResponse({"detail": str(exc)}, status_code=404)

    return app


def _claude(
    settings: ExplainerSettings,
) -> tuple[anthropic.AsyncAnthropic | None, ClaudeWriter | None]:
    """The one AsyncAnthropic of the process, or none: no key means deterministic only."""
    if settings.anthropic_api_key is None:
        log.info("no_anthropic_api_key", hint="set ANTHROPIC_API_KEY to write with Claude")
        return None, None
    client = anthropic.AsyncAnthropic(
        # Passed explicitly, so the SDK never goes looking for profiles or other credentials.
        api_key=settings.anthropic_api_key.get_secret_value(),
        base_url=str(settings.anthropic_base_url) if settings.anthropic_base_url else None,
        timeout=settings.timeout_s,
        max_retries=settings.max_retries,
    )
    writer = ClaudeWriter(
        client,
        model=settings.model,
        max_tokens=settings.max_tokens,
        deadline_s=settings.deadline_s,
    )
    return client, writer
