"""The background half of a model migration, run by every embedder replica: copy claimed chunks
of the ledger into the target collection (throttled), then verify the target against the ledger
and re-apply what differs, again every ``migration_verify_interval_s`` while the migration lasts
(one replica at a time). ``migration.py`` has the state machine.
"""

from __future__ import annotations

import asyncio
import time
from typing import TYPE_CHECKING

import structlog
from prometheus_client import Counter, Gauge

from marquee_embedder.ledger import Ledger, decode_entry
from marquee_embedder.migration import Chunk, Coverage, MigrationStore, compare
from marquee_embedder.targets import IndexTarget
from marquee_shared.events import MovieDeleted, MovieFetched
from marquee_shared.index import record_id

if TYPE_CHECKING:
    from collections.abc import Mapping

    from marquee_embedder.indexer import CatalogIndexer
    from marquee_embedder.settings import EmbedderSettings
    from marquee_embedder.targets import IndexTargets

log = structlog.get_logger(__name__)

COPIED = Counter(
    "marquee_embedder_migration_copied_total",
    "Live movies this replica copied from the ledger into a migration's target collection",
)
FIXED = Counter(
    "marquee_embedder_migration_fixed_total",
    "Differences between a migration's target and the ledger that verification repaired",
)
PROGRESS = Gauge(
    "marquee_embedder_migration_coverage_percent",
    "The active migration's progress: share of the ledger copied, then of live movies the "
    "target holds in their newest version (-1: no migration)",
)
MISSING = Gauge(
    "marquee_embedder_migration_missing",
    "Movies the target lacked or held at an older version at the last verification",
)

ID_PAGE = 2000


class Backfill:
    def __init__(
        self,
        store: MigrationStore,
        targets: IndexTargets,
        indexer: CatalogIndexer,
        ledger: Ledger,
        settings: EmbedderSettings,
    ) -> None:
        self._store = store
        self._targets = targets
        self._indexer = indexer
        self._ledger = ledger
        self._settings = settings
        self._owner = settings.consumer_name
        self._verified_at = 0.0
        self._stopping = False

    def stop(self) -> None:
        self._stopping = True

    async def run(self) -> None:
        """Forever: one step at a time, idle while there is no migration."""
        delay = 1.0
        while not self._stopping:
            try:
                busy = await self.step()
                delay = 1.0
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - Chroma or Redis away: retry, state is kept
                log.warning("migration_step_failed", error=f"{type(exc).__name__}: {exc}"[:500])
                busy = False
                delay = min(delay * 2, 30.0)
                await asyncio.sleep(delay)
            if not busy:
                await asyncio.sleep(self._settings.migration_poll_s)

    async def step(self) -> bool:
        """Copy one chunk or run one verification when due; whether there was work."""
        fields = await self._store.fields()
        status = await self._store.status()
        if status is None:
            PROGRESS.set(-1)
            return False
        PROGRESS.set(status.coverage_percent)
        target = await self._targets.collection(status.target.collection)
        if target is None:
            log.warning("migration_target_missing", collection=status.target.collection)
            return False
        encoder = await self._targets.encoder(status.target.model, status.target.model_source)
        side = IndexTarget(
            status.target.collection, target, encoder, status.target.model, live=False
        )
        if fields.get("phase") == "copying":
            chunk = await self._store.claim(
                self._owner,
                count=self._settings.migration_batch_size,
                lease_ms=int(self._settings.migration_lease_s * 1000),
            )
            if chunk is not None:
                await self.copy(chunk, side)
                return True
            return False
        due = time.monotonic() - self._verified_at >= self._settings.migration_verify_interval_s
        if fields.get("phase") == "verifying" or due:
            lease = int(self._settings.migration_verify_interval_s * 3000)
            if await self._store.hold_verifier(self._owner, lease):
                await self.verify(side)
                self._verified_at = time.monotonic()
        return False

    async def copy(self, chunk: Chunk, target: IndexTarget) -> None:
        started = time.perf_counter()
        events: list[MovieFetched | MovieDeleted] = []
        for tmdb_id, raw in chunk.entries:
            entry = decode_entry(tmdb_id, raw)
            if entry.content_hash is not None and isinstance(entry.event, MovieFetched):
                events.append(entry.event)
        if events:
            await self._indexer.copy_to(target, events)
        await self._store.complete(self._owner, chunk, copied=len(events))
        COPIED.inc(len(events))
        elapsed = time.perf_counter() - started
        log.info(
            "migration_chunk_copied",
            chunk=chunk.name,
            entries=len(chunk.entries),
            copied=len(events),
            duration_ms=round(elapsed * 1000, 1),
        )
        # Throttle: at most migration_rate movies a second from this replica, so live events
        # (written to both collections meanwhile) keep their share of the CPU.
        rate = self._settings.migration_rate
        if rate > 0 and events:
            await asyncio.sleep(max(0.0, len(events) / rate - elapsed))

    async def verify(self, target: IndexTarget) -> Coverage:
        """Compare the target with the ledger, re-apply the differences, and record the result:
        ``ready`` once nothing differs."""
        started = time.perf_counter()
        ledger = await self._store.ledger_digests()
        held = await _content_hashes(target)
        coverage = compare(ledger, held)
        if coverage.differences:
            await self._fix(target, coverage)
            # Compare again, only what differed: in-flight live events settle meanwhile.
            ids = coverage.missing + coverage.extra
            ledger_now = {i: e.content_hash for i, e in (await self._ledger.latest(ids)).items()}
            held_now = await _content_hashes(target, ids)
            rest = compare(ledger_now, held_now)
            coverage = Coverage(coverage.live, rest.missing, rest.extra)
        unfixable = await self._unreadable(coverage.missing)
        if unfixable:
            coverage = Coverage(
                coverage.live - len(unfixable),
                [i for i in coverage.missing if i not in unfixable],
                coverage.extra,
            )
        await self._store.record_verification(
            target.name, coverage, ready=coverage.differences == 0
        )
        MISSING.set(coverage.differences)
        log.info(
            "migration_verified",
            collection=target.name,
            live=coverage.live,
            missing=len(coverage.missing),
            extra=len(coverage.extra),
            unreadable=len(unfixable),
            duration_ms=round((time.perf_counter() - started) * 1000, 1),
        )
        return coverage

    async def _fix(self, target: IndexTarget, coverage: Coverage) -> None:
        entries = await self._ledger.latest(coverage.missing + coverage.extra)
        events: list[MovieFetched | MovieDeleted] = [
            e.event for e in entries.values() if e.event is not None
        ]
        known = set(entries)
        # In the target but never in the ledger: nothing the catalog published; not copied.
        stray = [i for i in coverage.extra if i not in known]
        if events:
            await self._indexer.copy_to(target, events)
        if stray:
            await target.collection.delete(ids=[record_id(i) for i in stray])
        FIXED.inc(len(events) + len(stray))

    async def _unreadable(self, ids: list[int]) -> set[int]:
        """Live ids whose ledger event no longer passes the contract: nothing to copy (the
        audit reports them); they do not hold the switch back."""
        if not ids:
            return set()
        return {i for i, e in (await self._ledger.latest(ids)).items() if e.event is None}


async def _content_hashes(target: IndexTarget, ids: list[int] | None = None) -> dict[int, str]:
    """TMDB id -> content hash the collection holds (every record, or those of ``ids``)."""
    collection = target.collection
    if ids is None:
        all_ids: list[str] = (await collection.get(include=[]))["ids"]
    else:
        all_ids = [record_id(i) for i in ids]
    out: dict[int, str] = {}
    for start in range(0, len(all_ids), ID_PAGE):
        page = all_ids[start : start + ID_PAGE]
        if not page:
            continue
        got = await collection.get(ids=page, include=["metadatas"])
        metadatas: list[Mapping[str, object]] = list(got["metadatas"] or [])
        for rid, md in zip(got["ids"], metadatas, strict=True):
            try:
                out[int(rid)] = str(md.get("content_hash", ""))
            except ValueError:
                continue
    return out
