"""Consumer-group bookkeeping on the catalog stream."""

from __future__ import annotations

from typing import TYPE_CHECKING

from redis.exceptions import ResponseError

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
