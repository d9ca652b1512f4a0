"""The gateway's hop to an internal service: httpx vs aiohttp clients, side by side.

Why: httpx's connection pool is known to be slow under concurrency
(https://github.com/encode/httpx/issues/3215); the gateway makes one such hop per request, so
its client is chosen by measurement. The upstream is a real uvicorn server in its own process
answering a search-sized JSON body; each client runs the same closed loop at each concurrency.

    .venv/bin/python bench/gateway_hop.py [--requests 3000]

Writes bench/results/gateway_hop.{json,md}. Figures are ratios from one run (the machine is
shared and noisy): compare rows, not absolute numbers across runs.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import aiohttp
import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "scripts"))
import devstack  # noqa: E402

UPSTREAM = """
import json
BODY = json.dumps({"results": [{"tmdb_id": i, "title": "x" * 20, "overview": "y" * 150,
                   "genres": ["Drama"], "score": 0.5} for i in range(10)]}).encode()
async def app(scope, receive, send):
    if scope["type"] != "http":
        return
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", b"application/json")]})
    await send({"type": "http.response.body", "body": BODY})
"""


async def closed_loop(
    get: Callable[[], Awaitable[None]], concurrency: int, total: int
) -> dict[str, float]:
    latencies: list[float] = []
    remaining = total

    async def worker() -> None:
        nonlocal remaining
        while remaining > 0:
            remaining -= 1
            t = time.perf_counter()
            await get()
            latencies.append(time.perf_counter() - t)

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    elapsed = time.perf_counter() - started
    latencies.sort()
    return {
        "qps": round(len(latencies) / elapsed, 1),
        "p50_ms": round(statistics.median(latencies) * 1000, 3),
        "p99_ms": round(latencies[int(len(latencies) * 0.99) - 1] * 1000, 3),
    }


async def run(url: str, total: int, levels: list[int]) -> dict[str, dict[str, dict[str, float]]]:
    results: dict[str, dict[str, dict[str, float]]] = {}
    clients: dict[str, Callable[[], object]] = {
        "httpx (default pool)": httpx.AsyncClient,
        "httpx (100 connections)": lambda: httpx.AsyncClient(
            limits=httpx.Limits(max_connections=100, max_keepalive_connections=100)
        ),
        "aiohttp (gateway's choice)": lambda: aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=100)
        ),
    }
    for name, make in clients.items():
        results[name] = {}
        async with make() as client:  # type: ignore[attr-defined]
            if isinstance(client, httpx.AsyncClient):

                async def get(c: httpx.AsyncClient = client) -> None:
                    (await c.get(url)).content  # noqa: B018 - read the body, as the gateway does
            else:

                async def get(c: aiohttp.ClientSession = client) -> None:  # type: ignore[misc]
                    async with c.get(url) as r:
                        await r.read()

            await closed_loop(get, 8, 200)  # warm the pool
            for level in levels:
                results[name][str(level)] = await closed_loop(get, level, total)
    return results


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--requests", type=int, default=3000)
    parser.add_argument("--levels", default="1,8,32,64")
    args = parser.parse_args()
    levels = [int(x) for x in args.levels.split(",")]

    out = ROOT / "bench" / "results"
    out.mkdir(parents=True, exist_ok=True)
    (out / "_upstream.py").write_text(UPSTREAM)
    port = devstack.free_port()
    upstream = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "uvicorn",
            "_upstream:app",
            "--port",
            str(port),
            "--log-level",
            "warning",
            "--app-dir",
            str(out),
        ],
    )
    try:
        url = f"http://127.0.0.1:{port}/search"
        deadline = time.monotonic() + 20
        while not devstack.http_ok(url):
            if time.monotonic() > deadline:
                raise SystemExit("upstream did not start")
            time.sleep(0.1)
        results = asyncio.run(run(url, args.requests, levels))
    finally:
        upstream.terminate()
        upstream.wait()
        (out / "_upstream.py").unlink(missing_ok=True)

    base = results["aiohttp (gateway's choice)"]
    command = "python bench/gateway_hop.py " + " ".join(sys.argv[1:])
    lines = [
        "# Gateway hop: client throughput against one uvicorn upstream",
        "",
        (
            f"Machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, "
            f"Python {platform.python_version()}. Command: `{command}`. "
            f"{args.requests} requests per cell, closed loop."
        ),
        "",
        "| client | concurrency | QPS | p50 ms | p99 ms | QPS vs aiohttp |",
        "| --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    for name, per_level in results.items():
        for level, r in per_level.items():
            ratio = r["qps"] / base[level]["qps"]
            lines.append(
                f"| {name} | {level} | {r['qps']} | {r['p50_ms']} | {r['p99_ms']} | {ratio:.2f}x |"
            )
    (out / "gateway_hop.json").write_text(
        json.dumps({"command": command, "results": results}, indent=2)
    )
    (out / "gateway_hop.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
