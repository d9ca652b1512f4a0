"""``/v1/explanations``: grounded "why this?" explanations, relayed to the explainer.

The request and response models are the explainer's own, from ``marquee_shared.api``. The
gateway validates first, so a bad request is a 422 before any hop.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Body, Response

from marquee_gateway.backends import relay
from marquee_gateway.deps import ExplainerBackend
from marquee_shared.api import (
    ErrorResponse,
    Explanation,
    SearchHitExplanationRequest,
    TasteExplanationRequest,
)
from marquee_shared.jsonbody import StrictJSONRoute

router = APIRouter(prefix="/v1", tags=["explanations"], route_class=StrictJSONRoute)

EXPLAIN_TIMEOUT_S = 30.0
"""How long the gateway waits for an explanation. Longer than other hops: the explainer may be
waiting on an LLM, and it answers with its deterministic fallback within its own deadline
(MARQUEE_EXPLAINER_DEADLINE_S, 20 s by default), so this only ends a hung explainer."""

ERRORS: dict[int | str, dict[str, Any]] = {
    404: {
        "model": ErrorResponse,
        "description": "The target is not in the catalog, or none of the liked movies is.",
    },
    503: {"model": ErrorResponse, "description": "The explainer (or its index) is down."},
}

TASTE_EXAMPLES = {
    "liked ids": {
        "summary": "Liked (and disliked) movie ids",
        "value": {"target_id": 578, "liked": [348, 1091], "disliked": [862]},
    },
    "ratings": {
        "summary": "Star ratings (4+ liked, 2- disliked)",
        "value": {
            "target_id": 578,
            "ratings": [{"tmdb_id": 348, "rating": 5}, {"tmdb_id": 862, "rating": 1.5}],
        },
    },
}
SEARCH_HIT_EXAMPLES = {
    "query": {
        "summary": "A search and one of its hits",
        "value": {
            "query": "serial killer investigation like Zodiac but in the 80s",
            "tmdb_id": 11454,
        },
    }
}


@router.post(
    "/explanations",
    response_model=Explanation,
    responses=ERRORS,
    summary="Why this movie, for this taste?",
    description="A short explanation of why `target_id` suits someone who liked (and disliked) "
    "the given movies, grounded in the catalog: it speaks only of the target and the liked "
    "movies, and rests on facts they share (director, cast, themes, genres, decade). Written "
    "by Claude when the explainer has an API key, else by a deterministic explainer; every "
    "answer is validated either way. Taste ids not in the catalog are ignored and listed in "
    "`unknown_ids`.",
)
async def explain_taste(
    body: Annotated[TasteExplanationRequest, Body(openapi_examples=TASTE_EXAMPLES)],
    backend: ExplainerBackend,
) -> Response:
    resp = await backend.post(
        "/explanations", body.model_dump(mode="json"), timeout_s=EXPLAIN_TIMEOUT_S
    )
    return relay(resp)


@router.post(
    "/explanations/search-hit",
    response_model=Explanation,
    responses=ERRORS,
    summary="Why did this movie come up for my search?",
    description="Which of the hit's facts match the query (words of its plot or keywords, "
    "genres, decade, people), and what it shares with movies the query names "
    '("like Zodiac").',
)
async def explain_search_hit(
    body: Annotated[SearchHitExplanationRequest, Body(openapi_examples=SEARCH_HIT_EXAMPLES)],
    backend: ExplainerBackend,
) -> Response:
    resp = await backend.post(
        "/explanations/search-hit", body.model_dump(mode="json"), timeout_s=EXPLAIN_TIMEOUT_S
    )
    return relay(resp)
