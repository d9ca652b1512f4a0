"""What every source yields per record: a valid Movie, or a report saying why there is none."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, NamedTuple

import ftfy
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


class Repair(NamedTuple):
    """A record whose text was repaired before it became a Movie (see ``repair_mojibake``)."""

    where: str
    fields: tuple[str, ...]
    """The fields that were repaired, e.g. ``("title", "cast")``."""


Record = Movie | InvalidRecord | SkippedRecord

TEXT_FIELDS = ("title", "original_title", "overview", "tagline")
LIST_FIELDS = ("genres", "directors", "cast", "keywords")
TOP_CAST = 5
"""Cast members kept per movie (billing order), whatever the source."""


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


def repair_mojibake(fields: Mapping[str, Any]) -> tuple[dict[str, Any], tuple[str, ...]]:
    """The fields with text that is evidently UTF-8 once decoded as cp1252 or Latin-1 (mojibake:
    ``BjÃ¶rk``, ``Californiaâ€™s``) decoded right, and the names of the fields that changed.

    ftfy's encoding fixes only (``ftfy.fix_encoding``): it changes a string only where the
    bytes make a far likelier text, and leaves the rest alone, curly quotes included. Catalog
    files in the wild carry it: 1,870 rows of the shared catalog did (Kaggle's TMDB 5000
    among its sources).
    """
    repaired = dict(fields)
    changed: list[str] = []
    for field in (*TEXT_FIELDS, *LIST_FIELDS):
        value = fields.get(field)
        if isinstance(value, str):
            fixed: object = _fix(value)
        elif isinstance(value, list):
            fixed = [_fix(v) if isinstance(v, str) else v for v in value]
        else:
            continue
        if fixed != value:
            repaired[field] = fixed
            changed.append(field)
    return repaired, tuple(changed)


def _fix(text: str) -> str:
    return text if text.isascii() else ftfy.fix_encoding(text)


def build_file_movie(
    fields: dict[str, Any], where: str, repairs: list[Repair] | None = None
) -> Movie | InvalidRecord:
    """``build_movie`` for a catalog file's record, its mojibake repaired first; a repaired
    movie is noted in ``repairs`` (the run's summary counts them)."""
    fields, repaired = repair_mojibake(fields)
    movie = build_movie(fields, where)
    if repaired and repairs is not None and isinstance(movie, Movie):
        repairs.append(Repair(where, repaired))
    return movie


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
