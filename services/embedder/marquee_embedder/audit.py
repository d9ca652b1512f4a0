"""Consistency audit and repair: is Chroma exactly what was published?

The ledger holds the newest published version of every movie (see ledger.py). The audit
compares Chroma against it: every live movie present with its latest content hash, no deleted
movie present, no record the ledger does not know, and every stored vector retrievable by
itself. The last check exists because Chroma 1.5.x has open issues where records stop being
returned after deletes and upserts or after a kill mid-upsert
(https://github.com/chroma-core/chroma/issues/7758, #7678, #7090): the record is there by id but
the HNSW index no longer finds it. The embedders find and re-index those by themselves
(self_repair.py); the audit still reports what a check between two rounds would see.

Repair deletes every faulty record and re-publishes the ledger's version onto the catalog stream,
so the embedders rebuild it through the normal path.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import structlog

from marquee_shared.index import record_id
from marquee_shared.streams import publish_events, stream_backlog

if TYPE_CHECKING:
    from chromadb.api.models.AsyncCollection import AsyncCollection
    from redis.asyncio import Redis

    from marquee_embedder.ledger import Ledger, LedgerEntry

log = structlog.get_logger(__name__)

PAGE = 1000
QUERY_BATCH = 100


@dataclass
class AuditReport:
    backlog: int = 0
    ledger_live: int = 0
    ledger_deleted: int = 0
    chroma_records: int = 0
    self_checked: int = 0
    missing: list[int] = field(default_factory=list)
    outdated: list[int] = field(default_factory=list)
    resurrected: list[int] = field(default_factory=list)
    orphans: list[int] = field(default_factory=list)
    unretrievable: list[int] = field(default_factory=list)
    unreadable: list[int] = field(default_factory=list)
    """Ledger entries whose event no longer passes the contract (logged with the reason):
    compared by content hash like the others, but repair cannot re-publish them."""

    @property
    def clean(self) -> bool:
        return not (
            self.missing
            or self.outdated
            or self.resurrected
            or self.orphans
            or self.unretrievable
            or self.unreadable
        )

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "clean": self.clean}


async def _chroma_records(collection: AsyncCollection, *, embeddings: bool) -> dict[int, Any]:
    """Every record's content hash (and vector), paged: ids -> (hash, vector | None)."""
    records: dict[int, Any] = {}
    offset = 0
    include: Any = ["metadatas", "embeddings"] if embeddings else ["metadatas"]
    while True:
        page = await collection.get(include=include, limit=PAGE, offset=offset)
        ids = page["ids"]
        if not ids:
            return records
        metadatas = page["metadatas"] or []
        vectors = page["embeddings"] if embeddings else None
        for i, rid in enumerate(ids):
            vector = vectors[i] if vectors is not None else None
            records[int(rid)] = (metadatas[i].get("content_hash"), vector)
        offset += len(ids)


async def audit(
    collection: AsyncCollection,
    ledger: Ledger,
    redis: Redis,
    *,
    stream: str,
    self_check: bool = True,
) -> AuditReport:
    report = AuditReport(backlog=await stream_backlog(redis, stream))
    expected = {e.tmdb_id: e for e in await ledger.scan()}
    stored = await _chroma_records(collection, embeddings=self_check)
    report.chroma_records = len(stored)
    report.unreadable = sorted(i for i, e in expected.items() if e.event is None)
    for tmdb_id, entry in expected.items():
        record = stored.get(tmdb_id)
        if entry.content_hash is None:
            report.ledger_deleted += 1
            if record is not None:
                report.resurrected.append(tmdb_id)
            continue
        report.ledger_live += 1
        if record is None:
            report.missing.append(tmdb_id)
        elif record[0] != entry.content_hash:
            report.outdated.append(tmdb_id)
    report.orphans = sorted(set(stored) - set(expected))
    if self_check:
        report.unretrievable = await _unretrievable(collection, stored)
        report.self_checked = len(stored)
    for name in ("missing", "outdated", "resurrected", "unretrievable"):
        getattr(report, name).sort()
    log.info(
        "audit_finished",
        **{k: v if isinstance(v, int) else len(v) for k, v in asdict(report).items()},
    )
    return report


async def _unretrievable(collection: AsyncCollection, stored: dict[int, Any]) -> list[int]:
    """Records that a query with their own vector does not return."""
    ids = [i for i, (_, v) in stored.items() if v is not None]
    bad: list[int] = []
    for start in range(0, len(ids), QUERY_BATCH):
        chunk = ids[start : start + QUERY_BATCH]
        vectors = np.asarray([stored[i][1] for i in chunk], dtype=np.float32)
        # Top 3, not top 1: identical texts (remakes, re-releases) share a vector and tie.
        result = await collection.query(query_embeddings=vectors, n_results=3, include=[])
        for tmdb_id, found in zip(chunk, result["ids"], strict=True):
            if record_id(tmdb_id) not in found:
                bad.append(tmdb_id)
    return bad


async def repair(
    report: AuditReport,
    collection: AsyncCollection,
    ledger: Ledger,
    redis: Redis,
    *,
    stream: str,
    max_backlog: int,
    drop_orphans: bool = False,
) -> dict[str, int]:
    """Fix what the audit found; returns counts of records deleted and events re-published."""
    rebuild = sorted(set(report.missing) | set(report.outdated) | set(report.unretrievable))
    delete = set(report.outdated) | set(report.unretrievable) | set(report.resurrected)
    if drop_orphans:
        delete |= set(report.orphans)
    if delete:
        await collection.delete(ids=[record_id(i) for i in sorted(delete)])
    latest: dict[int, LedgerEntry] = await ledger.latest(rebuild)
    events = [e for i in rebuild if i in latest and (e := latest[i].event) is not None]
    if events:
        # The ledger's own events, occurred_at unchanged: the ledger keeps them as the latest,
        # and the embedders rebuild the records through the normal path.
        await publish_events(redis, events, stream=stream, max_backlog=max_backlog)
    counts = {"deleted": len(delete), "republished": len(events)}
    log.info("repair_finished", **counts)
    return counts
