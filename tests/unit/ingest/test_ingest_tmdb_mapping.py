"""TMDB details JSON -> Movie, and the Retry-After parser."""

from __future__ import annotations

from datetime import UTC, date, datetime

import pytest

from marquee_ingest.records import InvalidRecord
from marquee_ingest.tmdb import parse_retry_after
from marquee_ingest.tmdb_mapping import movie_fields_from_tmdb, movie_from_tmdb
from marquee_shared.events import Movie
from tests.fakes.tmdb import tmdb_movie


def test_full_record() -> None:
    movie = movie_from_tmdb(tmdb_movie(603, "The Matrix"))

    assert movie == Movie(
        tmdb_id=603,
        title="The Matrix",
        original_title="The Matrix",
        overview="The story of The Matrix.",
        tagline="Welcome to the Real World.",
        genres=["Action", "Science Fiction"],
        release_date=date(1999, 3, 30),
        year=1999,
        directors=["Lilly Wachowski", "Lana Wachowski"],
        cast=["Keanu Reeves", "Laurence Fishburne", "Carrie-Anne Moss"],
        keywords=["saving the world", "artificial intelligence"],
        original_language="en",
        runtime=136,
        vote_average=8.2,
        vote_count=26000,
        popularity=12.5,
        # Kept for the page, which shows TMDB's images (issue 15, item 11).
        poster_path="/poster603.jpg",
        backdrop_path="/backdrop603.jpg",
    )


def test_empty_strings_and_zeros_mean_unknown() -> None:
    movie = movie_from_tmdb(
        tmdb_movie(
            1,
            "Unreleased",
            release_date="",
            tagline="",
            runtime=0,
            vote_count=0,
            vote_average=0.0,
            original_language="",
            overview=None,
            poster_path=None,  # TMDB's "no image"
            backdrop_path="",
        )
    )

    assert isinstance(movie, Movie)
    assert movie.release_date is None
    assert movie.year is None
    assert movie.tagline is None
    assert movie.runtime is None
    assert movie.vote_average is None  # no votes: TMDB's 0.0 is a placeholder
    assert movie.vote_count == 0
    assert movie.original_language is None
    assert movie.overview == ""
    assert movie.poster_path is None
    assert movie.backdrop_path is None


def test_cast_in_billing_order_top_five_and_directors_only() -> None:
    cast = [
        {"name": n, "order": o}
        for n, o in [("E", 4), ("A", 0), ("F", 5), ("C", 2), ("B", 1), ("D", 3), ("X", None)]
    ]
    crew = [
        {"name": "Dir One", "job": "Director"},
        {"name": "Writer", "job": "Screenplay"},
        {"name": "Dir One", "job": "Director"},  # listed twice by TMDB now and then
        {"name": "Dir Two", "job": "Director"},
    ]
    fields = movie_fields_from_tmdb(tmdb_movie(1, "T", credits={"cast": cast, "crew": crew}))

    assert fields["cast"] == ["A", "B", "C", "D", "E"]
    assert fields["directors"] == ["Dir One", "Dir Two"]


def test_missing_credits_and_keywords_give_empty_lists() -> None:
    movie = movie_from_tmdb(tmdb_movie(1, "Bare", drop=("credits", "keywords", "genres")))

    assert isinstance(movie, Movie)
    assert (movie.directors, movie.cast, movie.keywords, movie.genres) == ([], [], [], [])


def test_oddly_shaped_parts_are_ignored_not_fatal() -> None:
    data = tmdb_movie(
        1,
        "Odd",
        genres="Drama",
        credits={"cast": "nobody", "crew": None},
        keywords=[{"name": "flat"}],
    )

    movie = movie_from_tmdb(data)

    assert isinstance(movie, Movie)
    assert movie.genres == []


def test_lists_beyond_the_contract_are_cut_not_rejected() -> None:
    crew = [{"name": f"Director {i}", "job": "Director"} for i in range(36)]
    keywords = {"keywords": [{"name": f"kw {i}"} for i in range(80)]}

    movie = movie_from_tmdb(tmdb_movie(1, "Anthology", credits={"crew": crew}, keywords=keywords))

    assert isinstance(movie, Movie)
    assert movie.directors == [f"Director {i}" for i in range(20)]
    assert len(movie.keywords) == 50


@pytest.mark.parametrize(
    ("title", "overrides", "reason"),
    [
        ("Bad", {"drop": ("title",)}, "title: Field required"),
        ("", {}, "title: String should have at least 1 character"),
        ("Bad", {"vote_average": 42}, "vote_average: Input should be less than or equal to 10"),
        ("Bad", {"release_date": "someday"}, "release_date: Input should be a valid date"),
        ("Bad", {"id": -4}, "tmdb_id: Input should be greater than 0"),
    ],
)
def test_invalid_records_say_why(title: str, overrides: dict[str, object], reason: str) -> None:
    result = movie_from_tmdb(tmdb_movie(9, title, **overrides), where="tmdb:9")

    assert isinstance(result, InvalidRecord)
    assert result.where == "tmdb:9"
    assert reason in result.reason


@pytest.mark.parametrize(
    ("header", "seconds"),
    [
        ("3", 3.0),
        ("0.5", 0.5),
        ("-2", 0.0),
        ("Sun, 22 Nov 2026 10:00:30 GMT", 30.0),
        ("soon", None),
        (None, None),
        ("", None),
        ("nan", None),
    ],
)
def test_parse_retry_after(header: str | None, seconds: float | None) -> None:
    now = datetime(2026, 11, 22, 10, 0, 0, tzinfo=UTC)

    assert parse_retry_after(header, now=now) == seconds
