"""Keeping a replica's catalog mirror (keyword index and filter columns) in step with Chroma.

At startup the replica notes the index changelog's last id *before* reading Chroma, loads every
record, then tails the changelog (``marquee:index:v1:changes``, written by the embedders after
each Chroma write) from that id with plain XREAD: every replica needs every change, so there
is no consumer group (a group per replica would also hold back the stream's trimming). Each
entry names a movie; the replica re-reads that movie from Chroma (the source of truth) and
upserts or deletes it, so entries are idempotent and their order does not matter.

The replica also counts the entries it has consumed (Redis 7's ``entries-added`` at its
position). The stream is trimmed from the head, so ``entries-added - length`` entries are gone;
if that is more than the replica consumed, an entry it never read was trimmed and changes may
be lost: the replica rebuilds from Chroma and swaps the new mirror in whole. (The check runs
after each read, so trimming that reaches the replica's position during a read also counts:
a rare, harmless extra rebuild for a replica that is a whole stream behind anyway.)
"""

from __future__ import annotations

import asyncio
import time
from typing import TYPE_CHECKING, Any

import anyio.to_thread
import numpy as np
import structlog
from prometheus_client import Counter, Gauge

from marquee_search.catalog import CatalogMirror
from marquee_shared.backoff import Backoff
from marquee_shared.index import movie_from_metadata, record_id
from marquee_shared.streams import as_text

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence

    from chromadb.api.models.AsyncCollection import AsyncCollection
    from numpy.typing import NDArray
    from redis.asyncio import Redis

    from marquee_shared.events import Movie

    Record = tuple[Movie, str, NDArray[np.float32] | None]
    """A movie as Chroma holds it: the record, its content hash, its vector if mirrored."""

log = structlog.get_logger(__name__)

CHANGES = Counter(
    "marquee_search_index_changes_total",
    "Index changelog entries applied to the keyword index, by outcome (upserted, deleted, "
    "unchanged)",
    ["outcome"],
)
REBUILDS = Counter(
    "marquee_search_keyword_rebuilds_total", "Full reloads of the keyword index from Chroma"
)
MOVIES = Gauge("marquee_search_keyword_index_movies", "Movies in this replica's keyword index")

ID_PAGE = 5000
YIELD_EVERY = 50
"""Movies indexed between two yields to the event loop (about a millisecond each)."""


class IndexSync:
    """Owns the current mirror; ``run`` loads it and then follows the changelog forever."""

    def __init__(
        self,
        collection: AsyncCollection,
        redis: Redis,
        stream: str,
        *,
        block_ms: int = 1000,
        batch: int = 500,
        vectors: bool = False,
    ) -> None:
        self._collection = collection
        self._redis = redis
        self._stream = stream
        self._block_ms = block_ms
        self._batch = batch
        self._vectors = vectors
        """Mirror the embeddings too (exact dense search in the replica)."""
        self.mirror: CatalogMirror | None = None
        self.position = "0-0"
        self.consumed = 0
        """Entries ever added to the changelog up to ``position`` (its ``entries-added``)."""
        self.loaded = asyncio.Event()
        self.rebuilds = 0
        self.applied = 0

    # -- loading ---------------------------------------------------------------------------

    async def _stream_info(self) -> dict[str, Any]:
        if not await self._redis.exists(self._stream):
            return {}
        info: dict[str, Any] = await self._redis.xinfo_stream(self._stream)
        return info

    async def _end(self) -> tuple[str, int]:
        """The changelog's last id and how many entries it has ever had, read together."""
        info = await self._stream_info()
        return as_text(info.get("last-generated-id", "0-0")), int(info.get("entries-added", 0))

    async def _fetch(self, ids: Sequence[str]) -> list[Record]:
        if not ids:  # Chroma refuses an empty id list
            return []
        include: list[Any] = ["metadatas", "embeddings"] if self._vectors else ["metadatas"]
        got = await self._collection.get(ids=list(ids), include=include)
        embeddings = got.get("embeddings") if self._vectors else None
        return await anyio.to_thread.run_sync(_parse, got["metadatas"] or [], embeddings)

    async def load(self) -> tuple[CatalogMirror, str, int]:
        """A fresh mirror of the whole collection, the changelog id to tail from and the
        entries consumed up to it."""
        started = time.perf_counter()
        position, consumed = await self._end()  # before reading: a later change is replayed
        # All ids first, then records by id: paging records by offset could skip one when a
        # delete shifts the offsets mid-read, and nothing would ever announce it again.
        ids: list[str] = (await self._collection.get(include=[]))["ids"]
        records: list[Record] = []
        for i in range(0, len(ids), ID_PAGE):
            records.extend(await self._fetch(ids[i : i + ID_PAGE]))
        mirror = await anyio.to_thread.run_sync(_build, records)
        log.info(
            "keyword_index_loaded",
            movies=len(mirror),
            terms=mirror.keyword.vocabulary_size,
            position=position,
            load_s=round(time.perf_counter() - started, 2),
        )
        return mirror, position, consumed

    async def load_now(self) -> None:
        """Load the mirror before serving it (a replica switching collections)."""
        self._install(*await self.load())

    def _install(self, mirror: CatalogMirror, position: str, consumed: int) -> None:
        self.mirror, self.position, self.consumed = mirror, position, consumed
        MOVIES.set(len(mirror))
        self.loaded.set()

    # -- following -------------------------------------------------------------------------

    async def poll(self, block_ms: int | None = None) -> int:
        """Read and apply the next changelog entries (waiting up to ``block_ms``); returns
        how many were read. Rebuilds from Chroma when the changelog lost entries we needed."""
        before = self.position
        block = self._block_ms if block_ms is None else block_ms
        reply: Any = await self._redis.xread({self._stream: before}, count=self._batch, block=block)
        entries: list[tuple[Any, Mapping[Any, Any]]] = reply[0][1] if reply else []
        if await self._lost_entries():
            await self.rebuild()
            return len(entries)
        if entries:
            await self.apply([fields for _, fields in entries])
            self.position = as_text(entries[-1][0])
            self.consumed += len(entries)
        return len(entries)

    async def _lost_entries(self) -> bool:
        info = await self._stream_info()
        if not info:  # no changelog (yet, or deleted): nothing to lose unless we had one
            return self.consumed > 0
        added, length = int(info.get("entries-added", 0)), int(info.get("length", 0))
        if added < self.consumed:
            return True  # the stream was deleted and created anew: anything may have changed
        return added - length > self.consumed

    async def rebuild(self) -> None:
        REBUILDS.inc()
        self.rebuilds += 1
        log.warning("keyword_index_rebuilding", position=self.position)
        self._install(*await self.load())

    async def apply(self, entries: Sequence[Mapping[Any, Any]]) -> None:
        """Bring the named movies in line with what Chroma holds now."""
        mirror = self.mirror
        assert mirror is not None
        wanted: dict[int, None] = {}
        for fields in entries:
            raw = fields.get(b"tmdb_id", fields.get("tmdb_id"))
            try:
                wanted[int(as_text(raw))] = None
            except (TypeError, ValueError):
                log.warning("index_change_ignored", fields=str(fields)[:200])
        found = {r[0].tmdb_id: r for r in await self._fetch([record_id(i) for i in wanted])}
        for n, tmdb_id in enumerate(wanted, start=1):
            if n % YIELD_EVERY == 0:
                # A bulk re-ingest arrives 500 entries a read: let searches run in between.
                await asyncio.sleep(0)
            record = found.get(tmdb_id)
            if record is None:
                outcome = "deleted" if mirror.delete(tmdb_id) else "unchanged"
            elif mirror.content_hash(tmdb_id) == record[1]:
                outcome = "unchanged"
            else:
                mirror.upsert(*record)
                outcome = "upserted"
            CHANGES.labels(outcome).inc()
        self.applied += len(wanted)
        MOVIES.set(len(mirror))

    async def run(self) -> None:
        """Load (retrying until Chroma and Redis answer), then follow the changelog forever."""
        backoff = Backoff(first=0.5, cap=10.0)
        while True:
            try:
                if self.mirror is None:
                    self._install(*await self.load())
                await self.poll()
                backoff.reset()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - keep following; the index stays served
                delay = backoff.next()
                log.warning("keyword_sync_failed", error=repr(exc)[:300], retry_in=delay)
                await asyncio.sleep(delay)

    async def ready(self) -> None:
        """Readiness check: the keyword index is loaded."""
        if self.mirror is None:
            msg = "the keyword index is still loading from Chroma"
            raise RuntimeError(msg)


def _parse(metadatas: Sequence[Mapping[str, Any]], embeddings: Any = None) -> list[Record]:
    records: list[Record] = []
    for i, md in enumerate(metadatas):
        try:
            movie = movie_from_metadata(md)
        except ValueError as exc:
            log.warning("record_not_indexed", error=str(exc)[:200])
            continue
        vector = None if embeddings is None else np.asarray(embeddings[i], np.float32)
        records.append((movie, str(md.get("content_hash", "")), vector))
    return records


def _build(records: Sequence[Record]) -> CatalogMirror:
    mirror = CatalogMirror(capacity=max(1024, int(len(records) * 1.25)))
    mirror.bulk_load(records)
    return mirror
