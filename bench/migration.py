"""Model-migration throughput: how long ``marquee-embedder migrate`` takes to fill the new
model's collection from the ledger, with 1 and 2 embedder workers.

On a throwaway redis-server and Chroma server: N shared-catalog movies recorded in the ledger
(what the backfill reads), a live collection stamped with the stock model, and a second model
(the stock model exported as an int8 bundle under another name: the same architecture, so the
same cost as the movie-tuned bundle). Then, per worker count, the real embedder processes
(started as devstack starts them, the cores split between them, MIGRATION_RATE=0: unthrottled)
and ``migrate start``: timed to the end of the copy (the ledger gone through) and to ``ready``
(verified complete; switch allowed). Writes bench/results/migration.{json,md}.

    .venv/bin/python bench/migration.py [--movies 2000] [--workers 1 2]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import time
from datetime import UTC, datetime
from typing import Any

import benchlib
from pipeline import load_movies


async def run(args: argparse.Namespace) -> dict[str, Any]:
    from pydantic import AnyHttpUrl
    from redis.asyncio import Redis

    from marquee_embedder.ledger import Ledger
    from marquee_embedder.migration import MigrationStore, start
    from marquee_shared.chroma import connect, open_collection
    from marquee_shared.events import CATALOG_STREAM, MovieFetched
    from marquee_shared.index import movie_document
    from marquee_shared.migration import read_status
    from marquee_shared.model.bundle import export_bundle
    from marquee_shared.model.encoder import default_cache_dir, default_model_path, load_encoder
    from marquee_shared.model.resolve import resolve_model

    base = benchlib.fresh_dir("migration")
    movies = load_movies(args.movies)
    alt = base / "stock-alt"
    alt_id = export_bundle(
        default_model_path(), alt, name="stock-alt", version="bench", cache_dir=default_cache_dir()
    )
    stock = resolve_model("stock")[1]
    out: dict[str, Any] = {"movies": len(movies), "runs": []}
    # The reference: the same model encoding in-process, all cores, no I/O (the machine may be
    # shared: the ratio to this is what carries over to another machine).
    sample = [movie_document(m) for m in movies[:256]]
    encoder = load_encoder(alt, "onnx-int8")
    timer = time.perf_counter()
    encoder.encode(sample, batch_size=64)
    out["raw_encode_per_s"] = round(len(sample) / (time.perf_counter() - timer), 1)
    del encoder
    with benchlib.stores(base) as (redis_url, chroma_url):
        redis = Redis.from_url(redis_url)
        ledger = Ledger(redis, f"{CATALOG_STREAM}:ledger")
        now = datetime.now(UTC)
        for i in range(0, len(movies), 500):
            await ledger.record(
                [
                    MovieFetched(source="bench", movie=m, occurred_at=now)
                    for m in movies[i : i + 500]
                ]
            )
        chroma = await connect(AnyHttpUrl(chroma_url))
        for workers in args.workers:
            logical = f"bench_w{workers}"
            await open_collection(AnyHttpUrl(chroma_url), logical, model=stock)
            threads = max(1, (os.cpu_count() or 1) // workers)
            env = benchlib.service_env(
                redis_url,
                chroma_url,
                MARQUEE_CHROMA_COLLECTION=logical,
                MARQUEE_EMBEDDER_TORCH_THREADS=str(threads),
                MARQUEE_EMBEDDER_MIGRATION_RATE="0",
                MARQUEE_EMBEDDER_MIGRATION_VERIFY_INTERVAL_S="2",
                MARQUEE_EMBEDDER_MIGRATION_POLL_S="0.2",
            )
            procs = [
                benchlib.start_service(
                    f"embedder-w{workers}-{i + 1}", "marquee_embedder.app", env, base / "logs"
                )[0]
                for i in range(workers)
            ]
            try:
                store = MigrationStore(redis, logical, ledger.key)
                started = time.perf_counter()
                await start(
                    store,
                    chroma,
                    AnyHttpUrl(chroma_url),
                    model=str(alt),
                    configured_source="stock",
                    verify_interval_s=2.0,
                )
                copied_s = None
                while True:
                    status = await read_status(redis, logical)
                    assert status is not None
                    if copied_s is None and status.phase != "copying":
                        copied_s = time.perf_counter() - started
                    if status.phase == "ready":
                        break
                    await asyncio.sleep(0.1)
                ready_s = time.perf_counter() - started
            finally:
                for proc in procs:
                    proc.stop()
            assert copied_s is not None
            run_result = {
                "workers": workers,
                "threads_per_worker": threads,
                "copy_s": round(copied_s, 1),
                "ready_s": round(ready_s, 1),
                "movies_per_s": round(len(movies) / copied_s, 1),
                "per_100k_min": round(100_000 / (len(movies) / copied_s) / 60, 1),
                "load_average": round(os.getloadavg()[0], 2),
            }
            print(run_result)
            out["runs"].append(run_result)
        await redis.aclose()
    out["model"] = str(alt_id)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--movies", type=int, default=2000)
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    args = parser.parse_args()
    benchlib.require_data()
    result = asyncio.run(run(args))
    info = benchlib.machine()
    lines = [
        "# Model migration throughput",
        "",
        (
            f"`{benchlib.command_line()}`, {benchlib.machine_line(info)}; "
            f"{result['movies']} shared-catalog movies, stock -> {result['model']} (int8 "
            "bundle), MIGRATION_RATE=0. The same model encoding in-process (all cores, no I/O): "
            f"{result['raw_encode_per_s']} movies/s."
        ),
        "",
        "| workers | threads each | copy (s) | to ready (s) | movies/s | per 100k | load after |",
        "|---:|---:|---:|---:|---:|---:|---:|",
    ]
    lines += [
        f"| {r['workers']} | {r['threads_per_worker']} | {r['copy_s']} | {r['ready_s']} | "
        f"{r['movies_per_s']} | {r['per_100k_min']} min | {r['load_average']} |"
        for r in result["runs"]
    ]
    benchlib.write_results("migration", {**result, "machine": info}, lines)


if __name__ == "__main__":
    main()
