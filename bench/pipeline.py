"""Embedding pipeline throughput and freshness, against a plain torch loop, in one run.

On a throwaway redis-server and Chroma server, over the same N shared-catalog movies:

1. **raw encode**: the embedder's backend (MARQUEE_EMBEDDER_BACKEND, default from its settings)
   encoding the texts in-process, in the embedder's batches; then the same vectors upserted
   serially, batch by batch, to time what Chroma's writes cost on top;
2. **plain torch loop**: sentence-transformers torch fp32, ``encode(batch_size=32)`` then
   ``upsert`` to Chroma, 32 movies at a time (the pattern Marquee grew from);
3. **pipeline, 1 and 2 workers**: the N events published to the Redis stream, the real
   embedder processes (started as devstack starts them, the cores split between workers)
   consuming them, until every movie is in Chroma (what search queries): docs/s from the first
   XADD to the last movie visible;
4. **freshness** (1 worker, idle pipeline): events published one by one at a steady rate
   (default 10/s); publish → visible in Chroma, polled every 20 ms, p50/p95; plus the
   embedder's own ``marquee_embedder_freshness_seconds`` histogram.

Also the embedders' peak RSS (VmHWM). Writes bench/results/pipeline.{json,md}.

    .venv/bin/python bench/pipeline.py [--movies 5000] [--rate 10 --seconds 30]
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import re
import statistics
import time
import urllib.request
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import benchlib
from benchlib import Timer, percentile

if TYPE_CHECKING:
    from marquee_shared.events import Movie


def load_movies(n: int) -> list[Movie]:
    from marquee_ingest.sources import read_catalog_csv
    from marquee_shared.events import Movie

    rows = (m for m in read_catalog_csv(benchlib.CATALOG_CSV) if isinstance(m, Movie))
    return list(itertools.islice(rows, n))


def records(movies: list[Movie]) -> dict[str, Any]:
    from marquee_shared.index import movie_document, movie_metadata, record_id

    now = datetime.now(UTC)
    return {
        "ids": [record_id(m.tmdb_id) for m in movies],
        "documents": [movie_document(m) for m in movies],
        "metadatas": [movie_metadata(m, occurred_at=now) for m in movies],
    }


async def collection(chroma_url: str, name: str) -> Any:
    import httpx

    from marquee_shared.chroma import open_collection

    _, coll = await open_collection(httpx.URL(chroma_url), name)  # type: ignore[arg-type]
    return coll


async def raw_encode(
    movies: list[Movie], chroma_url: str, backend: str, batch: int
) -> dict[str, Any]:
    """The backend alone (in the embedder's batches), then the serial upserts of its vectors."""
    from marquee_shared.model.encoder import default_model_path, load_encoder

    encoder = load_encoder(default_model_path(), backend)  # type: ignore[arg-type]
    rec = records(movies)
    docs = rec["documents"]
    encoder.encode(docs[:32])  # warm up
    timer = Timer()
    vectors = [encoder.encode(docs[i : i + batch]) for i in range(0, len(docs), batch)]
    encode_s = timer.elapsed
    coll = await collection(chroma_url, "bench_raw")
    timer = Timer()
    for n, i in enumerate(range(0, len(docs), batch)):
        await coll.upsert(
            ids=rec["ids"][i : i + batch],
            embeddings=vectors[n],
            documents=docs[i : i + batch],
            metadatas=rec["metadatas"][i : i + batch],
        )
    upsert_s = timer.elapsed
    del encoder
    return {
        "backend": backend,
        "batch": batch,
        "encode_docs_per_s": round(len(docs) / encode_s, 1),
        "encode_s": round(encode_s, 1),
        "upsert_s": round(upsert_s, 1),
        "upsert_ms_per_batch": round(upsert_s / len(vectors) * 1000, 1),
        "upsert_share": round(upsert_s / (encode_s + upsert_s), 3),
        "serial_docs_per_s": round(len(docs) / (encode_s + upsert_s), 1),
    }


async def plain_torch_loop(movies: list[Movie], chroma_url: str) -> dict[str, Any]:
    """sentence-transformers torch fp32, encode 32 then upsert 32, in one loop."""
    from sentence_transformers import SentenceTransformer

    from marquee_shared.model.encoder import default_model_path

    model = SentenceTransformer(str(default_model_path()), device="cpu")
    rec = records(movies)
    docs = rec["documents"]
    model.encode(docs[:32], batch_size=32, show_progress_bar=False)  # warm up
    coll = await collection(chroma_url, "bench_plain_torch")
    encode_s = upsert_s = 0.0
    timer = Timer()
    for i in range(0, len(docs), 32):
        t = time.perf_counter()
        vectors = model.encode(
            docs[i : i + 32], batch_size=32, normalize_embeddings=True, show_progress_bar=False
        )
        encode_s += time.perf_counter() - t
        t = time.perf_counter()
        await coll.upsert(
            ids=rec["ids"][i : i + 32],
            embeddings=vectors,
            documents=docs[i : i + 32],
            metadatas=rec["metadatas"][i : i + 32],
        )
        upsert_s += time.perf_counter() - t
    total = timer.elapsed
    assert await coll.count() == len(movies)
    del model
    return {
        "docs_per_s": round(len(movies) / total, 1),
        "seconds": round(total, 1),
        "encode_s": round(encode_s, 1),
        "upsert_s": round(upsert_s, 1),
    }


class Embedders:
    """N embedder processes on one collection, the cores split between them (as devstack)."""

    def __init__(self, n: int, redis_url: str, chroma_url: str, coll: str, logs: Path) -> None:
        import os

        threads = max(1, (os.cpu_count() or 1) // n)
        self.env = benchlib.service_env(
            redis_url,
            chroma_url,
            MARQUEE_CHROMA_COLLECTION=coll,
            MARQUEE_EMBEDDER_TORCH_THREADS=str(threads),
        )
        self.n, self.logs = n, logs
        self.procs: list[Any] = []
        self.urls: list[str] = []

    def __enter__(self) -> Embedders:
        try:
            for i in range(self.n):
                proc, url = benchlib.start_service(
                    f"embedder-{i + 1}", "marquee_embedder.app", self.env, self.logs
                )
                self.procs.append(proc)
                self.urls.append(url)
        except BaseException:
            self.__exit__()
            raise
        return self

    def __exit__(self, *_: object) -> None:
        for proc in self.procs:
            proc.stop()

    def peak_rss_mb(self) -> list[float | None]:
        return [benchlib.peak_rss_mb(p.popen.pid) for p in self.procs]

    def metrics(self) -> str:
        out = []
        for url in self.urls:
            with urllib.request.urlopen(url + "/metrics", timeout=5) as resp:
                out.append(resp.read().decode())
        return "\n".join(out)


async def pipeline_run(
    movies: list[Movie], redis_url: str, chroma_url: str, workers: int, logs: Path
) -> tuple[dict[str, Any], dict[str, Any] | None]:
    """Publish every movie at once; time until all are in Chroma. Returns (throughput,
    embedder memory); the embedders are stopped after."""
    from redis.asyncio import Redis

    from marquee_shared.events import MovieFetched
    from marquee_shared.streams import publish_events

    redis = Redis.from_url(redis_url)
    await redis.flushall()
    name = f"bench_pipeline_{workers}"
    coll = await collection(chroma_url, name)
    try:
        with Embedders(workers, redis_url, chroma_url, name, logs) as embedders:
            now = datetime.now(UTC)
            events = [MovieFetched(source="bench", movie=m, occurred_at=now) for m in movies]
            timer = Timer()
            await publish_events(redis, events)
            published_s = timer.elapsed
            deadline = time.monotonic() + 1800
            while (count := await coll.count()) < len(movies):
                if time.monotonic() > deadline:
                    raise SystemExit(f"pipeline stalled at {count}/{len(movies)}")
                if not all(p.alive for p in embedders.procs):
                    raise SystemExit(f"an embedder died; logs in {logs}")
                await asyncio.sleep(0.1)
            total = timer.elapsed
            result: dict[str, Any] = {
                "workers": workers,
                "threads_per_worker": int(embedders.env["MARQUEE_EMBEDDER_TORCH_THREADS"]),
                "docs_per_s": round(len(movies) / total, 1),
                "seconds": round(total, 1),
                "publish_s": round(published_s, 2),
            }
            freshness = None
            if workers == 1:
                freshness = await measure_freshness(redis, coll, embedders, ARGS)
            memory = {"embedder_peak_rss_mb": embedders.peak_rss_mb()}
            result.update(memory)
            return result, freshness
    finally:
        await redis.aclose()


async def measure_freshness(
    redis: Any, coll: Any, embedders: Embedders, args: argparse.Namespace
) -> dict[str, Any]:
    """Events one at a time at a steady rate; publish → visible in Chroma."""
    from marquee_shared.events import MovieFetched
    from marquee_shared.index import record_id
    from marquee_shared.streams import publish_events

    movies = load_movies(args.movies + int(args.rate * args.seconds))[args.movies :]
    published: dict[str, float] = {}
    seen: dict[str, float] = {}
    done = asyncio.Event()

    async def poll() -> None:
        while not done.is_set() or len(seen) < len(published):
            waiting = [i for i in published if i not in seen]
            if waiting:
                got = await coll.get(ids=waiting, include=[])
                now = time.perf_counter()
                for i in got["ids"]:
                    seen[i] = now
            await asyncio.sleep(0.02)

    before = embedders.metrics()
    poller = asyncio.create_task(poll())
    interval = 1 / args.rate
    start = time.perf_counter()
    for n, movie in enumerate(movies):
        await asyncio.sleep(max(0.0, start + n * interval - time.perf_counter()))
        event = MovieFetched(source="bench", movie=movie, occurred_at=datetime.now(UTC))
        published[record_id(movie.tmdb_id)] = time.perf_counter()
        await publish_events(redis, [event])
    done.set()
    await asyncio.wait_for(poller, 60)
    latencies = [seen[i] - t for i, t in published.items()]
    metric = histogram_delta(before, embedders.metrics(), "marquee_embedder_freshness_seconds")
    return {
        "rate_per_s": args.rate,
        "events": len(latencies),
        "p50_ms": round(percentile(latencies, 50) * 1000),
        "p95_ms": round(percentile(latencies, 95) * 1000),
        "max_ms": round(max(latencies) * 1000),
        "mean_ms": round(statistics.mean(latencies) * 1000),
        "poll_interval_ms": 20,
        "embedder_metric": metric,
    }


def histogram(text: str, name: str) -> tuple[dict[float, float], float, float]:
    """Cumulative buckets, sum and count of a Prometheus histogram (summed over replicas)."""
    buckets: dict[float, float] = {}
    total = count = 0.0
    for line in text.splitlines():
        if line.startswith(name + "_bucket"):
            le = re.search(r'le="([^"]+)"', line)
            if le:
                bound = float("inf") if le.group(1) == "+Inf" else float(le.group(1))
                buckets[bound] = buckets.get(bound, 0) + float(line.split()[-1])
        elif line.startswith(name + "_sum"):
            total += float(line.split()[-1])
        elif line.startswith(name + "_count"):
            count += float(line.split()[-1])
    return buckets, total, count


def histogram_delta(before: str, after: str, name: str) -> dict[str, Any]:
    """Count, mean and the bucket bound holding 95 % of what was observed in between."""
    b0, s0, c0 = histogram(before, name)
    b1, s1, c1 = histogram(after, name)
    count = c1 - c0
    buckets = {bound: c - b0.get(bound, 0.0) for bound, c in b1.items()}
    p95 = next((b for b, c in sorted(buckets.items()) if count and c >= 0.95 * count), None)
    return {
        "count": int(count),
        "mean_ms": round((s1 - s0) / count * 1000) if count else None,
        "p95_at_most_s": p95,
    }


ARGS = argparse.Namespace()


async def main(args: argparse.Namespace) -> None:
    from marquee_embedder.settings import EmbedderSettings

    benchlib.require_data()
    ARGS.__dict__.update(vars(args))
    info = benchlib.machine()
    settings = EmbedderSettings()
    movies = load_movies(args.movies)
    base = benchlib.fresh_dir("pipeline")
    logs = base / "logs"
    # The in-process baselines run on an even sample of the same movies (every step-th one):
    # a rate per document needs no more, and on 2 cores the torch loop over all 5,000 alone
    # would take 3-4 minutes of the 15 the whole benchmark may use.
    step = max(1, -(-len(movies) // args.baseline_movies)) if args.baseline_movies else 1
    sample = movies[::step]
    results: dict[str, Any] = {
        "machine": info,
        "movies": len(movies),
        "baseline_movies": len(sample),
    }
    with benchlib.stores(base) as (redis_url, chroma_url):
        print(f"raw encode ({settings.backend}) ...", flush=True)
        raw = await raw_encode(sample, chroma_url, settings.backend, settings.batch_size)
        print(raw, flush=True)
        print("plain torch loop ...", flush=True)
        plain = await plain_torch_loop(sample, chroma_url)
        print(plain, flush=True)
        runs = []
        freshness = None
        for workers in args.workers:
            print(f"pipeline, {workers} worker(s) ...", flush=True)
            run, fresh = await pipeline_run(movies, redis_url, chroma_url, workers, logs)
            print(run, flush=True)
            runs.append(run)
            freshness = freshness or fresh
    best = max(runs, key=lambda r: r["docs_per_s"])
    one = next((r for r in runs if r["workers"] == 1), best)
    results.update(
        raw_encode=raw,
        plain_torch_loop=plain,
        pipeline=runs,
        freshness=freshness,
        ratios={
            "pipeline_vs_plain_torch": round(best["docs_per_s"] / plain["docs_per_s"], 2),
            "pipeline_vs_raw_encode": round(best["docs_per_s"] / raw["encode_docs_per_s"], 2),
            "pipeline_1_worker_vs_raw_encode": round(
                one["docs_per_s"] / raw["encode_docs_per_s"], 2
            ),
        },
        command=benchlib.command_line(),
    )
    write(results)


def write(r: dict[str, Any]) -> None:
    raw, plain, ratios, fresh = r["raw_encode"], r["plain_torch_loop"], r["ratios"], r["freshness"]
    lines = [
        "# Embedding pipeline: throughput and freshness",
        "",
        (
            f"Machine: {benchlib.machine_line(r['machine'])}. Command: `{r['command']}`. "
            f"{r['movies']} shared-catalog movies through the pipeline; the in-process rows on "
            f"an even sample of {r.get('baseline_movies', r['movies'])} of them. One run: compare "
            "the ratios."
        ),
        "",
        "| what | docs/s | seconds | notes |",
        "| --- | ---: | ---: | --- |",
        (
            f"| raw encode, {raw['backend']}, in-process | {raw['encode_docs_per_s']} | "
            f"{raw['encode_s']} | batches of {raw['batch']}, all cores, no I/O |"
        ),
        (
            f"| {raw['backend']} encode then upsert, serial | {raw['serial_docs_per_s']} | "
            f"{raw['encode_s'] + raw['upsert_s']:.1f} | upsert {raw['upsert_ms_per_batch']} ms per "
            f"{raw['batch']}: {raw['upsert_share']:.0%} of the time |"
        ),
        (
            f"| plain torch loop (sentence-transformers fp32, 32 per encode + upsert) | "
            f"{plain['docs_per_s']} | {plain['seconds']} | encode {plain['encode_s']} s, upsert "
            f"{plain['upsert_s']} s |"
        ),
    ]
    for run in r["pipeline"]:
        rss = ", ".join(f"{m:.0f}" for m in run["embedder_peak_rss_mb"] if m is not None)
        lines.append(
            f"| pipeline, {run['workers']} embedder worker(s) x {run['threads_per_worker']} "
            f"thread(s) | {run['docs_per_s']} | {run['seconds']} | publish → all in Chroma; "
            f"peak RSS {rss} MB |"
        )
    lines += [
        "",
        (
            f"Pipeline (best) vs plain torch loop: **{ratios['pipeline_vs_plain_torch']}x** "
            f"(target ≥ 1.6x); vs raw encode: **{ratios['pipeline_vs_raw_encode']:.0%}** "
            f"(target ≥ 90 %; 1 worker: {ratios['pipeline_1_worker_vs_raw_encode']:.0%})."
        ),
    ]
    if fresh:
        metric = fresh["embedder_metric"]
        lines += [
            "",
            (
                f"Freshness at {fresh['rate_per_s']} events/s ({fresh['events']} events, one "
                f"embedder, publish → visible in Chroma, polled every {fresh['poll_interval_ms']} "
                f"ms): p50 **{fresh['p50_ms']} ms**, p95 **{fresh['p95_ms']} ms** (target ≤ 1000), "
                f"max {fresh['max_ms']} ms. The embedder's own histogram "
                f"(`marquee_embedder_freshness_seconds`, publish → written, {metric['count']} "
                f"events): mean {metric['mean_ms']} ms, p95 ≤ {metric['p95_at_most_s']} s."
            ),
        ]
    benchlib.write_results("pipeline", r, lines)


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--movies", type=int, default=5000)
    parser.add_argument(
        "--baseline-movies",
        type=int,
        default=2000,
        help="raw encode and the plain torch loop run on about this many of the same movies "
        "(an even sample; 0 = all)",
    )
    parser.add_argument("--workers", type=lambda s: [int(x) for x in s.split(",")], default=[1, 2])
    parser.add_argument("--rate", type=float, default=10.0, help="freshness: events per second")
    parser.add_argument("--seconds", type=float, default=30.0, help="freshness: duration")
    return parser.parse_args()


if __name__ == "__main__":
    asyncio.run(main(parse_args()))
