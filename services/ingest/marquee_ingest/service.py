"""The long-running side of ingest: the schedule, and syncs started by an admin, in one process.

Syncs run as background tasks of this process; which instance actually syncs is decided by the
Redis lock (``TmdbSync.run_once``), so any number of replicas can run this.
"""

from __future__ import annotations

import asyncio
import uuid
from typing import TYPE_CHECKING

import structlog
from redis.exceptions import RedisError

from marquee_ingest.lock import lock_holder
from marquee_ingest.sync import utc_now
from marquee_shared.api import SyncRun, SyncStatus
from marquee_shared.backoff import Backoff

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable
    from datetime import datetime

    from marquee_ingest.schedule import Schedule
    from marquee_ingest.sync import TmdbSync
    from marquee_shared.api import SyncTrigger

log = structlog.get_logger(__name__)


class SyncBusyError(RuntimeError):
    """A sync is running already (here or on another instance)."""


class SyncNotConfiguredError(RuntimeError):
    """No TMDB credentials: this instance cannot sync."""


class SyncService:
    def __init__(
        self,
        sync: TmdbSync,
        schedule: Schedule | None,
        *,
        poll_seconds: float = 15.0,
        retry_first_s: float = 0.5,
        retry_cap_s: float = 5.0,
        clock: Callable[[], datetime] = utc_now,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        """``retry_first_s``/``retry_cap_s``: while Redis is away, the seeding and the schedule
        try again after delays that double from the first to the cap (with jitter, so
        instances that lost Redis together do not come back together)."""
        self.sync = sync
        self.schedule = schedule
        self.next_run_at: datetime | None = None
        self._poll = poll_seconds
        self._retry_first_s, self._retry_cap_s = retry_first_s, retry_cap_s
        self._clock = clock
        self._sleep = sleep
        """How the background loops wait (tests pass one that records the delays)."""
        self._tasks: set[asyncio.Task[object]] = set()
        self._busy = False
        self.seeded: bool | None = None
        """After startup: whether this instance published the demo catalog (None: not yet)."""

    # -- lifecycle ----------------------------------------------------------------------------

    def start(self, seed: Callable[[], Awaitable[object]] | None = None) -> None:
        """Start the background work: seeding (if asked), then the schedule (if any)."""
        self._spawn(self._background(seed), "ingest-schedule")

    async def stop(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    def _spawn(self, coro: Awaitable[object], name: str) -> asyncio.Task[object]:
        task: asyncio.Task[object] = asyncio.ensure_future(coro)
        task.set_name(name)
        # A reference, so the task is not garbage-collected mid-run (asyncio keeps weak ones).
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    # -- admin --------------------------------------------------------------------------------

    @property
    def busy(self) -> bool:
        """A sync started by this instance is in progress."""
        return self._busy

    async def trigger(self, trigger: SyncTrigger = "admin") -> str:
        """Start a sync now in the background; its run id (to find it in the status)."""
        if not self.sync.configured:
            raise SyncNotConfiguredError(
                "no TMDB credentials: set TMDB_READ_TOKEN or TMDB_API_KEY for the ingest service"
            )
        if self.busy:
            raise SyncBusyError(f"a sync is already running (on {self.sync.instance})")
        # Marked before any await: a second trigger right behind this one must see it.
        self._busy = True
        try:
            holder = await lock_holder(self.sync.redis, self.sync.keys.lock)
        except BaseException:
            self._busy = False
            raise
        if holder is not None:
            self._busy = False
            raise SyncBusyError(f"a sync is already running (on {holder})")
        run_id = uuid.uuid4().hex[:12]
        self._spawn(self._run(trigger, run_id=run_id), f"ingest-sync-{run_id}")
        return run_id

    async def status(self) -> SyncStatus:
        return await self.sync.status(
            schedule=self.schedule.describe() if self.schedule and self.sync.configured else None,
            next_run_at=self.next_run_at,
        )

    # -- internals ----------------------------------------------------------------------------

    async def _run(
        self, trigger: SyncTrigger, *, run_id: str | None = None, due: datetime | None = None
    ) -> SyncRun:
        """Run one sync; the caller has set ``_busy``, which this clears when done."""
        try:
            return await self.sync.run_once(trigger, run_id=run_id, due=due)
        finally:
            self._busy = False

    async def _background(self, seed: Callable[[], Awaitable[object]] | None) -> None:
        if seed is not None:
            await self._retrying(self._seed(seed), "seed_demo")
        if self.schedule is None or not self.sync.configured:
            log.info(
                "schedule_off",
                reason="no TMDB credentials" if not self.sync.configured else "not configured",
            )
            return
        log.info("schedule_on", schedule=self.schedule.describe())
        backoff = self._backoff()
        while True:
            try:
                await self._tick(self.schedule)
            except (RedisError, OSError) as exc:
                delay = backoff.next()
                log.warning("schedule_redis_unavailable", error=str(exc), retry_in=delay)
                await self._sleep(delay)
            else:
                backoff.reset()

    async def _tick(self, schedule: Schedule) -> None:
        due = schedule.next_due(await self.sync.last_finished_at())
        now = self._clock()
        self.next_run_at = due or now
        if due is not None and due > now:
            # Sleep in slices: another instance (or an admin) may sync meanwhile, which moves
            # the shared due time.
            await asyncio.sleep(min((due - now).total_seconds(), self._poll))
            return
        if self.busy:  # an admin-triggered run is in progress here; look again after it
            await asyncio.sleep(self._retry_cap_s)
            return
        self._busy = True
        run = await self._run("schedule", due=due)
        if run.outcome == "skipped":
            # Another instance holds the lock; look again once it may be done.
            await asyncio.sleep(self._poll)

    def _seed(self, seed: Callable[[], Awaitable[object]]) -> Callable[[], Awaitable[None]]:
        async def step() -> None:
            self.seeded = await self.sync.seed_demo_if_empty(seed)
            log.info("demo_seeding_done", seeded=self.seeded)

        return step

    def _backoff(self) -> Backoff:
        return Backoff(self._retry_first_s, self._retry_cap_s, jitter=True)

    async def _retrying(self, step: Callable[[], Awaitable[object]], what: str) -> None:
        backoff = self._backoff()
        while True:
            try:
                await step()
            except (RedisError, OSError) as exc:
                delay = backoff.next()
                log.warning("background_step_failed", step=what, error=str(exc), retry_in=delay)
                await self._sleep(delay)
            else:
                return
