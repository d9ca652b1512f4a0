"""TMDB's movie JSON (``/movie/{id}?append_to_response=credits,keywords``) mapped to the
catalog's ``Movie``: pure functions, no HTTP (the client is ``tmdb.py``)."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from marquee_ingest.records import TOP_CAST, InvalidRecord, build_movie, clean_names
from marquee_shared.events import Movie


def _names(items: object, key: str = "name") -> list[str]:
    if not isinstance(items, list):
        return []
    return clean_names(item.get(key) for item in items if isinstance(item, dict))


def _section(data: Mapping[str, Any], key: str) -> Mapping[str, Any]:
    value = data.get(key)
    return value if isinstance(value, Mapping) else {}


def _billing_order(member: Mapping[str, Any]) -> float:
    order = member.get("order")
    # Members without an order go last instead of failing the whole record.
    return float(order) if isinstance(order, int | float) else math.inf


def movie_fields_from_tmdb(data: Mapping[str, Any]) -> dict[str, Any]:
    """Map TMDB's ``/movie/{id}?append_to_response=credits,keywords`` JSON to Movie fields.

    Absent or unexpectedly shaped parts map to "unknown", never to an exception: validation of
    the result (``build_movie``) is the one place that decides whether the record is usable.
    """
    people = _section(data, "credits")
    crew = people.get("crew")
    cast = people.get("cast")
    cast_members = sorted(
        (m for m in cast if isinstance(m, dict)) if isinstance(cast, list) else [],
        key=_billing_order,
    )
    directors = (
        [m for m in crew if isinstance(m, dict) and m.get("job") == "Director"]
        if isinstance(crew, list)
        else []
    )
    vote_count = data.get("vote_count")
    fields: dict[str, Any] = {
        "tmdb_id": data.get("id"),
        "title": data.get("title"),
        "original_title": data.get("original_title") or None,
        "overview": data.get("overview") or "",
        # TMDB sends "" for "no tagline" / "no date" and 0 for "runtime unknown".
        "tagline": data.get("tagline") or None,
        "genres": _names(data.get("genres")),
        "release_date": data.get("release_date") or None,
        "directors": _names(directors),
        "cast": _names(cast_members)[:TOP_CAST],
        "keywords": _names(_section(data, "keywords").get("keywords")),
        "original_language": data.get("original_language") or None,
        "runtime": data.get("runtime") or None,
        # An average of no votes is TMDB's 0.0 placeholder, not a rating of zero.
        "vote_average": None if vote_count == 0 else data.get("vote_average"),
        "vote_count": vote_count,
        "popularity": data.get("popularity"),
        "poster_path": data.get("poster_path") or None,
        "backdrop_path": data.get("backdrop_path") or None,
    }
    return fields


def movie_from_tmdb(data: Mapping[str, Any], where: str | None = None) -> Movie | InvalidRecord:
    """A Movie from TMDB's details JSON, or the reason it is not one."""
    return build_movie(movie_fields_from_tmdb(data), where or f"tmdb:{data.get('id')}")
