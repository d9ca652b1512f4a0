"""Reciprocal rank fusion, clustering, allocation and MMR, on small hand-made vectors."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from marquee_search.hybrid import FusionParams, convex_fusion, fuse, reciprocal_rank_fusion
from marquee_search.taste import (
    Taste,
    TasteParams,
    allocate,
    build_tastes,
    cluster,
    mmr_select,
    normalise,
    recommend,
)
from marquee_shared.api import MovieFilters


def test_rrf_rewards_agreement_and_is_deterministic():
    fused = reciprocal_rank_fusion([[1, 2, 3], [3, 4, 1]], [1.0, 1.0], k=60)
    assert [i for i, _ in fused] == [1, 3, 2, 4]
    assert fused[0][1] == pytest.approx(1 / 61 + 1 / 63)
    # Ties (2 and 4 share ranks) go to the first list, then to the smaller id.
    assert reciprocal_rank_fusion([[5], [6]], [1.0, 1.0])[0][0] == 5


def test_rrf_weights_and_depth():
    dense, keyword = [(1, 0.9), (2, 0.8), (3, 0.7)], [(3, 20.0), (2, 10.0), (1, 5.0)]
    rrf = FusionParams(method="rrf")
    assert fuse(dense, keyword, replace(rrf, keyword_weight=3))[0][0] == 3
    assert fuse(dense, keyword, replace(rrf, dense_weight=3))[0][0] == 1
    only_top = fuse(dense, keyword, replace(rrf, depth=1))
    assert {i for i, _ in only_top} == {1, 3}


def test_convex_fusion_mixes_normalised_scores():
    dense = [(1, 0.6), (2, 0.5)]
    keyword = [(3, 30.0), (2, 15.0)]
    # Cut at depth 2: a movie missing from the keyword list scores at most its lowest.
    fused = dict(convex_fusion(dense, keyword, alpha=0.5, depth=2))
    assert fused[2] == pytest.approx(0.5 * 0.5 + 0.5 * 0.5)
    assert fused[1] == pytest.approx(0.5 * 0.6 + 0.5 * 0.5)
    assert fused[3] == pytest.approx(0.5 * 0.5 + 0.5 * 1.0)  # missing from dense: its lowest
    # Not cut: the keyword list holds every match, so a movie missing from it matched nothing.
    fused = dict(convex_fusion(dense, keyword, alpha=0.5, depth=100))
    assert fused[1] == pytest.approx(0.5 * 0.6)
    order = fuse(dense, keyword, FusionParams(method="convex", alpha=0.5, depth=100))
    assert [i for i, _ in order] == [3, 2, 1]
    assert [i for i, _ in convex_fusion(dense, [], alpha=0.5)] == [1, 2]


def unit(*xs: float) -> np.ndarray:
    return normalise(np.asarray(xs, np.float32))


def test_clustering_keeps_separate_tastes_apart():
    horror = [unit(1, 0.1, 0), unit(1, 0, 0.1), unit(0.9, 0.1, 0.1)]
    musicals = [unit(0, 1, 0.1), unit(0.1, 1, 0)]
    vectors = np.stack(horror + musicals)
    assert cluster(vectors, max_distance=0.3, max_clusters=6) == [[0, 1, 2], [3, 4]]
    # Past the distance, groups merge only to respect max_clusters.
    assert cluster(vectors, max_distance=0.3, max_clusters=1) == [[0, 1, 2, 3, 4]]
    assert cluster(vectors, max_distance=0.0, max_clusters=10) == [[0], [1], [2], [3], [4]]
    assert cluster(vectors[:1], 0.3, 6) == [[0]]
    assert cluster(vectors[:0], 0.3, 6) == []


def test_allocation_is_proportional_and_sums_to_k():
    assert allocate([3, 2], 10) == [6, 4]
    assert allocate([1, 1, 1], 10) == [4, 3, 3]
    assert allocate([5, 1], 2) == [2, 0]
    assert sum(allocate([0.3, 2.7, 1.1, 1.9], 7)) == 7
    assert allocate([1.0], 0) == [0]


def test_tastes_are_pushed_away_from_dislikes():
    liked = np.stack([unit(1, 0.3, 0), unit(1, 0.2, 0.1)])
    disliked = np.stack([unit(0, 1, 0)])
    params = TasteParams(cluster_distance=0.3)
    plain = build_tastes(liked, np.ones(2, np.float32), None, params)
    pushed = build_tastes(liked, np.ones(2, np.float32), disliked, params)
    assert float(pushed[0].query @ disliked[0]) < float(plain[0].query @ disliked[0])
    mean = build_tastes(liked, np.ones(2, np.float32), None, TasteParams(clustered=False))
    assert len(mean) == 1
    assert mean[0].members == [0, 1]


def test_mmr_trades_relevance_for_variety():
    # Three near-copies of the most relevant film and one different, slightly less relevant.
    candidates = np.stack([unit(1, 0, 0), unit(1, 0.01, 0), unit(1, 0, 0.01), unit(0, 1, 0)])
    relevance = np.asarray([[0.9, 0.89, 0.88, 0.8]], np.float32)
    taste = Taste(members=[0], weight=1.0, query=unit(1, 0, 0), quota=2)
    greedy = mmr_select(candidates, relevance, [taste], mmr_lambda=1.0, k=2)
    assert [c for c, _, _ in greedy] == [0, 1]
    varied = mmr_select(candidates, relevance, [taste], mmr_lambda=0.5, k=2)
    assert [c for c, _, _ in varied] == [0, 3]


def test_mmr_honours_each_tastes_quota():
    candidates = np.stack([unit(1, 0), unit(0.9, 0.1), unit(0.8, 0.2), unit(0, 1)])
    relevance = np.asarray([[0.9, 0.8, 0.7, 0.0], [0.0, 0.1, 0.2, 0.5]], np.float32)
    tastes = [
        Taste(members=[0], weight=3.0, query=unit(1, 0), quota=2),
        Taste(members=[1], weight=1.0, query=unit(0, 1), quota=1),
    ]
    picks = mmr_select(candidates, relevance, tastes, mmr_lambda=1.0, k=3)
    assert sorted((c, t) for c, t, _ in picks) == [(0, 0), (1, 0), (3, 1)]


class MemoryStore:
    """An exact in-memory VectorStore."""

    def __init__(self, vectors: dict[int, np.ndarray]) -> None:
        self._vectors = vectors

    async def vectors(self, ids):
        return {i: self._vectors[i] for i in ids if i in self._vectors}

    async def nearest(self, queries, n, filters: MovieFilters, exclude):
        ids = [i for i in self._vectors if i not in exclude]
        matrix = np.stack([self._vectors[i] for i in ids])
        out = []
        for q in queries:
            order = np.argsort(-(matrix @ q))[:n]
            out.append([(ids[j], matrix[j]) for j in order])
        return out


async def test_recommend_excludes_seen_and_serves_both_tastes():
    rng = np.random.default_rng(7)
    a, b = unit(1, 0, 0, 0), unit(0, 0, 1, 0)
    vectors = {}
    for i in range(20):  # ten films near each taste
        base = a if i < 10 else b
        vectors[i] = normalise(base + 0.15 * rng.standard_normal(4).astype(np.float32))
    result = await recommend(
        MemoryStore(vectors),
        liked={0: 1.0, 1: 1.0, 10: 1.0, 11: 1.0},
        disliked=[],
        exclude={0, 1, 10, 11, 2},
        k=4,
        mmr_lambda=0.8,
        filters=MovieFilters(),
        prior=lambda ids: np.zeros(len(ids)),
        popular=lambda n: [],
        params=TasteParams(cluster_distance=0.5, popularity_weight=0.0),
    )
    picked = [p.tmdb_id for p in result.picks]
    assert len(picked) == 4
    assert not set(picked) & {0, 1, 10, 11, 2}
    assert sum(i < 10 for i in picked) == 2
    assert sum(i >= 10 for i in picked) == 2
    assert all(set(p.because) <= {0, 1, 10, 11} for p in result.picks)


async def test_recommend_ignores_unknown_likes_and_returns_nothing_without_any():
    store = MemoryStore({1: unit(1, 0), 2: unit(0.9, 0.1)})
    kwargs = {
        "disliked": [],
        "exclude": set(),
        "k": 3,
        "mmr_lambda": 0.7,
        "filters": MovieFilters(),
        "prior": lambda ids: np.zeros(len(ids)),
        "popular": lambda n: [],
    }
    empty = await recommend(store, liked={99: 1.0}, **kwargs)
    assert empty.picks == [] and empty.liked_ids == []
    found = await recommend(store, liked={99: 1.0, 1: 1.0}, **{**kwargs, "exclude": {1}})
    assert found.liked_ids == [1]
    assert [p.tmdb_id for p in found.picks] == [2]
