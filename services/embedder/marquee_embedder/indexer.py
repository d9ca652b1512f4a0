"""Applying catalog events to the Chroma collection: the embedder's core logic.

Idempotent by design, because Redis Streams deliver at least once: a record is keyed by TMDB
id, an event whose content hash matches what is stored is a no-op, an event older than the
stored version is ignored, and a change that does not touch the embedded text updates the
metadata without running the model.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import anyio.to_thread
import structlog

from marquee_shared.events import MovieDeleted, MovieFetched
from marquee_shared.index import movie_document, movie_metadata, record_id

if TYPE_CHECKING:
    from collections.abc import Sequence

    from chromadb.api.models.AsyncCollection import AsyncCollection

    from marquee_embedder.encoder import Encoder

log = structlog.get_logger(__name__)


@dataclass
class ApplyResult:
    """What one batch did, by outcome: embedded, metadata_updated, unchanged, stale, deleted."""

    counts: Counter[str] = field(default_factory=Counter)

    def add(self, outcome: str, n: int = 1) -> None:
        if n:
            self.counts[outcome] += n


class CatalogIndexer:
    def __init__(self, collection: AsyncCollection, encoder: Encoder) -> None:
        self._collection = collection
        self._encoder = encoder

    async def apply(self, events: Sequence[MovieFetched | MovieDeleted]) -> ApplyResult:
        """Bring Chroma in line with the events (in stream order). Raises if Chroma fails, so
        the caller leaves the entries pending instead of acknowledging them."""
        result = ApplyResult()
        latest: dict[int, MovieFetched | MovieDeleted] = {}
        for event in events:
            tmdb_id = event.movie.tmdb_id if isinstance(event, MovieFetched) else event.tmdb_id
            # Within a batch only the last event per movie matters (stream order).
            if tmdb_id in latest:
                result.add("superseded")
            latest[tmdb_id] = event

        fetched = [e for e in latest.values() if isinstance(e, MovieFetched)]
        deleted = [e.tmdb_id for e in latest.values() if isinstance(e, MovieDeleted)]
        if fetched:
            await self._upsert(fetched, result)
        if deleted:
            await self._collection.delete(ids=[record_id(i) for i in deleted])
            result.add("deleted", len(deleted))
        return result

    async def _upsert(self, events: Sequence[MovieFetched], result: ApplyResult) -> None:
        ids = [record_id(e.movie.tmdb_id) for e in events]
        stored = await self._collection.get(ids=ids, include=["metadatas"])
        stored_md: dict[str, Any] = dict(zip(stored["ids"], stored["metadatas"] or [], strict=True))

        to_embed: list[MovieFetched] = []
        to_update: list[MovieFetched] = []
        for event in events:
            md = stored_md.get(record_id(event.movie.tmdb_id))
            if md is None:
                to_embed.append(event)
            elif float(md.get("occurred_at", 0.0)) > event.occurred_at.timestamp():
                result.add("stale")  # a redelivered or late older version: keep the newer
            elif md.get("content_hash") == event.movie.content_hash():
                result.add("unchanged")
            elif md.get("text_hash") == event.movie.text_hash():
                to_update.append(event)
            else:
                to_embed.append(event)

        if to_update:
            # Ratings and popularity moved but the text did not: keep the stored vector.
            await self._collection.update(
                ids=[record_id(e.movie.tmdb_id) for e in to_update],
                metadatas=[movie_metadata(e.movie, occurred_at=e.occurred_at) for e in to_update],
            )
            result.add("metadata_updated", len(to_update))
        if to_embed:
            documents = [movie_document(e.movie) for e in to_embed]
            # The model is CPU-bound and releases the GIL inside torch: run it in a worker
            # thread so the event loop keeps serving health checks and Redis I/O meanwhile.
            vectors = await anyio.to_thread.run_sync(self._encoder.encode, documents)
            await self._collection.upsert(
                ids=[record_id(e.movie.tmdb_id) for e in to_embed],
                embeddings=vectors,
                documents=documents,
                metadatas=[movie_metadata(e.movie, occurred_at=e.occurred_at) for e in to_embed],
            )
            result.add("embedded", len(to_embed))
