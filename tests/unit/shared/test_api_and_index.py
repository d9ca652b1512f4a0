"""Request models shared by gateway and search, the index record layout, and the filters."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from pydantic import ValidationError

from marquee_search.engine import build_where
from marquee_shared.api import MovieFilters, SearchParams
from marquee_shared.events import Movie
from marquee_shared.index import genre_key, movie_document, movie_from_metadata, movie_metadata


def test_genres_accept_commas_any_case_and_reject_unknown_names():
    assert MovieFilters(genres=["science fiction, HORROR"]).genres == ["Science Fiction", "Horror"]
    with pytest.raises(ValidationError, match="unknown genre"):
        MovieFilters(genres=["Horor"])


def test_year_range_and_query_are_checked():
    with pytest.raises(ValidationError, match="year_min"):
        MovieFilters(year_min=2000, year_max=1990)
    with pytest.raises(ValidationError):
        SearchParams(q="   ")
    with pytest.raises(ValidationError):
        SearchParams(q="x", k=101)
    assert SearchParams(q="  jaws  ").q == "jaws"


def test_where_clause_for_filters():
    assert build_where(MovieFilters()) is None
    assert build_where(MovieFilters(genres=["Horror"])) == {"genre_horror": True}
    assert build_where(
        MovieFilters(genres=["Horror", "Comedy"], year_min=1980, min_rating=7, language="en")
    ) == {
        "$and": [
            {"$or": [{"genre_horror": True}, {"genre_comedy": True}]},
            {"year": {"$gte": 1980}},
            {"vote_average": {"$gte": 7}},
            {"original_language": "en"},
        ]
    }


def test_metadata_round_trips_the_movie_and_holds_only_scalars():
    movie = Movie(
        tmdb_id=9,
        title="Alien",
        year=1979,
        genres=["Horror", "Science Fiction"],
        directors=["Ridley Scott"],
        cast=["Sigourney Weaver"],
        vote_average=8.1,
    )
    md = movie_metadata(movie, occurred_at=datetime.now(UTC))
    assert all(isinstance(v, str | int | float | bool) for v in md.values())
    assert md[genre_key("Science Fiction")] is True
    assert "runtime" not in md  # Chroma metadata holds no nulls
    assert movie_from_metadata(md) == movie


def test_document_puts_the_plot_before_the_names():
    movie = Movie(
        tmdb_id=9,
        title="Alien",
        year=1979,
        overview="A creature stalks a crew.",
        directors=["Ridley Scott"],
        cast=["Sigourney Weaver"],
        genres=["Horror"],
    )
    doc = movie_document(movie)
    assert doc.startswith("Alien (1979).")
    assert doc.index("creature") < doc.index("Ridley Scott") < doc.index("Sigourney Weaver")
