"""HTTP contracts between the gateway and the internal services (search, later explainer).

The gateway validates requests with these models (so a bad parameter is a 422 before any hop)
and documents them in its OpenAPI; the search service validates them again (defence in depth,
and it may be called directly inside the network).
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

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
MAX_QUERY_CHARS = 500
MAX_GENRE_VALUES = len(TMDB_GENRES)
"""Genre values as sent (before splitting commas and removing repeats): the documented
``maxItems``, enforced on what arrives rather than on what is left after de-duplication."""


class MovieFilters(BaseModel):
    """Filters shared by search, similar movies and (later) recommendations."""

    model_config = ConfigDict(extra="forbid")

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
    q: Annotated[str, Field(min_length=1, max_length=MAX_QUERY_CHARS)] = Field(
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
    score: float = Field(
        description="Ranking score, higher is better: cosine similarity in [-1, 1] for semantic "
        "search and similar movies; BM25 for keyword search; the fused score for hybrid search "
        "and recommendations; popularity or weighted rating when browsing.",
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
    model_config = ConfigDict(extra="forbid")

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

    model_config = ConfigDict(extra="forbid")

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
