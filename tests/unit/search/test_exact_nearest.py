"""Exact dense search over the mirror's vectors: brute force agrees, filters mask, deletes and
updates take effect, and a mirror missing any vector says so (the engine then asks Chroma)."""

from __future__ import annotations

import numpy as np
import pytest

from marquee_search.catalog import CatalogMirror
from marquee_shared.api import MovieFilters
from marquee_shared.events import Movie

RNG = np.random.default_rng(7)
DIM = 16


def movies(n: int) -> list[Movie]:
    genres = ["Horror", "Comedy", "Drama"]
    return [
        Movie(tmdb_id=i, title=f"Movie {i}", year=1950 + i % 70, genres=[genres[i % 3]])
        for i in range(1, n + 1)
    ]


def unit(v: np.ndarray) -> np.ndarray:
    return v / np.linalg.norm(v, axis=-1, keepdims=True)


@pytest.fixture
def loaded() -> tuple[CatalogMirror, list[Movie], np.ndarray]:
    ms = movies(300)
    vectors = RNG.normal(size=(len(ms), DIM)).astype(np.float32)
    # capacity 8 forces the vector matrix to grow with the rows
    mirror = CatalogMirror(capacity=8)
    mirror.bulk_load((m, m.content_hash(), v) for m, v in zip(ms, vectors, strict=True))
    return mirror, ms, vectors


def brute_force(ms: list[Movie], vectors: np.ndarray, q: np.ndarray, n: int) -> list[int]:
    sims = unit(vectors) @ unit(q)
    return [ms[i].tmdb_id for i in np.argsort(-sims, kind="stable")[:n]]


def test_exact_top_n_equals_brute_force_cosine(loaded) -> None:
    mirror, ms, vectors = loaded
    assert mirror.vectors_complete()
    for _ in range(5):
        q = RNG.normal(size=DIM).astype(np.float32)
        got = mirror.nearest(q * 3.0, 10)  # any length: cosine, not dot product
        assert [i for i, _ in got] == brute_force(ms, vectors, q, 10)
        sims = [s for _, s in got]
        assert sims == sorted(sims, reverse=True)
        assert all(-1.0 <= s <= 1.0 + 1e-6 for s in sims)


def test_filters_are_a_mask(loaded) -> None:
    mirror, ms, vectors = loaded
    filters = MovieFilters(genres=["Horror"], year_min=1990)
    q = RNG.normal(size=DIM).astype(np.float32)
    got = [i for i, _ in mirror.nearest(q, 10, mirror.mask(filters))]
    passing = [k for k, m in enumerate(ms) if m.genres == ["Horror"] and (m.year or 0) >= 1990]
    expected = brute_force([ms[k] for k in passing], vectors[passing], q, 10)
    assert got == expected
    assert mirror.nearest(q, 10, mirror.mask(MovieFilters(year_min=2090))) == []


def test_deletes_and_updates_take_effect(loaded) -> None:
    mirror, ms, vectors = loaded
    q = vectors[41]  # movie 42's own vector: itself first
    assert mirror.nearest(q, 1)[0][0] == 42
    mirror.delete(42)
    assert 42 not in [i for i, _ in mirror.nearest(q, 300)]
    mirror.upsert(ms[41], "new-hash", -q)  # back, pointing the other way: last
    assert mirror.nearest(q, 300)[-1][0] == 42
    assert len(mirror.nearest(q, 1000)) == 300


def test_a_movie_without_its_vector_makes_the_mirror_incomplete(loaded) -> None:
    mirror, _, _ = loaded
    mirror.upsert(Movie(tmdb_id=999, title="No vector yet"), "h")
    assert not mirror.vectors_complete()
    mirror.delete(999)
    assert mirror.vectors_complete()
    assert not CatalogMirror().vectors_complete()  # nothing mirrored at all


def test_result_rows_follow_upserts_and_deletes(loaded) -> None:
    """Hits are answered from the mirror: an update shows at once, a delete removes the row."""
    mirror, ms, _ = loaded
    hit = mirror.hit(5, 0.123456)
    assert hit is not None
    assert (hit.tmdb_id, hit.title, hit.genres, hit.score) == (5, "Movie 5", ["Drama"], 0.1235)
    assert mirror.hit(5, 0.9) is not None and mirror.hit(5, 0.1) is not None
    assert mirror.hit(5, 0.5).score == 0.5  # a copy per call: scores never leak between hits

    renamed = ms[4].model_copy(update={"title": "Movie Five", "overview": "Now with a plot."})
    mirror.upsert(renamed, renamed.content_hash())
    updated = mirror.hit(5, 1.0)
    assert updated is not None and (updated.title, updated.overview) == (
        "Movie Five",
        "Now with a plot.",
    )

    assert mirror.delete(5)
    assert mirror.hit(5, 1.0) is None
    assert mirror.hit(10_000, 1.0) is None  # never held
