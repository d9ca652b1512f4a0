"""Publishing catalog events onto the stream: the one write path every publisher shares."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Iterator, Sequence
from itertools import islice
from typing import TYPE_CHECKING, Any, TypeVar

from marquee_shared.events import (
    CATALOG_STREAM,
    REQUEST_ID_FIELD,
    MovieDeleted,
    MovieFetched,
    encode_event,
)

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
    max_backlog: int | None = None,
    request_id: str | None = None,
) -> list[str]:
    """XADD the events in pipelined batches; returns the stream entry ids in order.

    With ``max_backlog``, each batch waits while the consumers are that far behind.
    ``request_id`` (the HTTP request or ingest run that published them) travels in a
    ``request_id`` field beside ``event``, so consumers can log it.
    """
    entry_ids: list[str] = []
    for chunk in batched(events, pipeline_size):
        if max_backlog is not None:
            await wait_for_backlog_below(redis, max_backlog, stream=stream)
        entry_ids.extend(await _xadd_batch(redis, stream, chunk, request_id))
    return entry_ids


def as_text(value: bytes | str) -> str:
    """Redis answers bytes unless asked otherwise; ids and fields are UTF-8 text."""
    return value.decode("utf-8", errors="replace") if isinstance(value, bytes) else value


def batched(items: Iterable[T], size: int) -> Iterator[tuple[T, ...]]:
    """itertools.batched, which arrives only in Python 3.12."""
    it = iter(items)
    while chunk := tuple(islice(it, size)):
        yield chunk


async def _xadd_batch(
    redis: Redis,
    stream: str,
    chunk: Sequence[MovieFetched | MovieDeleted],
    request_id: str | None = None,
) -> list[str]:
    extra = {REQUEST_ID_FIELD: request_id} if request_id else {}
    # transaction=False: plain pipelining; atomicity across entries buys nothing here and
    # MULTI/EXEC would block other clients for the whole batch.
    async with redis.pipeline(transaction=False) as pipe:
        for event in chunk:
            fields: dict[Any, Any] = {**encode_event(event), **extra}  # redis-py's field types
            pipe.xadd(stream, fields)
        results = await pipe.execute()
    return [r.decode() if isinstance(r, bytes) else str(r) for r in results]


async def stream_backlog(redis: Redis, stream: str = CATALOG_STREAM) -> int:
    """Entries published but not yet applied: the slowest group's lag plus pending entries
    (the stream's length while no group exists yet)."""
    groups = await redis.xinfo_groups(stream) if await redis.exists(stream) else []
    if not groups:
        return int(await redis.xlen(stream))
    backlog = 0
    for group in groups:
        lag = group.get("lag")
        behind = int(await redis.xlen(stream)) if lag is None else int(lag)
        backlog = max(backlog, behind + int(group["pending"]))
    return backlog


async def wait_for_backlog_below(
    redis: Redis, limit: int, *, stream: str = CATALOG_STREAM, max_wait_s: float = 3600.0
) -> float:
    """Backpressure for publishers: wait while the backlog is at or above ``limit``.

    The stream is trimmed only below what every group has acknowledged, so an unbounded
    publisher would grow Redis without bound while consumers lag. Returns the seconds waited;
    raises TimeoutError after ``max_wait_s``.
    """
    waited = 0.0
    delay = 0.1
    while (backlog := await stream_backlog(redis, stream)) >= limit:
        if waited >= max_wait_s:
            msg = f"backlog stayed at {backlog} (limit {limit}) for {waited:.0f}s"
            raise TimeoutError(msg)
        await asyncio.sleep(delay)
        waited += delay
        delay = min(delay * 2, 2.0)
    return waited
