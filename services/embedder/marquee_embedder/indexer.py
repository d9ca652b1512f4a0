"""Applying catalog events to the Chroma collection: the embedder's core logic.

Idempotent by design, because Redis Streams deliver at least once: a record is keyed by TMDB
id, an event whose content hash matches what is stored is a no-op, an event older than the
latest version in the ledger is ignored (so a late or redelivered old version never overwrites
a newer one, deletions included), and a change that does not touch the embedded text updates
the metadata without running the model.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import anyio.to_thread
import structlog
from chromadb.errors import NotFoundError
from prometheus_client import Counter as MetricCounter

from marquee_shared.events import MovieDeleted, MovieFetched
from marquee_shared.index import movie_document, movie_metadata, record_id

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence

    from chromadb.api.models.AsyncCollection import AsyncCollection

    from marquee_embedder.ledger import Ledger, LedgerEntry
    from marquee_embedder.targets import IndexTarget, IndexTargets
    from marquee_shared.model.encoder import Encoder

log = structlog.get_logger(__name__)

DOUBLE_WRITES = MetricCounter(
    "marquee_embedder_migration_double_writes_total",
    "Catalog events also written to the other collection of a model migration",
)


@dataclass
class ApplyResult:
    """What one batch did, by outcome: embedded, metadata_updated, unchanged, stale, deleted."""

    counts: Counter[str] = field(default_factory=Counter)
    changed: dict[int, str | None] = field(default_factory=dict)
    """Records written: TMDB id -> new content hash, or None when deleted."""

    def add(self, outcome: str, n: int = 1) -> None:
        if n:
            self.counts[outcome] += n


class CatalogIndexer:
    def __init__(
        self,
        collection: AsyncCollection,
        encoder: Encoder,
        ledger: Ledger,
        *,
        targets: IndexTargets | None = None,
    ) -> None:
        self._collection = collection
        self._encoder = encoder
        self._ledger = ledger
        self._targets = targets
        """With a model migration possible: the collections to write, read per batch."""

    async def apply(self, events: Sequence[MovieFetched | MovieDeleted]) -> ApplyResult:
        """Bring Chroma in line with the newest version of each movie among the events.

        Raises if Chroma fails, so the caller leaves the entries pending instead of
        acknowledging them.
        """
        result = ApplyResult()
        chosen = newest_per_movie(events)
        result.add("superseded", len(events) - len(chosen))
        # Read before the ledger is written: a migration that starts in between is covered by
        # its verification, which re-applies whatever the target lacks.
        targets = await self._targets.resolve() if self._targets is not None else None
        is_latest = await self._ledger.record(chosen)
        current = [e for e, latest in zip(chosen, is_latest, strict=True) if latest]
        result.add("stale", len(chosen) - len(current))
        await self._write(current, result, targets)

        # Another replica may have recorded a newer version while we wrote this one, and
        # written it before us: re-check the ledger and converge on its latest version.
        for _ in range(3):
            behind = behind_the_ledger(current, await self._ledger.latest(map(_tmdb_id, current)))
            if not behind:
                break
            result.add("converged", len(behind))
            await self._write(behind, result, targets)
            current = behind
        return result

    async def copy_to(
        self, target: IndexTarget, events: Sequence[MovieFetched | MovieDeleted]
    ) -> ApplyResult:
        """Write ledger events to one collection (a migration's backfill and verification),
        then converge on the ledger's newest version: a live event may have replaced one of
        these meanwhile, and its own write to the target may have landed before this one."""
        result = ApplyResult()
        current = list(events)
        await self._write_to(target.collection, target.encoder, current, result)
        for _ in range(3):
            behind = behind_the_ledger(current, await self._ledger.latest(map(_tmdb_id, current)))
            if not behind:
                break
            result.add("converged", len(behind))
            await self._write_to(target.collection, target.encoder, behind, result)
            current = behind
        return result

    async def _write(
        self,
        events: Sequence[MovieFetched | MovieDeleted],
        result: ApplyResult,
        targets: Sequence[IndexTarget] | None,
    ) -> None:
        if targets is None:
            await self._write_to(self._collection, self._encoder, events, result)
            return
        for target in targets:
            if target.live:
                await self._write_to(target.collection, target.encoder, events, result)
                continue
            # The other side of a migration: its outcomes are not this event's outcome.
            side = ApplyResult()
            try:
                await self._write_to(target.collection, target.encoder, events, side)
            except NotFoundError:
                # Dropped by `migrate finish`/`abort` after this batch read the state.
                log.info("migration_collection_gone", collection=target.name)
                assert self._targets is not None
                self._targets.forget(target.name)
                continue
            DOUBLE_WRITES.inc(len(events))
            result.changed.update(side.changed)

    async def _write_to(
        self,
        collection: AsyncCollection,
        encoder: Encoder,
        events: Sequence[MovieFetched | MovieDeleted],
        result: ApplyResult,
    ) -> None:
        if not events:
            return
        fetched = [e for e in events if isinstance(e, MovieFetched)]
        deleted = [e.tmdb_id for e in events if isinstance(e, MovieDeleted)]
        if fetched:
            await self._upsert(collection, encoder, fetched, result)
        if deleted:
            await collection.delete(ids=[record_id(i) for i in deleted])
            result.add("deleted", len(deleted))
            result.changed.update(dict.fromkeys(deleted))

    async def _upsert(
        self,
        collection: AsyncCollection,
        encoder: Encoder,
        events: Sequence[MovieFetched],
        result: ApplyResult,
    ) -> None:
        ids = [record_id(e.movie.tmdb_id) for e in events]
        stored = await collection.get(ids=ids, include=["metadatas"])
        stored_md: dict[str, Any] = dict(zip(stored["ids"], stored["metadatas"] or [], strict=True))

        to_embed: list[MovieFetched] = []
        to_update: list[MovieFetched] = []
        for event in events:
            md = stored_md.get(record_id(event.movie.tmdb_id))
            if md is None:
                to_embed.append(event)
            elif md.get("content_hash") == event.movie.content_hash():
                result.add("unchanged")
            elif md.get("text_hash") == event.movie.text_hash():
                to_update.append(event)
            else:
                to_embed.append(event)

        if to_update:
            # Ratings and popularity moved but the text did not: keep the stored vector.
            await collection.update(
                ids=[record_id(e.movie.tmdb_id) for e in to_update],
                metadatas=[movie_metadata(e.movie, occurred_at=e.occurred_at) for e in to_update],
            )
            result.add("metadata_updated", len(to_update))
            result.changed.update({e.movie.tmdb_id: e.movie.content_hash() for e in to_update})
        if to_embed:
            documents = [movie_document(e.movie) for e in to_embed]
            # The model is CPU-bound and releases the GIL inside torch: run it in a worker
            # thread so the event loop keeps serving health checks and Redis I/O meanwhile.
            vectors = await anyio.to_thread.run_sync(encoder.encode, documents)
            await collection.upsert(
                ids=[record_id(e.movie.tmdb_id) for e in to_embed],
                embeddings=vectors,
                documents=documents,
                metadatas=[movie_metadata(e.movie, occurred_at=e.occurred_at) for e in to_embed],
            )
            result.add("embedded", len(to_embed))
            result.changed.update({e.movie.tmdb_id: e.movie.content_hash() for e in to_embed})


def newest_per_movie(
    events: Sequence[MovieFetched | MovieDeleted],
) -> list[MovieFetched | MovieDeleted]:
    """One event per movie: the one that occurred last (on a tie, the later in the batch, as
    the stream delivered it). The others are superseded within the batch."""
    newest: dict[int, MovieFetched | MovieDeleted] = {}
    for event in events:
        held = newest.get(_tmdb_id(event))
        if held is None or event.occurred_at >= held.occurred_at:
            newest[_tmdb_id(event)] = event
    return list(newest.values())


def behind_the_ledger(
    written: Sequence[MovieFetched | MovieDeleted], latest: Mapping[int, LedgerEntry]
) -> list[MovieFetched | MovieDeleted]:
    """The ledger's newer versions of movies just written: another replica recorded them while
    this one wrote, and may have written them first. An entry the ledger cannot read (logged
    where it was read) has nothing to converge on."""
    return [
        entry.event
        for e in written
        if (entry := latest.get(_tmdb_id(e))) is not None
        and entry.event is not None
        and entry.content_hash != _content_hash(e)
    ]


def _tmdb_id(event: MovieFetched | MovieDeleted) -> int:
    return event.movie.tmdb_id if isinstance(event, MovieFetched) else event.tmdb_id


def _content_hash(event: MovieFetched | MovieDeleted) -> str | None:
    return event.movie.content_hash() if isinstance(event, MovieFetched) else None
