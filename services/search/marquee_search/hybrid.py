"""Fusing the dense and keyword rankings into one (hybrid search).

Two fusions, chosen by tuning on the tune split of tomt_dev (bench/eval_search.py --tune; the
numbers are in docs/evaluation.md):

- reciprocal rank fusion (Cormack, Clarke & Büttcher, SIGIR 2009): each list adds
  ``weight / (k + rank)``; it needs no calibration between cosine similarities and BM25 scores;
- a convex combination of normalised scores (Bruch, Gai & Ingber, "An Analysis of Fusion
  Functions for Hybrid Retrieval", TOIS 2023, found it more robust than RRF once tuned):
  ``alpha * cosine + (1 - alpha) * bm25 / max bm25``. A movie missing from a list that was cut
  at the depth gets that list's lowest score (its own can be no higher); missing from a shorter
  keyword list, it matched no query word: 0.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

Ranked = Sequence[tuple[int, float]]
"""(TMDB id, score) pairs, best first."""


@dataclass(frozen=True, slots=True)
class FusionParams:
    method: Literal["rrf", "convex"] = "convex"
    k: float = 60.0
    dense_weight: float = 1.0
    keyword_weight: float = 1.0
    alpha: float = 0.8
    """Convex fusion: the dense side's share."""
    depth: int = 100
    """Candidates taken from each side before fusing."""


DEFAULT_FUSION = FusionParams()


def reciprocal_rank_fusion(
    rankings: Sequence[Sequence[int]], weights: Sequence[float], k: float = 60.0
) -> list[tuple[int, float]]:
    """Fused (id, score) pairs, best first; ties broken by the first ranking that has the item,
    then by id, so the order is deterministic."""
    scores: dict[int, float] = {}
    first_seen: dict[int, tuple[int, int]] = {}
    for which, (ranking, weight) in enumerate(zip(rankings, weights, strict=True)):
        for rank, item in enumerate(ranking, start=1):
            scores[item] = scores.get(item, 0.0) + weight / (k + rank)
            first_seen.setdefault(item, (which, rank))
    return sorted(scores.items(), key=lambda kv: (-kv[1], first_seen[kv[0]], kv[0]))


def convex_fusion(
    dense: Ranked, keyword: Ranked, alpha: float, depth: int | None = None
) -> list[tuple[int, float]]:
    """``alpha`` of the cosine plus the rest of the max-normalised BM25 score; ``depth`` is
    where the lists were cut (None: the keyword list holds every match)."""
    top = max((s for _, s in keyword), default=0.0)
    bm25 = {i: s / top for i, s in keyword} if top > 0 else {}
    cosine = dict(dense)
    floor_dense = min(cosine.values(), default=0.0)
    cut = depth is not None and len(keyword) >= depth
    floor_bm25 = min(bm25.values(), default=0.0) if cut else 0.0
    order = {i: n for n, i in enumerate(dict.fromkeys([*cosine, *bm25]))}
    fused = {
        i: alpha * cosine.get(i, floor_dense) + (1 - alpha) * bm25.get(i, floor_bm25) for i in order
    }
    return sorted(fused.items(), key=lambda kv: (-kv[1], order[kv[0]]))


def fuse(
    dense: Ranked, keyword: Ranked, params: FusionParams = DEFAULT_FUSION
) -> list[tuple[int, float]]:
    dense, keyword = dense[: params.depth], keyword[: params.depth]
    if params.method == "convex":
        return convex_fusion(dense, keyword, params.alpha, params.depth)
    return reciprocal_rank_fusion(
        [[i for i, _ in dense], [i for i, _ in keyword]],
        [params.dense_weight, params.keyword_weight],
        params.k,
    )
