"""HTTP contracts between the gateway and the internal services (search, explainer, ingest).

One definition each, imported by both sides: the gateway validates requests with these models
(so a bad parameter is a 422 before any hop) and documents them in its OpenAPI; the service
behind it validates them again (defence in depth, and it may be called directly inside the
network) and answers with the response models.
"""

from __future__ import annotations

from datetime import date
from typing import Annotated, Any, Literal

from pydantic import (
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    field_validator,
    model_validator,
)

from marquee_shared.events import Movie, TmdbId

TMDB_GENRES = (
    "Action",
    "Adventure",
    "Animation",
    "Comedy",
    "Crime",
    "Documentary",
    "Drama",
    "Family",
    "Fantasy",
    "History",
    "Horror",
    "Music",
    "Mystery",
    "Romance",
    "Science Fiction",
    "TV Movie",
    "Thriller",
    "War",
    "Western",
)
_GENRES_BY_LOWER = {g.lower(): g for g in TMDB_GENRES}

MAX_K = 100
MAX_QUERY_CHARS = 2000
"""The default cap on a query's characters: ``q`` of /search (where each service's
``MAX_QUERY_CHARS`` setting may change it), ``q`` of similar-by-text and an explained search's
``query``. It takes 99 % of tomt_dev's "I can't remember the title" questions whole; the
500 it replaced refused 55 % of them."""
QUERY_CHARS_CEILING = 5000
"""The most a ``MAX_QUERY_CHARS`` setting may allow, and so the bound ``SearchParams`` itself
checks: 5,000 characters of the widest kind, percent-encoded (12 bytes each), still fit in the
64 KiB that httpx, for one, allows a URL's query."""
MAX_GENRE_VALUES = len(TMDB_GENRES)
"""Genre values as sent (before splitting commas and removing repeats): the documented
``maxItems``, enforced on what arrives rather than on what is left after de-duplication."""


class MovieFilters(BaseModel):
    """Filters shared by search, similar movies and (later) recommendations."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    genres: list[str] = Field(
        default_factory=list,
        max_length=len(TMDB_GENRES),
        description="Keep movies having ANY of these TMDB genres (repeat the parameter or "
        "separate with commas; case-insensitive).",
        examples=[["Horror", "Comedy"]],
        # Documented as the canonical names, so clients (and schema fuzzers) know which values
        # exist; the validator below also takes any case and comma-separated lists.
        json_schema_extra={"items": {"type": "string", "enum": list(TMDB_GENRES)}},
    )
    year_min: int | None = Field(default=None, ge=1870, le=2100, examples=[1980])
    year_max: int | None = Field(default=None, ge=1870, le=2100, examples=[1989])
    min_rating: float | None = Field(
        default=None, ge=0, le=10, description="Minimum TMDB vote average.", examples=[7.0]
    )
    min_votes: int | None = Field(
        default=None, ge=0, le=10**9, description="Minimum TMDB vote count.", examples=[100]
    )
    language: str | None = Field(
        default=None,
        pattern=r"^[a-z]{2,3}$",
        description="Original language, ISO 639-1 (e.g. en, fr, ja).",
        examples=["ja"],
    )

    @field_validator("genres", mode="before")
    @classmethod
    def _split_and_normalise(cls, value: object) -> object:
        if isinstance(value, str):
            value = [value]
        if not isinstance(value, list):
            return value
        if len(value) > MAX_GENRE_VALUES:
            msg = f"at most {MAX_GENRE_VALUES} genre values"
            raise ValueError(msg)
        names = [p.strip() for v in value for p in str(v).split(",") if p.strip()]
        unknown = [n for n in names if n.lower() not in _GENRES_BY_LOWER]
        if unknown:
            # Echo a few, shortened: the message must not return a client's megabyte of junk.
            shown = [n[:40] for n in unknown[:3]]
            msg = f"unknown genre(s) {shown}; known genres: {', '.join(TMDB_GENRES)}"
            raise ValueError(msg)
        return list(dict.fromkeys(_GENRES_BY_LOWER[n.lower()] for n in names))

    @model_validator(mode="after")
    def _year_range_ordered(self) -> MovieFilters:
        if (
            self.year_min is not None
            and self.year_max is not None
            and self.year_min > self.year_max
        ):
            msg = f"year_min ({self.year_min}) is after year_max ({self.year_max})"
            raise ValueError(msg)
        return self

    def is_empty(self) -> bool:
        return not (
            self.genres
            or self.year_min is not None
            or self.year_max is not None
            or self.min_rating is not None
            or self.min_votes is not None
            or self.language
        )


SearchMode = Literal["semantic", "keyword", "hybrid"]


class SearchParams(MovieFilters):
    # Bounded here by the ceiling only: the cap is a per-service setting the model cannot see,
    # checked (and written into the OpenAPI document) by each /search route; see query_too_long.
    q: Annotated[str, Field(min_length=1, max_length=QUERY_CHARS_CEILING)] = Field(
        description="What you remember: a plot, a mood, a title, a name.",
        examples=["a shark terrorizes a beach town"],
    )
    k: int = Field(default=10, ge=1, le=MAX_K, description="How many results.")
    mode: SearchMode = Field(
        default="hybrid",
        description="semantic: meaning only (dense vectors); keyword: words, titles and names "
        "(BM25, typo-tolerant); hybrid: both, fused (best on tomt_dev, docs/evaluation.md).",
    )

    @field_validator("q")
    @classmethod
    def _not_blank(cls, value: str) -> str:
        if not value.strip():
            msg = "q must contain some text"
            raise ValueError(msg)
        return value.strip()


def query_too_long(q: str | None, limit: int) -> dict[str, Any] | None:
    """The 422 error entry for a ``q`` longer than ``limit`` characters, shaped like pydantic's
    own (FastAPI answers ``{"detail": [entries]}``); None when it fits. Counted as sent, before
    the validator trims spaces, as the documented ``maxLength`` counts."""
    if q is None or len(q) <= limit:
        return None
    return {
        "type": "string_too_long",
        "loc": ["query", "q"],
        "msg": f"q is {len(q):,} characters; the limit is {limit:,}",
        "input": None,  # not echoed back: it is long by definition
        "ctx": {"max_length": limit},
    }


class SimilarParams(MovieFilters):
    k: int = Field(default=10, ge=1, le=MAX_K, description="How many results.")


class MovieHit(BaseModel):
    """One result: enough to render a result row."""

    tmdb_id: int = Field(examples=[578])
    title: str = Field(examples=["Jaws"])
    year: int | None = Field(examples=[1975])
    genres: list[str] = Field(examples=[["Horror", "Thriller", "Adventure"]])
    rating: float | None = Field(description="TMDB vote average (0-10).", examples=[7.7])
    vote_count: int | None = Field(examples=[9500])
    original_language: str | None = Field(examples=["en"])
    overview: str = Field(examples=["A police chief, a marine biologist and a fisherman hunt..."])
    poster_path: str | None = Field(
        default=None,
        description="TMDB's poster image path, when the catalog has it (docs/events.md).",
        examples=["/lxM6kqilAdpdhqUl2biYp5frUxE.jpg"],
    )
    backdrop_path: str | None = Field(
        default=None, description="TMDB's backdrop image path, when the catalog has it."
    )
    score: float = Field(
        description="Ranking score, higher is better: cosine similarity in [-1, 1] for semantic "
        "search and similar movies; BM25 for keyword search; the fused score for hybrid search "
        "and recommendations (the learned ranker's score, any sign, when the response's ranker "
        "is lambdarank-*); popularity or weighted rating when browsing.",
        examples=[0.62],
    )


class SearchResponse(BaseModel):
    query: str
    k: int
    mode: SearchMode = Field(
        default="hybrid",
        description="The mode that answered: hybrid answers as semantic while a replica's "
        "keyword index is still loading.",
    )
    ranker: str = Field(
        default="fusion",
        description="What ordered the results: dense (semantic), bm25f (keyword), fusion "
        "(hybrid, a short request), lambdarank-<version> (hybrid, a description re-ordered by "
        "the learned ranker), with +claude:<model> when Claude re-ordered its top.",
        examples=["lambdarank-3f2a9c1b7d"],
    )
    query_kind: Literal["lookup", "description"] = Field(
        default="description",
        description="How a hybrid request was read: a lookup (a title as typed, a person's "
        "name) lets the keyword side lead the fusion; a description leans on meaning.",
    )
    filters: MovieFilters
    results: list[MovieHit]


class SimilarResponse(BaseModel):
    tmdb_id: int
    k: int
    filters: MovieFilters
    results: list[MovieHit]


class MovieDetail(Movie):
    """A catalog movie as stored in the index."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    version: str = Field(description="Content hash of the stored version; changes when it does.")


class ErrorResponse(BaseModel):
    detail: str = Field(examples=["movie 12345 is not in the catalog"])


# --- discovery: similar by text, browsing, taste recommendations -------------------------------

MAX_TASTE_IDS = 200
"""Movie ids in one recommendation request, liked, disliked, rated and seen together."""


class SimilarTextParams(MovieFilters):
    q: Annotated[str, Field(min_length=1, max_length=MAX_QUERY_CHARS)] = Field(
        description="A mood or an idea, matched by meaning only.",
        examples=["something like Alien but funny"],
    )
    k: int = Field(default=10, ge=1, le=MAX_K, description="How many results.")

    @field_validator("q")
    @classmethod
    def _not_blank(cls, value: str) -> str:
        if not value.strip():
            msg = "q must contain some text"
            raise ValueError(msg)
        return value.strip()


class BrowseParams(MovieFilters):
    k: int = Field(default=20, ge=1, le=MAX_K, description="How many results.")


class BrowseResponse(BaseModel):
    order: Literal["trending", "top-rated"] = Field(
        description="trending: TMDB popularity; top-rated: vote-count-weighted rating."
    )
    k: int
    filters: MovieFilters
    results: list[MovieHit]


class Rating(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    tmdb_id: TmdbId
    rating: float = Field(
        ge=0.5,
        le=5.0,
        description="Stars, 0.5 to 5: 4+ is liked, 2 or less disliked.",
        examples=[4.5],
    )


class RecommendationRequest(BaseModel):
    """A taste: liked and disliked movies (ids and/or star ratings), and movies already seen.
    Every movie given is excluded from the results."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    liked: list[TmdbId] = Field(
        default_factory=list, max_length=MAX_TASTE_IDS, examples=[[694, 1091, 872, 313369]]
    )
    disliked: list[TmdbId] = Field(default_factory=list, max_length=MAX_TASTE_IDS, examples=[[862]])
    ratings: list[Rating] = Field(
        default_factory=list,
        max_length=MAX_TASTE_IDS,
        description="Star ratings; 4 stars or more count as liked (weighted by the rating), 2 or "
        "less as disliked, the rest only as seen.",
    )
    seen: list[TmdbId] = Field(
        default_factory=list,
        max_length=MAX_TASTE_IDS,
        description="Movies to leave out without saying anything of taste.",
    )
    k: int = Field(default=20, ge=1, le=MAX_K, description="How many recommendations.")
    mmr_lambda: float = Field(
        default=0.8,
        ge=0.0,
        le=1.0,
        description="Relevance versus diversity (maximal marginal relevance): 1 ranks by "
        "relevance alone, lower values trade relevance for variety.",
    )
    filters: MovieFilters = Field(default_factory=MovieFilters)

    @model_validator(mode="after")
    def _a_taste_within_limits(self) -> RecommendationRequest:
        total = len(self.liked) + len(self.disliked) + len(self.ratings) + len(self.seen)
        if total > MAX_TASTE_IDS:
            msg = f"at most {MAX_TASTE_IDS} movie ids in all (liked, disliked, ratings, seen)"
            raise ValueError(msg)
        if not self.liked and not any(r.rating >= 4 for r in self.ratings):
            msg = "give the taste: liked movie ids and/or ratings of 4 stars or more"
            raise ValueError(msg)
        return self


class RecommendedMovie(MovieHit):
    taste: int = Field(description="Index of the taste (in ``tastes``) it was picked for.")
    because: list[int] = Field(
        description="The liked movies closest to it, closest first (at most 3).",
        examples=[[694]],
    )


class Taste(BaseModel):
    """One cluster of the liked movies: a user who likes horror and musicals has two."""

    liked: list[int] = Field(description="The liked movies in this taste.", examples=[[694, 578]])
    weight: float = Field(description="Its share of the liked movies' weight.", examples=[0.5])
    results: int = Field(description="How many recommendations it got.", examples=[10])


class RecommendationResponse(BaseModel):
    k: int
    mmr_lambda: float
    filters: MovieFilters
    tastes: list[Taste]
    results: list[RecommendedMovie]
    unknown_ids: list[int] = Field(
        default_factory=list, description="Movies given that are not in the catalog (ignored)."
    )


# --- explanations: "why this?" (the explainer serves them; the gateway validates and relays) ---
# Star ratings are the recommendations' ``Rating``: the same stars and the same thresholds.

MAX_EXPLAIN_LIKED = 50
MAX_EXPLAIN_DISLIKED = 50
MAX_EXPLAIN_RATINGS = 200
LIKED_RATING = 4.0
"""Ratings (0.5-5 stars, as MovieLens gives them) at or above this count as liked ..."""
DISLIKED_RATING = 2.0
"""... and at or below this as disliked; the ones in between say little and are ignored."""

Confidence = Literal["high", "medium", "low"]
FallbackReason = Literal["no_api_key", "llm_error", "llm_timeout", "llm_invalid"]
FactKind = Literal["director", "cast", "genre", "theme", "decade", "query"]


class TasteExplanationRequest(BaseModel):
    """Why ``target_id`` for someone with this taste? Liked movies come from ``liked`` and from
    ratings of 4 stars or more; disliked from ``disliked`` and ratings of 2 or less."""

    model_config = ConfigDict(extra="forbid")

    target_id: TmdbId = Field(description="The recommended movie to explain.", examples=[578])
    liked: list[TmdbId] = Field(
        default_factory=list, max_length=MAX_EXPLAIN_LIKED, examples=[[348]]
    )
    disliked: list[TmdbId] = Field(
        default_factory=list, max_length=MAX_EXPLAIN_DISLIKED, examples=[[]]
    )
    ratings: list[Rating] = Field(default_factory=list, max_length=MAX_EXPLAIN_RATINGS)

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


# --- the TMDB sync (the ingest service runs it; the gateway relays its admin endpoints) --------

SyncTrigger = Literal["schedule", "admin", "cli"]
SyncOutcome = Literal["running", "succeeded", "failed", "skipped"]


class SyncRun(BaseModel):
    """One run: what it covered and what it did. Also the progress of a run in flight."""

    run_id: str = Field(examples=["3f9c2a1b7d4e"])
    trigger: SyncTrigger
    instance: str = Field(description="The ingest instance that ran it.")
    outcome: SyncOutcome = "running"
    reason: str | None = Field(default=None, description="Why it was skipped or failed.")
    mode: Literal["initial", "incremental"] | None = None
    started_at: AwareDatetime
    finished_at: AwareDatetime | None = None
    window_start: date | None = Field(default=None, description="First day of changes read.")
    window_end: date | None = Field(default=None, description="Last day of changes read.")
    listed: int = Field(default=0, description="Ids TMDB listed as changed (or in the list).")
    fetched: int = Field(default=0, description="Movies fetched with details.")
    published_fetched: int = Field(default=0, description="movie.fetched events published.")
    published_deleted: int = Field(default=0, description="movie.deleted events published.")
    unchanged: int = Field(default=0, description="Fetched, same content: nothing published.")
    gone_unknown: int = Field(
        default=0, description="Gone from TMDB but never published by ingest: nothing to delete."
    )
    invalid: int = Field(default=0, description="Unusable TMDB records (reported, skipped).")
    invalid_records: list[str] = Field(default_factory=list, description="The first few.")
    requests: int = Field(default=0, description="TMDB requests sent, retries included.")
    capped: bool = Field(
        default=False, description="Stopped at the request cap; the next run carries on."
    )
    watermark: AwareDatetime | None = Field(
        default=None, description="The watermark after this run."
    )


class SyncStatus(BaseModel):
    """Where the TMDB sync stands, as every instance sees it (the state lives in Redis)."""

    instance: str = Field(description="The ingest instance answering.")
    configured: bool = Field(description="TMDB credentials are set: syncs can run.")
    schedule: str | None = Field(description="The schedule, or null when off.")
    next_run_at: AwareDatetime | None = Field(
        default=None, description="When this instance's scheduler runs the next sync."
    )
    running: bool = Field(description="Some instance holds the sync lock.")
    running_on: str | None = Field(default=None, description="Which instance holds it.")
    current_run: SyncRun | None = Field(default=None, description="Progress of that run.")
    watermark: AwareDatetime | None = Field(
        default=None, description="Changes up to here are published."
    )
    last_started_at: AwareDatetime | None = None
    last_finished_at: AwareDatetime | None = None
    last_success_at: AwareDatetime | None = None
    last_error: str | None = None
    last_error_at: AwareDatetime | None = None
    last_run: SyncRun | None = None
    catalog_size: int = Field(description="Live movies ingest has published (not deleted).")


class SyncStarted(BaseModel):
    run_id: str = Field(
        description="Find the run under last_run (or current_run) in the status.",
        examples=["3f9c2a1b7d4e"],
    )
    instance: str = Field(description="The ingest instance running it.")
