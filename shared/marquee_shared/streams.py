"""Publishing catalog events onto the stream: the one write path every publisher shares."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
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


@dataclass(frozen=True, slots=True)
class GroupBacklog:
    """How far one consumer group is behind, counted from facts.

    Redis's own ``lag`` (XINFO GROUPS) is an estimate kept in a counter that trimming, deletions
    and restarts leave wrong: after an AOF rewrite and a restart it falls back to the value saved
    at the rewrite, so a group that has read everything can report thousands of entries behind
    on an empty stream (redis/redis#12898; tests/integration/shared/test_stream_backlog.py
    replays it). It is kept here only as a hint for reports.
    """

    group: str
    pending: int
    """Delivered to a consumer, not yet acknowledged (the group's pending entries list)."""
    undelivered: int
    """Entries after the group's last-delivered id: not yet read (exact up to the count's cap)."""
    consumers: int
    """Consumer names the group holds."""
    lag_hint: int | None
    """Redis's lag estimate, as reported; never used for decisions."""

    @property
    def backlog(self) -> int:
        """Published but not yet applied: pending plus undelivered."""
        return self.pending + self.undelivered


async def group_backlogs(
    redis: Redis, stream: str = CATALOG_STREAM, *, cap: int | None = None
) -> list[GroupBacklog]:
    """Every consumer group of ``stream`` with its backlog (no groups, or no stream: empty).

    ``cap`` bounds the counting (backpressure only needs to know that a limit is reached): a
    group's backlog is exact below ``cap``, and at least ``cap`` otherwise.
    """
    if not await redis.exists(stream):
        return []
    groups = await redis.xinfo_groups(stream)
    if not groups:
        return []
    length = int(await redis.xlen(stream))
    out: list[GroupBacklog] = []
    for group in groups:
        lag = group.get("lag")
        last = as_text(group["last-delivered-id"])
        pending = int(group["pending"])
        left = None if cap is None else max(cap - pending, 0)
        out.append(
            GroupBacklog(
                group=as_text(group["name"]),
                pending=pending,
                undelivered=await count_after(redis, stream, last, length=length, cap=left),
                consumers=int(group["consumers"]),
                lag_hint=None if lag is None else int(lag),
            )
        )
    return out


async def stream_backlog(
    redis: Redis, stream: str = CATALOG_STREAM, *, cap: int | None = None
) -> int:
    """Entries published but not yet applied: the slowest group's pending plus undelivered
    entries (the stream's length while no group exists yet). With ``cap``: exact below it,
    ``cap`` at or above it."""
    groups = await group_backlogs(redis, stream, cap=cap)
    backlog = max(g.backlog for g in groups) if groups else int(await redis.xlen(stream))
    return backlog if cap is None else min(backlog, cap)


COUNT_PAGE_FIRST = 32
COUNT_PAGE_MAX = 1000


async def count_after(
    redis: Redis, stream: str, entry_id: str, *, length: int, cap: int | None = None
) -> int:
    """How many entries of ``stream`` (``length`` long) have an id above ``entry_id``.

    Redis has no command that counts a range, and XRANGE sends whole entries, so this reads
    the shorter side: the entries up to ``entry_id`` (for a consumer group's last-delivered id,
    about its pending entries, since the embedders trim below them) and those after it (the
    backlog), a page of each per round trip; whichever ends first gives the answer. The side
    after stops at ``cap`` entries. Small pages, so a long count never holds Redis up.
    """
    if cap is not None and cap <= 0:
        return 0
    before = after = 0
    before_from, after_from = "-", f"({entry_id}"
    page = COUNT_PAGE_FIRST
    while True:
        want_after = page if cap is None else min(page, cap - after)
        async with redis.pipeline(transaction=False) as pipe:
            pipe.xrange(stream, before_from, entry_id, count=page)
            pipe.xrange(stream, after_from, "+", count=want_after)
            head, tail = await pipe.execute()
        after += len(tail)
        if cap is not None and after >= cap:
            return cap
        if len(tail) < want_after:
            return after  # every entry after it is counted
        before += len(head)
        if len(head) < page:
            # Everything up to entry_id is counted: the rest of the stream comes after it.
            # (An entry added since XLEN only makes this a little low, as any moment's count.)
            after = max(length - before, after)
            return after if cap is None else min(after, cap)
        before_from, after_from = f"({as_text(head[-1][0])}", f"({as_text(tail[-1][0])}"
        page = min(page * 2, COUNT_PAGE_MAX)


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
    while (backlog := await stream_backlog(redis, stream, cap=limit)) >= limit:
        if waited >= max_wait_s:
            msg = f"backlog stayed at {backlog} (limit {limit}) for {waited:.0f}s"
            raise TimeoutError(msg)
        await asyncio.sleep(delay)
        waited += delay
        delay = min(delay * 2, 2.0)
    return waited
