"""Model throughput and quality per embedding backend, side by side in one run.

    .venv/bin/python bench/model_backends.py [--docs 1024] [--queries 200]

For each backend (torch, onnx, onnx-int8): documents/s on shared-catalog movie texts (batch 32),
latency p50/p99 of one short query, and cosine to the torch fp32 vectors. Backends are measured
interleaved (round-robin, best of 3 rounds) so a noisy neighbour hurts them alike; compare the
ratios, not absolute numbers across runs. Writes bench/results/model_backends.{json,md}.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
CATALOG = ROOT.parent / "shared" / "data" / "catalog" / "movies.csv"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--docs", type=int, default=1024)
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    if not CATALOG.exists():
        raise SystemExit(f"{CATALOG} is absent: this benchmark needs the ../shared kit")

    from marquee_ingest.sources import read_catalog_csv
    from marquee_shared.events import Movie
    from marquee_shared.index import movie_document
    from marquee_shared.model.encoder import BACKENDS, cpu_isa, default_model_path, load_encoder

    movies = [
        m
        for m in itertools.islice(read_catalog_csv(CATALOG), args.docs * 2)
        if isinstance(m, Movie)
    ]
    docs = [movie_document(m) for m in movies[: args.docs]]
    queries = [f"{m.title} {' '.join(m.overview.split()[:5])}" for m in movies[: args.queries]]
    encoders = {b: load_encoder(default_model_path(), b) for b in BACKENDS}
    reference = encoders["torch"].encode(docs)

    docs_per_s: dict[str, list[float]] = {b: [] for b in BACKENDS}
    latencies: dict[str, list[float]] = {b: [] for b in BACKENDS}
    cosine: dict[str, float] = {}
    for _ in range(args.rounds):
        for backend, encoder in encoders.items():
            started = time.perf_counter()
            vectors = encoder.encode(docs, batch_size=32)
            docs_per_s[backend].append(len(docs) / (time.perf_counter() - started))
            cosine[backend] = float(np.mean(np.sum(vectors * reference, axis=1)))
            for q in queries:
                t = time.perf_counter()
                encoder.encode([q])
                latencies[backend].append(time.perf_counter() - t)

    results = {}
    for backend in BACKENDS:
        lat = sorted(latencies[backend])
        results[backend] = {
            "docs_per_s": round(max(docs_per_s[backend]), 1),
            "query_p50_ms": round(statistics.median(lat) * 1000, 2),
            "query_p99_ms": round(lat[int(len(lat) * 0.99) - 1] * 1000, 2),
            "mean_cosine_to_torch_fp32": round(cosine[backend], 4),
        }
    torch_rate = results["torch"]["docs_per_s"]
    command = "python bench/model_backends.py " + " ".join(sys.argv[1:])
    lines = [
        "# Embedding backends (all-MiniLM-L6-v2)",
        "",
        (
            f"Machine: {platform.machine()}, {os.cpu_count()} CPUs ({cpu_isa()}), "
            f"Python {platform.python_version()}. Command: `{command}`. {len(docs)} "
            f"shared-catalog movie texts, batch 32, best of {args.rounds} interleaved rounds; "
            f"{len(queries)} one-query calls per round."
        ),
        "",
        "| backend | docs/s | vs torch | query p50 ms | query p99 ms | cosine to fp32 |",
        "| --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    for backend, r in results.items():
        lines.append(
            f"| {backend} | {r['docs_per_s']} | {r['docs_per_s'] / torch_rate:.2f}x | "
            f"{r['query_p50_ms']} | {r['query_p99_ms']} | {r['mean_cosine_to_torch_fp32']} |"
        )
    out = ROOT / "bench" / "results"
    out.mkdir(parents=True, exist_ok=True)
    (out / "model_backends.json").write_text(
        json.dumps({"command": command, "results": results}, indent=2)
    )
    (out / "model_backends.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
