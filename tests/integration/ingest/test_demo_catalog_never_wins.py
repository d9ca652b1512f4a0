"""The demo catalog never overwrites newer data: `make run` publishes it on every start, and it
used to carry occurred_at = now, so the next start replaced a user's real catalog (or TMDB data)
with the demo's text. Both orders, through a real embedder, redis-server and chroma."""

from __future__ import annotations

import importlib.resources
import json
from pathlib import Path
from typing import Any

import pytest

from marquee_embedder.app import create_app
from marquee_ingest.ingest import ingest_demo, ingest_file
from marquee_ingest.settings import IngestSettings
from marquee_shared.index import movie_from_metadata
from tests.support.asgi import serve
from tests.support.chroma import chroma_collection
from tests.support.embedder import fast_settings
from tests.support.waiting import wait_until

pytestmark = pytest.mark.integration

N = 5  # the demo's first movies are enough


def demo_rows() -> list[dict[str, Any]]:
    path = importlib.resources.files("marquee_ingest").joinpath("data", "demo_catalog.jsonl")
    lines = path.read_text(encoding="utf-8").splitlines()[:N]
    return [json.loads(line) for line in lines]


def real_catalog(tmp_path: Path) -> Path:
    """The same movies as a newer catalog has them (here: a different overview)."""
    path = tmp_path / "catalog.jsonl"
    rows = [{**row, "overview": f"Newer text for {row['title']}."} for row in demo_rows()]
    path.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    return path


async def applied(redis) -> bool:  # type: ignore[no-untyped-def]
    groups = await redis.xinfo_groups("marquee:catalog:v1")
    return bool(groups) and groups[0]["pending"] == 0 and groups[0]["lag"] == 0


def overviews(chroma_url: str, collection: str) -> dict[int, str | None]:
    got = chroma_collection(chroma_url, collection).get(include=["metadatas"])
    movies = [movie_from_metadata(md) for md in got["metadatas"] or []]
    return {m.tmdb_id: m.overview for m in movies}


@pytest.mark.parametrize(
    "steps",
    [
        # `make run`, then the user ingests the real catalog, then `make run` again.
        pytest.param(["demo", "catalog", "demo"], id="demo-then-catalog"),
        # A real catalog (or TMDB) first, then `make run`.
        pytest.param(["catalog", "demo"], id="catalog-then-demo"),
    ],
)
async def test_the_demo_never_replaces_a_newer_catalog(
    steps, redis, redis_url, chroma_url, collection_name, encoder, tmp_path
):
    ingest = IngestSettings(redis_url=redis_url)
    catalog = real_catalog(tmp_path)
    expected = {row["tmdb_id"]: f"Newer text for {row['title']}." for row in demo_rows()}
    app = create_app(fast_settings(redis_url, chroma_url, collection_name), encoder=encoder)
    async with serve(app):
        for step in steps:
            if step == "demo":
                summary = await ingest_demo(redis, ingest, limit=N)
            else:
                summary = await ingest_file(catalog, redis, ingest)
            assert summary.published == N
            await wait_until(lambda: applied(redis), what=f"{step} applied")
    assert overviews(chroma_url, collection_name) == expected
