"""What every source yields per record: a valid Movie, or a report saying why there is none."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, NamedTuple

from pydantic import ValidationError

from marquee_shared.events import Movie, describe_validation_error

if TYPE_CHECKING:
    from collections.abc import Iterable, Mapping


class InvalidRecord(NamedTuple):
    """A record that cannot become a Movie; never published, always reported."""

    where: str
    """Where to look, e.g. ``movies.csv:1234 (tmdb_id 603)`` or ``tmdb:603``."""
    reason: str


class SkippedRecord(NamedTuple):
    """A record deliberately not published (e.g. the movie is gone from TMDB)."""

    where: str
    reason: str


Record = Movie | InvalidRecord | SkippedRecord

LIST_FIELDS = ("genres", "directors", "cast", "keywords")


def _max_length(field: str) -> int:
    for meta in Movie.model_fields[field].metadata:
        limit = getattr(meta, "max_length", None)
        if isinstance(limit, int):
            return limit
    raise LookupError(f"Movie.{field} has no max_length")  # pragma: no cover - contract change


LIST_CAPS: Mapping[str, int] = {field: _max_length(field) for field in LIST_FIELDS}
"""The contract's list limits. External sources are cut down to them rather than rejected: an
anthology with 36 directors is still a movie, and the first names are the top-billed ones."""


def clean_names(names: Iterable[object]) -> list[str]:
    """Non-blank strings, stripped, first occurrence kept, original order."""
    seen: dict[str, None] = {}
    for name in names:
        if isinstance(name, str) and (stripped := name.strip()):
            seen.setdefault(stripped, None)
    return list(seen)


def build_movie(fields: dict[str, Any], where: str) -> Movie | InvalidRecord:
    """Validate fields mapped from an external source, capping lists to the contract limits.

    Unknown (None) values are left out: the defaults apply, and a missing required field is
    reported as "Field required" rather than as a type error about None.
    """
    fields = {key: value for key, value in fields.items() if value is not None}
    for field, cap in LIST_CAPS.items():
        value = fields.get(field)
        if isinstance(value, list) and len(value) > cap:
            fields[field] = value[:cap]
    try:
        return Movie.model_validate(fields)
    except ValidationError as exc:
        return InvalidRecord(where, describe_validation_error(exc))
