"""Composition root of the search service.

Run: ``uvicorn marquee_search.app:create_app --factory --port 8081``.
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
from threadpoolctl import threadpool_limits

from marquee_search.admission import AdmissionLimit
from marquee_search.engine import (
    KeywordIndexLoadingError,
    NoKnownMoviesError,
    SearchEngine,
    SimilarFloor,
    Tuning,
)
from marquee_search.follow import Encoders, Serving, ServingSwitch, open_serving
from marquee_search.llm_rerank import ClaudeReranker
from marquee_search.model_guard import ModelGuard
from marquee_search.ranker import LearnedRanker, RankerParams
from marquee_search.routes import router
from marquee_search.routes_discover import router as discover_router
from marquee_search.routes_stats import router as stats_router
from marquee_search.settings import SearchSettings
from marquee_search.sync import IndexSync
from marquee_shared.health import Check, health_routes
from marquee_shared.httpapi import install_catalog_errors
from marquee_shared.internal_auth import InternalTokenMiddleware
from marquee_shared.jsonbody import install_validation_errors
from marquee_shared.logging import configure_logging
from marquee_shared.migration import AliasFollower, read_live_or_configured
from marquee_shared.model.encoder import Encoder
from marquee_shared.model.windows import Windower, WindowParams
from marquee_shared.requests import RequestContextMiddleware

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

    from chromadb.api.models.AsyncCollection import AsyncCollection

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
        # One BLAS thread. Its calls here are matrix-vector products (exact kNN, BM25), bound
        # by memory bandwidth; a second OpenBLAS thread halved one product's time (0.55 against
        # 1.07 ms over 16k vectors) but then busy-waited about 5 ms for more work: 6 ms of CPU
        # per search instead of 1, taken from the requests (docs/performance.md).
        threadpool_limits(limits=1, user_api="blas")
        if settings.model_path is not None:
            log.warning("model_path_deprecated", hint="set MARQUEE_SEARCH_MODEL instead")
        redis: Redis = Redis.from_url(str(settings.redis_url))
        # The collection the index alias names (a model migration's switch moves it), else the
        # configured one; followed while running (follow.py).
        live = await read_live_or_configured(redis, settings.chroma_collection)
        serving = await open_serving(settings, live, encoders := Encoders(settings, encoder))
        # A ranker file that cannot serve stops startup here, with its reason, rather than
        # answering with another ranking than the one configured.
        ranker = None
        if settings.ranker_model is not None:
            ranker = LearnedRanker(
                settings.ranker_model, RankerParams(min_words=settings.ranker_min_words)
            )
        windows = WindowParams(max_tokens=settings.window_tokens)
        llm = _llm_reranker(settings, redis)

        def make_sync(collection: AsyncCollection) -> IndexSync:
            vectors = settings.exact_max_movies > 0
            return IndexSync(collection, redis, settings.index_changes_stream, vectors=vectors)

        def make_engine(serving: Serving, sync: IndexSync) -> SearchEngine:
            return SearchEngine(
                serving.collection,
                serving.encoder,
                settings.query_cache_size,
                sync,
                exact_max_movies=settings.exact_max_movies,
                encode_passes=settings.encode_passes,
                ranker=ranker,
                windower=Windower(serving.model_path, windows),
                tuning=Tuning(
                    windows=windows,
                    similar_floor=SimilarFloor(
                        settings.similar_min_votes, settings.similar_min_rating
                    ),
                ),
                llm_reranker=llm,
            )

        # Sets app.state.engine and app.state.model_guard, read by every route and /ready.
        switch = ServingSwitch(
            app.state,
            settings=settings,
            encoders=encoders,
            make_sync=make_sync,
            make_engine=make_engine,
            checks=checks,
        )
        sync = switch.start(serving)
        follower = AliasFollower(
            redis,
            settings.chroma_collection,
            live,
            switch.switch,
            interval_s=settings.alias_poll_s,
            service="search",
        )
        following = asyncio.create_task(follower.run(), name="index-alias-follower")
        with contextlib.suppress(TimeoutError):
            # Small catalogs load in a second: serve complete answers from the first request.
            # A large one keeps loading in the background; /ready says when it is done.
            await asyncio.wait_for(sync.loaded.wait(), settings.keyword_startup_wait_s)
        log.info(
            "search_started",
            model=str(serving.model),
            collection=serving.collection_name,
            backend=settings.backend,
            startup_s=round(time.perf_counter() - started, 2),
            keyword_index=len(sync.mirror) if sync.mirror is not None else "loading",
            ranker=app.state.engine.ranker_version,
            llm_reranker=llm.version if llm is not None else "off",
        )
        try:
            yield
        finally:
            following.cancel()
            await switch.stop()
            if llm is not None:
                await llm.aclose()
            await redis.aclose()

    app = FastAPI(
        title="Marquee search (internal)",
        version="0.1.0",
        lifespan=lifespan,
        description="Internal service behind the gateway. See the gateway for the public API.",
    )
    # Read by request-time dependencies (the query-length cap, routes.py).
    app.state.settings = settings
    # Outermost last: every request gets its id and access line, including refused ones.
    app.add_middleware(InternalTokenMiddleware, token=settings.internal_token)
    app.add_middleware(AdmissionLimit, limit=settings.max_in_flight)
    app.add_middleware(RequestContextMiddleware, service="search")
    app.include_router(router)
    app.include_router(discover_router)
    app.include_router(stats_router)
    install_validation_errors(app)
    install_catalog_errors(app)
    app.router.routes.extend(health_routes("search", lambda: checks, lambda: _model_info(app)))

    @app.exception_handler(NoKnownMoviesError)
    async def no_known_movies(_: Request, exc: NoKnownMoviesError) -> JSONResponse:
        return JSONResponse({"detail": str(exc)}, status_code=404)

    @app.exception_handler(KeywordIndexLoadingError)
    async def keyword_loading(_: Request, exc: KeywordIndexLoadingError) -> JSONResponse:
        return JSONResponse({"detail": str(exc)}, status_code=503, headers={"Retry-After": "5"})

    return app


def _model_info(app: FastAPI) -> dict[str, object]:
    """What ``/ready`` reports beside its checks: the model id, once the lifespan chose it."""
    guard: ModelGuard | None = getattr(app.state, "model_guard", None)
    return {"model": str(guard.model)} if guard is not None else {}


def _llm_reranker(settings: SearchSettings, redis: Redis) -> ClaudeReranker | None:
    """Claude re-ranking of long or hedged requests, or none: without a key (or with
    ``LLM_RERANK`` off) search ranks exactly as it does without it."""
    if settings.anthropic_api_key is None or not settings.llm_rerank:
        return None
    client = anthropic.AsyncAnthropic(
        # Passed explicitly, so the SDK never goes looking for profiles or other credentials.
        api_key=settings.anthropic_api_key.get_secret_value(),
        base_url=str(settings.anthropic_base_url) if settings.anthropic_base_url else None,
        # One attempt may take the whole budget; the reranker's deadline bounds them all.
        timeout=settings.llm_rerank_deadline_s,
        max_retries=settings.llm_rerank_max_retries,
    )
    return ClaudeReranker(
        client,
        model=settings.llm_rerank_model,
        candidates=settings.llm_rerank_candidates,
        min_chars=settings.llm_rerank_min_chars,
        hedges=settings.llm_rerank_hedges,
        deadline_s=settings.llm_rerank_deadline_s,
        redis=redis,
        cache_ttl_s=settings.llm_rerank_cache_ttl_s,
        titles=settings.llm_rerank_titles,
        title_min_similarity=settings.llm_rerank_title_min_similarity,
    )
