"""Hybrid search is at least as good as dense search on real "tip of my tongue" questions.

A small, fixed sample of tomt_dev (the movies its questions are about, plus others from the
catalog as distractors), embedded by the real indexer and searched through a real search
service. The full measurement is `make eval` (docs/evaluation.md); this keeps the claim honest
in every test run at a size two cores embed in well under a minute.
"""

from __future__ import annotations

import json
import random

import httpx
import pytest

from marquee_shared.api import MAX_QUERY_CHARS
from tests.support.paths import SHARED_DATA
from tests.support.search import Catalog, search_replica

pytestmark = [pytest.mark.integration, pytest.mark.shared_data]

QUERIES = 100
DISTRACTORS = 400
SEED = 4


async def test_hybrid_recall_at_10_is_at_least_semantic(
    catalog_csv, redis_url, chroma_url, collection_name, encoder, redis
):
    from marquee_embedder.indexer import CatalogIndexer
    from marquee_embedder.ledger import Ledger
    from marquee_ingest.sources import read_catalog_csv
    from marquee_shared.chroma import open_collection
    from marquee_shared.events import Movie

    movies = {m.tmdb_id: m for m in read_catalog_csv(catalog_csv) if isinstance(m, Movie)}
    with (SHARED_DATA / "queries" / "tomt_dev.jsonl").open(encoding="utf-8") as f:
        rows = [json.loads(line) for line in f if line.strip()]
    rng = random.Random(SEED)
    sample = rng.sample([r for r in rows if r["tmdb_id"] in movies], QUERIES)
    answers = {r["tmdb_id"] for r in sample}
    others = rng.sample(sorted(set(movies) - answers), DISTRACTORS)

    _, collection = await open_collection(httpx.URL(chroma_url), collection_name)  # type: ignore[arg-type]
    writer = Catalog(CatalogIndexer(collection, encoder, Ledger(redis, "test:ledger")), redis)
    await writer.put([movies[i] for i in sorted(answers | set(others))], announce=False)

    found: dict[str, int] = {"semantic": 0, "hybrid": 0, "keyword": 0}
    async with (
        search_replica(redis_url, chroma_url, collection_name, encoder) as url,
        httpx.AsyncClient(timeout=60) as client,
    ):
        for row in sample:
            q = row["query"][:MAX_QUERY_CHARS]  # the API's limit on a query
            for mode in found:
                r = await client.get(url + "/search", params={"q": q, "k": 10, "mode": mode})
                assert r.status_code == 200, r.text
                found[mode] += row["tmdb_id"] in [h["tmdb_id"] for h in r.json()["results"]]
    recall = {mode: n / QUERIES for mode, n in found.items()}
    print(f"recall@10 on {QUERIES} queries over {len(answers) + DISTRACTORS} movies: {recall}")
    assert recall["hybrid"] >= recall["semantic"], recall
    assert recall["keyword"] > 0.2, recall  # the keyword side is pulling its weight
