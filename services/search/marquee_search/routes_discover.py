"""Discovery on the search service: similar by free text, browsing, taste recommendations."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Query

from marquee_search.recommender import Recommender
from marquee_search.routes import Engine
from marquee_shared.api import (
    BrowseParams,
    BrowseResponse,
    MovieFilters,
    RecommendationRequest,
    RecommendationResponse,
    SearchResponse,
    SimilarTextParams,
)
from marquee_shared.jsonbody import StrictJSONRoute

router = APIRouter(route_class=StrictJSONRoute)


@router.get("/similar")
async def similar_text(
    params: Annotated[SimilarTextParams, Query()], engine: Engine
) -> SearchResponse:
    results = await engine.similar_text(params.q, params.k, params)
    filters = MovieFilters.model_validate(params.model_dump(exclude={"q", "k"}))
    return SearchResponse(
        query=params.q, k=params.k, mode="semantic", filters=filters, results=results
    )


async def _browse(
    order: Literal["trending", "top-rated"], params: BrowseParams, engine: Engine
) -> BrowseResponse:
    results = await engine.browse(order, params.k, params)
    filters = MovieFilters.model_validate(params.model_dump(exclude={"k"}))
    return BrowseResponse(order=order, k=params.k, filters=filters, results=results)


@router.get("/browse/trending")
async def trending(params: Annotated[BrowseParams, Query()], engine: Engine) -> BrowseResponse:
    return await _browse("trending", params, engine)


@router.get("/browse/top-rated")
async def top_rated(params: Annotated[BrowseParams, Query()], engine: Engine) -> BrowseResponse:
    return await _browse("top-rated", params, engine)


@router.post("/recommendations")
async def recommendations(request: RecommendationRequest, engine: Engine) -> RecommendationResponse:
    return await Recommender(engine).recommend(request)
