"""Choose how long requests are windowed (marquee_shared/model/windows.py), on the tune split only.

    .venv/bin/python bench/tune_windows.py

For each window size and way of combining the windows' cosines, runs every tune request of
tomt_dev through ``SearchEngine.candidates`` (dense side and fusion as served) and reports the
dense-only and fused recall@10/100 and MRR@10. The chosen default is WindowParams() in
windows.py; the grid's figures land in bench/results/windows_tuning.json.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import eval_search as ev
import ranking


async def main() -> int:
    if not ev.CATALOG_CSV.exists() or not ev.TOMT.exists():
        print(f"skipped: {ev.SHARED} is absent")
        return 0
    from marquee_search.hybrid import fuse
    from marquee_shared.model.windows import WindowParams

    catalog = ev.load_catalog()
    tune = [q for q in ev.load_queries() if q.split == "tune"]
    answers = [q.answer for q in tune]
    sizes = [int(s) for s in (sys.argv[1:] or ["256", "64", "128"])]
    variants: list[WindowParams] = [WindowParams(max_tokens=256, head=False)]  # no windows
    variants += [
        WindowParams(max_tokens=size, head=head, max_weight=max_weight, head_weight=head_weight)
        for size in (64, 128)
        for head in (True, False)
        for max_weight in (0.0, 0.5, 1.0)
        for head_weight in ((0.5, 0.7) if head else (0.0,))
        if size == 128 or max_weight == 0.0
    ]
    out = ev.RESULTS / "windows_tuning.json"
    results: list[dict[str, Any]] = json.loads(out.read_text()) if out.exists() else []
    for size in sizes:
        base = WindowParams(max_tokens=size)
        async with ranking.engine_for(catalog, windows=base) as (engine, box):
            await ranking.encode_windows(engine, tune, box)
            for params in [v for v in variants if v.max_tokens == size]:
                engine.tuning = dataclasses.replace(engine.tuning, windows=params)
                engine._windower.params = params
                dense_runs, fused_runs = [], []
                from marquee_shared.api import MovieFilters

                for q in tune:
                    found = await engine.candidates(q.text, MovieFilters(), ev.DEPTH)
                    fused_runs.append([t for t, _ in found.fused])
                    dense_runs.append(found.dense_ids)
                row = {
                    "windows": dataclasses.asdict(params),
                    "dense": ev.metrics(dense_runs, answers),
                    "fusion": ev.metrics(fused_runs, answers),
                }
                results.append(row)
                out.write_text(json.dumps(results, indent=1))
                print(
                    f"{params}: dense R@10 {row['dense']['recall@10']:.3f} "
                    f"R@100 {row['dense']['recall@100']:.3f}; fusion R@10 "
                    f"{row['fusion']['recall@10']:.3f} MRR@10 {row['fusion']['mrr@10']:.3f} "
                    f"R@100 {row['fusion']['recall@100']:.3f}"
                )
    _ = fuse
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
