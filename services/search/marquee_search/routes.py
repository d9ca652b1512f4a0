"""Thin HTTP layer of the search service (internal; the gateway is the public face)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Path, Query, Request

from marquee_search.engine import SearchEngine
from marquee_shared.api import (
    MovieDetail,
    MovieFilters,
    SearchParams,
    SearchResponse,
    SimilarParams,
    SimilarResponse,
)

router = APIRouter()

TmdbIdPath = Annotated[int, Path(gt=0, lt=2**31, description="TMDB movie id")]


async def get_engine(request: Request) -> SearchEngine:
    engine: SearchEngine = request.app.state.engine
    return engine


Engine = Annotated[SearchEngine, Depends(get_engine)]


@router.get("/search")
async def search(params: Annotated[SearchParams, Query()], engine: Engine) -> SearchResponse:
    mode, results = await engine.search(params.q, params.k, params, params.mode)
    filters = MovieFilters.model_validate(params.model_dump(exclude={"q", "k", "mode"}))
    return SearchResponse(query=params.q, k=params.k, mode=mode, filters=filters, results=results)


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
