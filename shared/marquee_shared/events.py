"""Catalog event contracts: the public schema of the catalog stream.

Anyone may publish catalog updates, so these models are the contract. Wire format (see
docs/events.md): one Redis Stream entry per event on ``CATALOG_STREAM``, with a single field
``event`` holding the event as JSON. A breaking change means a new ``schema_version`` *and* a new
stream name (``...:v2``), so old and new consumers can run side by side during a migration.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from datetime import UTC, date, datetime, timedelta
from typing import Annotated, Any, Literal
from uuid import UUID, uuid4

from pydantic import (
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    TypeAdapter,
    ValidationError,
    field_validator,
    model_validator,
)

SCHEMA_VERSION = 1
CATALOG_STREAM = "marquee:catalog:v1"
"""Versioned stream name: a v2 contract gets a new stream, never a silent change to this one."""
DEAD_LETTER_STREAM = "marquee:catalog:v1:dead"
"""Entries that could not be applied, with the reason; never silently dropped."""
EVENT_FIELD = "event"
"""The one stream-entry field that carries the JSON event."""
REQUEST_ID_FIELD = "request_id"
"""Optional field beside ``event``: the request or run that published it, for tracing."""
UNREADABLE_FIELD = "__unreadable__"
"""Never published: a reader adds it to an entry it could not read as text, saying why (see
``utf8_problem``), and ``decode_event`` refuses the entry with that reason. Replaying a dead
letter drops it."""
MAX_EVENT_BYTES = 64 * 1024
"""Upper bound for one encoded event; larger entries are dead-lettered, not processed."""
MAX_CLOCK_SKEW = timedelta(minutes=5)
"""How far in the future (by the clock of whoever decodes it) an ``occurred_at`` may be. The
newest event wins, so one dated 2099 would silently win over every later correction."""
YEAR_MIN, YEAR_MAX = 1870, 2100
"""Release years a movie may have, given as ``year`` or through ``release_date``."""
IMAGE_PATH = r"^/[A-Za-z0-9_-]{1,100}\.(jpg|jpeg|png|webp|svg)$"
"""A TMDB image path (``/<file>.jpg``): a file name only, so a page can put it in a URL on
the image host it trusts and nothing else."""

Name = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200)]
Keyword = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=100)]
TmdbId = Annotated[int, Field(gt=0, lt=2**31, description="TMDB movie id", examples=[603])]


class Movie(BaseModel):
    """One movie as the catalog knows it. Fields mirror TMDB's, flattened."""

    model_config = ConfigDict(
        extra="forbid", frozen=True, str_strip_whitespace=True, allow_inf_nan=False
    )

    tmdb_id: TmdbId
    title: str = Field(min_length=1, max_length=300, examples=["The Matrix"])
    original_title: str | None = Field(default=None, max_length=300, examples=["The Matrix"])
    overview: str = Field(
        default="",
        max_length=5000,
        description="Plot synopsis; the main text that gets embedded.",
        examples=["A hacker learns that the world he knows is a simulation run by machines."],
    )
    tagline: str | None = Field(default=None, max_length=500)
    genres: list[Name] = Field(
        default_factory=list, max_length=20, examples=[["Action", "Science Fiction"]]
    )
    release_date: date | None = Field(
        default=None, description=f"Its year is {YEAR_MIN}-{YEAR_MAX}.", examples=["1999-03-30"]
    )
    year: int | None = Field(
        default=None,
        ge=YEAR_MIN,
        le=YEAR_MAX,
        description="Release year; derived from release_date.",
    )
    directors: list[Name] = Field(
        default_factory=list, max_length=20, examples=[["Lana Wachowski"]]
    )
    cast: list[Name] = Field(
        default_factory=list,
        max_length=20,
        description="Top-billed cast in billing order.",
        examples=[["Keanu Reeves", "Laurence Fishburne", "Carrie-Anne Moss"]],
    )
    keywords: list[Keyword] = Field(default_factory=list, max_length=50)
    original_language: str | None = Field(
        default=None, pattern=r"^[a-z]{2,3}$", description="ISO 639-1 code as TMDB gives it."
    )
    runtime: int | None = Field(default=None, ge=0, le=1500, description="Minutes.")
    vote_average: float | None = Field(default=None, ge=0, le=10)
    vote_count: int | None = Field(default=None, ge=0)
    popularity: float | None = Field(default=None, ge=0)
    poster_path: str | None = Field(
        default=None,
        pattern=IMAGE_PATH,
        description="TMDB's poster image (2:3), as the path TMDB gives it; pages load it from "
        "TMDB's image host.",
        examples=["/f89U3ADr1oiB1s9GkdPOEpXUk5H.jpg"],
    )
    backdrop_path: str | None = Field(
        default=None,
        pattern=IMAGE_PATH,
        description="TMDB's backdrop image (16:9), as the path TMDB gives it.",
        examples=["/fNG7i7RqMErkcqhohV2a6cV1Ehy.jpg"],
    )

    @field_validator("release_date")
    @classmethod
    def _release_year_in_range(cls, value: date | None) -> date | None:
        # The year derived from it obeys year's bounds: year 1 would reach the index otherwise.
        if value is not None and not YEAR_MIN <= value.year <= YEAR_MAX:
            msg = f"the year of {value.isoformat()} is outside {YEAR_MIN}-{YEAR_MAX}"
            raise ValueError(msg)
        return value

    @model_validator(mode="after")
    def _year_matches_release_date(self) -> Movie:
        if self.release_date is not None:
            if self.year is None:
                # frozen model: set through __dict__ once, during validation only
                self.__dict__["year"] = self.release_date.year
            elif self.year != self.release_date.year:
                msg = f"year {self.year} contradicts release_date {self.release_date.isoformat()}"
                raise ValueError(msg)
        return self

    def text_hash(self) -> str:
        """Hash of the fields the embedding text is built from.

        Vote and popularity figures move daily on TMDB; they must update filters but never
        trigger a re-embedding, so they are not part of this hash.
        """
        return _digest(self.model_dump(mode="json", include=_TEXT_FIELDS))

    def content_hash(self) -> str:
        """Hash of the whole record: equal hashes mean nothing needs to be written."""
        return _digest(self.model_dump(mode="json"))


_TEXT_FIELDS = {
    "title",
    "original_title",
    "overview",
    "tagline",
    "genres",
    "year",
    "directors",
    "cast",
    "keywords",
}


def _digest(data: Mapping[str, Any]) -> str:
    canonical = json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canonical.encode()).hexdigest()[:32]


def _now() -> datetime:
    return datetime.now(UTC)


def _require_type(schema: dict[str, Any]) -> None:
    # `type` has a default so code can build events without repeating it, but on the wire it is
    # the discriminator and must be sent: say so in the JSON schema (and so in OpenAPI).
    required = schema.setdefault("required", [])
    if "type" not in required:
        required.insert(0, "type")


class _CatalogEvent(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, json_schema_extra=_require_type)

    schema_version: Literal[1] = Field(default=1, description="Contract version.")
    event_id: UUID = Field(
        default_factory=uuid4, description="Unique per event; used to trace it through the system."
    )
    occurred_at: AwareDatetime = Field(
        default_factory=_now,
        description="When the publisher observed the change (UTC offset required); at most "
        f"{MAX_CLOCK_SKEW.seconds // 60} minutes in the future.",
    )
    source: str = Field(
        min_length=1,
        max_length=200,
        description="Who published it, e.g. 'tmdb', 'file:movies.csv', 'gateway'.",
        examples=["tmdb"],
    )

    @field_validator("occurred_at")
    @classmethod
    def _not_in_the_future(cls, value: datetime) -> datetime:
        now = _now()
        if value > now + MAX_CLOCK_SKEW:
            msg = (
                f"{value.isoformat()} is in the future (now {now.isoformat(timespec='seconds')},"
                f" {MAX_CLOCK_SKEW.seconds // 60} minutes of clock skew allowed): an event "
                "from the future would win over every later one"
            )
            raise ValueError(msg)
        return value


class MovieFetched(_CatalogEvent):
    """A movie's current state was fetched from a source: create or replace it."""

    type: Literal["movie.fetched"] = "movie.fetched"
    movie: Movie


class MovieDeleted(_CatalogEvent):
    """A movie left the catalog: remove it everywhere."""

    type: Literal["movie.deleted"] = "movie.deleted"
    tmdb_id: TmdbId


CatalogEvent = Annotated[MovieFetched | MovieDeleted, Field(discriminator="type")]
CATALOG_EVENT_ADAPTER: TypeAdapter[MovieFetched | MovieDeleted] = TypeAdapter(CatalogEvent)


class InvalidEventError(ValueError):
    """A stream entry that is not a valid catalog event; ``reason`` says why (for dead letters)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def encode_event(event: MovieFetched | MovieDeleted) -> dict[str, str]:
    """Stream-entry fields for one event (the wire format of the public contract)."""
    return {EVENT_FIELD: event.model_dump_json()}


def decode_event(fields: Mapping[Any, Any]) -> MovieFetched | MovieDeleted:
    """Parse one stream entry's fields into an event, or raise InvalidEventError with a reason."""
    unreadable = fields.get(UNREADABLE_FIELD)
    if unreadable:
        raise InvalidEventError(str(unreadable))
    raw = fields.get(EVENT_FIELD, fields.get(EVENT_FIELD.encode()))
    if raw is None:
        names = sorted(k.decode(errors="replace") if isinstance(k, bytes) else k for k in fields)
        msg = f"entry has no '{EVENT_FIELD}' field (fields: {names})"
        raise InvalidEventError(msg)
    if len(raw) > MAX_EVENT_BYTES:
        msg = f"event is {len(raw)} bytes, above the {MAX_EVENT_BYTES}-byte limit"
        raise InvalidEventError(msg)
    if isinstance(raw, bytes) and (problem := utf8_problem(raw)) is not None:
        raise InvalidEventError(problem)
    try:
        return CATALOG_EVENT_ADAPTER.validate_json(raw)
    except ValidationError as exc:
        raise InvalidEventError(describe_validation_error(exc)) from exc


def utf8_problem(raw: bytes) -> str | None:
    """Why ``raw`` (an ``event`` field as Redis returns it) is not UTF-8, or None if it is.

    The contract's text is UTF-8: invalid bytes are a violation to dead-letter, not something to
    index as U+FFFD. A reader that must turn the entry into text before ``decode_event`` sees it
    (the embedder's) decodes with replacement and puts this reason under ``UNREADABLE_FIELD``.
    """
    try:
        raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        return f"event is not valid UTF-8: byte 0x{raw[exc.start]:02x} at byte {exc.start}"
    return None


def describe_validation_error(exc: ValidationError, limit: int = 5) -> str:
    """A short, human-readable account of what is wrong, e.g. ``movie.year: Input should be...``."""
    parts = []
    for err in exc.errors(include_url=False)[:limit]:
        where = ".".join(str(p) for p in err["loc"]) or "(root)"
        parts.append(f"{where}: {err['msg']}")
    more = exc.error_count() - limit
    if more > 0:
        parts.append(f"... and {more} more")
    return "; ".join(parts)
