"""Stock against movie-tuned encoder, side by side, on every kind of request (issue 14's gates).

    .venv/bin/python bench/eval_encoder.py --model PATH [--split movie|random] [--write]

For each model (the stock all-MiniLM-L6-v2 and the one at PATH: a sentence-transformers folder
or a Marquee bundle), on the int8 ONNX backend that serves: the catalog is indexed with the
real embedder code (cached per model under .data/eval/), and through the search engine as a
replica runs it:

- tomt_dev requests held out from the encoder's training (bench/train_encoder.py's split:
  by answer film, or by request for ``--split random``): semantic, hybrid before the ranker,
  and with the learned ranker;
- the hand-written well-known-films set and the catalog lookups (titles, typos, names);
- MovieLens taste recommendations (recall@20, report users of eval_recs.py).

Gates (issue 14), on the held-out requests: semantic recall@10 >= 0.35, hybrid (before the
ranker) >= 0.40; and no regression on the well-known set, titles or names, recall@20 of
recommendations within 0.005 of stock. Results in bench/results/encoder.json; ``--write`` puts
the table in docs/evaluation.md. Skips (exit 0) when ../shared/data is absent.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import eval_recs
import eval_search as ev
import ranking
import train_encoder

SEMANTIC, _, _, HYBRID, _, RANKED = ranking.STAGES
GATES = {"semantic recall@10": 0.35, "hybrid recall@10": 0.40}
RECS_TOLERANCE = 0.005


async def measure(catalog: dict[int, Any], sets: dict[str, list[ev.Query]]) -> dict[str, Any]:
    """Every set through every stage, and the recommendations, for the model evaluated; kept
    in its cache dir (keyed by the requests and the ranker), so stock is measured once."""
    from marquee_search.kinds import DEFAULT_KINDS
    from marquee_search.ranker import DEFAULT_MODEL, LearnedRanker

    ranker = LearnedRanker(DEFAULT_MODEL) if DEFAULT_MODEL.exists() else None
    key = json.dumps(
        [
            ranker.version if ranker else None,
            repr(DEFAULT_KINDS),
            ranking.STAGES,
            {n: [q.qid for q in qs] for n, qs in sets.items()},
        ]
    )
    cached = ev.data_dir() / f"encoder-eval-{hashlib.sha256(key.encode()).hexdigest()[:12]}.json"
    if cached.exists():
        print(f"  (measured before: {cached.name})")
        return json.loads(cached.read_text())  # type: ignore[no-any-return]
    out: dict[str, Any] = {}
    async with ranking.engine_for(catalog, ranker=ranker) as (engine, box):
        await ranking.encode_windows(engine, [q for qs in sets.values() for q in qs], box)
        for name, qs in sets.items():
            print(f"{name}: {len(qs)} requests")
            stages = await ranking.stage_rankings(engine, qs)
            answers = [q.answer for q in qs]
            out[name] = {s: ev.metrics(r, answers) for s, r in stages.items()}
    out["recommendations"] = await eval_recs.measure(catalog)
    cached.write_text(json.dumps(out))
    return out


def use_model(setting: str) -> None:
    os.environ["MARQUEE_SEARCH_MODEL"] = setting


def gates(stock: dict[str, Any], tuned: dict[str, Any], held: str) -> dict[str, dict[str, Any]]:
    def r(res: dict[str, Any], name: str, stage: str, at: str = "recall@10") -> float:
        return float(res[name][stage][at])

    out: dict[str, dict[str, Any]] = {
        "semantic recall@10": {
            "value": r(tuned, held, SEMANTIC),
            "needs": f">= {GATES['semantic recall@10']}",
        },
        "hybrid recall@10": {
            "value": r(tuned, held, HYBRID),
            "needs": f">= {GATES['hybrid recall@10']}",
        },
    }
    out["semantic recall@10"]["passed"] = out["semantic recall@10"]["value"] >= 0.35
    out["hybrid recall@10"]["passed"] = out["hybrid recall@10"]["value"] >= 0.40
    for name in stock:
        if name in (held, "recommendations"):
            continue
        for at in ("recall@1", "recall@10"):
            before, after = r(stock, name, RANKED, at), r(tuned, name, RANKED, at)
            out[f"{name} {at} (default ranking)"] = {
                "value": after,
                "needs": f">= stock {before:.3f}",
                "passed": after >= before,
            }
    before = stock["recommendations"]["recall@20"]
    after = tuned["recommendations"]["recall@20"]
    out["recommendations recall@20"] = {
        "value": after,
        "needs": f">= stock {before:.4f} - {RECS_TOLERANCE}",
        "passed": after >= before - RECS_TOLERANCE,
    }
    return out


def table(stock: dict[str, Any], tuned: dict[str, Any]) -> str:
    rows = []
    for name in stock:
        if name == "recommendations":
            continue
        for stage in (SEMANTIC, HYBRID, RANKED):
            a, b = stock[name][stage], tuned[name][stage]
            rows.append(
                [
                    name,
                    stage,
                    f"{a['recall@1']:.3f} → {b['recall@1']:.3f}",
                    f"{a['recall@10']:.3f} → {b['recall@10']:.3f}",
                    f"{a['mrr@10']:.3f} → {b['mrr@10']:.3f}",
                ]
            )
    a, b = stock["recommendations"], tuned["recommendations"]
    rows.append(
        ["MovieLens taste", "recall@20", "", f"{a['recall@20']:.4f} → {b['recall@20']:.4f}", ""]
    )
    return ev.markdown_table(["requests", "ranking", "R@1 stock → tuned", "R@10", "MRR@10"], rows)


async def main(args: argparse.Namespace) -> int:
    if not ev.CATALOG_CSV.exists() or not ev.TOMT.exists():
        print("../shared/data is absent: nothing to measure (skipped)")
        return 0
    started = time.perf_counter()
    catalog = ev.load_catalog()
    queries = ev.load_queries()
    held = f"tomt_dev held out ({args.split} split)"
    sets = {
        held: [q for q in queries if train_encoder.held_out(q, args.split)],
        "well-known films": ranking.load_wellknown(),
        **ranking.lookup_queries(catalog),
    }
    results: dict[str, Any] = {}
    for label, setting in (("stock", "stock"), ("tuned", args.model)):
        print(f"== {label}: {setting}")
        use_model(setting)
        results[label] = await measure(catalog, sets)
    checks = gates(results["stock"], results["tuned"], held)
    elapsed = time.perf_counter() - started
    text = (
        f"Stock all-MiniLM-L6-v2 against the movie-tuned encoder (`{Path(args.model).name}`), "
        f"both int8 ONNX as served. Made by `.venv/bin/python bench/eval_encoder.py --model "
        f"{args.model} --split {args.split}` on {ev.machine()}, {elapsed:.0f}s.\n\n"
        f"{table(results['stock'], results['tuned'])}\n\nGates:\n\n"
        + ev.markdown_table(
            ["gate", "tuned", "needs", "passed"],
            [
                [g, f"{c['value']:.4f}", c["needs"], "yes" if c["passed"] else "NO"]
                for g, c in checks.items()
            ],
        )
    )
    print(text)
    ev.RESULTS.mkdir(parents=True, exist_ok=True)
    out = ev.RESULTS / f"encoder-{args.split}.json"
    out.write_text(
        json.dumps(
            {
                "model": args.model,
                "split": args.split,
                "results": results,
                "gates": checks,
                "machine": ev.machine(),
                "seconds": round(elapsed),
            },
            indent=1,
        )
    )
    if args.write:
        ev.write_doc_section(f"encoder-{args.split}", text)
    return 0


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument(
        "--model", required=True, help="movie-tuned (the packaged bundle) or a model's folder"
    )
    p.add_argument("--split", choices=train_encoder.SPLITS, default="movie")
    p.add_argument("--write", action="store_true", help="update docs/evaluation.md")
    args = p.parse_args(argv)
    if args.model != "movie-tuned":  # a MODEL setting name stays a name
        args.model = os.path.abspath(args.model)
    return args


if __name__ == "__main__":
    raise SystemExit(asyncio.run(main(parse_args())))
