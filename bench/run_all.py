"""Every performance benchmark of issue 6, one after the other, then one summary: `make bench`.

1. bench/model_backends.py: docs/s and short-query latency per backend, cosine to fp32;
2. bench/pipeline.py: 5,000 movies through the stream and embedders (1 and 2 workers) vs a
   plain torch loop and the raw encode rate; freshness at 10 events/s; the embedders' memory;
3. bench/search_load.py: search under load through the gateway, directly, and the seed-pattern
   app, with all 15,834 movies indexed; every service's memory;
4. the quality of each ONNX backend (recall@10 on all of tomt_dev, bench/eval_search.py), from
   bench/results/quality_<backend>.json; re-measured with ``--quality`` (which embeds the
   catalog once per backend when its cache is missing: about 5-10 minutes each on 2 cores).

Writes bench/results/summary.{json,md}: the machine, the command, every target with the figure
measured and met / missed. Takes about 10-12 minutes on a 2-core machine once the search index
is cached (the first run embeds the catalog with the default backend: a few minutes more).

    .venv/bin/python bench/run_all.py [--quick] [--quality] [--write] [--summary-only]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import benchlib
from benchlib import RESULTS, ROOT

PY = sys.executable
DOC = ROOT / "docs" / "performance.md"


def run(name: str, argv: list[str]) -> float:
    print(f"\n=== {name}: {' '.join(argv)}", flush=True)
    started = time.perf_counter()
    subprocess.run([PY, *argv], cwd=ROOT, check=True)
    elapsed = time.perf_counter() - started
    print(f"=== {name}: {elapsed:.0f} s", flush=True)
    return elapsed


def load(name: str) -> dict[str, Any] | None:
    path = RESULTS / f"{name}.json"
    return json.loads(path.read_text()) if path.exists() else None


def target(what: str, value: Any, goal: str, met: bool | None, note: str = "") -> dict[str, Any]:
    return {"target": what, "measured": value, "goal": goal, "met": met, "note": note}


def targets() -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    backends = load("model_backends")
    if backends:
        r = backends["results"]
        cos = r["onnx-int8"]["mean_cosine_to_torch_fp32"]
        out.append(target("int8 cosine to fp32", cos, "≥ 0.99", cos >= 0.99))
        speed = round(r["onnx-int8"]["docs_per_s"] / r["torch"]["docs_per_s"], 2)
        out.append(target("int8 docs/s vs torch fp32", f"{speed}x", "(informative)", None))
    q8, q32 = load("quality_onnx-int8"), load("quality_onnx")
    if q8 and q32:
        for mode in q32["metrics"]:
            if mode.startswith("keyword"):
                continue
            delta = round(
                (q8["metrics"][mode]["recall@10"] - q32["metrics"][mode]["recall@10"]) * 100, 2
            )
            out.append(
                target(
                    f"int8 recall@10 vs fp32, {mode.split(' (')[0]}, all {q32['queries']} "
                    "tomt_dev queries",
                    f"{delta:+.2f} points",
                    "within 1 point",
                    abs(delta) <= 1,
                )
            )
    pipe = load("pipeline")
    if pipe:
        ratios = pipe["ratios"]
        out.append(
            target(
                "pipeline vs plain torch loop",
                f"{ratios['pipeline_vs_plain_torch']}x",
                "≥ 1.6x",
                ratios["pipeline_vs_plain_torch"] >= 1.6,
            )
        )
        out.append(
            target(
                "pipeline vs raw encode (chosen backend)",
                f"{ratios['pipeline_vs_raw_encode']:.0%}",
                "≥ 90 %",
                ratios["pipeline_vs_raw_encode"] >= 0.9,
            )
        )
        fresh = pipe.get("freshness")
        if fresh:
            out.append(
                target(
                    f"freshness p95 at {fresh['rate_per_s']:g} events/s",
                    f"{fresh['p95_ms']} ms (p50 {fresh['p50_ms']} ms)",
                    "≤ 1000 ms",
                    fresh["p95_ms"] <= 1000,
                )
            )
    load_r = load("search_load")
    if load_r:
        s = load_r["summary"]
        busy = next(k for k in s if k.endswith("_qps_vs_seed")).split("_")[1]
        out += [
            target(
                "gateway p50, 1 client",
                f"{s['gateway_1_client_p50_ms']} ms",
                "≤ 10 ms",
                s["gateway_1_client_p50_ms"] <= 10,
            ),
            target(
                "gateway p99, 1 client",
                f"{s['gateway_1_client_p99_ms']} ms",
                "≤ 25 ms",
                s["gateway_1_client_p99_ms"] <= 25,
            ),
            target(
                f"gateway QPS vs seed app, {busy} clients",
                f"{s[f'gateway_{busy}_clients_qps_vs_seed']}x",
                "≥ 10x",
                s[f"gateway_{busy}_clients_qps_vs_seed"] >= 10,
            ),
            target(
                f"gateway p99 / p50, {busy} clients",
                s[f"gateway_{busy}_clients_p99_over_p50"],
                "≤ 3",
                s[f"gateway_{busy}_clients_p99_over_p50"] <= 3,
            ),
            target(
                "gateway errors (all cells)", s["gateway_errors"], "0", s["gateway_errors"] == 0
            ),
            target(
                "gateway hop at p50, 1 client",
                f"{s['hop_p50_ms_1_client']} ms",
                "≤ 1 ms",
                s["hop_p50_ms_1_client"] <= 1,
            ),
            target(
                f"gateway hop, share of QPS at {busy} clients",
                f"{s[f'hop_qps_cost_{busy}_clients']:.1%}",
                "≤ 10 %",
                s[f"hop_qps_cost_{busy}_clients"] <= 0.1,
            ),
            target(
                "filtered p50 / unfiltered p50 (gateway, 1 client)",
                s["filtered_over_unfiltered_p50_1_client"],
                "≤ 2",
                s["filtered_over_unfiltered_p50_1_client"] <= 2,
            ),
        ]
        gw = load_r["peak_rss_mb"].get("gateway")
        if gw is not None:
            out.append(target("gateway peak RSS", f"{gw} MB", "≤ 150 MB", gw <= 150))
    if pipe:
        peaks = [m for run in pipe["pipeline"] for m in run["embedder_peak_rss_mb"] if m]
        if peaks:
            top = max(peaks)
            out.append(target("embedder peak RSS", f"{top} MB", "≤ 1024 MB", top <= 1024))
    return out


def memory() -> dict[str, Any]:
    """Peak RSS per service: the embedders from the pipeline run (after embedding), the others
    from the search load run (after the load)."""
    out: dict[str, Any] = {}
    pipe, load_r = load("pipeline"), load("search_load")
    if pipe:
        peaks = [m for run in pipe["pipeline"] for m in run["embedder_peak_rss_mb"] if m]
        out["embedder"] = max(peaks) if peaks else None
    if load_r:
        out.update(load_r["peak_rss_mb"])
    return out


def summary(
    command: str, seconds: dict[str, float], info: dict[str, Any], *, write_doc: bool
) -> None:
    rows = targets()
    mem = memory()
    data = {
        "machine": info,
        "command": command,
        "seconds": {k: round(v) for k, v in seconds.items()},
        "targets": rows,
        "peak_rss_mb": mem,
    }
    mark = {True: "met", False: "**missed**", None: "-"}
    lines = [
        "# Performance benchmarks (issue 6)",
        "",
        (
            f"Machine: {benchlib.machine_line(info)}. Reproduce: `{command}` "
            f"({sum(seconds.values()) / 60:.1f} minutes this run). Every ratio below comes from "
            "one run, side by side: the machine is shared and noisy, so compare ratios, not "
            "absolute numbers across runs. Details: model_backends.md, pipeline.md, search_load.md."
        ),
        "",
        "| target | measured | goal | |",
        "| --- | ---: | --- | --- |",
    ]
    lines += [f"| {r['target']} | {r['measured']} | {r['goal']} | {mark[r['met']]} |" for r in rows]
    lines += [
        "",
        "Peak RSS (VmHWM) per process, MB: "
        + ", ".join(f"{k} {v}" for k, v in mem.items() if v is not None)
        + " (the embedder's after embedding 5,000 movies; the others' after the search load).",
    ]
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "summary.json").write_text(json.dumps(data, indent=2) + "\n")
    (RESULTS / "summary.md").write_text("\n".join(lines) + "\n")
    (RESULTS / "memory.json").write_text(json.dumps(mem, indent=2) + "\n")
    print("\n".join(lines))
    if write_doc:
        # The table (not the title) into docs/performance.md, between its summary markers.
        start, end = "<!-- summary:start -->", "<!-- summary:end -->"
        doc = DOC.read_text()
        head, _, rest = doc.partition(start)
        _, _, tail = rest.partition(end)
        body = "\n".join(lines[2:])
        DOC.write_text(f"{head}{start}\n{body}\n{end}{tail}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="tiny sizes: a smoke run")
    parser.add_argument(
        "--quality",
        action="store_true",
        help="re-measure recall@10 per ONNX backend (embeds the catalog per backend if needed)",
    )
    parser.add_argument("--summary-only", action="store_true", help="rebuild summary.md only")
    parser.add_argument(
        "--write", action="store_true", help="also put the summary table in docs/performance.md"
    )
    args = parser.parse_args()
    benchlib.require_data()
    info = benchlib.machine()
    own = [a for a in sys.argv[1:] if a != "--write"]
    command = "make bench" if not own else benchlib.command_line()
    seconds: dict[str, float] = {}
    bench = Path("bench")
    if not args.summary_only:
        if args.quick:
            seconds["model_backends"] = run(
                "model backends",
                [
                    str(bench / "model_backends.py"),
                    "--docs",
                    "64",
                    "--queries",
                    "20",
                    "--rounds",
                    "1",
                ],
            )
            seconds["pipeline"] = run(
                "pipeline", [str(bench / "pipeline.py"), "--movies", "200", "--seconds", "5"]
            )
            seconds["search_load"] = run(
                "search load",
                [str(bench / "search_load.py"), "--seconds", "2", "--levels", "1,8,32"],
            )
        else:
            seconds["model_backends"] = run(
                "model backends",
                [
                    str(bench / "model_backends.py"),
                    "--docs",
                    "256",
                    "--queries",
                    "60",
                    "--rounds",
                    "2",
                ],
            )
            seconds["pipeline"] = run("pipeline", [str(bench / "pipeline.py")])
            seconds["search_load"] = run(
                "search load", [str(bench / "search_load.py"), "--seconds", "6"]
            )
        if args.quality:
            for backend in ("onnx", "onnx-int8"):
                seconds[f"quality_{backend}"] = run(
                    f"quality {backend}",
                    [
                        str(bench / "eval_search.py"),
                        "--backend",
                        backend,
                        "--all-queries",
                        "--results",
                        str(RESULTS / f"quality_{backend}.json"),
                    ],
                )
    previous = load("summary")
    if args.summary_only and previous:
        # Rebuilding the tables of the last run: keep its machine, command and timings.
        info, command, seconds = previous["machine"], previous["command"], previous["seconds"]
    summary(command, seconds, info, write_doc=args.write)


if __name__ == "__main__":
    main()
