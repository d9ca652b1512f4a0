"""Taste recommendations on MovieLens (ml-latest-small), against two baselines.

Ratings of 4 stars or more are likes. For every user with at least 10 liked movies in the
catalog, 20 % of those likes (at random, seeded) are held out; the rest of the user's in-catalog
ratings are the input, capped like the API at the 200 most recent, and every input movie is
excluded from the results of every method. Metrics over the top 20: recall and nDCG of the
held-out likes, intra-list diversity (mean pairwise cosine distance of the stored vectors) and
distinct genres.

- popularity: the most-voted (and, second row, most popular) catalog movies the user has not
  rated;
- mean vector: the nearest movies to the mean of the liked vectors;
- ours: marquee_search.taste through the service's engine (clustered tastes, dislikes, a
  popularity prior, MMR with the API's default λ).

Honest tuning: users are split by a hash of their id; ``--tune`` grid-searches the taste
parameters on the tune users (25 %) with an exact in-memory vector store, and the table reports
the other users through the real Chroma-backed engine.

    .venv/bin/python bench/eval_recs.py [--tune] [--write]      # or: make eval
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import csv
import dataclasses
import hashlib
import json
import math
import random
import statistics
import sys
import time
from collections import defaultdict
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import numpy as np
from eval_search import (
    CATALOG_CSV,
    MOVIELENS,
    RESULTS,
    data_dir,
    ensure_index,
    load_catalog,
    machine,
    markdown_table,
    mirror_from,
    servers,
    write_doc_section,
)

from marquee_search.taste import DEFAULT_TASTE

K = 20
LIKED = 4.0
DISLIKED = 2.0
MIN_LIKES = 10
HOLD_OUT = 0.2
TUNE_SHARE = 0.25
INPUT_CAP = 200
SEED = 42


@dataclass
class User:
    user_id: int
    inputs: list[tuple[int, float]]
    """Rated movies given to the recommender, most recent last (at most INPUT_CAP)."""
    exclude: set[int]
    held_out: set[int]

    @property
    def split(self) -> str:
        digest = hashlib.sha256(f"user-{self.user_id}".encode()).hexdigest()[:8]
        return "tune" if int(digest, 16) / 2**32 < TUNE_SHARE else "report"

    @property
    def liked(self) -> dict[int, float]:
        return {t: r - 3.0 for t, r in self.inputs if r >= LIKED}

    @property
    def disliked(self) -> list[int]:
        return [t for t, r in self.inputs if r <= DISLIKED]


def load_users(catalog: dict[int, Any]) -> list[User]:
    with (MOVIELENS / "links.csv").open(encoding="utf-8") as f:
        links = {r["movieId"]: int(r["tmdbId"]) for r in csv.DictReader(f) if r["tmdbId"]}
    rated: dict[int, dict[int, tuple[float, int]]] = defaultdict(dict)
    with (MOVIELENS / "ratings.csv").open(encoding="utf-8") as f:
        for row in csv.DictReader(f):
            tmdb_id = links.get(row["movieId"])
            if tmdb_id in catalog:
                rated[int(row["userId"])][tmdb_id] = (float(row["rating"]), int(row["timestamp"]))
    users = []
    for user_id in sorted(rated):
        ratings = rated[user_id]
        likes = sorted(t for t, (r, _) in ratings.items() if r >= LIKED)
        if len(likes) < MIN_LIKES:
            continue
        rng = random.Random(SEED * 100_003 + user_id)
        held = set(rng.sample(likes, max(1, round(HOLD_OUT * len(likes)))))
        train = sorted(
            ((t, r, ts) for t, (r, ts) in ratings.items() if t not in held), key=lambda x: x[2]
        )
        users.append(
            User(
                user_id=user_id,
                inputs=[(t, r) for t, r, _ in train[-INPUT_CAP:]],
                exclude={t for t, _, _ in train},
                held_out=held,
            )
        )
    return users


# --- metrics ---------------------------------------------------------------------------------


@dataclass
class Scores:
    recall: list[float] = dataclasses.field(default_factory=list)
    ndcg: list[float] = dataclasses.field(default_factory=list)
    ild: list[float] = dataclasses.field(default_factory=list)
    genres: list[float] = dataclasses.field(default_factory=list)

    def add(self, found: list[int], user: User, vectors: Any, catalog: dict[int, Any]) -> None:
        hits = [1.0 if t in user.held_out else 0.0 for t in found[:K]]
        self.recall.append(sum(hits) / len(user.held_out))
        dcg = sum(h / math.log2(i + 2) for i, h in enumerate(hits))
        ideal = sum(1 / math.log2(i + 2) for i in range(min(K, len(user.held_out))))
        self.ndcg.append(dcg / ideal)
        if len(found) < 2:
            # No list to be diverse (a user whose 200 most recent ratings hold no like gets
            # nothing from the taste methods): counted as a miss above, left out below.
            return
        v = np.stack([vectors[t] for t in found[:K]])
        n = len(v)
        self.ild.append(float((n * n - (v @ v.T).sum()) / (n * (n - 1))))
        self.genres.append(len({g for t in found[:K] for g in catalog[t].genres}))

    def summary(self) -> dict[str, float]:
        return {
            "recall@20": statistics.mean(self.recall),
            "ndcg@20": statistics.mean(self.ndcg),
            "diversity (mean pairwise cosine distance)": statistics.mean(self.ild),
            "distinct genres": float(statistics.mean(self.genres)),
        }


# --- methods ---------------------------------------------------------------------------------


def popularity_ranking(mirror: Any, values: Any) -> list[int]:
    from marquee_shared.api import MovieFilters

    return mirror.top(values, mirror.mask(MovieFilters()), len(mirror))


def by_popularity(order: list[int], user: User) -> list[int]:
    return [t for t in order if t not in user.exclude][:K]


MEAN_VECTOR = dataclasses.replace(
    DEFAULT_TASTE, clustered=False, dislike_weight=0.0, popularity_weight=0.0, popular_pool=0
)
"""The mean-vector baseline: one taste, the plain mean of the liked vectors, no extras."""


async def run_taste(
    engine: Any, users: list[User], params: Any, mmr_lambda: float, weighted: bool = True
) -> list[list[int]]:
    from marquee_shared.api import MovieFilters

    out = []
    for user in users:
        liked = user.liked if weighted else dict.fromkeys(user.liked, 1.0)
        result = await _recommender(engine).recommend_ids(
            liked=liked,
            disliked=user.disliked if weighted else [],
            exclude=user.exclude,
            k=K,
            mmr_lambda=mmr_lambda,
            filters=MovieFilters(),
            params=params,
        )
        out.append([p.tmdb_id for p in result.picks])
    return out


def _recommender(engine: Any) -> Any:
    """The service's Recommender over a real engine; the in-memory one recommends itself."""
    if isinstance(engine, MemoryEngine):
        return engine
    from marquee_search.recommender import Recommender

    return Recommender(engine)


class MemoryEngine:
    """The engine's recommend_ids over an exact in-memory store (fast, for tuning only)."""

    def __init__(self, ids: np.ndarray, matrix: np.ndarray, mirror: Any) -> None:
        self._ids = ids
        self._matrix = matrix
        self._index = {int(t): i for i, t in enumerate(ids)}
        self._mirror = self.mirror = mirror
        self._prior = mirror.popularity_prior()

    async def vectors(self, ids: Any) -> dict[int, np.ndarray]:
        return {t: self._matrix[self._index[t]] for t in ids if t in self._index}

    async def nearest(self, queries: Any, n: int, filters: Any, exclude: Any) -> Any:
        assert filters.is_empty(), "tuning runs without filters"
        scores = queries @ self._matrix.T
        out = []
        for row in scores:
            order = np.argsort(-row)[: n + len(exclude)]
            hits = [(int(self._ids[j]), self._matrix[j]) for j in order]
            out.append([h for h in hits if h[0] not in exclude][:n])
        return out

    async def recommend_ids(self, **kwargs: Any) -> Any:
        from marquee_search.taste import recommend
        from marquee_shared.api import MovieFilters

        mirror = self._mirror

        def prior(ids: Any) -> np.ndarray:
            rows = [mirror.row(i) for i in ids]
            return np.asarray([0.0 if r is None else self._prior[r] for r in rows])

        def popular(n: int) -> list[int]:
            return mirror.top(mirror.votes, mirror.mask(MovieFilters()), n)

        return await recommend(self, prior=prior, popular=popular, **kwargs)


async def tune(engine: MemoryEngine, users: list[User], vectors: Any, catalog: Any) -> dict:
    def score(found: list[list[int]]) -> dict[str, float]:
        s = Scores()
        for f, u in zip(found, users, strict=True):
            s.add(f, u, vectors, catalog)
        return s.summary()

    grid: list[dict[str, Any]] = []
    best = DEFAULT_TASTE
    best_lambda = 1.0

    async def trial(params: Any, lam: float) -> dict[str, float]:
        m = score(await run_taste(engine, users, params, lam))
        grid.append({"params": dataclasses.asdict(params), "lambda": lam, **m})
        print(f"  {params} λ={lam}: {m}")
        return m

    baselines = {
        "popularity (most votes)": score(
            [
                by_popularity(popularity_ranking(engine.mirror, engine.mirror.votes), u)
                for u in users
            ]
        ),
        "mean vector": score(await run_taste(engine, users, MEAN_VECTOR, 1.0, weighted=False)),
    }
    print(f"  baselines on the tune users: {baselines}")
    # Coordinate search from the current defaults, relevance first (λ = 1), then λ.
    for name, values in (
        ("popularity_weight", (0.3, 0.5, 0.8, 1.2, 2.0)),
        ("cluster_distance", (0.5, 0.55, 0.6, 0.65, 0.7)),
        ("max_tastes", (6, 10, 15, 20)),
        ("dislike_weight", (0.0, 0.1, 0.15, 0.3)),
        ("pool_per_taste", (60, 120, 200)),
        ("popular_pool", (0, 50, 100, 200)),
    ):
        results = []
        for value in values:
            params = dataclasses.replace(best, **{name: value})
            results.append((await trial(params, best_lambda), params))
        best = max(results, key=lambda r: r[0]["recall@20"])[1]
    lambdas = [(await trial(best, lam), lam) for lam in (1.0, 0.9, 0.85, 0.8, 0.75, 0.7, 0.6)]
    top = max(m["recall@20"] for m, _ in lambdas)
    # The most diverse λ that keeps 97 % of the best recall.
    best_lambda = min(lam for m, lam in lambdas if m["recall@20"] >= 0.97 * top)
    print(f"  best: {best}, λ = {best_lambda}")
    return {
        "best": dataclasses.asdict(best),
        "lambda": best_lambda,
        "baselines": baselines,
        "grid": grid,
    }


@contextlib.asynccontextmanager
async def indexed(
    catalog: dict[int, Any],
) -> AsyncIterator[tuple[Any, Any, np.ndarray, np.ndarray]]:
    """The catalog's Chroma index for the evaluated model (cached), a replica's mirror of it,
    and every stored vector."""
    async with servers(data_dir()) as (redis_url, chroma_url):
        collection = await ensure_index(chroma_url, redis_url, catalog)
        sync = await mirror_from(collection, redis_url)
        got = await collection.get(include=["embeddings"])
        ids = np.asarray([int(i) for i in got["ids"]])
        yield collection, sync, ids, np.asarray(got["embeddings"], np.float32)


def score(
    found: list[list[int]], users: list[User], vectors: Any, catalog: dict[int, Any]
) -> dict[str, float]:
    s = Scores()
    for f, u in zip(found, users, strict=True):
        s.add(f, u, vectors, catalog)
    return s.summary()


async def measure(catalog: dict[int, Any]) -> dict[str, float]:
    """The default recommendations' metrics on the report users, for the model evaluated
    (eval_encoder.py compares models with it)."""
    from marquee_search.engine import SearchEngine
    from marquee_shared.api import RecommendationRequest

    default_lambda = RecommendationRequest.model_fields["mmr_lambda"].default
    users = [u for u in load_users(catalog) if u.split == "report"]
    async with indexed(catalog) as (collection, sync, ids, matrix):
        vectors = {int(t): matrix[i] for i, t in enumerate(ids)}
        engine = SearchEngine(collection, None, 0, sync)  # type: ignore[arg-type]
        found = await run_taste(engine, users, DEFAULT_TASTE, default_lambda)
        return score(found, users, vectors, catalog)


async def main(args: argparse.Namespace) -> int:
    if not CATALOG_CSV.exists() or not (MOVIELENS / "ratings.csv").exists():
        print("skipped: ../shared/data is absent (the ../shared kit is not beside the project)")
        return 0
    from marquee_search.engine import SearchEngine
    from marquee_shared.api import RecommendationRequest

    default_lambda = RecommendationRequest.model_fields["mmr_lambda"].default
    catalog = load_catalog()
    users = load_users(catalog)
    tune_users = [u for u in users if u.split == "tune"]
    report_users = [u for u in users if u.split == "report"]
    print(
        f"users with >= {MIN_LIKES} likes in the catalog: {len(users)} "
        f"({len(tune_users)} tune, {len(report_users)} report)"
    )
    started = time.perf_counter()
    async with indexed(catalog) as (collection, sync, ids, matrix):
        mirror = sync.mirror
        vectors = {int(t): matrix[i] for i, t in enumerate(ids)}
        if args.tune:
            found = await tune(MemoryEngine(ids, matrix, mirror), tune_users, vectors, catalog)
            RESULTS.mkdir(parents=True, exist_ok=True)
            (RESULTS / "recs_tuning.json").write_text(json.dumps(found, indent=1))
            return 0
        engine = SearchEngine(collection, None, 0, sync)  # type: ignore[arg-type]
        chosen = report_users
        by_votes = popularity_ranking(mirror, mirror.votes)
        by_popularity_order = popularity_ranking(mirror, mirror.popularity)
        runs = {
            "popularity (most votes)": [by_popularity(by_votes, u) for u in chosen],
            "popularity (TMDB popularity)": [by_popularity(by_popularity_order, u) for u in chosen],
        }
        t = time.perf_counter()
        runs["mean vector"] = await run_taste(engine, chosen, MEAN_VECTOR, 1.0, weighted=False)
        print(f"  mean vector: {time.perf_counter() - t:.0f}s")
        t = time.perf_counter()
        runs[f"ours (tastes + MMR λ={default_lambda})"] = await run_taste(
            engine, chosen, DEFAULT_TASTE, default_lambda
        )
        print(f"  ours: {time.perf_counter() - t:.0f}s")
        table = {}
        for name, found in runs.items():
            table[name] = score(found, chosen, vectors, catalog)
    elapsed = time.perf_counter() - started
    headers = ["method", "recall@20", "nDCG@20", "diversity", "distinct genres"]
    rows = [[n, *m.values()] for n, m in table.items()]
    text = (
        f"Recommendations on MovieLens ml-latest-small, report split: {len(chosen)} users "
        f"(tuned on the other {len(tune_users)}), 20 % of each user's in-catalog likes held out. "
        f"Diversity: mean pairwise cosine distance in the top 20. Made by `make eval` "
        f"(`.venv/bin/python bench/eval_recs.py --write`) on {machine()}, {elapsed:.0f}s.\n\n"
        f"{markdown_table(headers, rows)}\n\nParameters: {DEFAULT_TASTE}, λ = {default_lambda}."
    )
    print(text)
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "recs.json").write_text(
        json.dumps(
            {
                "split": "report",
                "users": len(chosen),
                "tune_users": len(tune_users),
                "metrics": table,
                "params": dataclasses.asdict(DEFAULT_TASTE),
                "mmr_lambda": default_lambda,
                "machine": machine(),
                "seconds": round(elapsed),
            },
            indent=1,
        )
    )
    if args.write:
        write_doc_section("recs", text)
    return 0


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tune", action="store_true", help="grid-search on the tune users")
    parser.add_argument("--write", action="store_true", help="update docs/evaluation.md")
    sys.exit(asyncio.run(main(parser.parse_args())))
