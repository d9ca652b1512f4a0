"""Taste recommendations: from liked and disliked movies' vectors to a varied list of unseen ones.

1. The liked vectors are clustered (average-linkage agglomerative, cosine distance), so a user
   who likes horror and musicals has two *tastes* instead of one mean vector that points at
   neither.
2. Each taste queries the index with its weighted centroid, pushed away from the mean disliked
   vector (Rocchio); every candidate's relevance to a taste is its cosine to that query, minus
   how close it is to a disliked movie, plus a small prior for widely seen movies.
3. Results are allocated across tastes in proportion to their weight (largest remainder), and
   each pick is a maximal-marginal-relevance choice (Carbonell & Goldstein, SIGIR 1998):
   ``λ·relevance - (1-λ)·max cosine to what is already picked``; λ = 1 is relevance alone.

The parameters were tuned on the tune users of MovieLens (bench/eval_recs.py --tune).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

if TYPE_CHECKING:
    from numpy.typing import NDArray

    from marquee_shared.api import MovieFilters

Vector = Any  # NDArray[np.float32], kept loose for callers that hand lists


@dataclass(frozen=True, slots=True)
class TasteParams:
    cluster_distance: float = 0.6
    """Average cosine distance above which two groups of liked movies stay separate tastes."""
    max_tastes: int = 20
    dislike_weight: float = 0.1
    """Tuning preferred 0 by a hair (recall@20 0.085 against 0.084 at 0.1, within noise);
    0.1 keeps dislikes meaningful, as the API promises."""
    popularity_weight: float = 0.8
    clustered: bool = True
    """False: one taste, the (weighted) mean of every liked vector (the mean-vector baseline)."""
    pool_per_taste: int = 120
    """Candidates fetched per taste beyond its share of k (and beyond the excluded movies)."""
    popular_pool: int = 100
    """Most-voted movies added to the candidates, so the prior can lift them."""


DEFAULT_TASTE = TasteParams()
MAX_FETCH = 500


class VectorStore(Protocol):
    """Where the vectors live (Chroma in the service, an in-memory matrix when tuning)."""

    async def vectors(self, ids: Sequence[int]) -> dict[int, NDArray[np.float32]]: ...

    async def nearest(
        self, queries: NDArray[np.float32], n: int, filters: MovieFilters, exclude: frozenset[int]
    ) -> list[list[tuple[int, NDArray[np.float32]]]]:
        """Per query, the ``n`` nearest movies passing the filters, none of ``exclude``."""
        ...


@dataclass
class Taste:
    members: list[int]
    """Indices into the liked list."""
    weight: float
    query: NDArray[np.float32]
    quota: int = 0
    picked: int = 0


@dataclass
class Pick:
    tmdb_id: int
    taste: int
    relevance: float
    because: list[int]


@dataclass
class Recommendations:
    tastes: list[Taste]
    picks: list[Pick]
    liked_ids: list[int] = field(default_factory=list)


def normalise(v: NDArray[np.float32]) -> NDArray[np.float32]:
    norm = np.linalg.norm(v, axis=-1, keepdims=True)
    out: NDArray[np.float32] = (v / np.maximum(norm, 1e-12)).astype(np.float32)
    return out


def cluster(
    vectors: NDArray[np.float32], max_distance: float, max_clusters: int
) -> list[list[int]]:
    """Average-linkage agglomerative clustering under cosine distance.

    Merges the closest pair of groups while they are closer than ``max_distance`` on average,
    and beyond that while there are more than ``max_clusters`` groups. Naive O(n³), fine for
    the ≤ 200 movies of a request. Groups come back largest first, ties by first member.
    """
    n = len(vectors)
    if n == 0:
        return []
    groups: list[list[int]] = [[i] for i in range(n)]
    if n == 1:
        return groups
    unit = normalise(np.asarray(vectors, np.float32))
    distance = (1.0 - unit @ unit.T).astype(np.float64)
    np.fill_diagonal(distance, np.inf)
    active = np.ones(n, bool)
    while active.sum() > 1:
        masked = np.where(active[:, None] & active[None, :], distance, np.inf)
        i, j = np.unravel_index(int(np.argmin(masked)), masked.shape)
        if masked[i, j] > max_distance and active.sum() <= max_clusters:
            break
        ni, nj = len(groups[i]), len(groups[j])
        # Lance-Williams update for average linkage.
        merged = (ni * distance[i] + nj * distance[j]) / (ni + nj)
        distance[i], distance[:, i] = merged, merged
        distance[i, i] = np.inf
        distance[j], distance[:, j] = np.inf, np.inf
        groups[i] = sorted(groups[i] + groups[j])
        groups[j] = []
        active[j] = False
    found = [g for g in groups if g]
    return sorted(found, key=lambda g: (-len(g), g[0]))


def allocate(weights: Sequence[float], k: int) -> list[int]:
    """Split ``k`` slots in proportion to the weights (largest remainder method)."""
    total = float(sum(weights))
    if k <= 0 or total <= 0:
        return [0] * len(weights)
    exact = [w / total * k for w in weights]
    quotas = [int(e) for e in exact]
    order = sorted(range(len(weights)), key=lambda i: (-(exact[i] - quotas[i]), -weights[i], i))
    for i in order[: k - sum(quotas)]:
        quotas[i] += 1
    return quotas


def build_tastes(
    liked: NDArray[np.float32],
    weights: NDArray[np.float32],
    disliked: NDArray[np.float32] | None,
    params: TasteParams,
) -> list[Taste]:
    if params.clustered:
        groups = cluster(liked, params.cluster_distance, params.max_tastes)
    else:
        groups = [list(range(len(liked)))]
    away = None
    if disliked is not None and len(disliked) and params.dislike_weight:
        away = normalise(disliked.mean(axis=0))
    tastes = []
    for members in groups:
        w = weights[members]
        centroid = normalise((liked[members] * w[:, None]).sum(axis=0))
        if away is not None:
            centroid = normalise(centroid - params.dislike_weight * away)
        tastes.append(Taste(members=members, weight=float(w.sum()), query=centroid))
    return tastes


def mmr_select(
    candidates: NDArray[np.float32],
    relevance: NDArray[np.float32],
    tastes: list[Taste],
    mmr_lambda: float,
    k: int,
) -> list[tuple[int, int, float]]:
    """(candidate index, taste index, relevance) picks, in order.

    ``relevance`` is tastes x candidates. At each step the taste furthest below its quota
    picks the candidate with the best marginal relevance for it; a taste out of candidates
    gives its remaining slots to the others.
    """
    n = len(candidates)
    picks: list[tuple[int, int, float]] = []
    available = np.ones(n, bool)
    max_sim = np.full(n, -np.inf, np.float32)  # to the picked set; -inf while it is empty
    for taste in tastes:
        taste.picked = 0
    while len(picks) < min(k, n):
        open_tastes = [t for t, taste in enumerate(tastes) if taste.picked < taste.quota]
        if not open_tastes:  # quotas met (or rounded down): the most relevant overall fill up
            open_tastes = list(range(len(tastes)))
        t = max(open_tastes, key=lambda i: (tastes[i].quota - tastes[i].picked, tastes[i].weight))
        redundancy = np.where(np.isfinite(max_sim), max_sim, 0.0)
        marginal = mmr_lambda * relevance[t] - (1.0 - mmr_lambda) * redundancy
        marginal = np.where(available, marginal, -np.inf)
        best = int(np.argmax(marginal))
        if not np.isfinite(marginal[best]):
            break
        picks.append((best, t, float(relevance[t, best])))
        tastes[t].picked += 1
        available[best] = False
        max_sim = np.maximum(max_sim, candidates @ candidates[best])
    return picks


async def recommend(
    store: VectorStore,
    *,
    liked: Mapping[int, float],
    disliked: Sequence[int],
    exclude: set[int],
    k: int,
    mmr_lambda: float,
    filters: MovieFilters,
    prior: Callable[[Sequence[int]], NDArray[np.float64]],
    popular: Callable[[int], list[int]],
    params: TasteParams = DEFAULT_TASTE,
) -> Recommendations:
    """Recommend ``k`` movies for the liked (id -> weight) and disliked movies, none of them in
    ``exclude``. ``prior`` maps ids to a [0, 1] popularity prior; ``popular(n)`` gives the n
    most-voted movies passing the filters. Liked ids the store does not know are ignored."""
    known = await store.vectors([*liked, *disliked])
    liked_ids = [i for i in liked if i in known]
    if not liked_ids:
        return Recommendations(tastes=[], picks=[])
    liked_vectors = normalise(np.stack([known[i] for i in liked_ids]))
    weights = np.asarray([liked[i] for i in liked_ids], np.float32)
    bad = [known[i] for i in disliked if i in known]
    disliked_vectors = normalise(np.stack(bad)) if bad else None
    tastes = build_tastes(liked_vectors, weights, disliked_vectors, params)
    for taste, quota in zip(tastes, allocate([t.weight for t in tastes], k), strict=True):
        taste.quota = quota
    asking = [t for t in tastes if t.quota > 0] or tastes[:1]

    pool: dict[int, NDArray[np.float32]] = {}
    n = min(MAX_FETCH, max(t.quota for t in asking) + params.pool_per_taste)
    queries = np.stack([t.query for t in asking])
    for hits in await store.nearest(queries, n, filters, frozenset(exclude)):
        for tmdb_id, vector in hits:
            pool.setdefault(tmdb_id, vector)
    if params.popular_pool and params.popularity_weight:
        extra = [i for i in popular(params.popular_pool + len(exclude)) if i not in exclude]
        missing = [i for i in extra[: params.popular_pool] if i not in pool]
        pool.update(await store.vectors(missing))
    if not pool:
        return Recommendations(tastes=tastes, picks=[], liked_ids=liked_ids)

    ids = list(pool)
    vectors = normalise(np.stack([pool[i] for i in ids]))
    queries = np.stack([t.query for t in tastes])
    relevance = queries @ vectors.T
    if disliked_vectors is not None and params.dislike_weight:
        relevance -= params.dislike_weight * np.maximum(0.0, disliked_vectors @ vectors.T).max(
            axis=0
        )
    if params.popularity_weight:
        relevance += params.popularity_weight * prior(ids).astype(np.float32)
    chosen = mmr_select(vectors, relevance.astype(np.float32), tastes, mmr_lambda, k)
    closeness = vectors @ liked_vectors.T
    picks = [
        Pick(
            tmdb_id=ids[c],
            taste=t,
            relevance=score,
            because=[liked_ids[j] for j in np.argsort(-closeness[c])[:3]],
        )
        for c, t, score in chosen
    ]
    return Recommendations(tastes=tastes, picks=picks, liked_ids=liked_ids)
