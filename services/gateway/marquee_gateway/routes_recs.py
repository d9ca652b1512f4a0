"""The public discovery API: taste recommendations, similar movies by free text, browsing.

Handlers validate with the shared contracts (a bad request is a 422 before any hop), forward
to the search service and relay its JSON as it is.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Body, Query, Response

from marquee_gateway.backends import query_pairs, relay
from marquee_gateway.deps import SearchBackend
from marquee_shared.api import (
    BrowseParams,
    BrowseResponse,
    ErrorResponse,
    RecommendationRequest,
    RecommendationResponse,
    SearchResponse,
    SimilarTextParams,
)
from marquee_shared.jsonbody import StrictJSONRoute

router = APIRouter(prefix="/v1", tags=["discovery"], route_class=StrictJSONRoute)

UNAVAILABLE: dict[int | str, dict[str, Any]] = {
    503: {"model": ErrorResponse, "description": "A backend service is down; retry later."}
}

RECOMMENDATION_EXAMPLES = {
    "two tastes": {
        "summary": "Liked horror and musicals: both come back",
        "value": {
            "liked": [694, 1091, 948, 872, 313369, 15121],
            "disliked": [862],
            "k": 10,
            "mmr_lambda": 0.8,
        },
    },
    "ratings and filters": {
        "summary": "Star ratings, recent films only",
        "value": {
            "ratings": [
                {"tmdb_id": 603, "rating": 5},
                {"tmdb_id": 348, "rating": 4.5},
                {"tmdb_id": 10681, "rating": 1.5},
            ],
            "seen": [78],
            "k": 5,
            "filters": {"year_min": 2000, "min_votes": 500},
        },
    },
}


@router.post(
    "/recommendations",
    response_model=RecommendationResponse,
    responses={
        404: {"model": ErrorResponse, "description": "None of the liked movies is in the catalog."},
        **UNAVAILABLE,
    },
    summary="Recommendations for a taste",
    description="Give liked (and disliked) movie ids and/or star ratings; get movies you have "
    "not seen. The liked movies are grouped into tastes (someone who likes horror and musicals "
    "gets both), each taste gets a share of the results, dislikes push results away, and "
    "`mmr_lambda` trades relevance for variety (1 = relevance only). At most 200 ids in all; "
    "every movie given is excluded from the results. Ids not in the catalog are ignored and "
    "listed in `unknown_ids`; if no liked movie is known the answer is 404.",
)
async def recommendations(
    body: Annotated[RecommendationRequest, Body(openapi_examples=RECOMMENDATION_EXAMPLES)],
    backend: SearchBackend,
) -> Response:
    resp = await backend.post("/recommendations", body.model_dump(mode="json"))
    return relay(resp)


@router.get(
    "/similar",
    response_model=SearchResponse,
    responses=UNAVAILABLE,
    summary="Movies like a description",
    description="Movies whose meaning is closest to free text, by the dense vectors only (no "
    "title or name matching: that is `/v1/search`). Example: "
    "`/v1/similar?q=a heist that goes wrong, told out of order&k=5`.",
)
async def similar_text(
    params: Annotated[SimilarTextParams, Query()], backend: SearchBackend
) -> Response:
    return relay(await backend.get("/similar", query_pairs(params)))


@router.get(
    "/browse/trending",
    response_model=BrowseResponse,
    responses=UNAVAILABLE,
    summary="Trending movies",
    description="By TMDB popularity, with the usual filters. Example: "
    "`/v1/browse/trending?genres=Horror&min_rating=6.5&k=10`.",
)
async def trending(params: Annotated[BrowseParams, Query()], backend: SearchBackend) -> Response:
    return relay(await backend.get("/browse/trending", query_pairs(params)))


@router.get(
    "/browse/top-rated",
    response_model=BrowseResponse,
    responses=UNAVAILABLE,
    summary="Top rated movies",
    description="By vote-count-weighted rating: each average is pulled towards the catalog's "
    "mean by as many votes as the catalog's median vote count, so a 10/10 from 3 votes does "
    "not win. Example: `/v1/browse/top-rated?genres=Animation&year_min=2000&k=10`.",
)
async def top_rated(params: Annotated[BrowseParams, Query()], backend: SearchBackend) -> Response:
    return relay(await backend.get("/browse/top-rated", query_pairs(params)))
