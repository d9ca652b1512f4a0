"""The layout of a movie record in the Chroma collection: the contract between the embedder
(which writes records) and the services that read them (search, explainer).

Chroma metadata values are scalars (no lists, no nulls), so list fields are stored twice: joined
with ``|`` for display, and genres additionally as one boolean key per genre for ``where``
filters. The full movie is kept as JSON so readers get every field back without a second store.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import datetime

import structlog
from pydantic import ValidationError

from marquee_shared.events import Movie, describe_validation_error

Metadata = dict[str, str | int | float | bool]

log = structlog.get_logger(__name__)

GENRE_PREFIX = "genre_"


def record_id(tmdb_id: int) -> str:
    return str(tmdb_id)


def genre_key(genre: str) -> str:
    """Metadata key flagging a genre, e.g. ``Science Fiction`` -> ``genre_science_fiction``."""
    return GENRE_PREFIX + re.sub(r"[^a-z0-9]+", "_", genre.lower()).strip("_")


def movie_document(movie: Movie) -> str:
    """Natural-language text that is embedded (and stored as the record's document).

    Title and year first, then what the film is about, then who made it: sentence-transformers
    truncates at 256 word pieces, so the plot must come before the long tail of names.
    """
    head = movie.title if movie.year is None else f"{movie.title} ({movie.year})"
    parts = [head + "."]
    if movie.original_title and movie.original_title != movie.title:
        parts.append(f"Original title: {movie.original_title}.")
    if movie.tagline:
        parts.append(movie.tagline.rstrip(".") + ".")
    if movie.overview:
        parts.append(movie.overview)
    if movie.genres:
        parts.append("Genres: " + ", ".join(movie.genres) + ".")
    if movie.directors:
        parts.append("Directed by " + ", ".join(movie.directors) + ".")
    if movie.cast:
        parts.append("Starring " + ", ".join(movie.cast[:5]) + ".")
    if movie.keywords:
        parts.append("Keywords: " + ", ".join(movie.keywords[:15]) + ".")
    return " ".join(parts)


def movie_metadata(movie: Movie, *, occurred_at: datetime) -> Metadata:
    md: Metadata = {
        "tmdb_id": movie.tmdb_id,
        "title": movie.title,
        "genres": "|".join(movie.genres),
        "directors": "|".join(movie.directors),
        "cast": "|".join(movie.cast[:5]),
        "content_hash": movie.content_hash(),
        "text_hash": movie.text_hash(),
        # Event time of the version stored, so an older event never overwrites a newer one.
        "occurred_at": occurred_at.timestamp(),
        "movie": movie.model_dump_json(),
    }
    optional: Mapping[str, str | int | float | None] = {
        "year": movie.year,
        "original_language": movie.original_language,
        "vote_average": movie.vote_average,
        "vote_count": movie.vote_count,
        "popularity": movie.popularity,
    }
    md.update({k: v for k, v in optional.items() if v is not None})
    for genre in movie.genres:
        md[genre_key(genre)] = True
    return md


def movie_from_metadata(md: Mapping[str, object]) -> Movie:
    raw = md.get("movie")
    if not isinstance(raw, str):
        msg = "record has no 'movie' metadata: it was not written by the Marquee embedder"
        raise ValueError(msg)  # noqa: TRY004 - bad data in the index, not a caller's type error
    return Movie.model_validate_json(raw)


def readable_movie(md: Mapping[str, object]) -> Movie | None:
    """The record's movie, or None (logged) when it does not pass today's contract: written
    by another program, or before a rule was added (a year of 1 before years were bounded).
    Readers skip such a record; they must not fail every request that meets it."""
    try:
        return movie_from_metadata(md)
    except ValueError as exc:  # pydantic's ValidationError is a ValueError
        reason = describe_validation_error(exc) if isinstance(exc, ValidationError) else str(exc)
        log.warning("stored_record_unreadable", tmdb_id=md.get("tmdb_id"), reason=reason[:300])
        return None
