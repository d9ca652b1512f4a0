"""What the learned ranker and long-request windows cost per search, side by side in one run.

    .venv/bin/python bench/ranker_latency.py [--rounds 3]

One process, the engine as a replica runs it by default (vectors mirrored, exact dense search,
the int8 model on one thread, no query-vector cache: every request is encoded), over the
cached catalog index. Three kinds of request, each a different real one per call: titles
(catalog titles), one sentence (the first 150 characters of a tomt_dev request, the size
bench/search_load.py sends) and long descriptions (1,500 characters). Each kind runs with the
ranker on and off, interleaved round by round so that the machine's noise falls on both; the
figures are medians and p99 of wall time per hybrid search, and the ratio on/off. Writes
bench/results/ranker_latency.{json,md}. Skips when ../shared/data is absent.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import random
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import eval_search as ev
import ranking

KINDS = {"titles": 0, "one sentence (150 chars)": 150, "long (1,500 chars)": 1500}


def cut(text: str, chars: int) -> str:
    text = " ".join(text.split())
    return text if len(text) <= chars else text[:chars].rsplit(" ", 1)[0]


def p99(xs: list[float]) -> float:
    return sorted(xs)[min(len(xs) - 1, int(len(xs) * 0.99))]


async def main(args: argparse.Namespace) -> int:
    if not ev.CATALOG_CSV.exists() or not ev.TOMT.exists():
        print(f"skipped: {ev.SHARED} is absent")
        return 0
    from threadpoolctl import threadpool_limits

    from marquee_search.ranker import LearnedRanker
    from marquee_shared.api import MovieFilters
    from marquee_shared.model.encoder import default_model_path, load_encoder

    threadpool_limits(limits=1, user_api="blas")  # as the service runs (app.py)
    rng = random.Random(5)
    catalog = ev.load_catalog()
    tomt = [q.text for q in ev.load_queries()]
    long_ones = [q for q in tomt if len(q) >= 1500]
    requests = {
        "titles": [
            m.title for m in rng.sample(sorted(catalog.values(), key=lambda m: m.tmdb_id), args.n)
        ],
        "one sentence (150 chars)": [cut(q, 150) for q in rng.sample(tomt, args.n)],
        "long (1,500 chars)": [cut(q, 1500) for q in rng.sample(long_ones, args.n)],
    }
    encoder = load_encoder(default_model_path(), ev.backend(), threads=1, spin=False)  # type: ignore[arg-type]
    ranker = LearnedRanker()
    timings: dict[str, dict[str, list[float]]] = {k: {"on": [], "off": []} for k in requests}
    none = MovieFilters()
    async with ranking.engine_for(catalog, ranker=ranker, encoder=encoder, cache_size=0) as (
        engine,
        _,
    ):
        for q in requests["titles"][:5]:  # warm up
            await engine.hybrid_ranking(q, 10, none)
        for r in range(args.rounds):
            for kind, qs in requests.items():
                for setting in ("on", "off") if r % 2 == 0 else ("off", "on"):
                    engine._ranker = ranker if setting == "on" else None
                    for q in qs:
                        started = time.perf_counter()
                        await engine.hybrid_ranking(q, 10, none)
                        timings[kind][setting].append((time.perf_counter() - started) * 1000)
            print(f"  round {r + 1}/{args.rounds}")
    rows = []
    for kind, t in timings.items():
        on, off = t["on"], t["off"]
        rows.append(
            {
                "kind": kind,
                "requests": len(on),
                "off_p50_ms": round(statistics.median(off), 2),
                "on_p50_ms": round(statistics.median(on), 2),
                "added_p50_ms": round(statistics.median(on) - statistics.median(off), 2),
                "ratio_p50": round(statistics.median(on) / statistics.median(off), 3),
                "off_p99_ms": round(p99(off), 2),
                "on_p99_ms": round(p99(on), 2),
            }
        )
    result = {
        "rows": rows,
        "machine": ev.machine(),
        "ranker": ranker.version,
        "windows": dataclasses.asdict(engine.tuning.windows),
    }
    print(json.dumps(rows, indent=1))
    ev.RESULTS.mkdir(parents=True, exist_ok=True)
    (ev.RESULTS / "ranker_latency.json").write_text(json.dumps(result, indent=1))
    headers = ["request", "n", "p50 off", "p50 on", "added p50", "on/off p50", "p99 off", "p99 on"]
    table = ev.markdown_table(
        headers,
        [
            [
                r["kind"],
                r["requests"],
                r["off_p50_ms"],
                r["on_p50_ms"],
                r["added_p50_ms"],
                r["ratio_p50"],
                r["off_p99_ms"],
                r["on_p99_ms"],
            ]
            for r in rows
        ],
    )
    (ev.RESULTS / "ranker_latency.md").write_text(
        "Hybrid search in one process, learned ranker on vs off, interleaved "
        f"({args.rounds} rounds; ms per search, wall time, one encoding thread). "
        f"`.venv/bin/python bench/ranker_latency.py` on {ev.machine()}.\n\n{table}\n"
    )
    return 0


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--n", type=int, default=60, help="requests of each kind")
    return parser.parse_args()


if __name__ == "__main__":
    sys.exit(asyncio.run(main(parse_args())))
