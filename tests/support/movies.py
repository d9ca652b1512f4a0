"""Movies and catalog events for tests: one factory, and the few films many tests share."""

from __future__ import annotations

from typing import Any

from marquee_shared.events import Movie, MovieFetched


def movie(tmdb_id: int, title: str | None = None, year: int | None = None, **fields: Any) -> Movie:
    """A catalog movie; ``title`` defaults to "Movie <id>", the rest are ``Movie``'s fields."""
    return Movie(tmdb_id=tmdb_id, title=title or f"Movie {tmdb_id}", year=year, **fields)


def numbered(n: int, start: int = 10_000) -> list[Movie]:
    """``n`` distinct movies with ids from ``start``: a batch whose content does not matter."""
    return [
        movie(
            start + i,
            f"Film {i}",
            1990 + i % 30,
            overview=f"Story number {i} about a lighthouse keeper.",
        )
        for i in range(n)
    ]


def fetched(film: Movie, **fields: Any) -> MovieFetched:
    """The catalog event that adds or updates ``film``."""
    return MovieFetched(source="test", movie=film, **fields)


JAWS = movie(
    578,
    "Jaws",
    release_date="1975-06-18",
    overview="A police chief hunts a great white shark that is eating swimmers off his island.",
    genres=["Horror", "Thriller"],
    directors=["Steven Spielberg"],
    cast=["Roy Scheider", "Robert Shaw", "Richard Dreyfuss"],
    vote_average=7.7,
    vote_count=9000,
    original_language="en",
)
MATRIX = movie(
    603,
    "The Matrix",
    1999,
    overview="A hacker learns his world is a simulation built by machines and joins the rebels.",
    genres=["Action", "Science Fiction"],
)
