"""Composition root of the search service.

Run: ``uvicorn marquee_search.app:create_app --factory --port 8081``.
"""

from __future__ import annotations

import time
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING

import anyio.to_thread
import httpx
import structlog
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from marquee_embedder.encoder import Encoder
from marquee_search.engine import MovieNotFoundError, SearchEngine
from marquee_search.routes import router
from marquee_search.settings import SearchSettings
from marquee_shared.chroma import open_collection
from marquee_shared.health import Check, health_routes
from marquee_shared.logging import configure_logging
from marquee_shared.requests import RequestContextMiddleware

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

log = structlog.get_logger(__name__)


def create_app(
    settings: SearchSettings | None = None, *, encoder: Encoder | None = None
) -> FastAPI:
    settings = settings or SearchSettings()
    configure_logging(settings.log_level, settings.log_format)
    checks: dict[str, Check] = {}

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        started = time.perf_counter()
        model = encoder
        if model is None:
            model = await anyio.to_thread.run_sync(
                lambda: Encoder(settings.model_path, threads=settings.torch_threads)
            )
        chroma, collection = await open_collection(settings.chroma_url, settings.chroma_collection)
        app.state.engine = SearchEngine(collection, model, settings.query_cache_size)
        checks["chroma"] = chroma.heartbeat
        log.info("search_started", startup_s=round(time.perf_counter() - started, 2))
        yield

    app = FastAPI(
        title="Marquee search (internal)",
        version="0.1.0",
        lifespan=lifespan,
        description="Internal service behind the gateway. See the gateway for the public API.",
    )
    app.add_middleware(RequestContextMiddleware, service="search")
    app.include_router(router)
    app.router.routes.extend(health_routes("search", lambda: checks))

    @app.exception_handler(MovieNotFoundError)
    async def not_found(_: Request, exc: MovieNotFoundError) -> JSONResponse:
        return JSONResponse({"detail": str(exc)}, status_code=404)

    @app.exception_handler(ConnectionError)
    @app.exception_handler(httpx.TransportError)
    async def index_down(_: Request, exc: Exception) -> JSONResponse:
        log.warning("index_unavailable", error=str(exc))
        return JSONResponse(
            {"detail": f"the vector index (Chroma) is unavailable: {exc}"}, status_code=503
        )

    return app
