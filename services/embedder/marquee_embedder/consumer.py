"""Turning stream entries into index writes, acknowledgements and dead letters.

Acknowledgement is manual: an entry is acknowledged only once Chroma has its event (or once it
is parked as a dead letter). If Chroma cannot be reached nothing is acknowledged; if one event
makes Chroma fail, the batch is retried event by event so the others go through and only that
one stays pending, to be dead-lettered by the recovery loop after too many deliveries.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import httpx
import structlog
from faststream.redis.parser.binary import BinaryMessageFormatV1
from faststream.redis.parser.message import MessageFormat
from prometheus_client import Counter, Histogram

from marquee_shared.events import (
    EVENT_FIELD,
    REQUEST_ID_FIELD,
    UNREADABLE_FIELD,
    InvalidEventError,
    decode_event,
    utf8_problem,
)
from marquee_shared.streams import as_text

if TYPE_CHECKING:
    from redis.asyncio import Redis

    from marquee_embedder.indexer import CatalogIndexer
    from marquee_embedder.settings import EmbedderSettings
    from marquee_shared.events import MovieDeleted, MovieFetched

log = structlog.get_logger(__name__)

EVENTS = Counter(
    "marquee_embedder_events_total",
    "Catalog events handled, by outcome (embedded, metadata_updated, unchanged, stale, "
    "superseded, converged, deleted, dead_lettered, failed)",
    ["outcome"],
)
ACKED = Counter("marquee_embedder_acked_total", "Stream entries acknowledged")
INDEX_AWAY = Counter(
    "marquee_embedder_index_unavailable_total",
    "Times Chroma could not be reached, by what found it away: a batch (left pending, reading "
    "slowed by a backoff) or the recovery loop (pending work left untouched until it is back)",
    ["by"],
)
BATCH_SECONDS = Histogram(
    "marquee_embedder_batch_seconds",
    "Time to apply one batch (decode, embed, write to Chroma)",
    buckets=(0.05, 0.1, 0.25, 0.5, 1, 2, 4, 8, 16, 32),
)
BATCH_SIZE = Histogram(
    "marquee_embedder_batch_size", "Entries per batch", buckets=(1, 4, 16, 32, 64, 128, 256, 512)
)
FRESHNESS = Histogram(
    "marquee_embedder_freshness_seconds",
    "From publish (the stream entry id's time) to written in Chroma",
    buckets=(0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60, 300),
)

DEAD_LETTER_MAXLEN = 100_000

# Failures that say "Chroma is not there", as opposed to "Chroma refused this event".
INDEX_UNAVAILABLE = (httpx.TransportError, ConnectionError, TimeoutError, OSError)


class IndexUnavailableError(Exception):
    """Chroma could not be reached: nothing was acknowledged."""


class StreamFieldsFormat(MessageFormat):
    """Hands the handler each entry's fields as a str->str dict, whatever its shape.

    FastStream expects its own envelope in a ``__data__`` field; our public wire format is a
    plain ``event`` field that anyone can XADD (docs/events.md). Decoding and validation happen
    in the handler, so a malformed entry becomes a dead letter instead of a parser crash that
    would leave the whole batch pending forever.
    """

    @classmethod
    def parse(cls, data: Any) -> tuple[bytes, dict[str, Any]]:
        if isinstance(data, bytes):
            # Published through FastStream (broker.publish): unwrap its envelope and treat the
            # body as the event JSON.
            try:
                body, _ = BinaryMessageFormatV1.parse(data)
                fields = {EVENT_FIELD: body.decode("utf-8", errors="replace")}
            except Exception:  # noqa: BLE001 - any undecodable envelope becomes a dead letter
                fields = {"__data__": data.decode("utf-8", errors="replace")}
        else:
            fields = {as_text(k): as_text(v) for k, v in data.items()}
            event = data.get(EVENT_FIELD.encode(), data.get(EVENT_FIELD))
            if isinstance(event, bytes) and (problem := utf8_problem(event)):
                # Decoded with U+FFFD above: say so, and decode_event dead-letters the entry
                # instead of indexing the replacement characters as if they were the text.
                fields[UNREADABLE_FIELD] = problem
        return json.dumps(fields).encode(), {}

    @classmethod
    async def encode(cls, **_: Any) -> bytes:
        msg = "the embedder only reads the catalog stream; publish with marquee_shared.streams"
        raise NotImplementedError(msg)


def entry_fields(raw: Mapping[bytes, bytes]) -> dict[str, str]:
    """Fields of an entry read directly (XAUTOCLAIM), in the shape the handler receives."""
    body, _ = StreamFieldsFormat.parse(raw)
    fields: dict[str, str] = json.loads(body)
    return fields


@dataclass(frozen=True, slots=True)
class DeadLetter:
    entry_id: str
    fields: Mapping[str, Any]
    reason: str
    deliveries: int


class BatchProcessor:
    """Applies entries to the index and acknowledges exactly those that are done."""

    def __init__(self, indexer: CatalogIndexer, redis: Redis, settings: EmbedderSettings) -> None:
        self._indexer = indexer
        self._redis = redis
        self._settings = settings
        self.errors_key = f"{settings.catalog_stream}:errors"

    async def process(
        self, entry_ids: Sequence[str], entries: Sequence[Mapping[str, Any]], deliveries: int = 1
    ) -> None:
        started = time.perf_counter()
        valid: list[tuple[str, MovieFetched | MovieDeleted]] = []
        invalid: list[DeadLetter] = []
        for entry_id, fields in zip(entry_ids, entries, strict=True):
            try:
                valid.append((entry_id, decode_event(fields)))
            except InvalidEventError as exc:
                # A contract violation never heals by retrying: park it at once.
                invalid.append(DeadLetter(entry_id, fields, exc.reason, deliveries))
        if invalid:
            await self.dead_letter(invalid)

        counts: dict[str, int] = {"dead_lettered": len(invalid)} if invalid else {}
        if valid:
            try:
                result = await self._indexer.apply([e for _, e in valid])
            except INDEX_UNAVAILABLE as exc:
                raise IndexUnavailableError(str(exc)) from exc
            except Exception as exc:  # noqa: BLE001 - one bad event must not block the others
                log.warning("batch_failed_isolating", error=repr(exc), entries=len(valid))
                counts.update(await self._one_by_one(valid))
            else:
                await self._announce(result.changed)
                await self._ack([i for i, _ in valid])
                counts.update(result.counts)
                self._observe_freshness([i for i, _ in valid])

        elapsed = time.perf_counter() - started
        BATCH_SECONDS.observe(elapsed)
        BATCH_SIZE.observe(len(entry_ids))
        for outcome, n in counts.items():
            EVENTS.labels(outcome).inc(n)
        log.info(
            "batch_applied",
            entries=len(entry_ids),
            event_ids=[str(e.event_id) for _, e in valid][:100],
            request_ids=sorted(
                {str(f[REQUEST_ID_FIELD]) for f in entries if REQUEST_ID_FIELD in f}
            ),
            first_id=entry_ids[0] if entry_ids else None,
            last_id=entry_ids[-1] if entry_ids else None,
            duration_ms=round(elapsed * 1000, 1),
            **counts,
        )

    async def _one_by_one(
        self, valid: Sequence[tuple[str, MovieFetched | MovieDeleted]]
    ) -> dict[str, int]:
        counts: dict[str, int] = {}
        for entry_id, event in valid:
            try:
                result = await self._indexer.apply([event])
            except INDEX_UNAVAILABLE as exc:
                raise IndexUnavailableError(str(exc)) from exc
            except Exception as exc:  # noqa: BLE001 - recorded, left pending, retried later
                counts["failed"] = counts.get("failed", 0) + 1
                log.warning(
                    "event_failed", entry_id=entry_id, event_id=str(event.event_id), error=repr(exc)
                )
                await self._redis.hset(
                    self.errors_key, entry_id, f"{type(exc).__name__}: {exc}"[:2000]
                )
            else:
                await self._announce(result.changed)
                await self._ack([entry_id])
                self._observe_freshness([entry_id])
                for outcome, n in result.counts.items():
                    counts[outcome] = counts.get(outcome, 0) + n
        return counts

    async def _announce(self, changed: Mapping[int, str | None]) -> None:
        """Tell readers of the index (search replicas' keyword indexes) what changed, on the
        index changelog stream. Written before the ack: a crash in between re-announces on
        redelivery, which readers treat idempotently."""
        if not changed:
            return
        async with self._redis.pipeline(transaction=False) as pipe:
            for tmdb_id, content_hash in changed.items():
                pipe.xadd(
                    self._settings.index_changes_stream,
                    {"tmdb_id": str(tmdb_id), "content_hash": content_hash or ""},
                    maxlen=self._settings.index_changes_maxlen,
                    approximate=True,
                )
            await pipe.execute()

    async def _ack(self, entry_ids: Sequence[str]) -> None:
        if not entry_ids:
            return
        async with self._redis.pipeline(transaction=False) as pipe:
            pipe.xack(self._settings.catalog_stream, self._settings.group, *entry_ids)
            pipe.hdel(self.errors_key, *entry_ids)
            await pipe.execute()
        ACKED.inc(len(entry_ids))

    async def dead_letter(self, letters: Sequence[DeadLetter]) -> None:
        """Park the entries in the dead-letter stream and acknowledge them, atomically: a crash
        in between can neither lose an entry nor park it twice."""
        now = datetime.now(UTC).isoformat()
        settings = self._settings
        async with self._redis.pipeline(transaction=True) as pipe:
            for letter in letters:
                log.warning(
                    "event_dead_lettered",
                    entry_id=letter.entry_id,
                    reason=letter.reason,
                    deliveries=letter.deliveries,
                )
                pipe.xadd(
                    settings.dead_letter_stream,
                    {
                        "stream": settings.catalog_stream,
                        "entry_id": letter.entry_id,
                        "reason": letter.reason,
                        "fields": json.dumps(letter.fields)[:65536],
                        "consumer": settings.consumer_name,
                        "failed_at": now,
                        "deliveries": str(letter.deliveries),
                    },
                    maxlen=DEAD_LETTER_MAXLEN,
                    approximate=True,
                )
            ids = [letter.entry_id for letter in letters]
            pipe.xack(settings.catalog_stream, settings.group, *ids)
            pipe.hdel(self.errors_key, *ids)
            await pipe.execute()
        ACKED.inc(len(letters))

    @staticmethod
    def _observe_freshness(entry_ids: Sequence[str]) -> None:
        now_ms = time.time() * 1000
        for entry_id in entry_ids:
            FRESHNESS.observe(max(0.0, now_ms - int(entry_id.split("-", 1)[0])) / 1000)
