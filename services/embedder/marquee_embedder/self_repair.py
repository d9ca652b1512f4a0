"""The embedder repairs the records Chroma stops returning, without an operator's `repair`.

What they are: after deletes and upserts, Chroma 1.5.9's HNSW graph loses some live records.
`get()` still returns them (id, vector, metadata all right), but no query finds them, not even
one with their own vector and 200 results, and restarting Chroma does not bring them back
(https://github.com/chroma-core/chroma/issues/7758). Not only the records written: neighbours
of deleted or moved records go too. Reproduced on a real `chroma run` with a catalog-like
history (clustered vectors, half deleted, a third of the rest re-embedded): 3 to 13 of 2,000
live records lost, none in a fresh collection holding the same vectors; deleting a lost record
and writing it again makes it findable. They were the audit's "unretrievable" records.

So one replica at a time (a Redis lock per interval) pages through the live collection, queries
every record with its own vector, and for each one that is not returned (confirmed with a wider
query, so identical vectors tying for the top places are not taken for lost ones) deletes the
record, then re-publishes the ledger's latest version of the movie onto the catalog stream. The
embedders rebuild it through the normal path. Reading the ledger *after* the delete makes that
safe against a concurrent write: a version recorded before the read is the one re-published,
one recorded after it is written by its own event. A record whose movie the ledger cannot give
back (no readable event) is left alone and counted: deleting it would lose it from search.
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import structlog
from chromadb.errors import NotFoundError
from prometheus_client import Counter, Gauge
from redis.exceptions import RedisError

from marquee_embedder.ledger import Ledger
from marquee_shared.index import record_id
from marquee_shared.streams import publish_events

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Awaitable, Callable

    from chromadb.api.models.AsyncCollection import AsyncCollection
    from redis.asyncio import Redis

    from marquee_embedder.settings import EmbedderSettings

log = structlog.get_logger(__name__)

PAGE = 1000
QUERY_BATCH = 100
FIRST_LOOK = 3
"""Results per self-query: identical texts (remakes, re-releases) share a vector and tie."""
CONFIRM_LOOK = 50
"""A record missing from its own top 3 is lost only if it is not in its top 50 either."""

UNRETRIEVABLE = Gauge(
    "marquee_embedder_unretrievable_records",
    "Live records a query with their own vector did not return, at the last self-check "
    "(Chroma's HNSW losing records after deletes and upserts)",
)
SELF_REPAIRS = Counter(
    "marquee_embedder_self_repairs_total",
    "Unretrievable records handled by the self-repair, by outcome: republished (deleted and "
    "re-published for re-indexing), removed (the ledger says deleted: only deleted), skipped "
    "(no readable ledger event to rebuild it from: left as it is)",
    ["outcome"],
)
SELF_CHECKS = Counter(
    "marquee_embedder_self_checks_total",
    "Self-checks of the live collection, by result: done or failed",
    ["result"],
)


@dataclass
class CheckResult:
    checked: int = 0
    unretrievable: list[int] | None = None
    republished: int = 0
    removed: int = 0
    skipped: int = 0


class SelfRepair:
    """Finds and re-indexes the live collection's unretrievable records; ``run`` every
    ``interval_s`` on the one replica holding the lock for that interval."""

    def __init__(
        self,
        collection: AsyncCollection,
        ledger: Ledger,
        redis: Redis,
        *,
        stream: str,
        interval_s: float,
        owner: str,
        follow: Callable[[], Awaitable[AsyncCollection]] | None = None,
    ) -> None:
        self._collection = collection
        self._ledger = ledger
        self._redis = redis
        self._stream = stream
        self._interval_s = interval_s
        self._owner = owner
        self._follow = follow
        """Gives the live collection before each round: after a model migration's switch the
        alias names another collection than the one this replica started with."""
        self._stopped = asyncio.Event()

    @property
    def _lock_key(self) -> str:
        return f"{self._stream}:self-repair:{self._collection.name}"

    async def check_once(self) -> CheckResult:
        """One pass over the collection: find the unretrievable records and repair them."""
        result = CheckResult()
        lost: list[int] = []
        async for ids, vectors in self._pages():
            result.checked += len(ids)
            lost += await self._not_found(ids, vectors, FIRST_LOOK)
        if lost:
            lost = await self._confirm(lost)
        result.unretrievable = lost
        UNRETRIEVABLE.set(len(lost))
        if lost:
            await self._repair(lost, result)
        log.info(
            "self_check_finished",
            collection=self._collection.name,
            checked=result.checked,
            unretrievable=len(lost),
            republished=result.republished,
            removed=result.removed,
            skipped=result.skipped,
        )
        return result

    async def run(self) -> None:
        """Every interval, on whichever replica takes the lock first."""
        while not self._stopped.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopped.wait(), self._interval_s)
            if self._stopped.is_set():
                return
            try:
                if self._follow is not None:
                    self._collection = await self._follow()
                # One replica per round: the lock expires just before the next round, and the
                # replicas that did not take it skip this one.
                ttl_ms = max(1, int(self._interval_s * 900))
                if not await self._redis.set(self._lock_key, self._owner, nx=True, px=ttl_ms):
                    continue
                await self.check_once()
            except asyncio.CancelledError:
                raise
            except NotFoundError:
                # The collection was dropped mid-round (`migrate finish` after a switch): the
                # next round follows the alias to the one that is live now.
                log.info("self_check_collection_gone", collection=self._collection.name)
                if self._follow is None:
                    return
            except Exception as exc:  # noqa: BLE001 - Chroma or Redis away: try next round
                SELF_CHECKS.labels("failed").inc()
                log.warning("self_check_failed", error=f"{type(exc).__name__}: {exc}")
            else:
                SELF_CHECKS.labels("done").inc()

    def stop(self) -> None:
        self._stopped.set()

    async def _pages(self) -> AsyncIterator[tuple[list[str], Any]]:
        offset = 0
        while True:
            page = await self._collection.get(include=["embeddings"], limit=PAGE, offset=offset)
            ids = page["ids"]
            if not ids:
                return
            yield ids, page["embeddings"]
            offset += len(ids)

    async def _not_found(self, ids: list[str], vectors: Any, n: int) -> list[int]:
        count = await self._collection.count()
        lost: list[int] = []
        if count == 0:
            return lost
        for start in range(0, len(ids), QUERY_BATCH):
            chunk = ids[start : start + QUERY_BATCH]
            batch = np.asarray(vectors[start : start + QUERY_BATCH], dtype=np.float32)
            found = await self._collection.query(
                query_embeddings=batch, n_results=min(n, count), include=[]
            )
            lost += [int(i) for i, hits in zip(chunk, found["ids"], strict=True) if i not in hits]
        return lost

    async def _confirm(self, candidates: list[int]) -> list[int]:
        got = await self._collection.get(
            ids=[record_id(i) for i in candidates], include=["embeddings"]
        )
        if not got["ids"]:  # deleted meanwhile: nothing to repair
            return []
        return await self._not_found(got["ids"], got["embeddings"], CONFIRM_LOOK)

    async def _repair(self, lost: list[int], result: CheckResult) -> None:
        known = await self._ledger.latest(lost)
        rebuildable = sorted(i for i in lost if i in known and known[i].event is not None)
        result.skipped = len(lost) - len(rebuildable)
        if result.skipped:
            SELF_REPAIRS.labels("skipped").inc(result.skipped)
            log.warning(
                "unretrievable_not_rebuildable",
                tmdb_ids=sorted(set(lost) - set(rebuildable))[:20],
                hint="no readable ledger event; `marquee-embedder audit` lists them",
            )
        if not rebuildable:
            return
        await self._collection.delete(ids=[record_id(i) for i in rebuildable])
        # Read after the delete: see the module docstring for why this order is race-free.
        latest = await self._ledger.latest(rebuildable)
        events = [
            e.event
            for i in rebuildable
            if (e := latest.get(i)) is not None and e.event is not None and e.content_hash
        ]
        result.removed = len(rebuildable) - len(events)
        result.republished = len(events)
        if events:
            try:
                await publish_events(self._redis, events, stream=self._stream)
            except RedisError:
                # Deleted but not re-published: `marquee-embedder audit` reports them as
                # missing and `repair` re-publishes them; the next check cannot see them.
                log.exception("self_repair_publish_failed", tmdb_ids=rebuildable[:20])
                raise
        SELF_REPAIRS.labels("republished").inc(result.republished)
        SELF_REPAIRS.labels("removed").inc(result.removed)
        log.warning(
            "unretrievable_records_reindexed",
            collection=self._collection.name,
            tmdb_ids=rebuildable[:20],
            republished=result.republished,
            removed=result.removed,
            upstream="https://github.com/chroma-core/chroma/issues/7758",
        )


Running = tuple[SelfRepair, "asyncio.Task[None]"]


def start(
    settings: EmbedderSettings,
    redis: Redis,
    collection: AsyncCollection,
    follow: Callable[[], Awaitable[AsyncCollection]] | None = None,
) -> Running | None:
    """The app's hook: the self-repair loop for the live collection, ``follow`` giving it
    after a switch (None when turned off)."""
    if settings.self_repair_interval_s <= 0:
        return None
    repair = SelfRepair(
        collection,
        Ledger(redis, f"{settings.catalog_stream}:ledger"),
        redis,
        stream=settings.catalog_stream,
        interval_s=settings.self_repair_interval_s,
        owner=settings.consumer_name,
        follow=follow,
    )
    return repair, asyncio.create_task(repair.run(), name="embedder-self-repair")


async def stop(running: Running | None) -> None:
    if running is None:
        return
    repair, task = running
    repair.stop()
    _, pending = await asyncio.wait({task}, timeout=5)
    for left in pending:  # a check in flight: it is idempotent, the next one finishes it
        left.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await left
