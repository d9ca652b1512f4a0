"""Hybrid search against real parts: Chroma written by the real indexer, the changelog on a real
Redis, real search replicas (and the gateway for the public routes)."""

from __future__ import annotations

import pytest

from marquee_search.catalog import CatalogMirror
from marquee_search.sync import IndexSync
from marquee_shared.api import MovieFilters
from marquee_shared.chroma import open_collection
from tests.integration.search.movies import BY_ID, VILLENEUVE
from tests.support.search import (
    CHANGES,
    get,
    ids,
    search_replica,
)
from tests.support.waiting import eventually

pytestmark = pytest.mark.integration

MODES = ("semantic", "keyword", "hybrid")


async def test_a_misspelled_title_is_found_by_keyword_and_hybrid_not_by_dense(stack):
    url = stack["search"] + "/search"
    query = "the shinign"  # a swapped pair of letters: one edit
    assert (await ids(url, q=query, k=3, mode="keyword"))[0] == 694
    assert (await ids(url, q=query, k=3, mode="hybrid"))[0] == 694
    assert 694 not in await ids(url, q=query, k=3, mode="semantic")

    # Whole-title matching puts the exact title first.
    assert (await ids(url, q="the dark knigth", k=1, mode="keyword")) == [155]
    assert (await ids(url, q="the dark knigth", k=1)) == [155]  # hybrid is the default


async def test_a_directors_name_finds_their_films(stack):
    url = stack["gateway"] + "/v1/search"
    for mode in ("keyword", "hybrid"):
        assert set(await ids(url, q="denis villeneuve", k=3, mode=mode)) == VILLENEUVE
    # A misspelt name too.
    assert set(await ids(url, q="dennis villenueve", k=3, mode="keyword")) == VILLENEUVE


async def test_lookups_are_told_from_descriptions(stack):
    url = stack["gateway"] + "/v1/search"
    for q in ("the dark knigth", "denis villeneuve"):
        body = (await get(url, q=q, k=3)).json()
        assert body["query_kind"] == "lookup", q
        assert body["ranker"] == "fusion"
    body = (await get(url, q="a shark terrorizes a beach town", k=3)).json()
    assert body["query_kind"] == "description"
    # Keyword and semantic modes fuse nothing: nothing to tell apart.
    body = (await get(url, q="the dark knigth", k=3, mode="keyword")).json()
    assert body["query_kind"] == "description"


async def test_the_mode_is_reported_and_validated(stack):
    r = await get(stack["gateway"] + "/v1/search", q="shark", mode="keyword")
    assert r.status_code == 200
    assert r.json()["mode"] == "keyword"
    assert (await get(stack["gateway"] + "/v1/search", q="shark")).json()["mode"] == "hybrid"
    r = await get(stack["gateway"] + "/v1/search", q="shark", mode="bm25")
    assert r.status_code == 422
    assert r.json()["detail"][0]["loc"] == ["query", "mode"]


FILTER_CASES = [
    {"genres": "Horror"},
    {"genres": "Music,Animation", "year_min": 1990},
    {"year_min": 1975, "year_max": 1985},
    {"min_rating": 8.0},
    {"min_votes": 5000},
    {"language": "fr"},
    {"genres": "Science Fiction", "min_rating": 7.5, "year_max": 2000},
]


def _passes(movie_id: int, case: dict[str, object]) -> bool:
    movie = BY_ID[movie_id]
    filters = MovieFilters.model_validate(case)
    genres_ok = not filters.genres or bool(set(filters.genres) & set(movie.genres))
    year = movie.year or 0
    return (
        genres_ok
        and (filters.year_min is None or year >= filters.year_min)
        and (filters.year_max is None or year <= filters.year_max)
        and (filters.min_rating is None or (movie.vote_average or 0) >= filters.min_rating)
        and (filters.min_votes is None or (movie.vote_count or 0) >= filters.min_votes)
        and (filters.language is None or movie.original_language == filters.language)
    )


@pytest.mark.parametrize("mode", MODES)
async def test_filters_hold_in_every_mode(stack, mode):
    url = stack["gateway"] + "/v1/search"
    for case in FILTER_CASES:
        for q in ("a story about love and fear", "kubrick", "the sound of music"):
            found = await ids(url, q=q, k=20, mode=mode, **case)
            assert all(_passes(i, case) for i in found), (case, q, found)
        # Every passing movie comes back when the dense side is asked for them all.
        if mode == "semantic":
            expected = {m for m in BY_ID if _passes(m, case)}
            assert set(await ids(url, q="a film", k=100, mode=mode, **case)) == expected, case


async def test_new_changed_and_deleted_movies_reach_both_replicas_without_restart(
    redis_url, chroma_url, collection_name, encoder, catalog
):
    from marquee_shared.events import Movie

    new = Movie(
        tmdb_id=4242,
        title="Zorblax the Unfathomable",
        year=2024,
        genres=["Comedy"],
        overview="A bureaucrat from Neptune audits Earth's paperwork.",
        directors=["Quintessa Marlowe"],
    )
    async with (
        search_replica(redis_url, chroma_url, collection_name, encoder) as one,
        search_replica(redis_url, chroma_url, collection_name, encoder) as two,
    ):
        replicas = [one + "/search", two + "/search"]
        for url in replicas:
            assert 4242 not in await ids(url, q="zorblax", mode="keyword")

        await catalog.put([new])

        async def both_find(q: str, expected: int | None) -> None:
            for url in replicas:
                found = await ids(url, q=q, k=1, mode="keyword")
                assert found == ([] if expected is None else [expected]), (url, q, found)

        await eventually(lambda: both_find("zorblax", 4242))
        await eventually(lambda: both_find("quintessa marlowe", 4242))

        renamed = new.model_copy(update={"title": "Glimmerhorn Returns"})
        await catalog.put([renamed])
        await eventually(lambda: both_find("glimmerhorn", 4242))
        await both_find("zorblax", None)
        await both_find("quintessa", 4242)  # unchanged fields still match

        await catalog.delete(4242)
        await eventually(lambda: both_find("glimmerhorn", None))
        await both_find("quintessa", None)
        for url in replicas:  # and in hybrid mode, whose dense side reads the mirrored vectors
            assert 4242 not in await ids(url, q="glimmerhorn returns", k=5)


async def test_readiness_reports_the_keyword_index(stack):
    r = await get(stack["search"] + "/ready")
    assert r.status_code == 200
    assert r.json()["checks"]["keyword_index"] == "ok"


async def test_a_replica_that_fell_off_the_changelog_rebuilds_from_chroma(
    chroma_url, collection_name, redis, catalog
):
    import httpx

    _, collection = await open_collection(httpx.URL(chroma_url), collection_name)  # type: ignore[arg-type]
    sync = IndexSync(collection, redis, CHANGES, block_ms=10, batch=2)
    mirror, position, consumed = await sync.load()
    sync.mirror, sync.position, sync.consumed = mirror, position, consumed
    assert 155 in mirror

    # Deleted in Chroma and announced, but the changelog is trimmed before the replica reads
    # it: the announcement is lost, and only a rebuild can notice the deletion.
    await catalog.delete(155)
    await redis.xadd(CHANGES, {"tmdb_id": "1", "content_hash": "x"})
    await redis.xtrim(CHANGES, maxlen=1, approximate=False)
    await sync.poll()
    assert sync.rebuilds == 1
    assert sync.mirror is not mirror
    assert isinstance(sync.mirror, CatalogMirror)
    assert 155 not in sync.mirror

    # Caught up: later changes apply one by one, without another rebuild.
    await catalog.delete(77)
    while await sync.poll():
        pass
    assert sync.rebuilds == 1
    assert 77 not in sync.mirror


async def test_every_dense_path_agrees(chroma_url, collection_name, redis, catalog, encoder):
    """Exact search over the mirrored vectors, Chroma with over-fetch-and-filter (broad
    filters) and Chroma's where (selective ones) must return the same movies: force each path
    on every filter case."""
    import httpx

    from marquee_search.engine import FilterPolicy, SearchEngine, Tuning

    _, collection = await open_collection(httpx.URL(chroma_url), collection_name)  # type: ignore[arg-type]
    sync = IndexSync(collection, redis, CHANGES)
    sync.mirror, sync.position, sync.consumed = await sync.load()
    python = SearchEngine(collection, encoder, 16, sync, Tuning(filters=FilterPolicy(0.0)))
    where = SearchEngine(collection, encoder, 16, sync, Tuning(filters=FilterPolicy(2.0)))
    with_vectors = IndexSync(collection, redis, CHANGES, vectors=True)
    with_vectors.mirror, _, _ = await with_vectors.load()
    assert with_vectors.mirror.vectors_complete()
    exact = SearchEngine(collection, encoder, 16, with_vectors, exact_max_movies=10_000)
    vector = await python.embed_query("a frightening night in an isolated place")
    for case in FILTER_CASES:
        filters = MovieFilters.model_validate(case)
        by_python = [n.tmdb_id for n in await python.nearest(vector, 5, filters)]
        by_where = [n.tmdb_id for n in await where.nearest(vector, 5, filters)]
        in_memory = await exact.nearest(vector, 5, filters)
        assert by_python == by_where, case
        assert [n.tmdb_id for n in in_memory] == by_python, case
        # Its result rows come from the mirror, not from a read of the records in Chroma.
        rows = await exact.similar_text("a frightening night in an isolated place", 5, filters)
        assert [(h.tmdb_id, h.score) for h in rows] == [
            (n.tmdb_id, round(n.similarity, 4)) for n in in_memory
        ]
        assert all(h.title and h.overview for h in rows)
        assert all(_passes(i, case) for i in by_python)
        six = [n.tmdb_id for n in await python.nearest(vector, 6, filters)]
        # Excluding the first (as recommendations exclude seen movies) gives the next ones.
        fewer = await python.nearest(vector, 5, filters, exclude=frozenset(six[:1]), vectors=True)
        assert [n.tmdb_id for n in fewer] == six[1:6]
        assert all(n.vector is not None for n in fewer)
