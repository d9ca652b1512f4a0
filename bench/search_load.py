"""Search under load with the whole catalog indexed: the gateway, the search service directly
(the hop's cost) and the single-process seed-pattern app (bench/seed_app.py), in one run.

The 15,834 shared-catalog movies are indexed once by the real embedder code into the eval
cache (.data/eval/, shared with bench/eval_search.py, one per backend; only missing movies are
embedded). Then a Chroma server on that index, redis, search, explainer, ingest and the
gateway start as devstack starts them, with the gateway's rate limit off
(MARQUEE_GATEWAY_RATE_LIMIT_PER_MINUTE=0) and the search service's query-vector cache off
(MARQUEE_SEARCH_QUERY_CACHE_SIZE=0): every request embeds its query. The seed app runs beside
them on the same Chroma collection.

Load: wrk (closed loop: each connection sends its next request when the last one answered),
1/8/32/64 connections, a fixed time per cell, every request a different real tomt_dev query
(the post's text, tags dropped, cut at a word boundary to --query-chars), unfiltered and with a
rotating filter (a genre, a genre and years, years only). Marquee answers in its default
hybrid mode (dense + keyword); the seed app is dense only.

Then the peak RSS (VmHWM) of every service. Writes bench/results/search_load.{json,md}.

    sudo apt-get install -y wrk
    .venv/bin/python bench/search_load.py [--seconds 8] [--levels 1,8,32,64]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import re
import resource
import secrets
import shutil
import statistics
import subprocess
import sys
import urllib.request
from pathlib import Path
from typing import Any
from urllib.parse import quote_plus

import benchlib
from benchlib import ROOT

import devstack

FILTERS = ["genres=Drama", "genres=Horror", "genres=Comedy&year_min=2000", "year_min=2010"]
"""Rotated in the filtered runs; both Marquee and the seed app take these parameters."""

LUA = r"""
local paths = {}
local counter = 0
init = function(args)
  for line in io.lines(args[1]) do paths[#paths + 1] = line end
  counter = tonumber(args[2]) or 0
end
request = function()
  counter = counter + 1
  return wrk.format("GET", paths[(counter % #paths) + 1])
end
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'WRK_JSON {"requests": %d, "duration_us": %d, "p50_us": %d, "p90_us": %d, "p99_us": %d, ' ..
    '"max_us": %d, "connect": %d, "read": %d, "write": %d, "status": %d, "timeout": %d}\n',
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(90),
    latency:percentile(99), latency.max, e.connect, e.read, e.write, e.status, e.timeout))
end
"""


def load_queries(max_chars: int) -> list[str]:
    out: list[str] = []
    seen: set[str] = set()
    with benchlib.TOMT.open(encoding="utf-8") as f:
        for line in f:
            if not line.strip():
                continue
            text = re.sub(r"\[[^\]]*\]", " ", json.loads(line)["query"])
            text = " ".join(text.split())
            if len(text) > max_chars:
                text = text[:max_chars].rsplit(" ", 1)[0]
            if len(text) >= 10 and text not in seen:
                seen.add(text)
                out.append(text)
    random.Random(6).shuffle(out)
    return out


def write_paths(
    folder: Path, name: str, prefix: str, queries: list[str], kind: str = "unfiltered"
) -> Path:
    """One request path per query; ``kind``: unfiltered, filtered (a rotating filter) or
    semantic (mode=semantic: no keyword side)."""
    lines = []
    for i, q in enumerate(queries):
        path = f"{prefix}?q={quote_plus(q)}&k=10"
        if kind == "filtered":
            path += "&" + FILTERS[i % len(FILTERS)]
        elif kind == "semantic":
            path += "&mode=semantic"
        lines.append(path)
    target = folder / f"{name}-{kind}.txt"
    target.write_text("\n".join(lines) + "\n")
    return target


def wrk(
    url: str,
    paths: Path,
    connections: int,
    seconds: float,
    offset: int,
    headers: dict[str, str],
    pids: dict[str, int] | None = None,
) -> dict[str, Any]:
    """One closed-loop cell; with ``pids``, also the CPU each of those processes (and wrk)
    spent per answered request during it: where the 2 cores go."""
    script = paths.parent / "rotate.lua"
    argv = [
        "wrk",
        "-t",
        "1",
        "-c",
        str(connections),
        "-d",
        f"{max(1, round(seconds))}s",
        "--timeout",
        "30s",
    ]
    for key, value in headers.items():
        argv += ["-H", f"{key}: {value}"]
    argv += ["-s", str(script), url, "--", str(paths), str(offset)]
    pids = pids or {}
    cpu_before = {name: benchlib.cpu_seconds(pid) for name, pid in pids.items()}
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    out = subprocess.run(argv, capture_output=True, text=True, check=True, timeout=seconds + 60)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = {name: benchlib.cpu_seconds(pid) - cpu_before[name] for name, pid in pids.items()}
    cpu["wrk"] = after.ru_utime + after.ru_stime - children.ru_utime - children.ru_stime
    line = next((x for x in out.stdout.splitlines() if x.startswith("WRK_JSON ")), None)
    if line is None:
        raise SystemExit(f"wrk printed no summary:\n{out.stdout}\n{out.stderr}")
    raw = json.loads(line.removeprefix("WRK_JSON "))
    errors = raw["connect"] + raw["read"] + raw["write"] + raw["status"] + raw["timeout"]
    return {
        "connections": connections,
        "requests": raw["requests"],
        "qps": round(raw["requests"] / (raw["duration_us"] / 1e6), 1),
        "p50_ms": round(raw["p50_us"] / 1000, 2),
        "p90_ms": round(raw["p90_us"] / 1000, 2),
        "p99_ms": round(raw["p99_us"] / 1000, 2),
        "max_ms": round(raw["max_us"] / 1000, 1),
        "errors": errors,
        "cpu_ms_per_request": {
            name: round(seconds * 1000 / max(1, raw["requests"]), 2)
            for name, seconds in cpu.items()
        },
    }


def get_json(url: str, headers: dict[str, str]) -> Any:
    request = urllib.request.Request(url, headers=headers)
    with urllib.request.urlopen(request, timeout=60) as resp:
        return json.loads(resp.read())


async def breakdown(
    chroma_url: str, redis_url: str, backend: str, queries: list[str]
) -> dict[str, float]:
    """Where one hybrid search's time goes, step by step, in this process on an idle stack
    (medians): the steps of marquee_search.engine over a mirror loaded as a replica loads it,
    the model and BLAS threaded as the service runs them; and, for comparison, the Chroma
    query the exact in-memory search replaces."""
    import time

    from eval_search import COLLECTION
    from pipeline import collection
    from redis.asyncio import Redis
    from threadpoolctl import threadpool_limits

    from marquee_search.engine import Tuning
    from marquee_search.hybrid import fuse
    from marquee_search.settings import SearchSettings
    from marquee_search.sync import IndexSync
    from marquee_shared.api import MovieFilters
    from marquee_shared.model.encoder import default_model_path, load_encoder

    settings = SearchSettings()
    threadpool_limits(limits=1, user_api="blas")
    encoder = load_encoder(
        default_model_path(),
        backend,  # type: ignore[arg-type]
        threads=settings.torch_threads,
        spin=False,
    )
    coll = await collection(chroma_url, COLLECTION)
    redis = Redis.from_url(redis_url)
    try:
        mirror, _, _ = await IndexSync(
            coll, redis, settings.index_changes_stream, vectors=True
        ).load()
    finally:
        await redis.aclose()
    tuning = Tuning()
    everything = mirror.mask(MovieFilters())
    timings: dict[str, list[float]] = {}

    def note(name: str, started: float) -> float:
        timings.setdefault(name, []).append((time.perf_counter() - started) * 1000)
        return time.perf_counter()

    encoder.encode(queries[:2])
    for q in queries:
        started = time.perf_counter()
        vector = encoder.encode([q])[0]
        started = note(f"encode query ({backend}, {settings.torch_threads} thread)", started)
        dense = mirror.nearest(vector, tuning.fusion.depth)
        started = note(f"exact top-{tuning.fusion.depth}, {len(mirror)} vectors", started)
        keyword = mirror.keyword_top(q, tuning.fusion.depth, everything, tuning.bm25)
        started = note("BM25F top-100", started)
        fused = fuse(dense, keyword, tuning.fusion)[:10]
        started = note("fusion", started)
        [mirror.hit(i, score) for i, score in fused]
        started = note("10 result rows from the mirror", started)
        await coll.query(query_embeddings=[vector.tolist()], n_results=100, include=["distances"])
        note("(replaced) Chroma top-100, ids and distances", started)
    return {name: round(statistics.median(v), 2) for name, v in timings.items()}


async def ensure_index(redis_url: str, chroma_url: str) -> None:
    from eval_search import ensure_index as build
    from eval_search import load_catalog

    await build(chroma_url, redis_url, load_catalog())


def main(args: argparse.Namespace) -> None:
    if shutil.which("wrk") is None:
        raise SystemExit(
            "wrk is missing: this benchmark drives the load with it. Install it "
            "(Debian/Ubuntu: sudo apt-get install -y wrk; macOS: brew install wrk)."
        )
    benchlib.require_data()
    sys.path.insert(0, str(ROOT / "bench"))
    import eval_search

    from marquee_search.settings import SearchSettings

    backend = SearchSettings().backend
    info = benchlib.machine()
    base = benchlib.fresh_dir("search_load")
    logs = base / "logs"
    queries = load_queries(args.query_chars)
    token = secrets.token_urlsafe(16)
    procs: list[tuple[str, devstack.Proc]] = []
    index_dir = eval_search.data_dir()
    cells: list[dict[str, Any]] = []
    with benchlib.stores(base, chroma_dir=index_dir / "chroma") as (redis_url, chroma_url):
        try:
            print(f"index: {index_dir.relative_to(ROOT)} ({backend})", flush=True)
            asyncio.run(ensure_index(redis_url, chroma_url))
            common = benchlib.service_env(
                redis_url,
                chroma_url,
                MARQUEE_INTERNAL_TOKEN=token,
                MARQUEE_SEARCH_QUERY_CACHE_SIZE="0",
                MARQUEE_GATEWAY_RATE_LIMIT_PER_MINUTE="0",
                MARQUEE_GATEWAY_API_KEYS=secrets.token_urlsafe(16),
            )
            urls: dict[str, str] = {}
            for name in ("search", "explainer", "ingest"):
                proc, urls[name] = benchlib.start_service(name, f"marquee_{name}.app", common, logs)
                procs.append((name, proc))
            gateway_env = {
                **common,
                "MARQUEE_GATEWAY_SEARCH_URL": urls["search"],
                "MARQUEE_GATEWAY_EXPLAINER_URL": urls["explainer"],
                "MARQUEE_GATEWAY_INGEST_URL": urls["ingest"],
            }
            proc, urls["gateway"] = benchlib.start_service(
                "gateway", "marquee_gateway.app", gateway_env, logs
            )
            procs.append(("gateway", proc))
            seed_port = devstack.free_port()
            seed = devstack.Proc(
                "seed_app",
                [
                    str(devstack.BIN / "uvicorn"),
                    "seed_app:app",
                    "--app-dir",
                    str(ROOT / "bench"),
                    "--host",
                    "127.0.0.1",
                    "--port",
                    str(seed_port),
                    "--no-access-log",
                    "--log-level",
                    "warning",
                ],
                logs / "seed_app.log",
                env={"SEED_CHROMA_URL": chroma_url, "HF_HUB_OFFLINE": "1"},
            ).start()
            procs.append(("seed_app", seed))
            urls["seed"] = f"http://127.0.0.1:{seed_port}"
            seed.wait_until(lambda: devstack.http_ok(urls["seed"] + "/health"), "up", 180)

            targets = {
                "gateway": (urls["gateway"], "/v1/search", {}),
                "search (direct)": (urls["search"], "/search", {"X-Internal-Token": token}),
                "seed app": (urls["seed"], "/search", {}),
            }
            (base / "rotate.lua").write_text(LUA)
            for name, (url, prefix, headers) in targets.items():
                sample = get_json(f"{url}{prefix}?q=a+shark+terrorizes+a+beach+town", headers)
                if not sample["results"]:
                    raise SystemExit(f"{name} answered no results: is the index empty?")
                for kind in ("unfiltered", "filtered"):
                    write_paths(base, name.split()[0], prefix, queries, kind)
                # Warm up: first requests load lazily initialised code paths and pools.
                paths = base / f"{name.split()[0]}-unfiltered.txt"
                wrk(url, paths, 4, 2, 0, headers)
            offset = 0
            pids = {name: p.popen.pid for name, p in procs if p.popen and name != "explainer"}
            chroma_pid = benchlib.pid_listening(int(chroma_url.rsplit(":", 1)[1]))
            if chroma_pid is not None:
                pids["chroma"] = chroma_pid
            for filtered in (False, True):
                for level in args.levels:
                    for name, (url, _, headers) in targets.items():
                        kind = "filtered" if filtered else "unfiltered"
                        paths = base / f"{name.split()[0]}-{kind}.txt"
                        seconds = args.seconds * (args.seed_factor if name == "seed app" else 1)
                        cell = wrk(url, paths, level, seconds, offset, headers, pids)
                        offset += cell["requests"]
                        cell.update(target=name, filtered=filtered)
                        cells.append(cell)
                        print(json.dumps(cell), flush=True)
            # What hybrid costs over dense only: the gateway in semantic mode.
            paths = write_paths(base, "gateway", "/v1/search", queries, "semantic")
            for level in sorted({args.levels[0], 32 if 32 in args.levels else args.levels[-1]}):
                cell = wrk(urls["gateway"], paths, level, args.seconds, offset, {}, pids)
                cell.update(target="gateway, mode=semantic", filtered=False)
                cells.append(cell)
                print(json.dumps(cell), flush=True)
            parts = asyncio.run(breakdown(chroma_url, redis_url, backend, queries[:60]))
            print(json.dumps(parts), flush=True)
            memory = {name: benchlib.peak_rss_mb(p.popen.pid) for name, p in procs if p.popen}
        finally:
            for _, proc in reversed(procs):
                proc.stop()
    results = {
        "machine": info,
        "backend": backend,
        "movies_indexed": len(eval_search.load_catalog()),
        "queries": len(queries),
        "query_chars_mean": round(sum(map(len, queries)) / len(queries)),
        "seconds_per_cell": args.seconds,
        "cells": cells,
        "breakdown_ms": parts,
        "peak_rss_mb": memory,
        "command": benchlib.command_line(),
    }
    results["summary"] = summarise(cells)
    write(results)


def find(cells: list[dict[str, Any]], target: str, level: int, *, filtered: bool) -> dict[str, Any]:
    return next(
        c
        for c in cells
        if c["target"] == target and c["connections"] == level and c["filtered"] == filtered
    )


def summarise(cells: list[dict[str, Any]]) -> dict[str, Any]:
    levels = sorted({c["connections"] for c in cells})
    one, busy = levels[0], 32 if 32 in levels else levels[-1]
    gw1, gw32 = (
        find(cells, "gateway", one, filtered=False),
        find(cells, "gateway", busy, filtered=False),
    )
    direct1, direct32 = (
        find(cells, "search (direct)", one, filtered=False),
        find(cells, "search (direct)", busy, filtered=False),
    )
    seed32 = find(cells, "seed app", busy, filtered=False)
    gw1f = find(cells, "gateway", one, filtered=True)
    sem1 = find(cells, "gateway, mode=semantic", one, filtered=False)
    sem32 = find(cells, "gateway, mode=semantic", busy, filtered=False)

    def ratio(a: float, b: float, digits: int = 2) -> float:
        return round(a / b, digits) if b else float("inf")

    return {
        "gateway_1_client_p50_ms": gw1["p50_ms"],
        "gateway_1_client_p99_ms": gw1["p99_ms"],
        f"gateway_{busy}_clients_qps_vs_seed": ratio(gw32["qps"], seed32["qps"], 1),
        f"gateway_{busy}_clients_p99_over_p50": ratio(gw32["p99_ms"], gw32["p50_ms"]),
        "gateway_errors": sum(c["errors"] for c in cells if c["target"].startswith("gateway")),
        "hop_p50_ms_1_client": round(gw1["p50_ms"] - direct1["p50_ms"], 2),
        f"hop_qps_cost_{busy}_clients": round(1 - ratio(gw32["qps"], direct32["qps"], 3), 3),
        "filtered_over_unfiltered_p50_1_client": ratio(gw1f["p50_ms"], gw1["p50_ms"]),
        "semantic_1_client_p50_ms": sem1["p50_ms"],
        "semantic_1_client_p99_ms": sem1["p99_ms"],
        f"semantic_{busy}_clients_qps_vs_seed": ratio(sem32["qps"], seed32["qps"], 1),
    }


def write(r: dict[str, Any]) -> None:
    s = r["summary"]
    busy = next(k for k in s if k.endswith("_qps_vs_seed")).split("_")[1]
    lines = [
        "# Search under load",
        "",
        (
            f"Machine: {benchlib.machine_line(r['machine'])}. Command: `{r['command']}`. "
            f"{r['movies_indexed']} movies indexed ({r['backend']} vectors), "
            f"{r['queries']} distinct tomt_dev queries (mean {r['query_chars_mean']} characters), "
            f"query-vector cache off, rate limit off; wrk closed loop, {r['seconds_per_cell']} s "
            "per cell (the seed app longer), one run. Marquee: hybrid mode (the default); "
            "seed app: dense only, sentence-transformers torch in one process."
        ),
        "",
        "| target | filtered | clients | QPS | p50 ms | p90 ms | p99 ms | errors |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    lines += [
        f"| {c['target']} | {'yes' if c['filtered'] else 'no'} | {c['connections']} | "
        f"{c['qps']} | {c['p50_ms']} | {c['p90_ms']} | {c['p99_ms']} | {c['errors']} |"
        for c in sorted(r["cells"], key=lambda c: (c["filtered"], c["target"], c["connections"]))
    ]
    lines += [
        "",
        (
            f"- Gateway, 1 client: p50 **{s['gateway_1_client_p50_ms']} ms** (target ≤ 10), p99 "
            f"**{s['gateway_1_client_p99_ms']} ms** (target ≤ 25)."
        ),
        (
            f"- Gateway, {busy} clients: **{s[f'gateway_{busy}_clients_qps_vs_seed']}x** the seed "
            f"app's QPS (target ≥ 10x), p99/p50 **{s[f'gateway_{busy}_clients_p99_over_p50']}** "
            f"(target ≤ 3), errors in all gateway cells: **{s['gateway_errors']}** (target 0)."
        ),
        (
            f"- Gateway hop: **{s['hop_p50_ms_1_client']} ms** at p50, 1 client (target ≤ 1); "
            f"**{s[f'hop_qps_cost_{busy}_clients']:.1%}** of QPS at {busy} clients (target ≤ 10 %)."
        ),
        (
            f"- Filtered p50 / unfiltered p50 (gateway, 1 client): "
            f"**{s['filtered_over_unfiltered_p50_1_client']}** (target ≤ 2)."
        ),
        (
            f"- Semantic mode (dense only, as the seed app) through the gateway: 1 client p50 "
            f"{s['semantic_1_client_p50_ms']} ms, p99 {s['semantic_1_client_p99_ms']} ms; "
            f"{busy} clients {s[f'semantic_{busy}_clients_qps_vs_seed']}x the seed app's QPS."
        ),
        (
            f"- CPU per request at {busy} clients, unfiltered (ms, by process): gateway cell "
            + _cpu(find(r["cells"], "gateway", int(busy), filtered=False))
            + "; seed app cell "
            + _cpu(find(r["cells"], "seed app", int(busy), filtered=False))
            + ". On 2 cores, QPS is at most 2,000 ms over the sum."
        ),
        "",
        "Where the time of one search goes (medians, in-process, idle stack): "
        + ", ".join(f"{k} {v} ms" for k, v in r["breakdown_ms"].items())
        + ". Under load the encodes share passes, and each search also pays its HTTP "
        "handling; the CPU each process spent per request is in search_load.json "
        "(`cpu_ms_per_request` of every cell).",
        "",
        "Peak RSS (VmHWM, MB): "
        + ", ".join(f"{name} {mb}" for name, mb in r["peak_rss_mb"].items()),
    ]
    benchlib.write_results("search_load", r, lines)


def _cpu(cell: dict[str, Any]) -> str:
    used = {k: v for k, v in cell.get("cpu_ms_per_request", {}).items() if v >= 0.05}
    total = round(sum(used.values()), 2)
    return ", ".join(f"{k} {v}" for k, v in used.items()) + f" (sum {total})"


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=8.0, help="per cell")
    parser.add_argument(
        "--seed-factor", type=float, default=1.5, help="the seed app's cells run this much longer"
    )
    parser.add_argument(
        "--levels", type=lambda s: [int(x) for x in s.split(",")], default=[1, 8, 32, 64]
    )
    parser.add_argument("--query-chars", type=int, default=150)
    return parser.parse_args()


if __name__ == "__main__":
    main(parse_args())
