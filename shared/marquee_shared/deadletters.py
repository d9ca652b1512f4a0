"""Operating on the dead-letter stream: list, inspect, replay and purge parked entries.

Used by the gateway's admin API and the ``marquee-embedder deadletters`` CLI. Replaying puts the
entry's original fields back on the catalog stream (after a fix, e.g. to the publisher or the
embedder) and removes the dead letter in the same transaction.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, Field

from marquee_shared.events import CATALOG_STREAM, DEAD_LETTER_STREAM, UNREADABLE_FIELD
from marquee_shared.streams import as_text

if TYPE_CHECKING:
    from redis.asyncio import Redis


class DeadLetterRecord(BaseModel):
    id: str = Field(description="Id of the dead letter in the dead-letter stream.")
    entry_id: str = Field(description="Id the entry had on the catalog stream.")
    stream: str
    reason: str = Field(
        examples=["movie.fetched.movie.year: Input should be less than or equal to 2100"]
    )
    fields: dict[str, Any] = Field(description="The entry's original fields, as published.")
    consumer: str
    failed_at: str
    deliveries: int


def _record(entry_id: Any, raw: Any) -> DeadLetterRecord:  # redis-py's xrange is loosely typed
    f = {as_text(k): as_text(v) for k, v in raw.items()}
    try:
        fields = json.loads(f.get("fields", "{}"))
    except json.JSONDecodeError:
        fields = {"_unparseable": f.get("fields", "")}
    return DeadLetterRecord(
        id=as_text(entry_id),
        entry_id=f.get("entry_id", ""),
        stream=f.get("stream", CATALOG_STREAM),
        reason=f.get("reason", ""),
        fields=fields,
        consumer=f.get("consumer", ""),
        failed_at=f.get("failed_at", ""),
        deliveries=int(f.get("deliveries", "0") or 0),
    )


async def list_dead_letters(
    redis: Redis, *, stream: str = DEAD_LETTER_STREAM, after: str = "-", limit: int = 100
) -> list[DeadLetterRecord]:
    start = after if after == "-" else f"({after}"
    entries: Any = await redis.xrange(stream, min=start, max="+", count=limit)
    return [_record(i, raw) for i, raw in entries]


async def count_dead_letters(redis: Redis, *, stream: str = DEAD_LETTER_STREAM) -> int:
    return int(await redis.xlen(stream))


async def get_dead_letter(
    redis: Redis, letter_id: str, *, stream: str = DEAD_LETTER_STREAM
) -> DeadLetterRecord | None:
    entries: Any = await redis.xrange(stream, min=letter_id, max=letter_id, count=1)
    return _record(*entries[0]) if entries else None


async def replay_dead_letters(
    redis: Redis, letter_ids: list[str], *, stream: str = DEAD_LETTER_STREAM
) -> dict[str, str]:
    """Re-publish each letter's original fields; returns letter id -> new catalog entry id.
    Unknown ids are skipped (absent from the result)."""
    replayed: dict[str, str] = {}
    for letter_id in letter_ids:
        letter = await get_dead_letter(redis, letter_id, stream=stream)
        if letter is None:
            continue
        fields = {
            k: v if isinstance(v, str) else json.dumps(v)
            for k, v in letter.fields.items()
            if k != UNREADABLE_FIELD  # the reader's note, not a published field
        }
        async with redis.pipeline(transaction=True) as pipe:
            pipe.xadd(letter.stream, fields)  # type: ignore[arg-type]
            pipe.xdel(stream, letter_id)
            new_id, _ = await pipe.execute()
        replayed[letter_id] = as_text(new_id)
    return replayed


async def purge_dead_letters(
    redis: Redis, letter_ids: list[str] | None = None, *, stream: str = DEAD_LETTER_STREAM
) -> int:
    """Delete the given dead letters, or all of them when ``letter_ids`` is None."""
    if letter_ids is None:
        count = int(await redis.xlen(stream))
        await redis.delete(stream)
        return count
    if not letter_ids:
        return 0
    return int(await redis.xdel(stream, *letter_ids))
