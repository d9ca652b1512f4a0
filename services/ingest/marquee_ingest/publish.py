"""Records to catalog events on the stream, in pipelined batches, with an account of the run."""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import AsyncGenerator, AsyncIterable, Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any, Protocol

import structlog
from pydantic import ValidationError

from marquee_ingest.records import InvalidRecord, Record, Repair, SkippedRecord
from marquee_shared.events import (
    CATALOG_STREAM,
    Movie,
    MovieDeleted,
    MovieFetched,
    describe_validation_error,
)
from marquee_shared.streams import PIPELINE_SIZE, publish_events

if TYPE_CHECKING:
    from redis.asyncio import Redis

    from marquee_ingest.state import PublishedCatalog

log = structlog.get_logger(__name__)

DUPLICATE = "duplicate tmdb_id in this run (the last one is published)"


class Progress(Protocol):
    """What a progress display needs to offer; a ``tqdm`` bar fits."""

    def update(self, n: int = 1) -> object: ...

    def reset(self, total: int | None = None) -> object: ...


@dataclass(slots=True)
class Summary:
    """What one run did. ``invalid`` lists every record that was not published and why."""

    source: str
    stream: str
    event_type: str = "movie.fetched"
    published: int = 0
    invalid: list[InvalidRecord] = field(default_factory=list)
    skipped_reasons: Counter[str] = field(default_factory=Counter)
    repaired: list[Repair] = field(default_factory=list)
    """Records whose text was repaired (mojibake) on the way (file sources)."""
    elapsed: float = 0.0
    last_entry_id: str | None = None
    """Stream id of the last event written: consumers are caught up once they pass it."""

    @property
    def skipped(self) -> int:
        return self.skipped_reasons.total()

    @property
    def repaired_fields(self) -> int:
        return sum(len(r.fields) for r in self.repaired)

    def to_dict(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "stream": self.stream,
            "event_type": self.event_type,
            "published": self.published,
            "skipped": self.skipped,
            "skipped_reasons": dict(self.skipped_reasons),
            "invalid": len(self.invalid),
            "invalid_records": [{"where": r.where, "reason": r.reason} for r in self.invalid],
            "repaired_fields": self.repaired_fields,
            "repaired_records": [
                {"where": r.where, "fields": list(r.fields)} for r in self.repaired
            ],
            "elapsed_seconds": round(self.elapsed, 3),
            "last_entry_id": self.last_entry_id,
        }


async def publish_movies(
    redis: Redis,
    records: Iterable[Record] | AsyncIterable[Record],
    *,
    source: str,
    stream: str = CATALOG_STREAM,
    batch_size: int = PIPELINE_SIZE,
    dedupe: bool = True,
    progress: Progress | None = None,
    catalog: PublishedCatalog | None = None,
    max_backlog: int | None = None,
    request_id: str | None = None,
    occurred_at: datetime | None = None,
) -> Summary:
    """Publish a ``MovieFetched`` per valid movie; report the rest in the summary.

    ``dedupe=True`` reads every record first so that, of several records with one tmdb_id, only
    the last is published (the others count as skipped): right for files, which are finite
    and whose later rows are corrections. ``dedupe=False`` publishes each batch as soon as it
    is full, for long-running sources whose ids are unique already (a TMDB fetch).

    If the source fails part-way, what it produced before is still published, then the error
    is raised: those movies are correct, and a re-run replaces them anyway.

    ``catalog`` records each published movie's content hash once its batch is on the stream
    (catalog size in ``/v1/stats``; the sync compares against it). ``max_backlog`` makes each
    batch wait while the embedders are that many events behind (backpressure).
    ``request_id`` (the run's id) rides on every entry, so the embedders' logs name the run.
    ``occurred_at`` dates every event (default: each event's creation time); the embedders keep
    the newest version of a movie by it, so a fixed past date makes a snapshot never replace
    what was published after it (the demo catalog).
    """
    started = time.perf_counter()
    summary = Summary(source=source, stream=stream)
    buffered: dict[int, Movie] = {}
    pending: list[MovieFetched] = []

    async def flush(events: list[MovieFetched]) -> None:
        if not events:
            return
        entry_ids = await publish_events(
            redis,
            events,
            stream=stream,
            pipeline_size=batch_size,
            max_backlog=max_backlog,
            request_id=request_id,
        )
        if catalog is not None:
            await catalog.record(e.movie for e in events)
        summary.published += len(entry_ids)
        summary.last_entry_id = entry_ids[-1]
        log.debug("batch_published", events=len(entry_ids), last_entry_id=entry_ids[-1])

    iterator = _as_async(records)
    try:
        while True:
            try:
                record = await anext(iterator)
            except StopAsyncIteration:
                break
            except Exception:
                await flush([*pending, *_fetched(buffered.values(), source, occurred_at)])
                raise
            if progress is not None:
                progress.update(1)
            if isinstance(record, InvalidRecord):
                summary.invalid.append(record)
                log.debug("record_invalid", where=record.where, reason=record.reason)
            elif isinstance(record, SkippedRecord):
                summary.skipped_reasons[record.reason] += 1
            elif dedupe:
                if buffered.pop(record.tmdb_id, None) is not None:
                    summary.skipped_reasons[DUPLICATE] += 1
                buffered[record.tmdb_id] = record  # re-inserted: stream order = last sighting
            else:
                pending.append(_fetched([record], source, occurred_at)[0])
                if len(pending) >= batch_size:
                    await flush(pending)
                    pending = []
        await flush([*pending, *_fetched(buffered.values(), source, occurred_at)])
    finally:
        await iterator.aclose()
    summary.elapsed = time.perf_counter() - started
    return summary


async def publish_deletions(
    redis: Redis,
    ids: Iterable[int],
    *,
    source: str,
    stream: str = CATALOG_STREAM,
    batch_size: int = PIPELINE_SIZE,
    catalog: PublishedCatalog | None = None,
    max_backlog: int | None = None,
    request_id: str | None = None,
) -> Summary:
    """Publish a ``MovieDeleted`` per distinct id; ids the contract rejects are reported.

    ``catalog`` forgets the ids once the deletions are on the stream.
    """
    started = time.perf_counter()
    summary = Summary(source=source, stream=stream, event_type="movie.deleted")
    events: dict[int, MovieDeleted] = {}
    for tmdb_id in ids:
        if tmdb_id in events:
            summary.skipped_reasons["duplicate tmdb_id in this run"] += 1
            continue
        try:
            events[tmdb_id] = MovieDeleted(source=source, tmdb_id=tmdb_id)
        except ValidationError as exc:
            summary.invalid.append(InvalidRecord(f"id {tmdb_id}", describe_validation_error(exc)))
    if events:
        entry_ids = await publish_events(
            redis,
            events.values(),
            stream=stream,
            pipeline_size=batch_size,
            max_backlog=max_backlog,
            request_id=request_id,
        )
        if catalog is not None:
            await catalog.forget(events)
        summary.published = len(entry_ids)
        summary.last_entry_id = entry_ids[-1]
    summary.elapsed = time.perf_counter() - started
    return summary


def _fetched(
    movies: Iterable[Movie], source: str, occurred_at: datetime | None = None
) -> list[MovieFetched]:
    dated = {} if occurred_at is None else {"occurred_at": occurred_at}
    return [MovieFetched(source=source, movie=movie, **dated) for movie in movies]


async def _as_async(records: Iterable[Record] | AsyncIterable[Record]) -> AsyncGenerator[Record]:
    if isinstance(records, AsyncIterable):
        iterator = aiter(records)
        try:
            async for record in iterator:
                yield record
        finally:
            # Stop the producer too (e.g. cancel TMDB requests in flight) when we stop early.
            aclose = getattr(iterator, "aclose", None)
            if aclose is not None:
                await aclose()
    else:
        # File readers are synchronous; parsing 15,000 rows blocks the loop for about a second,
        # which this one-shot CLI can afford.
        for record in records:
            yield record
