"""Search-service helpers for tests: a Catalog that writes movies as the embedder does (the
real indexer, then the changelog), a search replica served on a free port, and small HTTP
helpers."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Sequence
from datetime import UTC, datetime
from typing import Any

import httpx

from marquee_embedder.indexer import CatalogIndexer
from marquee_search.app import create_app as create_search
from marquee_search.settings import SearchSettings
from marquee_shared.events import Movie, MovieDeleted, MovieFetched
from tests.support.asgi import serve

CHANGES = "marquee:index:v1:changes"


class Catalog:
    """Writes movies the way the embedder does: the real indexer into Chroma, then the
    changelog entries the embedder announces (empty content hash = deleted)."""

    def __init__(self, indexer: CatalogIndexer, redis: Any) -> None:
        self._indexer = indexer
        self._redis = redis

    async def put(self, movies: Sequence[Movie], *, announce: bool = True) -> None:
        now = datetime.now(UTC)
        result = await self._indexer.apply(
            [MovieFetched(source="test", movie=m, occurred_at=now) for m in movies]
        )
        if announce:
            await self._announce(result.changed)

    async def delete(self, tmdb_id: int) -> None:
        result = await self._indexer.apply([MovieDeleted(source="test", tmdb_id=tmdb_id)])
        await self._announce(result.changed)

    async def _announce(self, changed: dict[int, str | None]) -> None:
        for tmdb_id, content_hash in changed.items():
            await self._redis.xadd(
                CHANGES, {"tmdb_id": str(tmdb_id), "content_hash": content_hash or ""}
            )


def search_settings(redis_url: str, chroma_url: str, collection: str) -> SearchSettings:
    return SearchSettings(
        chroma_url=chroma_url,
        chroma_collection=collection,
        redis_url=redis_url,
        index_changes_stream=CHANGES,
    )


@contextlib.asynccontextmanager
async def search_replica(
    redis_url: str, chroma_url: str, collection: str, encoder: Any
) -> AsyncIterator[str]:
    app = create_search(search_settings(redis_url, chroma_url, collection), encoder=encoder)
    async with serve(app) as url:
        yield url


async def get(url: str, **params: Any) -> httpx.Response:
    async with httpx.AsyncClient(timeout=30) as client:
        return await client.get(url, params=params)


async def post(url: str, body: Any) -> httpx.Response:
    async with httpx.AsyncClient(timeout=30) as client:
        return await client.post(url, json=body)


async def ids(url: str, **params: Any) -> list[int]:
    r = await get(url, **params)
    assert r.status_code == 200, r.text
    return [h["tmdb_id"] for h in r.json()["results"]]
