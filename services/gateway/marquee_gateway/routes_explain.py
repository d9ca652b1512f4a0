"""``/v1/explanations``: grounded "why this?" explanations, relayed to the explainer.

The request and response models mirror marquee_explainer.models (the gateway image does not
ship the explainer package); tests/unit/explainer/test_contract.py keeps the schemas equal.
The gateway validates first, so a bad request is a 422 before any hop.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Body, Depends, Request, Response
from pydantic import BaseModel, ConfigDict, Field, model_validator

from marquee_gateway.backends import Backend, BackendResponse
from marquee_shared.api import MAX_QUERY_CHARS, ErrorResponse
from marquee_shared.events import TmdbId
from marquee_shared.requests import REQUEST_ID_HEADER

router = APIRouter(prefix="/v1", tags=["explanations"])

EXPLAIN_TIMEOUT_S = 30.0
"""How long the gateway waits for an explanation. Longer than other hops: the explainer may be
waiting on an LLM, and it answers with its deterministic fallback within its own deadline
(MARQUEE_EXPLAINER_DEADLINE_S, 20 s by default), so this only ends a hung explainer."""

MAX_LIKED = 50
MAX_DISLIKED = 50
MAX_RATINGS = 200

Confidence = Literal["high", "medium", "low"]
FallbackReason = Literal["no_api_key", "llm_error", "llm_timeout", "llm_invalid"]
FactKind = Literal["director", "cast", "genre", "theme", "decade", "query"]


class Rating(BaseModel):
    model_config = ConfigDict(extra="forbid")

    tmdb_id: TmdbId
    rating: float = Field(ge=0.5, le=5.0, description="Stars, 0.5 to 5.", examples=[4.5])


class TasteExplanationRequest(BaseModel):
    """Why ``target_id`` for someone with this taste? Liked movies come from ``liked`` and from
    ratings of 4 stars or more; disliked from ``disliked`` and ratings of 2 or less."""

    model_config = ConfigDict(extra="forbid")

    target_id: TmdbId = Field(description="The recommended movie to explain.", examples=[578])
    liked: list[TmdbId] = Field(default_factory=list, max_length=MAX_LIKED, examples=[[348]])
    disliked: list[TmdbId] = Field(default_factory=list, max_length=MAX_DISLIKED, examples=[[]])
    ratings: list[Rating] = Field(default_factory=list, max_length=MAX_RATINGS)

    @model_validator(mode="after")
    def _has_taste(self) -> TasteExplanationRequest:
        if not self.liked and not self.ratings:
            msg = "give the taste: liked movie ids and/or ratings"
            raise ValueError(msg)
        return self


class SearchHitExplanationRequest(BaseModel):
    """Why did this movie come up for this query?"""

    model_config = ConfigDict(extra="forbid")

    query: str = Field(
        min_length=1,
        max_length=MAX_QUERY_CHARS,
        description="The search as the user typed it.",
        examples=["dark serial killer mystery like Zodiac but in the 80s"],
    )
    tmdb_id: TmdbId = Field(description="The search hit to explain.", examples=[1949])

    @model_validator(mode="after")
    def _not_blank(self) -> SearchHitExplanationRequest:
        if not self.query.strip():
            msg = "query must contain some text"
            raise ValueError(msg)
        return self


class Fact(BaseModel):
    """One checkable statement an explanation rests on, e.g. a shared director."""

    kind: FactKind = Field(examples=["director"])
    value: str = Field(examples=["Steven Spielberg"])
    movie_ids: list[int] = Field(
        description="The context movies (besides the target) that share it; for query facts, "
        "the target.",
        examples=[[329]],
    )


class NearMovie(BaseModel):
    tmdb_id: int = Field(examples=[348])
    title: str = Field(examples=["Alien"])
    similarity: float = Field(
        description="Cosine similarity of the stored vectors, in [-1, 1].", examples=[0.61]
    )


class Explanation(BaseModel):
    target_id: int = Field(examples=[578])
    text: str = Field(
        examples=[
            (
                "Because you liked Alien (1979), we picked Jaws (1975). Like Alien (1979), it "
                "deals with a crew hunted by a predator. It is a horror and thriller film from "
                "the 1970s."
            )
        ]
    )
    confidence: Confidence = Field(
        description="How strongly the shared facts and vector similarity support the match."
    )
    cited_ids: list[int] = Field(
        description="Movies the text speaks of; always among the target and the taste's movies.",
        examples=[[578, 348]],
    )
    facts: list[Fact] = Field(description="The shared facts the text rests on.")
    nearest_liked: list[NearMovie] = Field(
        default_factory=list,
        description="The liked movies nearest the target (which of yours made us pick it), "
        "nearest first; empty for a search hit.",
    )
    unknown_ids: list[int] = Field(
        default_factory=list, description="Taste ids not in the catalog; they were ignored."
    )
    generator: str = Field(
        description="The Claude model that wrote the text, or 'deterministic'.",
        examples=["claude-haiku-4-5"],
    )
    fallback_reason: FallbackReason | None = Field(
        default=None,
        description="Why the deterministic explainer wrote it: no API key configured, or the "
        "LLM failed, timed out or gave no valid answer after one retry. Null for Claude.",
    )
    cached: bool = Field(description="Served from the explanation cache.")


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


def _explainer(request: Request) -> Backend:
    backend: Backend = request.app.state.explainer
    return backend


ExplainerBackend = Annotated[Backend, Depends(_explainer)]


def _relay(resp: BackendResponse) -> Response:
    # The explainer validated its answer; relay its JSON bytes as they are (as routes.py does).
    return Response(content=resp.body, status_code=resp.status, media_type="application/json")


def _trace(request: Request) -> dict[str, str]:
    rid = request.headers.get(REQUEST_ID_HEADER)
    return {REQUEST_ID_HEADER: rid} if rid else {}


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
    request: Request,
    body: Annotated[TasteExplanationRequest, Body(openapi_examples=TASTE_EXAMPLES)],
    backend: ExplainerBackend,
) -> Response:
    resp = await backend.post(
        "/explanations", body.model_dump(mode="json"), _trace(request), EXPLAIN_TIMEOUT_S
    )
    return _relay(resp)


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
    request: Request,
    body: Annotated[SearchHitExplanationRequest, Body(openapi_examples=SEARCH_HIT_EXAMPLES)],
    backend: ExplainerBackend,
) -> Response:
    resp = await backend.post(
        "/explanations/search-hit", body.model_dump(mode="json"), _trace(request), EXPLAIN_TIMEOUT_S
    )
    return _relay(resp)
