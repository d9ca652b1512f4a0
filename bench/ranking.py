"""What the ranking evaluation and the ranker's training share: the search engine over the
cached catalog index, the requests' windows encoded once (cached), and per request the fused
candidates and their features exactly as the service computes them (``SearchEngine.candidates``
and ``SearchEngine.features``: one implementation for training and serving).

Query sets: tomt_dev (its fixed tune and report splits, eval_search.Query.split), the
hand-written well-known-films set (bench/data/wellknown.jsonl, never trained on), and titles
and names made from the catalog (``lookup_queries``).
"""

from __future__ import annotations

import contextlib
import json
import random
import time
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import eval_search as ev
import numpy as np

WELLKNOWN = ev.ROOT / "bench" / "data" / "wellknown.jsonl"
LOOKUP_SEED = 13
LOOKUPS = 300


def load_wellknown(path: Path = WELLKNOWN) -> list[ev.Query]:
    if not path.exists():
        return []
    with path.open(encoding="utf-8") as f:
        rows = [json.loads(line) for line in f if line.strip()]
    return [ev.Query(str(r["id"]), r["query"], int(r["tmdb_id"])) for r in rows]


def lookup_queries(
    catalog: dict[int, Any], seed: int = LOOKUP_SEED, exclude: frozenset[int] = frozenset()
) -> dict[str, list[ev.Query]]:
    """Short lookups made from the catalog, seeded: a known film's title as typed (lower
    case), the same with one typo, and its director's name with a word of its plot genre
    ("<director> horror"), each answered by that film. Only films with 500+ votes, and only
    titles unique in the catalog, so the answer is well defined. The default seed is the
    reported set; ``tune_lookups`` draws a disjoint one to tune on."""
    rng = random.Random(seed)
    titles: dict[str, int] = {}
    for m in catalog.values():
        key = m.title.casefold()
        titles[key] = -1 if key in titles else m.tmdb_id
    known = sorted(
        (
            m
            for m in catalog.values()
            if (m.vote_count or 0) >= 500
            and titles[m.title.casefold()] > 0
            and m.tmdb_id not in exclude
        ),
        key=lambda m: m.tmdb_id,
    )
    sample = rng.sample(known, min(LOOKUPS, len(known)))
    exact = [ev.Query(f"title-{m.tmdb_id}", m.title.lower(), m.tmdb_id) for m in sample]
    typos = []
    for m in sample:
        letters = [i for i, c in enumerate(m.title) if c.isalpha()]
        if len(letters) < 5:
            continue
        i = rng.choice(letters[1:-1])
        typo = m.title[:i] + m.title[i + 1] + m.title[i] + m.title[i + 2 :]  # a swap
        typos.append(ev.Query(f"typo-{m.tmdb_id}", typo.lower(), m.tmdb_id))
    # A director and a genre word narrow to few films; the answer is this one if it is the
    # director's only film of that genre in the catalog.
    by_director: dict[tuple[str, str], list[int]] = {}
    for m in catalog.values():
        for d in m.directors[:1]:
            for g in m.genres[:1]:
                by_director.setdefault((d, g), []).append(m.tmdb_id)
    names = [
        ev.Query(f"name-{m.tmdb_id}", f"{m.directors[0]} {m.genres[0].lower()} movie", m.tmdb_id)
        for m in sample
        if m.directors and m.genres and len(by_director[(m.directors[0], m.genres[0])]) == 1
    ]
    return {"titles": exact, "titles with a typo": typos, "director + genre": names}


def tune_lookups(catalog: dict[int, Any]) -> dict[str, list[ev.Query]]:
    """Lookups of the same three kinds for tuning, on films the reported set does not use."""
    reported = lookup_queries(catalog)
    used = frozenset(q.answer for qs in reported.values() for q in qs)
    return lookup_queries(catalog, seed=LOOKUP_SEED + 1000, exclude=used)


@dataclass
class Collected:
    """Per request: the fused ids, the ids with features, their features, the answer's
    position among them (-1: not a candidate)."""

    queries: list[ev.Query]
    fused: list[list[int]] = field(default_factory=list)
    ids: list[list[int]] = field(default_factory=list)
    features: list[np.ndarray] = field(default_factory=list)
    words: list[int] = field(default_factory=list)

    def labels(self, i: int) -> np.ndarray:
        return np.asarray([t == self.queries[i].answer for t in self.ids[i]], np.float32)


def merge(a: Collected, b: Collected) -> Collected:
    return Collected(
        a.queries + b.queries,
        a.fused + b.fused,
        a.ids + b.ids,
        a.features + b.features,
        a.words + b.words,
    )


async def encode_windows(engine: Any, queries: Sequence[ev.Query], box: dict[str, Any]) -> None:
    """Every window of every request encoded once (cached on disk) and primed in the engine's
    query cache, so collecting candidates costs no model call."""
    # The request whole too: the semantic stage encodes it as one text.
    texts = sorted({w for q in queries for w in [q.text, *engine.windows(q.text)]})
    for t, v in zip(texts, encode_texts(texts, box), strict=True):
        engine.remember_query_vector(t, v)


def encode_texts(texts: Sequence[str], box: dict[str, Any]) -> np.ndarray:
    """Vectors of ``texts`` from a store of every text ever encoded for this catalog and
    backend (``.data/eval/<hash>/texts.*``), encoding only the new ones."""
    base = ev.data_dir()
    keys_file, vectors_file = base / "texts.json", base / "texts.npy"
    keys: list[str] = json.loads(keys_file.read_text()) if keys_file.exists() else []
    matrix = np.load(vectors_file) if vectors_file.exists() else np.zeros((0, 384), np.float32)
    at = {k: i for i, k in enumerate(keys)}
    new = [t for t in dict.fromkeys(texts) if t not in at]
    if new:
        fresh = ev.encode_cached(new, "new-texts", box)
        matrix = np.concatenate([matrix, fresh])
        for t in new:
            at[t] = len(keys)
            keys.append(t)
        np.save(vectors_file, matrix)
        keys_file.write_text(json.dumps(keys))
    return matrix[[at[t] for t in texts]]


async def collect(engine: Any, queries: Sequence[ev.Query], k: int = ev.DEPTH) -> Collected:
    from marquee_shared.api import MovieFilters

    none = MovieFilters()
    out = Collected(list(queries))
    started = time.perf_counter()
    for i, q in enumerate(queries):
        found = await engine.candidates(q.text, none, k, signals_depth=k)
        out.fused.append([t for t, _ in found.fused][:k])
        out.words.append(found.cues.words)
        if found.signals is not None:
            out.ids.append(list(found.signals_ids))
            out.features.append(engine.features(q.text, found))
        else:
            out.ids.append([])
            out.features.append(np.zeros((0, 0), np.float32))
        if i % 250 == 0:
            print(f"\r  candidates {i}/{len(queries)}", end="", flush=True)
    print(f"\r  candidates for {len(queries)} requests in {time.perf_counter() - started:.0f}s")
    return out


def reranked(data: Collected, scores: Sequence[np.ndarray], min_words: int = 0) -> list[list[int]]:
    """Each request's candidates by the model's scores (ties by the fused order), followed by
    fused candidates it did not score; requests under ``min_words`` keep the fused order."""
    out = []
    for i, fused in enumerate(data.fused):
        if data.words[i] < min_words or not len(scores[i]):
            out.append(fused)
            continue
        order = np.lexsort((np.arange(len(scores[i])), -scores[i]))
        ranked = [data.ids[i][j] for j in order]
        placed = set(ranked)
        out.append(ranked + [t for t in fused if t not in placed])
    return out


@contextlib.asynccontextmanager
async def engine_for(
    catalog: dict[int, Any],
    *,
    ranker: Any = None,
    windows: Any = None,
    encoder: Any = None,
    cache_size: int = 1_000_000,
) -> AsyncIterator[tuple[Any, dict[str, Any]]]:
    """The search engine as a replica runs it by default (vectors mirrored, exact dense
    search, request windows), over the cached Chroma index of the catalog."""
    from redis.asyncio import Redis

    from marquee_search.engine import SearchEngine, Tuning
    from marquee_search.settings import SearchSettings
    from marquee_search.sync import IndexSync
    from marquee_shared.model.windows import DEFAULT_WINDOWS, Windower

    box: dict[str, Any] = {}
    async with ev.servers(ev.data_dir()) as (redis_url, chroma_url):
        box["redis_url"] = redis_url
        collection = await ev.ensure_index(chroma_url, redis_url, catalog)
        redis = Redis.from_url(redis_url)
        try:
            sync = IndexSync(collection, redis, "marquee:index:v1:changes", vectors=True)
            started = time.perf_counter()
            mirror, _, _ = await sync.load()
            sync.mirror = mirror
            print(f"  mirror: {len(mirror)} movies in {time.perf_counter() - started:.1f}s")
        finally:
            await redis.aclose()
        params = windows or DEFAULT_WINDOWS
        engine = SearchEngine(
            collection,
            encoder,  # None: every vector is primed from the cache
            cache_size,
            sync,
            Tuning(windows=params),
            exact_max_movies=SearchSettings().exact_max_movies,
            ranker=ranker,
            windower=Windower(ev.model_dir(), params),
        )
        yield engine, box


STAGES = (
    "semantic (dense only, the request whole)",
    "keyword (BM25F + typo tolerance)",
    "hybrid, fusion (before issue 13)",
    "hybrid + long-request windows",
    "hybrid + windows + lookups told from descriptions",
    "hybrid + windows + kinds + learned ranker (the default)",
)
LLM_STAGE = "hybrid + ranker + Claude re-ranking (with a key)"


async def stage_rankings(engine: Any, queries: Sequence[ev.Query]) -> dict[str, list[list[int]]]:
    """Each stage's top 100 for every request: what adding each step did. The last stage is
    the engine's own hybrid answer (``hybrid_ranking``), ranker and all."""
    import dataclasses

    from marquee_search.hybrid import fuse
    from marquee_shared.api import MovieFilters

    none = MovieFilters()
    with_kinds = engine.tuning
    one_fusion = dataclasses.replace(
        with_kinds, kinds=dataclasses.replace(with_kinds.kinds, enabled=False)
    )
    mirror = engine.mirror
    keep = mirror.mask(none)
    llm = getattr(engine, "_llm", None)
    out: dict[str, list[list[int]]] = {s: [] for s in (*STAGES, *([LLM_STAGE] if llm else []))}
    started = time.perf_counter()
    for i, q in enumerate(queries):
        vector = await engine.embed_query(q.text)
        dense = [(n.tmdb_id, n.similarity) for n in await engine.nearest(vector, ev.DEPTH, none)]
        keyword = mirror.keyword_top(q.text, ev.DEPTH, keep, engine.tuning.bm25)
        engine.tuning = one_fusion  # every request fused one way: the step before kinds
        found = await engine.candidates(q.text, none, ev.DEPTH)
        engine.tuning = with_kinds
        kinds = await engine.candidates(q.text, none, ev.DEPTH)
        ranked = await engine.hybrid_ranking(q.text, ev.DEPTH, none)
        out[STAGES[0]].append([t for t, _ in dense])
        out[STAGES[1]].append([t for t, _ in keyword])
        out[STAGES[2]].append([t for t, _ in fuse(dense, keyword, engine.tuning.fusion)])
        out[STAGES[3]].append([t for t, _ in found.fused][: ev.DEPTH])
        out[STAGES[4]].append([t for t, _ in kinds.fused][: ev.DEPTH])
        out[STAGES[5]].append([t for t, _ in ranked.items])
        if llm is not None:
            found_llm = await engine.search(q.text, ev.DEPTH, none, "hybrid")
            out[LLM_STAGE].append([h.tmdb_id for h in found_llm.hits])
        if i % 250 == 0:
            print(f"\r  ranked {i}/{len(queries)}", end="", flush=True)
    print(f"\r  ranked {len(queries)} requests in {time.perf_counter() - started:.0f}s")
    return out


def catalog_requests(
    catalog: dict[int, Any], exclude: set[int], n: int = 1200, seed: int = 17
) -> list[ev.Query]:
    """Everyday requests made from the catalog, seeded: for a widely seen film (1,000+ votes),
    "<genre> movie about <three of its keywords>", sometimes with its decade. Training data
    for the side of search that tomt_dev does not show (people looking for well-known films
    with a few plain words). Films in ``exclude`` (every answer of tomt_dev and of the
    well-known set) are never used, so no request measured later shares its answer."""
    rng = random.Random(seed)
    known = sorted(
        (
            m
            for m in catalog.values()
            if (m.vote_count or 0) >= 1000
            and len(m.keywords) >= 3
            and m.genres
            and m.tmdb_id not in exclude
        ),
        key=lambda m: m.tmdb_id,
    )
    out = []
    for m in rng.sample(known, min(n, len(known))):
        words = rng.sample(m.keywords, 3)
        decade = f" from the {m.year // 10 * 10}s" if m.year and rng.random() < 0.3 else ""
        genre = rng.choice(m.genres).lower()
        text = f"a {genre} movie{decade} about {words[0]}, {words[1]} and {words[2]}"
        out.append(ev.Query(f"catalog-{m.tmdb_id}", text, m.tmdb_id))
    return out
