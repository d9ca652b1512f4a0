"""Search quality on real "tip of my tongue" queries: semantic vs keyword vs hybrid.

Indexes ../shared/data/catalog/movies.csv (15,834 movies) with the real embedder code into a
real Chroma server, builds the search service's keyword index from that Chroma collection the
way a replica does at startup, and runs every query of ../shared/data/queries/tomt_dev.jsonl
through the service's own ``SearchEngine`` in each mode. Reports recall@1/10/100 and MRR@10.

Honest tuning: queries are split by a hash of their id into a *tune* part (about 25 %) and a
*report* part (the rest). ``--tune`` grid-searches the fusion and BM25 parameters on the tune
part only; the defaults in marquee_search/hybrid.py and keyword.py came from that. The table
reports the report part (and, for reference, the tune part).

    .venv/bin/python bench/eval_search.py [--tune] [--write]    # or: make eval

The Chroma index and the query vectors are cached under .data/eval/<catalog hash>/, so a second
run embeds nothing. Skips (exit 0) when ../shared/data is absent.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hashlib
import json
import os
import platform
import sys
import time
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "scripts"))

import benchlib  # noqa: E402

SHARED = ROOT.parent / "shared" / "data"
CATALOG_CSV = SHARED / "catalog" / "movies.csv"
TOMT = SHARED / "queries" / "tomt_dev.jsonl"
MOVIELENS = SHARED / "movielens"
EVAL_DIR = ROOT / ".data" / "eval"
RESULTS = ROOT / "bench" / "results"
DOC = ROOT / "docs" / "evaluation.md"
COLLECTION = "movies_minilm_l6_v1"
TUNE_SHARE = 0.25
DEPTH = 100
"""Candidates retrieved per mode: recall@100 needs 100."""


# --- shared by the eval scripts --------------------------------------------------------------


def file_hash(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()[:12]


def backend() -> str:
    """The embedding backend evaluated: MARQUEE_SEARCH_BACKEND (``--backend`` sets it), else
    the services' default."""
    from marquee_search.settings import SearchSettings

    return str(SearchSettings().backend)


def model_setting() -> str:
    """The model evaluated: MARQUEE_SEARCH_MODEL as search reads it (``stock``, the default,
    ``movie-tuned`` or a model folder)."""
    return os.environ.get("MARQUEE_SEARCH_MODEL", "stock")


def model_dir() -> Path:
    from marquee_shared.model.resolve import resolve_model

    return resolve_model(model_setting())[0]


def data_dir() -> Path:
    """The cache of one catalog version, backend and model (by its id's digest): its Chroma
    data, query vectors, results. torch and onnx give the same vectors (cosine 1.000), so they
    share one cache."""
    from marquee_shared.model.resolve import resolve_model

    name = file_hash(CATALOG_CSV)
    chosen = backend()
    base = name if chosen in ("torch", "onnx") else f"{name}-{chosen}"
    if model_setting() != "stock":
        base += "-" + resolve_model(model_setting())[1].digest
    return EVAL_DIR / base


def load_catalog() -> dict[int, Any]:
    from marquee_ingest.sources import read_catalog_csv
    from marquee_shared.events import Movie

    return {m.tmdb_id: m for m in read_catalog_csv(CATALOG_CSV) if isinstance(m, Movie)}


@contextlib.asynccontextmanager
async def servers(base: Path) -> AsyncIterator[tuple[str, str]]:
    """A throwaway redis-server and a Chroma server on the cached data dir; always stopped."""
    with benchlib.stores(base) as urls:
        yield urls


def get_encoder() -> Any:
    """The model as the services load it (their default backend)."""
    from marquee_shared.model.encoder import load_encoder

    return load_encoder(model_dir(), backend())  # type: ignore[arg-type]


def encode_cached(texts: list[str], name: str, encoder_box: dict[str, Any]) -> np.ndarray:
    """Vectors of ``texts``, cached in the data dir by a hash of the texts."""
    digest = hashlib.sha256("\x00".join(texts).encode()).hexdigest()[:12]
    path = data_dir() / f"{name}-{digest}.npy"
    if path.exists():
        return np.load(path)
    if "encoder" not in encoder_box:
        encoder_box["encoder"] = get_encoder()
    started = time.perf_counter()
    vectors = []
    for i in range(0, len(texts), 64):
        vectors.append(encoder_box["encoder"].encode(texts[i : i + 64]))
        done = min(i + 64, len(texts))
        rate = done / (time.perf_counter() - started)
        print(f"\r  encoded {done}/{len(texts)} {name} ({rate:.0f}/s)", end="", flush=True)
    print()
    matrix = np.concatenate(vectors)
    np.save(path, matrix)
    return matrix


async def mirror_from(collection: Any, redis_url: str) -> Any:
    """The catalog mirror exactly as a search replica builds it at startup."""
    from redis.asyncio import Redis

    from marquee_search.sync import IndexSync

    redis = Redis.from_url(redis_url)
    try:
        sync = IndexSync(collection, redis, "marquee:index:v1:changes")
        started = time.perf_counter()
        mirror, _, _ = await sync.load()
        print(
            f"  keyword index: {len(mirror)} movies loaded in {time.perf_counter() - started:.1f}s"
        )
        sync.mirror = mirror
        return sync
    finally:
        await redis.aclose()


async def ensure_index(
    chroma_url: str, redis_url: str, catalog: dict[int, Any], encoder: Any | None = None
) -> Any:
    """The whole catalog in Chroma, embedded by the real indexer; only missing movies are
    embedded (a finished index is reused as it is). Returns the collection."""
    import httpx
    from redis.asyncio import Redis

    from marquee_embedder.indexer import CatalogIndexer
    from marquee_embedder.ledger import Ledger
    from marquee_shared.chroma import open_collection
    from marquee_shared.events import MovieFetched
    from marquee_shared.index import record_id

    _, collection = await open_collection(httpx.URL(chroma_url), COLLECTION)  # type: ignore[arg-type]
    have: set[str] = set()
    total = await collection.count()
    for offset in range(0, total, 5000):
        got = await collection.get(include=[], limit=5000, offset=offset)
        have.update(got["ids"])
    todo = sorted(t for t in catalog if record_id(t) not in have)
    if not todo:
        print(f"  index: {len(have)} movies already embedded (cached)")
        return collection
    print(f"  index: {len(have)} cached, embedding {len(todo)} (a few minutes on 2 cores)")
    encoder = encoder or get_encoder()
    started = time.perf_counter()
    redis = Redis.from_url(redis_url)
    try:
        indexer = CatalogIndexer(collection, encoder, Ledger(redis, "eval:ledger"))
        now = datetime.now(UTC)
        for i in range(0, len(todo), 256):
            events = [
                MovieFetched(source="eval", movie=catalog[t], occurred_at=now)
                for t in todo[i : i + 256]
            ]
            await indexer.apply(events)
            done = min(i + 256, len(todo))
            rate = done / (time.perf_counter() - started)
            print(f"\r  embedded {done}/{len(todo)} ({rate:.0f}/s)", end="", flush=True)
    finally:
        await redis.aclose()
    print(f"  ({time.perf_counter() - started:.0f}s)")
    return collection


def machine() -> str:
    return f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}"


def markdown_table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    def cell(v: Any) -> str:
        return f"{v:.3f}" if isinstance(v, float) else str(v)

    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)


def write_doc_section(name: str, text: str) -> None:
    """Replace the ``<!-- name:start -->...<!-- name:end -->`` block of docs/evaluation.md."""
    start, end = f"<!-- {name}:start -->", f"<!-- {name}:end -->"
    doc = DOC.read_text()
    head, _, rest = doc.partition(start)
    _, _, tail = rest.partition(end)
    DOC.write_text(f"{head}{start}\n{text.strip()}\n{end}{tail}")


# --- search evaluation -------------------------------------------------------------------


@dataclass(frozen=True)
class Query:
    qid: str
    text: str
    answer: int

    @property
    def split(self) -> str:
        """Fixed by the query id, so every run tunes and reports on the same queries."""
        bucket = int(hashlib.sha256(self.qid.encode()).hexdigest()[:8], 16) / 2**32
        return "tune" if bucket < TUNE_SHARE else "report"


def load_queries(path: Path = TOMT) -> list[Query]:
    with path.open(encoding="utf-8") as f:
        rows = [json.loads(line) for line in f if line.strip()]
    return [Query(str(r["qid"]), r["query"], int(r["tmdb_id"])) for r in rows]


def metrics(rankings: Sequence[Sequence[int]], answers: Sequence[int]) -> dict[str, float]:
    n = len(answers)
    ranks = []
    for ranking, answer in zip(rankings, answers, strict=True):
        ranked = list(ranking)
        ranks.append(ranked.index(answer) + 1 if answer in ranked else None)
    return {
        "recall@1": sum(r is not None and r <= 1 for r in ranks) / n,
        "recall@10": sum(r is not None and r <= 10 for r in ranks) / n,
        "recall@100": sum(r is not None and r <= 100 for r in ranks) / n,
        "mrr@10": sum(1 / r for r in ranks if r is not None and r <= 10) / n,
    }


@dataclass
class Runs:
    """Per query, the dense and keyword (id, score) rankings (depth DEPTH) fusion works from."""

    dense: list[list[tuple[int, float]]]
    keyword: list[list[tuple[int, float]]]

    def ids(self, side: str) -> list[list[int]]:
        return [[i for i, _ in r] for r in getattr(self, side)]


async def rank_all(engine: Any, queries: Sequence[Query], bm25: Any = None) -> Runs:
    from marquee_search.keyword import DEFAULT_BM25
    from marquee_shared.api import MovieFilters

    none = MovieFilters()
    dense: list[list[tuple[int, float]]] = []
    keyword: list[list[tuple[int, float]]] = []
    started = time.perf_counter()
    mirror = engine.mirror
    for i, q in enumerate(queries):
        vector = await engine.embed_query(q.text)  # primed: no model call
        found = await engine.nearest(vector, DEPTH, none)
        dense.append([(n.tmdb_id, n.similarity) for n in found])
        keyword.append(mirror.keyword_top(q.text, DEPTH, mirror.mask(none), bm25 or DEFAULT_BM25))
        if i % 200 == 0:
            print(f"\r  ranked {i}/{len(queries)}", end="", flush=True)
    print(f"\r  ranked {len(queries)} queries in {time.perf_counter() - started:.0f}s")
    return Runs(dense, keyword)


def keyword_only(engine: Any, queries: Sequence[Query], bm25: Any) -> list[list[tuple[int, float]]]:
    from marquee_shared.api import MovieFilters

    mirror = engine.mirror
    keep = mirror.mask(MovieFilters())
    return [mirror.keyword_top(q.text, DEPTH, keep, bm25) for q in queries]


def hybrid(runs: Runs, fusion: Any) -> list[list[int]]:
    from marquee_search.hybrid import fuse

    return [
        [i for i, _ in fuse(d, k, fusion)][:DEPTH]
        for d, k in zip(runs.dense, runs.keyword, strict=True)
    ]


def tune(engine: Any, runs: Runs, queries: Sequence[Query]) -> dict[str, Any]:
    """Grid search on the tune split: BM25 first (keyword MRR@10), then the fusion."""
    import dataclasses

    from marquee_search.hybrid import FusionParams
    from marquee_search.keyword import DEFAULT_BM25

    answers = [q.answer for q in queries]
    print(f"  semantic on the tune split: {metrics(runs.ids('dense'), answers)}")
    results: list[dict[str, Any]] = []
    best_bm25, best_score = DEFAULT_BM25, -1.0
    grid = [
        {},
        {"k1": 0.9},
        {"k1": 1.6},
        {"b": (0.3, 0.3, 0.3, 0.3, 0.5, 0.5)},
        {"b": (0.5, 0.5, 0.5, 0.5, 0.75, 0.9)},
        {"b": (0.3, 0.3, 0.3, 0.3, 0.3, 0.9)},
        {"weights": (1.0,) * 6},
        {"weights": (2.0, 1.5, 1.5, 2.0, 1.5, 1.0)},
        {"weights": (3.0, 2.0, 1.0, 1.5, 1.0, 1.0)},
        {"weights": (3.0, 2.0, 2.0, 2.5, 3.5, 1.0)},
        {"weights": (3.0, 2.0, 3.0, 3.0, 2.5, 1.0)},
        {"weights": (4.0, 2.0, 2.0, 2.5, 2.5, 1.0)},
        {"fuzzy": False},
        {"drop_chatter": False},
        {"title_bonus": 0.0},
        {"fuzzy_weight": 0.5},
    ]
    for change in grid:
        params = dataclasses.replace(DEFAULT_BM25, **change)
        m = metrics([[i for i, _ in r] for r in keyword_only(engine, queries, params)], answers)
        results.append({"bm25": change, **m})
        print(f"  bm25 {change}: {m}")
        if m["mrr@10"] > best_score:
            best_bm25, best_score = params, m["mrr@10"]
    if best_bm25 != DEFAULT_BM25:
        runs = Runs(runs.dense, keyword_only(engine, queries, best_bm25))
    best_fusion, best_fusion_score = FusionParams(), -1.0
    candidates = [
        FusionParams(method="rrf", k=k, keyword_weight=kw, depth=depth)
        for k in (5, 10, 20, 40, 60, 100)
        for kw in (0.3, 0.5, 0.75, 1.0, 1.5)
        for depth in (50, 100)
    ] + [
        FusionParams(method="convex", alpha=alpha, depth=depth)
        for alpha in (0.5, 0.6, 0.7, 0.75, 0.8, 0.85, 0.9)
        for depth in (50, 100)
    ]
    for fusion in candidates:
        m = metrics(hybrid(runs, fusion), answers)
        results.append({"fusion": dataclasses.asdict(fusion), **m})
        score = m["mrr@10"] + m["recall@10"]
        if score > best_fusion_score:
            best_fusion, best_fusion_score = fusion, score
    print(f"  best bm25: {best_bm25}")
    print(f"  best fusion: {best_fusion} (MRR@10 + recall@10 = {best_fusion_score:.3f})")
    return {"best_bm25": repr(best_bm25), "best_fusion": repr(best_fusion), "grid": results}


async def check_engine_agrees(engine: Any, runs: Runs, queries: Sequence[Query]) -> None:
    """The offline fusion above must be what the service answers: compare on a sample."""
    from marquee_shared.api import MovieFilters

    for i, q in enumerate(queries[:25]):
        fused = (await engine.hybrid_ranking(q.text, 10, MovieFilters())).items
        offline = hybrid(Runs([runs.dense[i]], [runs.keyword[i]]), engine.tuning.fusion)[0]
        assert [t for t, _ in fused] == offline[:10], f"engine and offline fusion differ on {q.qid}"


async def main(args: argparse.Namespace) -> int:
    if not CATALOG_CSV.exists() or not TOMT.exists():
        print(f"skipped: {SHARED} is absent (the ../shared kit is not beside the project)")
        return 0
    from marquee_search.engine import SearchEngine

    base = data_dir()
    catalog = load_catalog()
    print(f"catalog: {len(catalog)} movies; cache {base.relative_to(ROOT)}")
    queries = load_queries()
    missing = [q for q in queries if q.answer not in catalog]
    tune_q = [q for q in queries if q.split == "tune"]
    report_q = [q for q in queries if q.split == "report"]
    print(
        f"queries: {len(queries)} ({len(tune_q)} tune, {len(report_q)} report; "
        f"{len(missing)} answers not in the catalog)"
    )
    if not (args.tune or args.results or args.index_only):
        return await report(catalog, queries, len(tune_q), args.write, llm_rerank=args.llm_rerank)
    started = time.perf_counter()
    async with servers(base) as (redis_url, chroma_url):
        encoder_box: dict[str, Any] = {}
        collection = await ensure_index(chroma_url, redis_url, catalog)
        if args.index_only:
            return 0
        vectors = encode_cached([q.text for q in queries], "tomt-queries", encoder_box)
        sync = await mirror_from(collection, redis_url)
        engine = SearchEngine(collection, encoder_box.get("encoder"), len(queries) + 10, sync)
        for q, v in zip(queries, vectors, strict=True):
            engine.remember_query_vector(q.text, v)
        chosen = queries if args.all_queries else tune_q if args.tune else report_q
        runs = await rank_all(engine, chosen)
        await check_engine_agrees(engine, runs, chosen)
        if args.tune:
            found = tune(engine, runs, chosen)
            RESULTS.mkdir(parents=True, exist_ok=True)
            (RESULTS / "search_tuning.json").write_text(json.dumps(found, indent=1, default=str))
            return 0
        answers = [q.answer for q in chosen]
        table = {
            "semantic (dense only, baseline)": metrics(runs.ids("dense"), answers),
            "keyword (BM25F + typo tolerance)": metrics(runs.ids("keyword"), answers),
            f"hybrid ({engine.tuning.fusion.method} fusion, the default)": metrics(
                hybrid(runs, engine.tuning.fusion), answers
            ),
        }
    elapsed = time.perf_counter() - started
    if args.results:
        # A side run (e.g. another backend): its own file; search.json and the docs are left
        # to the default run (``report``).
        args.results.parent.mkdir(parents=True, exist_ok=True)
        args.results.write_text(
            json.dumps(
                {"backend": backend(), "split": "all" if args.all_queries else "report"}
                | {"queries": len(chosen)}
                | {"metrics": table, "machine": machine(), "seconds": round(elapsed)},
                indent=1,
            )
        )
    print(json.dumps(table, indent=1))
    return 0


async def report(
    catalog: dict[int, Any],
    queries: list[Query],
    n_tune: int,
    write: bool,
    *,
    llm_rerank: bool = False,
) -> int:
    """Every kind of request, every step of the ranking: the tomt_dev report split, the
    hand-written well-known films, and lookups made from the catalog (titles, titles with a
    typo, a director and a genre), through the engine as a replica runs it by default."""
    import dataclasses

    import ranking

    from marquee_search.ranker import DEFAULT_MODEL, LearnedRanker

    started = time.perf_counter()
    ranker = LearnedRanker(DEFAULT_MODEL) if DEFAULT_MODEL.exists() else None
    sets = {
        "tomt_dev report": [q for q in queries if q.split == "report"],
        "well-known films": ranking.load_wellknown(),
        **ranking.lookup_queries(catalog),
    }
    sets = {name: qs for name, qs in sets.items() if qs}
    results: dict[str, dict[str, dict[str, float]]] = {}
    async with ranking.engine_for(catalog, ranker=ranker) as (engine, box):
        if llm_rerank:
            # Claude on top, as a replica with a key runs it (every call is paid for).
            from redis.asyncio import Redis

            from marquee_search.app import _llm_reranker
            from marquee_search.settings import SearchSettings

            engine._llm = _llm_reranker(SearchSettings(), Redis.from_url(box["redis_url"]))
            if engine._llm is None:
                raise SystemExit("--llm-rerank needs ANTHROPIC_API_KEY (or the search setting)")
        await ranking.encode_windows(engine, [q for qs in sets.values() for q in qs], box)
        for name, qs in sets.items():
            print(f"{name}: {len(qs)} requests")
            stages = await ranking.stage_rankings(engine, qs)
            answers = [q.answer for q in qs]
            results[name] = {stage: metrics(r, answers) for stage, r in stages.items()}
        tuning = engine.tuning
    elapsed = time.perf_counter() - started
    tomt = results["tomt_dev report"]
    headers = ["ranking", "recall@1", "recall@10", "recall@100", "MRR@10"]
    rows = [
        [s, m["recall@1"], m["recall@10"], m["recall@100"], m["mrr@10"]] for s, m in tomt.items()
    ]
    kinds = [n for n in results if n != "tomt_dev report"]
    kind_headers = ["ranking", *(f"{n} ({len(sets[n])}) R@1 / R@10" for n in kinds)]
    kind_rows = [
        [s, *(f"{results[n][s]['recall@1']:.3f} / {results[n][s]['recall@10']:.3f}" for n in kinds)]
        for s in next(iter(results.values()))
    ]
    version = "none" if ranker is None else ranker.version
    text = (
        f"Search on tomt_dev, report split: {len(sets['tomt_dev report'])} real requests "
        f"(tuned and trained on the other {n_tune}). Made by `make eval` (`.venv/bin/python "
        f"bench/eval_search.py --write`) on {machine()}, backend {backend()}, {elapsed:.0f}s; "
        f"ranker {version}.\n\n{markdown_table(headers, rows)}\n\n"
        f"Every other kind of request, the same steps (recall@1 / recall@10):\n\n"
        f"{markdown_table(kind_headers, kind_rows)}\n\n"
        f"Parameters: {tuning.bm25}, {tuning.fusion}, {tuning.windows}."
    )
    print(text)
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "search.json").write_text(
        json.dumps(
            {
                "split": "report",
                "backend": backend(),
                "ranker": version,
                "requests": {n: len(qs) for n, qs in sets.items()},
                "tune_queries": n_tune,
                "metrics": results,
                "bm25": dataclasses.asdict(tuning.bm25),
                "fusion": dataclasses.asdict(tuning.fusion),
                "windows": dataclasses.asdict(tuning.windows),
                "machine": machine(),
                "seconds": round(elapsed),
            },
            indent=1,
        )
    )
    if write:
        write_doc_section("search", text)
    return 0


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--index-only", action="store_true", help="build the cached index only")
    parser.add_argument("--tune", action="store_true", help="grid-search on the tune split")
    parser.add_argument("--write", action="store_true", help="update docs/evaluation.md")
    parser.add_argument(
        "--backend",
        choices=("torch", "onnx", "onnx-int8"),
        help="embedding backend (default: the services' default, MARQUEE_SEARCH_BACKEND)",
    )
    parser.add_argument(
        "--all-queries", action="store_true", help="every tomt_dev query, not the report split"
    )
    parser.add_argument(
        "--llm-rerank",
        action="store_true",
        help="also measure Claude re-ranking on top (needs ANTHROPIC_API_KEY; paid calls)",
    )
    parser.add_argument(
        "--results", type=Path, help="also write the metrics as JSON here (e.g. for run_all)"
    )
    args = parser.parse_args(argv)
    if args.backend:
        os.environ["MARQUEE_SEARCH_BACKEND"] = args.backend
    return args


if __name__ == "__main__":
    sys.exit(asyncio.run(main(parse_args())))
