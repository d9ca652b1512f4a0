"""Filtered dense queries on the full catalog: Chroma ``where`` vs over-fetch-and-filter.

For filters from broad (a popular genre) to narrow (one language and a decade), measures on
the same query vectors (stored vectors of 100 random catalog movies, k = 10):

- ``unfiltered``: a plain query, the reference cost;
- ``where``: Chroma's own metadata filter;
- ``policy``: what the search service does (marquee_search.engine.FilterPolicy): over-fetch
  unfiltered and filter in Python when the filter keeps enough of the catalog, else ``where``;

with median and p95 latency and recall@10 against the exact answer (brute force over every
vector, filtered in numpy). Reuses the eval index (bench/eval_search.py builds it).

    .venv/bin/python bench/filters.py [--write]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import statistics
import sys
import time
from typing import Any

import numpy as np
from eval_search import (
    CATALOG_CSV,
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

K = 10
QUERIES = 100
FILTERS: dict[str, dict[str, Any]] = {
    "genre Drama": {"genres": ["Drama"]},
    "genre Horror": {"genres": ["Horror"]},
    "rating >= 7": {"min_rating": 7.0},
    "1990-1999": {"year_min": 1990, "year_max": 1999},
    "Comedy, 2000s, rating >= 6.5": {
        "genres": ["Comedy"],
        "year_min": 2000,
        "year_max": 2009,
        "min_rating": 6.5,
    },
    "language ja": {"language": "ja"},
    "Western, before 1970": {"genres": ["Western"], "year_max": 1969},
}


def pct(values: list[float], q: float) -> float:
    return float(np.percentile(values, q)) * 1000


async def main(args: argparse.Namespace) -> int:
    if not CATALOG_CSV.exists():
        print("skipped: ../shared/data is absent")
        return 0
    from marquee_search.engine import (
        DEFAULT_FILTER_POLICY,
        FilterPolicy,
        SearchEngine,
        Tuning,
        build_where,
    )
    from marquee_shared.api import MovieFilters

    catalog = load_catalog()
    async with servers(data_dir()) as (redis_url, chroma_url):
        collection = await ensure_index(chroma_url, redis_url, catalog)
        sync = await mirror_from(collection, redis_url)
        mirror = sync.mirror
        got = await collection.get(include=["embeddings"])
        ids = np.asarray([int(i) for i in got["ids"]])
        matrix = np.asarray(got["embeddings"], np.float32)
        rng = random.Random(11)
        picks = rng.sample(range(len(ids)), QUERIES)
        queries = matrix[picks]
        row_of = {int(t): mirror.row(int(t)) for t in ids}

        def exact(vector: np.ndarray, filters: MovieFilters) -> list[int]:
            keep = mirror.mask(filters)
            allowed = np.asarray([keep[row_of[int(t)]] for t in ids])
            scores = np.where(allowed, matrix @ vector, -np.inf)
            order = np.argsort(-scores)[:K]
            return [int(ids[j]) for j in order if np.isfinite(scores[j])]

        async def timed(run: Any) -> tuple[list[float], list[list[int]]]:
            await run(queries[0])  # warm
            times, found = [], []
            for vector in queries:
                started = time.perf_counter()
                found.append(await run(vector))
                times.append(time.perf_counter() - started)
            return times, found

        def recall(found: list[list[int]], truth: list[list[int]]) -> float:
            hits = [
                len(set(f) & set(t)) / max(1, len(t)) for f, t in zip(found, truth, strict=True)
            ]
            return statistics.mean(hits)

        async def plain(vector: np.ndarray) -> list[int]:
            r = await collection.query(query_embeddings=[vector], n_results=K, include=[])
            return [int(i) for i in r["ids"][0]]

        base_times, _ = await timed(plain)
        rows, raw = [], {}
        rows.append(
            ["none (unfiltered)", "100%", pct(base_times, 50), pct(base_times, 95), "", "", ""]
        )
        always_python = SearchEngine(
            collection, None, 0, sync, Tuning(filters=FilterPolicy(min_selectivity=0.0))
        )  # type: ignore[arg-type]
        policy = SearchEngine(collection, None, 0, sync, Tuning(filters=DEFAULT_FILTER_POLICY))  # type: ignore[arg-type]
        for name, spec in FILTERS.items():
            filters = MovieFilters.model_validate(spec)
            share = mirror.count(filters) / len(mirror)
            where = build_where(filters)

            async def with_where(vector: np.ndarray, where: Any = where) -> list[int]:
                r = await collection.query(
                    query_embeddings=[vector], n_results=K, where=where, include=[]
                )
                return [int(i) for i in r["ids"][0]]

            async def by_python(vector: np.ndarray, filters: MovieFilters = filters) -> list[int]:
                return [n.tmdb_id for n in await always_python.nearest(vector, K, filters)]

            async def by_policy(vector: np.ndarray, filters: MovieFilters = filters) -> list[int]:
                return [n.tmdb_id for n in await policy.nearest(vector, K, filters)]

            truth = [exact(v, filters) for v in queries]
            w_times, w_found = await timed(with_where)
            p_times, p_found = await timed(by_python)
            pol_times, pol_found = await timed(by_policy)
            raw[name] = {
                "selectivity": share,
                "where_ms": [pct(w_times, 50), pct(w_times, 95)],
                "overfetch_ms": [pct(p_times, 50), pct(p_times, 95)],
                "policy_ms": [pct(pol_times, 50), pct(pol_times, 95)],
                "recall": {
                    "where": recall(w_found, truth),
                    "overfetch": recall(p_found, truth),
                    "policy": recall(pol_found, truth),
                },
            }
            rows.append(
                [
                    name,
                    f"{share:.1%}",
                    pct(w_times, 50),
                    pct(w_times, 95),
                    pct(p_times, 50),
                    pct(pol_times, 50),
                    (
                        f"{recall(w_found, truth):.2f} / {recall(p_found, truth):.2f} / "
                        f"{recall(pol_found, truth):.2f}"
                    ),
                ]
            )
            print(rows[-1])
    headers = [
        "filter",
        "keeps",
        "where p50 ms",
        "where p95 ms",
        "over-fetch p50 ms",
        "policy p50 ms",
        "recall@10 where / over-fetch / policy",
    ]
    text = (
        f"Dense queries (k = {K}, {QUERIES} query vectors) on the full catalog "
        f"({len(ids)} movies), Chroma HTTP server on the same machine ({machine()}). "
        f"Unfiltered: p50 {pct(base_times, 50):.1f} ms, p95 {pct(base_times, 95):.1f} ms. "
        f"Made by `.venv/bin/python bench/filters.py --write`.\n\n"
        f"{markdown_table(headers, rows[1:])}"
    )
    print(text)
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "filters.json").write_text(
        json.dumps(
            {"unfiltered_ms": [pct(base_times, 50), pct(base_times, 95)], "filters": raw},
            indent=1,
        )
    )
    if args.write:
        write_doc_section("filters", text)
    return 0


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--write", action="store_true", help="update docs/evaluation.md")
    sys.exit(asyncio.run(main(parser.parse_args())))
