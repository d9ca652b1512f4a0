"""Turning a batch of raw stream entries into index writes and dead letters."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import structlog
from faststream.redis.parser.binary import BinaryMessageFormatV1
from faststream.redis.parser.message import MessageFormat
from prometheus_client import Counter, Histogram

from marquee_shared.events import EVENT_FIELD, InvalidEventError, decode_event

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence

    from redis.asyncio import Redis

    from marquee_embedder.indexer import CatalogIndexer
    from marquee_embedder.settings import EmbedderSettings
    from marquee_shared.events import MovieDeleted, MovieFetched

log = structlog.get_logger(__name__)

EVENTS = Counter(
    "marquee_embedder_events_total",
    "Catalog events handled, by outcome (embedded, metadata_updated, unchanged, stale, "
    "superseded, deleted, dead_lettered)",
    ["outcome"],
)
BATCH_SECONDS = Histogram(
    "marquee_embedder_batch_seconds",
    "Time to apply one batch (decode, embed, write to Chroma)",
    buckets=(0.05, 0.1, 0.25, 0.5, 1, 2, 4, 8, 16, 32),
)

DEAD_LETTER_MAXLEN = 100_000


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
            fields = {_text(k): _text(v) for k, v in data.items()}
        return json.dumps(fields).encode(), {}

    @classmethod
    async def encode(cls, **_: Any) -> bytes:
        msg = "the embedder only reads the catalog stream; publish with marquee_shared.streams"
        raise NotImplementedError(msg)


def _text(value: bytes | str) -> str:
    return value.decode("utf-8", errors="replace") if isinstance(value, bytes) else value


async def handle_batch(
    entries: Sequence[Mapping[str, Any]],
    entry_ids: Sequence[str],
    *,
    indexer: CatalogIndexer,
    redis: Redis,
    settings: EmbedderSettings,
) -> None:
    """Apply valid events, dead-letter invalid ones. Raising leaves the batch pending."""
    started = time.perf_counter()
    valid: list[MovieFetched | MovieDeleted] = []
    invalid: list[tuple[str, Mapping[str, Any], str]] = []
    for entry_id, fields in zip(entry_ids, entries, strict=True):
        try:
            valid.append(decode_event(fields))
        except InvalidEventError as exc:
            invalid.append((entry_id, fields, exc.reason))

    result = await indexer.apply(valid)
    # Dead letters are written after Chroma accepted the valid events: if Chroma fails, the
    # batch is redelivered and must not leave duplicate dead letters behind.
    if invalid:
        await _dead_letter(redis, settings, invalid)
        result.add("dead_lettered", len(invalid))

    elapsed = time.perf_counter() - started
    BATCH_SECONDS.observe(elapsed)
    for outcome, n in result.counts.items():
        EVENTS.labels(outcome).inc(n)
    log.info(
        "batch_applied",
        entries=len(entry_ids),
        first_id=entry_ids[0] if entry_ids else None,
        last_id=entry_ids[-1] if entry_ids else None,
        duration_ms=round(elapsed * 1000, 1),
        **dict(result.counts),
    )


async def _dead_letter(
    redis: Redis,
    settings: EmbedderSettings,
    invalid: Sequence[tuple[str, Mapping[str, Any], str]],
) -> None:
    now = datetime.now(UTC).isoformat()
    async with redis.pipeline(transaction=False) as pipe:
        for entry_id, fields, reason in invalid:
            log.warning("event_dead_lettered", entry_id=entry_id, reason=reason)
            pipe.xadd(
                settings.dead_letter_stream,
                {
                    "stream": settings.catalog_stream,
                    "entry_id": entry_id,
                    "reason": reason,
                    "fields": json.dumps(fields)[:65536],
                    "consumer": settings.consumer_name,
                    "failed_at": now,
                    "deliveries": "1",
                },
                maxlen=DEAD_LETTER_MAXLEN,
                approximate=True,
            )
        await pipe.execute()
