"""The recovery loop every embedder replica runs beside its stream subscriber.

FastStream's consumer-group subscriber only reads new entries (``>``). What it does not do, and
this loop does:

* **Claim abandoned entries** (XAUTOCLAIM): entries pending on a crashed, killed or stuck
  consumer — or on this one after a failure — are claimed once idle for ``claim_idle_ms`` and
  applied. A restarted replica has a new consumer name, so its predecessor's pending entries are
  recovered this way too. (A subscriber given ``min_idle_time`` would only ever claim and never
  read new entries, which is why claiming lives here.)
* **Park poison events**: an entry delivered more than ``max_deliveries`` times goes to the
  dead-letter stream with its last error, and is acknowledged.
* **Recreate a vanished group**: if Redis lost the group (restarted without persistence),
  FastStream stops the subscriber for good; the loop recreates the group from the stream's
  start and restarts the subscriber.
* **Trim safely**: Redis 7 cannot trim "only acknowledged" entries, so the loop computes the
  oldest entry any group still needs (its first pending entry, or what it has not yet read)
  and trims strictly below it (XTRIM MINID). The stream is bounded by the backlog, which
  publishers keep under ``MARQUEE_MAX_BACKLOG`` (backpressure).
* **Forget dead consumers**: every replica sends a heartbeat each tick; a consumer name with
  neither heartbeat nor read for ``dead_consumer_idle_ms`` (a replica killed or restarted
  under a new name) is deleted from the group once it holds no pending entry, and the live
  count is a gauge.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import structlog
from prometheus_client import Counter, Gauge
from redis.exceptions import RedisError, ResponseError

from marquee_embedder.consumer import (
    INDEX_AWAY,
    BatchProcessor,
    DeadLetter,
    IndexUnavailableError,
    entry_fields,
)
from marquee_embedder.streams import (
    ensure_group_from_start,
    heartbeat,
    live_consumers,
    remove_dead_consumers,
    safe_trim_point,
)
from marquee_shared.streams import as_text, group_backlogs

if TYPE_CHECKING:
    from faststream.redis import RedisBroker
    from redis.asyncio import Redis

    from marquee_embedder.settings import EmbedderSettings

log = structlog.get_logger(__name__)

CLAIMED = Counter("marquee_embedder_claimed_total", "Abandoned entries claimed by this replica")
TRIMMED = Counter("marquee_embedder_trimmed_total", "Acknowledged entries trimmed from the stream")
RESTARTS = Counter(
    "marquee_embedder_subscriber_restarts_total", "Subscriber restarts after the group vanished"
)
PENDING = Gauge("marquee_embedder_group_pending", "Entries delivered but not yet acknowledged")
BACKLOG = Gauge(
    "marquee_embedder_group_backlog",
    "Entries not yet applied: pending plus those after the group's last-delivered id (counted)",
)
LAG = Gauge(
    "marquee_embedder_group_lag",
    "Redis's estimate of entries not yet delivered (XINFO GROUPS lag; drifts after trims and "
    "restarts, redis/redis#12898: a hint, not the backlog)",
)
CONSUMERS = Gauge(
    "marquee_embedder_group_consumers",
    "Live replicas of the consumer group (a heartbeat within the last 3 recovery intervals)",
)
CONSUMERS_DELETED = Counter(
    "marquee_embedder_consumers_deleted_total",
    "Dead consumers deleted from the group (no heartbeat, no read, nothing pending)",
)

LIVE_WITHIN_TICKS = 3
"""A replica counts as live while its last heartbeat is at most this many recovery ticks old."""


@dataclass(frozen=True, slots=True)
class Claimed:
    """Claimed entries, sorted: those to park in the dead-letter stream, those to apply again."""

    poison: list[DeadLetter]
    retry_ids: list[str]
    retry_fields: list[dict[str, str]]


def triage_claimed(
    entries: Sequence[tuple[Any, Any]],
    deliveries: Mapping[str, int],
    errors: Sequence[Any],
    *,
    max_deliveries: int,
) -> Claimed:
    """Sort claimed entries (as XAUTOCLAIM returns them: id and raw fields) by how often each
    was delivered (XPENDING, counting this claim; 1 when Redis no longer says): an entry
    delivered more than ``max_deliveries`` times is poison and carries its last recorded error
    (``errors``, in the order of ``entries``) to the dead-letter stream; the rest are applied
    again."""
    claimed = Claimed([], [], [])
    for (entry_id, raw), error in zip(entries, errors, strict=True):
        eid = as_text(entry_id)
        fields = entry_fields(raw or {})
        count = deliveries.get(eid, 1)
        if count > max_deliveries:
            reason = as_text(error) if error else "failed on every delivery (no error recorded)"
            failed = count - 1  # this delivery is the claim itself, not a failure yet
            claimed.poison.append(
                DeadLetter(eid, fields, f"gave up after {failed} deliveries: {reason}", failed)
            )
        else:
            claimed.retry_ids.append(eid)
            claimed.retry_fields.append(fields)
    return claimed


class Recovery:
    def __init__(
        self,
        *,
        processor: BatchProcessor,
        redis: Redis,
        broker: RedisBroker,
        settings: EmbedderSettings,
        index_ok: Callable[[], Awaitable[object]],
    ) -> None:
        self._processor = processor
        self._redis = redis
        self._broker = broker
        self._settings = settings
        self._index_ok = index_ok
        self._stopping = asyncio.Event()

    async def run(self) -> None:
        interval = self._settings.recovery_interval_s
        while not self._stopping.is_set():
            try:
                await self.tick()
            except (RedisError, OSError) as exc:
                log.warning("recovery_redis_error", error=repr(exc))
            except Exception:
                log.exception("recovery_failed")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), interval)

    def stop(self) -> None:
        self._stopping.set()

    async def tick(self) -> None:
        await self._ensure_subscriber()
        await self._observe_group()
        try:
            await self._index_ok()
        except Exception as exc:  # noqa: BLE001 - any failure means: do not touch pending work now
            INDEX_AWAY.labels("recovery").inc()
            log.info("recovery_waiting_for_index", error=repr(exc))
            return
        await self.claim_abandoned()
        await self.remove_dead_consumers()
        await self.trim()

    async def _ensure_subscriber(self) -> None:
        s = self._settings
        if await ensure_group_from_start(self._redis, s.catalog_stream, s.group):
            log.warning("consumer_group_recreated", group=s.group, stream=s.catalog_stream)
        for subscriber in self._broker.subscribers:
            # Only a subscriber that stopped while the broker runs: before the broker has
            # started them (the first tick races the startup) a restart would start a second
            # read loop beside the broker's own, and once shutdown began it would read again.
            if not subscriber.running and self._broker.running and not self._stopping.is_set():
                log.warning("subscriber_restarting")
                RESTARTS.inc()
                await subscriber.start()

    async def _observe_group(self) -> None:
        s = self._settings
        now = await heartbeat(
            self._redis, s.catalog_stream, s.group, s.consumer_name, keep_ms=s.dead_consumer_idle_ms
        )
        within_ms = int(LIVE_WITHIN_TICKS * s.recovery_interval_s * 1000)
        live = await live_consumers(
            self._redis, s.catalog_stream, s.group, now_ms=now, within_ms=within_ms
        )
        CONSUMERS.set(len(live))
        for group in await group_backlogs(self._redis, s.catalog_stream):
            if group.group == s.group:
                PENDING.set(group.pending)
                BACKLOG.set(group.backlog)
                if group.lag_hint is not None:
                    LAG.set(group.lag_hint)

    async def remove_dead_consumers(self) -> list[str]:
        """Delete the group's dead consumers (see ``streams.remove_dead_consumers``)."""
        s = self._settings
        removed = await remove_dead_consumers(
            self._redis,
            s.catalog_stream,
            s.group,
            keep=s.consumer_name,
            dead_after_ms=s.dead_consumer_idle_ms,
        )
        if removed:
            CONSUMERS_DELETED.inc(len(removed))
            log.info("dead_consumers_deleted", consumers=removed)
        return removed

    async def claim_abandoned(self) -> int:
        """Claim and apply every entry idle for longer than ``claim_idle_ms``; returns how many."""
        s = self._settings
        start = "0-0"
        claimed_total = 0
        # Page by page, and no new page once stopping: a SIGTERM must not wait for a whole
        # backlog of abandoned entries to be re-applied.
        while not self._stopping.is_set():
            try:
                next_id, entries, *rest = await self._redis.xautoclaim(
                    s.catalog_stream,
                    s.group,
                    s.consumer_name,
                    min_idle_time=s.claim_idle_ms,
                    start_id=start,
                    count=s.batch_size,
                )
            except ResponseError as exc:
                if "NOGROUP" in str(exc):
                    return claimed_total  # recreated on the next tick
                raise
            gone = rest[0] if rest else []
            if gone:
                # Entries deleted while still pending: only possible if someone trimmed or
                # XDEL'd unacknowledged entries by hand. Nothing to apply; clear them.
                log.error("pending_entries_were_deleted", ids=[as_text(i) for i in gone])
                await self._redis.xack(s.catalog_stream, s.group, *gone)
            if entries:
                claimed_total += len(entries)
                CLAIMED.inc(len(entries))
                await self._apply_claimed(entries)
            if as_text(next_id) == "0-0":
                return claimed_total
            start = as_text(next_id)
        return claimed_total

    async def _apply_claimed(self, entries: list[tuple[Any, Any]]) -> None:
        s = self._settings
        ids = [as_text(entry_id) for entry_id, _ in entries]
        deliveries = await self._deliveries(ids)
        errors = await self._redis.hmget(self._processor.errors_key, ids)
        claimed = triage_claimed(entries, deliveries, errors, max_deliveries=s.max_deliveries)
        log.info("entries_claimed", claimed=len(ids), poison=len(claimed.poison))
        if claimed.poison:
            await self._processor.dead_letter(claimed.poison)
        if claimed.retry_ids:
            try:
                await self._processor.process(claimed.retry_ids, claimed.retry_fields)
            except IndexUnavailableError as exc:
                log.warning(
                    "claimed_entries_left_pending", error=str(exc), entries=len(claimed.retry_ids)
                )

    async def _deliveries(self, ids: list[str]) -> dict[str, int]:
        s = self._settings
        pending = await self._redis.xpending_range(
            s.catalog_stream,
            s.group,
            min=ids[0],
            max=ids[-1],
            count=len(ids) * 4 + 16,
            consumername=s.consumer_name,
        )
        return {as_text(p["message_id"]): int(p["times_delivered"]) for p in pending}  # type: ignore[arg-type]

    async def trim(self) -> int:
        point = await safe_trim_point(self._redis, self._settings.catalog_stream)
        if point is None:
            return 0
        trimmed = int(await self._redis.xtrim(self._settings.catalog_stream, minid=point))
        if trimmed:
            TRIMMED.inc(trimmed)
            log.info("stream_trimmed", entries=trimmed, below=point)
        return trimmed
