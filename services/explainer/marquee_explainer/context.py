"""What one explanation may speak of: the target, the taste's movies (or the movies a query
names) and the facts computed from them. Nothing outside a context reaches the prompt, and the
validator rejects any text that strays outside it."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property
from typing import Literal

from marquee_explainer.catalog import MovieRecord, cosine
from marquee_explainer.facts import (
    Neighbour,
    query_confidence,
    query_facts,
    shared_facts,
    taste_confidence,
)
from marquee_explainer.titles import TitleIndex
from marquee_shared.api import TMDB_GENRES, Confidence, Fact, NearMovie
from marquee_shared.events import Movie


@dataclass(frozen=True)
class ExplainContext:
    kind: Literal["taste", "search_hit"]
    target: Movie
    taste_block: list[Movie]
    """Liked movies in a stable order: the prompt's cached block, the same for every target."""
    neighbours: list[Neighbour]
    """The liked movies nearest the target (nearest first), or the movies a query names."""
    facts: list[Fact]
    confidence: Confidence
    query: str | None = None

    @cached_property
    def movies(self) -> dict[int, Movie]:
        found = {self.target.tmdb_id: self.target}
        for movie in [*self.taste_block, *(n.movie for n in self.neighbours)]:
            found.setdefault(movie.tmdb_id, movie)
        return found

    def label(self, tmdb_id: int) -> str:
        movie = self.movies[tmdb_id]
        return movie.title if movie.year is None else f"{movie.title} ({movie.year})"

    @cached_property
    def corpus(self) -> str:
        """Every string of the context, as written: a word found here is the data's, not an
        invention (names, places, genres, keywords, words of the overviews, the query)."""
        parts: list[str] = list(TMDB_GENRES)
        for m in self.movies.values():
            parts.extend([m.title, m.original_title or "", m.overview, m.tagline or ""])
            parts.extend([*m.directors, *m.cast, *m.keywords, *m.genres])
        if self.query:
            parts.append(self.query)
        return "\n".join(parts)

    def nearest_liked(self) -> list[NearMovie]:
        if self.kind != "taste":
            return []
        return [
            NearMovie(
                tmdb_id=n.movie.tmdb_id, title=n.movie.title, similarity=round(n.similarity, 4)
            )
            for n in self.neighbours
        ]


def taste_context(
    target: MovieRecord,
    liked: Sequence[MovieRecord],
    disliked: Sequence[MovieRecord],
    index: TitleIndex,
    *,
    nearest: int,
    taste_block: int,
) -> ExplainContext:
    ranked = sorted(
        (Neighbour(r.movie, cosine(target.vector, r.vector)) for r in liked),
        key=lambda n: (-n.similarity, n.movie.tmdb_id),
    )
    neighbours = ranked[:nearest]
    block = [r.movie for r in liked[:taste_block]]
    others = list({m.tmdb_id: m for m in [*block, *(n.movie for n in neighbours)]}.values())
    facts = shared_facts(target.movie, others, index)
    disliked_best = max((cosine(target.vector, r.vector) for r in disliked), default=None)
    return ExplainContext(
        kind="taste",
        target=target.movie,
        taste_block=block,
        neighbours=neighbours,
        facts=facts,
        confidence=taste_confidence(facts, neighbours, disliked_best),
    )


def search_hit_context(
    query: str, target: MovieRecord, named: Sequence[MovieRecord], index: TitleIndex
) -> ExplainContext:
    neighbours = [Neighbour(r.movie, cosine(target.vector, r.vector)) for r in named]
    facts = query_facts(query, target.movie, [n.movie for n in neighbours], index)
    return ExplainContext(
        kind="search_hit",
        target=target.movie,
        taste_block=[],
        neighbours=neighbours,
        facts=facts,
        confidence=query_confidence(query, facts),
        query=query,
    )
