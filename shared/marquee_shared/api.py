"""HTTP contracts between the gateway and the internal services (search, later explainer).

The gateway validates requests with these models (so a bad parameter is a 422 before any hop)
and documents them in its OpenAPI; the search service validates them again (defence in depth,
and it may be called directly inside the network).
"""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from marquee_shared.events import Movie

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


class MovieFilters(BaseModel):
    """Filters shared by search, similar movies and (later) recommendations."""

    model_config = ConfigDict(extra="forbid")

    genres: list[str] = Field(
        default_factory=list,
        max_length=len(TMDB_GENRES),
        description="Keep movies having ANY of these TMDB genres (repeat the parameter or "
        "separate with commas; case-insensitive).",
        examples=[["Horror", "Comedy"]],
    )
    year_min: int | None = Field(default=None, ge=1870, le=2100, examples=[1980])
    year_max: int | None = Field(default=None, ge=1870, le=2100, examples=[1989])
    min_rating: float | None = Field(
        default=None, ge=0, le=10, description="Minimum TMDB vote average.", examples=[7.0]
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
        names = [p.strip() for v in value for p in str(v).split(",") if p.strip()]
        unknown = [n for n in names if n.lower() not in _GENRES_BY_LOWER]
        if unknown:
            msg = f"unknown genre(s) {unknown}; known genres: {', '.join(TMDB_GENRES)}"
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
            or self.language
        )


class SearchParams(MovieFilters):
    q: Annotated[str, Field(min_length=1, max_length=MAX_QUERY_CHARS)] = Field(
        description="What you remember: a plot, a mood, a title, a name.",
        examples=["a shark terrorizes a beach town"],
    )
    k: int = Field(default=10, ge=1, le=MAX_K, description="How many results.")

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
        description="Similarity to the query in [-1, 1] (cosine); higher is closer.",
        examples=[0.62],
    )


class SearchResponse(BaseModel):
    query: str
    k: int
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
