"""The explainer's HTTP contract. The gateway validates the same shapes before the hop (its
copy lives in marquee_gateway.routes_explain; a unit test keeps the two schemas equal)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from marquee_shared.api import MAX_QUERY_CHARS
from marquee_shared.events import TmdbId

MAX_LIKED = 50
MAX_DISLIKED = 50
MAX_RATINGS = 200
LIKED_RATING = 4.0
"""Ratings (0.5-5 stars, as MovieLens gives them) at or above this count as liked ..."""
DISLIKED_RATING = 2.0
"""... and at or below this as disliked; the ones in between say little and are ignored."""

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

    def liked_ids(self) -> list[int]:
        """Liked ids in a stable order: the explicit list first, then ratings best first."""
        rated = sorted(self.ratings, key=lambda r: (-r.rating, r.tmdb_id))
        ids = [*self.liked, *(r.tmdb_id for r in rated if r.rating >= LIKED_RATING)]
        disliked = set(self.disliked_ids())
        return [i for i in dict.fromkeys(ids) if i != self.target_id and i not in disliked]

    def disliked_ids(self) -> list[int]:
        ids = [*self.disliked, *(r.tmdb_id for r in self.ratings if r.rating <= DISLIKED_RATING)]
        return [i for i in dict.fromkeys(ids) if i != self.target_id]


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
