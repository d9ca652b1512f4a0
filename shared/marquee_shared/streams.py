"""Publishing catalog events onto the stream: the one write path every publisher shares."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from itertools import islice
from typing import TYPE_CHECKING, TypeVar

from marquee_shared.events import CATALOG_STREAM, MovieDeleted, MovieFetched, encode_event

if TYPE_CHECKING:
    from redis.asyncio import Redis

T = TypeVar("T")

PIPELINE_SIZE = 500
"""Entries per pipelined round trip: large enough to amortise latency, small enough to keep
Redis responsive to other clients while a big catalog file is published."""


async def publish_events(
    redis: Redis,
    events: Iterable[MovieFetched | MovieDeleted],
    *,
    stream: str = CATALOG_STREAM,
    pipeline_size: int = PIPELINE_SIZE,
) -> list[str]:
    """XADD the events in pipelined batches; returns the stream entry ids in order."""
    entry_ids: list[str] = []
    for chunk in batched(events, pipeline_size):
        entry_ids.extend(await _xadd_batch(redis, stream, chunk))
    return entry_ids


def batched(items: Iterable[T], size: int) -> Iterator[tuple[T, ...]]:
    """itertools.batched, which arrives only in Python 3.12."""
    it = iter(items)
    while chunk := tuple(islice(it, size)):
        yield chunk


async def _xadd_batch(
    redis: Redis, stream: str, chunk: Sequence[MovieFetched | MovieDeleted]
) -> list[str]:
    # transaction=False: plain pipelining; atomicity across entries buys nothing here and
    # MULTI/EXEC would block other clients for the whole batch.
    async with redis.pipeline(transaction=False) as pipe:
        for event in chunk:
            pipe.xadd(stream, encode_event(event))  # type: ignore[arg-type]
        results = await pipe.execute()
    return [r.decode() if isinstance(r, bytes) else str(r) for r in results]
