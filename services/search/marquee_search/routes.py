"""Thin HTTP layer of the search service (internal; the gateway is the public face)."""

from __future__ import annotations

from typing import Annotated

import structlog
from fastapi import APIRouter, Depends, HTTPException, Query, Request
from fastapi.exceptions import RequestValidationError

from marquee_search.engine import SearchEngine
from marquee_shared.api import (
    MAX_QUERY_CHARS,
    MovieDetail,
    MovieFilters,
    SearchParams,
    SearchResponse,
    SimilarParams,
    SimilarResponse,
    query_too_long,
)
from marquee_shared.chroma import ModelMismatchError
from marquee_shared.httpapi import TmdbIdPath

router = APIRouter()


async def get_engine(request: Request) -> SearchEngine:
    # A collection stamped with another model after startup (model_guard.py): answering
    # would compare vectors of two models.
    try:
        request.app.state.model_guard.check()
    except ModelMismatchError as exc:
        raise HTTPException(status_code=503, detail=str(exc)) from exc
    engine: SearchEngine = request.app.state.engine
    return engine


Engine = Annotated[SearchEngine, Depends(get_engine)]


async def query_within_cap(request: Request) -> None:
    """q no longer than MAX_QUERY_CHARS (a setting, so not in SearchParams, which checks only
    the ceiling); as sent, before trimming. Runs before the parameters are validated."""
    # create_app's settings, when it has put them on the app state; else the default cap.
    settings = getattr(request.app.state, "settings", None)
    limit: int = settings.max_query_chars if settings is not None else MAX_QUERY_CHARS
    if error := query_too_long(request.query_params.get("q"), limit):
        raise RequestValidationError([error])


@router.get("/search", dependencies=[Depends(query_within_cap)])
async def search(params: Annotated[SearchParams, Query()], engine: Engine) -> SearchResponse:
    found = await engine.search(params.q, params.k, params, params.mode)
    filters = MovieFilters.model_validate(params.model_dump(exclude={"q", "k", "mode"}))
    structlog.contextvars.bind_contextvars(ranker=found.ranker, query_kind=found.kind)
    return SearchResponse(
        query=params.q,
        k=params.k,
        mode=found.mode,
        ranker=found.ranker,
        query_kind=found.kind,
        filters=filters,
        results=found.hits,
    )


@router.get("/movies/{tmdb_id}")
async def get_movie(tmdb_id: TmdbIdPath, engine: Engine) -> MovieDetail:
    return await engine.get_movie(tmdb_id)


@router.get("/movies/{tmdb_id}/similar")
async def similar(
    tmdb_id: TmdbIdPath, params: Annotated[SimilarParams, Query()], engine: Engine
) -> SimilarResponse:
    results = await engine.similar(tmdb_id, params.k, params)
    return SimilarResponse(
        tmdb_id=tmdb_id,
        k=params.k,
        filters=MovieFilters.model_validate(params.model_dump(exclude={"k"})),
        results=results,
    )
