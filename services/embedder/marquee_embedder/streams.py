"""Consumer-group bookkeeping on the catalog stream."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from redis.exceptions import ResponseError

from marquee_shared.streams import as_text

if TYPE_CHECKING:
    from redis.asyncio import Redis


async def ensure_group_from_start(redis: Redis, stream: str, group: str) -> bool:
    """Create the consumer group at the stream's beginning (and the stream if missing).

    Returns True when created, False when it already existed (its position is then kept).
    """
    try:
        await redis.xgroup_create(stream, group, id="0", mkstream=True)
    except ResponseError as exc:
        if "BUSYGROUP" not in str(exc):
            raise
        return False
    return True


RELEASED_IDLE_MS = 24 * 3600 * 1000
"""Idle time given to released entries: longer than any replica's claim_idle_ms, so the next
XAUTOCLAIM of a live replica takes them (Redis clamps an idle time beyond the epoch to 0)."""


async def release_pending(redis: Redis, stream: str, group: str, consumer: str) -> list[str]:
    """Hand back the entries ``consumer`` still holds, for a consumer that is stopping.

    A stream entry cannot be un-delivered: it stays pending on its consumer until someone
    claims it, normally after ``claim_idle_ms``. Re-claiming them to the same consumer with a
    long IDLE (and JUSTID, which leaves the delivery count alone) makes the live replicas claim
    them on their next recovery tick instead. Returns the ids released.
    """
    # A consumer holds a batch or two and the odd failed entry awaiting retry: one page.
    pending = await redis.xpending_range(
        stream, group, min="-", max="+", count=10_000, consumername=consumer
    )
    ids: list[Any] = [as_text(p["message_id"]) for p in pending]  # type: ignore[arg-type]
    if ids:
        await redis.xclaim(stream, group, consumer, 0, ids, idle=RELEASED_IDLE_MS, justid=True)
    return ids


def _parse_id(entry_id: str) -> tuple[int, int]:
    ms, _, seq = entry_id.partition("-")
    return int(ms), int(seq or 0)


async def safe_trim_point(redis: Redis, stream: str) -> str | None:
    """The oldest entry id some consumer group still needs, or None when no group consumes.

    For each group: its first pending (delivered, unacknowledged) entry, and the entry after its
    last-delivered id (everything later is still to be read). Entries strictly below the
    minimum over all groups are acknowledged by every group and may be trimmed. Only those
    facts are used, never Redis's ``lag`` estimate (see marquee_shared.streams.GroupBacklog).
    """
    groups = await redis.xinfo_groups(stream)
    if not groups:
        return None  # nobody consumes yet: everything is still needed
    points: list[tuple[int, int]] = []
    for group in groups:
        name = group["name"]
        if int(group["pending"]) > 0:
            # Asked again, not taken from XINFO: another replica may have acknowledged the last
            # pending entry in between, and the summary then has no first entry (min is nil).
            first = (await redis.xpending(stream, name))["min"]
            if first is not None:
                points.append(_parse_id(as_text(first)))
        ms, seq = _parse_id(as_text(group["last-delivered-id"]))
        points.append((ms, seq + 1))
    ms, seq = min(points)
    return f"{ms}-{seq}"


ALIVE_SUFFIX = "alive"

# Deletes the consumer only if it holds no pending entry, checked in the same atomic step:
# XGROUP DELCONSUMER drops a consumer's pending entries with it, and a consumer that turned out
# to be alive may have read a batch since it was listed.
_DELETE_IF_NOTHING_PENDING = """
if #redis.call('XPENDING', KEYS[1], ARGV[1], '-', '+', 1, ARGV[2]) > 0 then
  return -1
end
return redis.call('XGROUP', 'DELCONSUMER', KEYS[1], ARGV[1], ARGV[2])
"""


def alive_key(stream: str, group: str) -> str:
    """Sorted set of the group's replicas: consumer name -> last heartbeat (Redis time, ms)."""
    return f"{stream}:{group}:{ALIVE_SUFFIX}"


async def server_time_ms(redis: Redis) -> int:
    seconds, micros = await redis.time()
    return int(seconds) * 1000 + int(micros) // 1000


async def heartbeat(redis: Redis, stream: str, group: str, consumer: str, *, keep_ms: int) -> int:
    """Record that ``consumer`` is alive now; forget heartbeats older than ``keep_ms``.

    Redis 7.0's consumer ``idle`` counts from the last read that returned entries, so a live
    replica on a quiet stream looks as idle as a dead one: liveness needs its own signal.
    Returns the server time used (ms).
    """
    now = await server_time_ms(redis)
    key = alive_key(stream, group)
    async with redis.pipeline(transaction=False) as pipe:
        pipe.zadd(key, {consumer: now})
        pipe.zremrangebyscore(key, "-inf", now - keep_ms)
        await pipe.execute()
    return now


async def live_consumers(
    redis: Redis, stream: str, group: str, *, now_ms: int, within_ms: int
) -> set[str]:
    """Consumers whose replica sent a heartbeat within ``within_ms`` of ``now_ms``."""
    names = await redis.zrange(alive_key(stream, group), now_ms - within_ms, "+inf", byscore=True)
    return {as_text(n) for n in names if isinstance(n, bytes | str)}


async def delete_consumer_without_pending(
    redis: Redis, stream: str, group: str, consumer: str
) -> bool:
    """XGROUP DELCONSUMER, only while ``consumer`` owns no pending entry; True if deleted."""
    deleted = await redis.eval(_DELETE_IF_NOTHING_PENDING, 1, stream, group, consumer)
    return int(deleted) >= 0


async def remove_dead_consumers(
    redis: Redis, stream: str, group: str, *, keep: str, dead_after_ms: int
) -> list[str]:
    """Delete the group's consumers that are gone: no heartbeat and no read for
    ``dead_after_ms``, and no pending entry left (the recovery loop claims those first, after
    ``claim_idle_ms``). ``keep`` is the caller's own name. Returns the names deleted."""
    now = await server_time_ms(redis)
    alive = await live_consumers(redis, stream, group, now_ms=now, within_ms=dead_after_ms)
    removed: list[str] = []
    for consumer in await redis.xinfo_consumers(stream, group):
        name = as_text(consumer["name"])
        if name == keep or name in alive or int(consumer["idle"]) < dead_after_ms:
            continue
        if int(consumer["pending"]) == 0 and await delete_consumer_without_pending(
            redis, stream, group, name
        ):
            removed.append(name)
    return removed
