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
    """The oldest entry id some consumer group still needs, or None when unsure.

    For each group: its first pending (delivered, unacknowledged) entry, and the entry after its
    last-delivered id (everything later is still to be read). Entries strictly below the
    minimum over all groups are acknowledged by every group and may be trimmed.
    """
    groups = await redis.xinfo_groups(stream)
    if not groups:
        return None  # nobody consumes yet: everything is still needed
    points: list[tuple[int, int]] = []
    for group in groups:
        if group.get("lag") is None:
            return None  # Redis cannot tell how far behind this group is: keep everything
        name = group["name"]
        if int(group["pending"]) > 0:
            summary = await redis.xpending(stream, name)
            first = summary["min"]
            points.append(_parse_id(first.decode() if isinstance(first, bytes) else first))
        last = group["last-delivered-id"]
        ms, seq = _parse_id(last.decode() if isinstance(last, bytes) else last)
        points.append((ms, seq + 1))
    ms, seq = min(points)
    return f"{ms}-{seq}"
