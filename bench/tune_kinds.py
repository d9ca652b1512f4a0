"""Choose how lookups are told from descriptions and fused (marquee_search/kinds.py), on tune
data only.

    .venv/bin/python bench/tune_kinds.py [--model stock|movie-tuned|PATH]

Tune data: titles, titles with a typo and director + genre lookups made from films the reported
lookup set never uses (ranking.tune_lookups), and the tomt_dev tune split (its requests of 8
words or more are re-ordered by the learned ranker and are descriptions whatever the kind
settings say; they are counted, unchanged). Each setting runs every request through
``SearchEngine.hybrid_ranking`` as a replica does. The objective is the mean MRR@10 over the
four sets, with the tomt tune split's MRR@10 not allowed to fall; the chosen values are
KindParams() in kinds.py. The grid lands in bench/results/kinds_tuning[-<model>].json.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import eval_search as ev
import ranking


def grid() -> list[Any]:
    from marquee_search.kinds import KindParams

    out = [KindParams(enabled=False)]
    out += [
        KindParams(title_similarity=t, name_terms=n, lookup_alpha=a, max_words=w)
        for t in (85.0, 90.0, 95.0, 101.0)  # 101: titles never decide
        for n in (2, 3, 99)  # 99: names never decide
        for a in (0.2, 0.35, 0.5, 0.65)
        for w in (6,)
        if not (t == 101.0 and n == 99)
    ]
    return out


async def main(args: argparse.Namespace) -> int:
    if not ev.CATALOG_CSV.exists() or not ev.TOMT.exists():
        print(f"skipped: {ev.SHARED} is absent")
        return 0
    if args.model:
        os.environ["MARQUEE_SEARCH_MODEL"] = args.model
    from marquee_search.ranker import DEFAULT_MODEL, LearnedRanker
    from marquee_shared.api import MovieFilters

    catalog = ev.load_catalog()
    tomt = [q for q in ev.load_queries() if q.split == "tune"]
    sets = {"tomt_dev tune": tomt, **ranking.tune_lookups(catalog)}
    ranker = LearnedRanker(DEFAULT_MODEL) if DEFAULT_MODEL.exists() else None
    none = MovieFilters()
    rows: list[dict[str, Any]] = []
    started = time.perf_counter()
    async with ranking.engine_for(catalog, ranker=ranker) as (engine, box):
        await ranking.encode_windows(engine, [q for qs in sets.values() for q in qs], box)
        fixed: dict[str, dict[str, list[int]]] = {}
        for params in grid():
            engine.tuning = dataclasses.replace(engine.tuning, kinds=params)
            scores: dict[str, dict[str, float]] = {}
            lookups = 0
            for name, queries in sets.items():
                runs = []
                for q in queries:
                    if ranker is not None and ranker.applies(len(q.text.split())):
                        # Ranked by the learned ranker: no kind setting changes it.
                        cached = fixed.setdefault(name, {})
                        if q.qid not in cached:
                            found = await engine.hybrid_ranking(q.text, ev.DEPTH, none)
                            cached[q.qid] = [i for i, _ in found.items]
                        runs.append(cached[q.qid])
                        continue
                    found = await engine.hybrid_ranking(q.text, ev.DEPTH, none)
                    lookups += found.kind == "lookup"
                    runs.append([i for i, _ in found.items])
                scores[name] = ev.metrics(runs, [q.answer for q in queries])
            objective = sum(s["mrr@10"] for s in scores.values()) / len(scores)
            rows.append(
                {
                    "params": dataclasses.asdict(params),
                    "objective": objective,
                    "lookups": lookups,
                    "sets": scores,
                }
            )
            print(
                f"  {params}: objective {objective:.4f} lookups {lookups} "
                + " ".join(f"{n}={s['mrr@10']:.3f}" for n, s in scores.items())
            )
    off = rows[0]
    floor = off["sets"]["tomt_dev tune"]["mrr@10"]
    allowed = [r for r in rows if r["sets"]["tomt_dev tune"]["mrr@10"] >= floor - 1e-9]
    best = max(allowed, key=lambda r: r["objective"])
    print(f"off: {off['objective']:.4f}; best: {best['objective']:.4f} {best['params']}")
    suffix = "" if not args.model or args.model == "stock" else f"-{Path(args.model).name}"
    out = ev.RESULTS / f"kinds_tuning{suffix}.json"
    out.write_text(
        json.dumps(
            {
                "model": ev.model_setting(),
                "sets": {n: len(qs) for n, qs in sets.items()},
                "best": best,
                "off": off,
                "grid": rows,
                "seconds": round(time.perf_counter() - started),
                "machine": ev.machine(),
            },
            indent=1,
        )
    )
    print(f"-> {out}")
    return 0


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", help="stock (default), movie-tuned or a bundle folder")
    return parser.parse_args(argv)


if __name__ == "__main__":
    raise SystemExit(asyncio.run(main(parse_args())))
