"""The incremental TMDB sync: publish what changed on TMDB since the last successful sync.

One run, under a Redis lock so that two instances never sync at once:

1. No watermark yet: a bounded initial load (``sync_initial_pages`` of a TMDB list).
2. Otherwise: ask ``/movie/changes`` for the days since the watermark (at most 14 per window),
   and walk the changed ids in ascending order, a step (``sync_chunk_size`` ids) at a time:
   fetch their details, publish ``movie.fetched`` for content that differs from what ingest
   last published and ``movie.deleted`` for published movies TMDB no longer has (404) or flags
   adult, then record the new content hashes and the step's progress. A movie whose content is
   unchanged produces no event, so nothing downstream re-embeds it.
3. Only when a whole window is published does the watermark move, so a crash anywhere repeats
   work (at worst the step in flight) instead of skipping it.

A run stops early at ``sync_max_requests`` TMDB requests; its progress is kept and the next
run carries on from there.
"""

from __future__ import annotations

import contextlib
import time
import uuid
from dataclasses import dataclass, replace
from datetime import UTC, date, datetime, timedelta
from datetime import time as dtime
from typing import TYPE_CHECKING

import structlog
from prometheus_client import Counter, Gauge, Histogram
from redis.exceptions import RedisError

from marquee_ingest.lock import LockLostError, RedisLock, lock_holder
from marquee_ingest.records import InvalidRecord
from marquee_ingest.schedule import already_done
from marquee_ingest.state import PublishedCatalog, StateKeys, SyncState, WindowCursor
from marquee_ingest.tmdb import (
    MAX_CHANGES_PAGES,
    ChangedMovie,
    ChangeList,
    MovieGone,
    TmdbError,
)
from marquee_shared.api import SyncRun, SyncStatus, SyncTrigger
from marquee_shared.events import Movie, MovieDeleted, MovieFetched
from marquee_shared.streams import batched, publish_events

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, Sequence

    from redis.asyncio import Redis

    from marquee_ingest.settings import IngestSettings
    from marquee_ingest.tmdb import TmdbClient

log = structlog.get_logger(__name__)

SOURCE = "tmdb"
SHOWN_INVALID = 20

RUNS = Counter("marquee_ingest_sync_runs_total", "Sync runs by outcome", ["outcome"])
EVENTS = Counter("marquee_ingest_sync_events_total", "Events the sync published", ["type"])
UNCHANGED = Counter(
    "marquee_ingest_sync_unchanged_total", "Movies fetched whose content had not changed"
)
TMDB_REQUESTS = Counter("marquee_ingest_sync_tmdb_requests_total", "TMDB requests by syncs")
LAST_SUCCESS = Gauge(
    "marquee_ingest_sync_last_success_timestamp_seconds", "When the last successful sync ended"
)
DURATION = Histogram(
    "marquee_ingest_sync_duration_seconds",
    "Sync run duration",
    buckets=(0.1, 0.5, 1, 5, 15, 60, 300, 900, 3600),
)


def utc_now() -> datetime:
    return datetime.now(UTC)


def midnight(day: date) -> datetime:
    return datetime.combine(day, dtime(0), tzinfo=UTC)


class SyncError(Exception):
    """The run cannot go on as configured; the message says what to change."""


@dataclass(frozen=True, slots=True)
class Window:
    """A span of TMDB change days to publish, possibly resumed part-way."""

    start: date
    end: date
    listed_on: date
    after: int | None = None
    """Resume after this id (ids are processed in ascending order); None: from the start."""


def next_window(watermark: datetime, cursor: WindowCursor | None, today: date, days: int) -> Window:
    """The window to work on: the one in progress, else the days from the watermark on."""
    if cursor is not None:
        return Window(cursor.start, cursor.end, cursor.listed_on, cursor.last_id)
    # A watermark "in the future" (a clock that was ahead) must not stall the sync.
    start = min(watermark.astimezone(UTC).date(), today)
    return Window(start, min(start + timedelta(days=days - 1), today), today)


def watermark_after(window: Window, today: date, started: datetime) -> datetime:
    """Where the next window starts once ``window`` is fully published.

    TMDB's changes are by day, so the next window starts on a day boundary, except after a
    window listed in full by this very run: then everything changed before this run started
    has been seen, and the run's start is exact.
    """
    if window.end < window.listed_on:
        # The last day was over when the window was listed: it is complete.
        return midnight(window.end + timedelta(days=1))
    if window.listed_on == today and window.after is None:
        return started
    # Listed on its last day by an earlier run, then resumed: that day went on changing after
    # the listing, and ids before the cursor were not looked at again. List that day again.
    return midnight(window.end)


class TmdbSync:
    """Runs syncs for one instance. Cheap to build; the Redis and TMDB clients are injected."""

    def __init__(
        self,
        redis: Redis,
        tmdb: TmdbClient | None,
        settings: IngestSettings,
        *,
        clock: Callable[[], datetime] = utc_now,
    ) -> None:
        self.redis = redis
        self._tmdb = tmdb
        self.settings = settings
        self._clock = clock
        self.keys = StateKeys.for_stream(settings.catalog_stream)
        self.catalog = PublishedCatalog(redis, self.keys.published)
        self.state = SyncState(redis, self.keys.sync)
        self.instance = settings.instance_name

    @property
    def configured(self) -> bool:
        return self._tmdb is not None

    def new_lock(self) -> RedisLock:
        return RedisLock(
            self.redis,
            self.keys.lock,
            ttl_seconds=self.settings.sync_lock_ttl_s,
            owner=self.instance,
        )

    # -- status -------------------------------------------------------------------------------

    async def status(
        self, *, schedule: str | None = None, next_run_at: datetime | None = None
    ) -> SyncStatus:
        fields = await self.state.read()
        holder = await lock_holder(self.redis, self.keys.lock)

        def when(name: str) -> datetime | None:
            value = fields.get(name)
            return None if value is None else datetime.fromisoformat(value)

        def run(name: str) -> SyncRun | None:
            value = fields.get(name)
            return None if value is None else SyncRun.model_validate_json(value)

        return SyncStatus(
            instance=self.instance,
            configured=self.configured,
            schedule=schedule,
            next_run_at=next_run_at,
            running=holder is not None,
            running_on=holder,
            # A run whose instance crashed leaves current_run behind; the lock tells.
            current_run=run(SyncState.CURRENT_RUN) if holder is not None else None,
            watermark=when(SyncState.WATERMARK),
            last_started_at=when(SyncState.LAST_STARTED),
            last_finished_at=when(SyncState.LAST_FINISHED),
            last_success_at=when(SyncState.LAST_SUCCESS),
            last_error=fields.get(SyncState.LAST_ERROR),
            last_error_at=when(SyncState.LAST_ERROR_AT),
            last_run=run(SyncState.LAST_RUN),
            catalog_size=await self.catalog.size(),
        )

    async def last_finished_at(self) -> datetime | None:
        return await self.state.get_time(SyncState.LAST_FINISHED)

    # -- one run ------------------------------------------------------------------------------

    async def run_once(
        self,
        trigger: SyncTrigger,
        *,
        run_id: str | None = None,
        due: datetime | None = None,
    ) -> SyncRun:
        """Sync once if no other instance is syncing.

        ``trigger="schedule"`` runs only if the sync ``due`` (None: "never ran, due now") has
        not been done by another instance meanwhile. Failures are recorded in the status
        and returned (``outcome="failed"``), not raised: the caller is a scheduler or an admin.
        """
        if self._tmdb is None:
            raise SyncError("no TMDB credentials: set TMDB_READ_TOKEN or TMDB_API_KEY")
        run = SyncRun(
            run_id=run_id or uuid.uuid4().hex[:12],
            trigger=trigger,
            instance=self.instance,
            started_at=self._clock(),
        )
        lock = self.new_lock()
        with structlog.contextvars.bound_contextvars(sync_run_id=run.run_id, trigger=trigger):
            if not await lock.acquire():
                holder = await lock_holder(self.redis, self.keys.lock)
                return self._skipped(run, f"another instance is syncing ({holder})")
            async with lock.renewed():
                if trigger == "schedule" and already_done(due, await self.last_finished_at()):
                    return self._skipped(run, "another instance already ran this scheduled sync")
                return await self._run_locked(run, lock, self._tmdb)

    def _skipped(self, run: SyncRun, reason: str) -> SyncRun:
        RUNS.labels("skipped").inc()
        log.info("sync_skipped", reason=reason)
        return run.model_copy(update={"outcome": "skipped", "reason": reason})

    async def _run_locked(self, run: SyncRun, lock: RedisLock, tmdb: TmdbClient) -> SyncRun:
        # The clock is read again under the lock: the run covers changes from here on.
        run.started_at = self._clock()
        requests_before = tmdb.requests_sent
        started = time.perf_counter()
        await self.state.set_fields(
            {
                SyncState.LAST_STARTED: run.started_at,
                SyncState.CURRENT_RUN: run.model_dump_json(),
            }
        )
        log.info("sync_started")
        try:
            step = _Step(self, run, lock, tmdb, requests_before)
            watermark = await self.state.watermark()
            if watermark is None:
                await step.initial_load()
            else:
                await step.incremental(watermark)
        except (TmdbError, SyncError, LockLostError, RedisError, OSError, TimeoutError) as exc:
            run.outcome, run.reason = "failed", f"{type(exc).__name__}: {exc}"
        except BaseException as exc:
            # Cancelled (shutdown) or a bug: record it for the status, then let it propagate.
            run.outcome, run.reason = "failed", f"{type(exc).__name__}: {exc}".rstrip(": ")
            with contextlib.suppress(RedisError, OSError):
                await self._finish(run, tmdb, requests_before, started)
            raise
        else:
            run.outcome = "succeeded"
        with contextlib.suppress(RedisError, OSError):
            # Redis being down is the likely failure here; the run's outcome still returns.
            await self._finish(run, tmdb, requests_before, started)
        return run

    async def _finish(
        self, run: SyncRun, tmdb: TmdbClient, requests_before: int, started: float
    ) -> None:
        run.finished_at = self._clock()
        run.requests = tmdb.requests_sent - requests_before
        elapsed = time.perf_counter() - started
        RUNS.labels(run.outcome).inc()
        DURATION.observe(elapsed)
        TMDB_REQUESTS.inc(run.requests)
        fields: dict[str, str | datetime] = {
            SyncState.LAST_FINISHED: run.finished_at,
            SyncState.LAST_RUN: run.model_dump_json(),
        }
        if run.outcome == "succeeded":
            fields[SyncState.LAST_SUCCESS] = run.finished_at
            LAST_SUCCESS.set(run.finished_at.timestamp())
        else:
            fields[SyncState.LAST_ERROR] = run.reason or "failed"
            fields[SyncState.LAST_ERROR_AT] = run.finished_at
        # One canonical line per run, the numbers a dashboard or a grep needs.
        (log.info if run.outcome == "succeeded" else log.warning)(
            "sync_finished",
            outcome=run.outcome,
            reason=run.reason,
            mode=run.mode,
            window_start=str(run.window_start),
            window_end=str(run.window_end),
            listed=run.listed,
            fetched=run.fetched,
            published_fetched=run.published_fetched,
            published_deleted=run.published_deleted,
            unchanged=run.unchanged,
            invalid=run.invalid,
            requests=run.requests,
            capped=run.capped,
            elapsed_s=round(elapsed, 3),
        )
        await self.state.set_fields(fields)
        await self.state.delete_fields(SyncState.CURRENT_RUN)

    # -- seeding ------------------------------------------------------------------------------

    async def seed_demo_if_empty(self, seed: Callable[[], Awaitable[object]]) -> bool:
        """Run ``seed`` (publish the demo catalog) if ingest has published nothing yet.

        Under the sync lock, so replicas started together seed once.
        """
        lock = self.new_lock()
        if not await lock.acquire():
            return False
        async with lock.renewed():
            if await self.catalog.size() > 0:
                return False
            await seed()
            return True


class _Step:
    """The work of one run (split out so the run's bookkeeping above stays readable)."""

    def __init__(
        self,
        sync: TmdbSync,
        run: SyncRun,
        lock: RedisLock,
        tmdb: TmdbClient,
        requests_before: int,
    ) -> None:
        self.sync = sync
        self.run = run
        self.lock = lock
        self.tmdb = tmdb
        self.settings = sync.settings
        self.requests_before = requests_before

    def budget(self) -> int:
        used = self.tmdb.requests_sent - self.requests_before
        return self.settings.sync_max_requests - used

    async def initial_load(self) -> None:
        run = self.run
        run.mode = "initial"
        pages = max(1, min(self.settings.sync_initial_pages, self.budget() // 2))
        ids = await self.tmdb.list_movie_ids(self.settings.sync_initial_list, pages)
        run.listed = len(ids)
        complete = await self.publish_changed([ChangedMovie(i, adult=False) for i in ids])
        run.capped = not complete
        # Bounded by design: what did not fit is not loaded later (the changes feed will
        # bring movies as they change). Changes made during the load are listed next time.
        await self.lock.ensure()
        await self.sync.state.complete_window(run.started_at)
        run.watermark = run.started_at

    async def incremental(self, watermark: datetime) -> None:
        run = self.run
        run.mode = "incremental"
        today = run.started_at.astimezone(UTC).date()
        cursor = await self.sync.state.cursor()
        while True:
            window = next_window(watermark, cursor, today, self.settings.sync_window_days)
            window, changes = await self._list(window)
            run.window_start = run.window_start or window.start
            run.window_end = window.end
            todo = sorted(
                (m for m in changes.movies if window.after is None or m.tmdb_id > window.after),
                key=lambda m: m.tmdb_id,
            )
            run.listed += len(todo)

            async def saved(last_id: int, window: Window = window) -> None:
                await self.sync.state.save_cursor(
                    WindowCursor(
                        start=window.start,
                        end=window.end,
                        listed_on=window.listed_on,
                        last_id=last_id,
                    )
                )

            if not await self.publish_changed(todo, after_step=saved):
                run.capped = True
                break
            await self.lock.ensure()
            watermark = max(watermark, watermark_after(window, today, run.started_at))
            await self.sync.state.complete_window(watermark)
            run.watermark, cursor = watermark, None
            if window.end >= today:
                break
            if self.budget() <= 0:
                run.capped = True
                break

    async def _list(self, window: Window) -> tuple[Window, ChangeList]:
        """List the window's changes, halving a fresh window until it fits half the budget."""
        max_pages = min(MAX_CHANGES_PAGES, max(1, self.budget() // 2))
        while True:
            changes = await self.tmdb.movie_changes(window.start, window.end, max_pages=max_pages)
            if changes.complete:
                return window, changes
            if window.after is not None or window.end == window.start:
                raise SyncError(
                    f"TMDB lists {changes.total_pages} pages of changes for "
                    f"{window.start}..{window.end}, more than the {max_pages} a run may read; "
                    "raise MARQUEE_INGEST_SYNC_MAX_REQUESTS"
                )
            window = replace(window, end=window.start + (window.end - window.start) // 2)

    async def publish_changed(
        self,
        movies: Sequence[ChangedMovie],
        after_step: Callable[[int], Awaitable[None]] | None = None,
    ) -> bool:
        """Fetch, compare and publish, a step at a time; False if the request cap stopped it."""
        for chunk in batched(movies, self.settings.sync_chunk_size):
            budget = self.budget()
            if budget <= 0:
                return False
            step = chunk[:budget]
            await self._step(step)
            if after_step is not None:
                await after_step(step[-1].tmdb_id)
            await self.sync.state.set_fields({SyncState.CURRENT_RUN: self.run.model_dump_json()})
            if len(step) < len(chunk):
                return False
        return True

    async def _step(self, chunk: Sequence[ChangedMovie]) -> None:
        run = self.run
        gone = [m.tmdb_id for m in chunk if m.adult]
        fresh: list[Movie] = []
        states = self.tmdb.fetch_states([m.tmdb_id for m in chunk if not m.adult])
        # Closed on the way out so an error cancels the requests still in flight.
        async with contextlib.aclosing(states):
            async for state in states:
                if isinstance(state, Movie):
                    fresh.append(state)
                elif isinstance(state, MovieGone):
                    gone.append(state.tmdb_id)
                else:
                    self._invalid(state)
        run.fetched += len(fresh)
        unchanged = await self.sync.catalog.unchanged(fresh)
        changed = [m for m in fresh if m.tmdb_id not in unchanged]
        known = await self.sync.catalog.known(gone)
        deleted = [i for i in gone if i in known]
        events: list[MovieFetched | MovieDeleted] = [
            *(MovieFetched(source=SOURCE, movie=m) for m in changed),
            *(MovieDeleted(source=SOURCE, tmdb_id=i) for i in deleted),
        ]
        # Nothing is written once the lock may be someone else's: they may be publishing
        # the same window, and the record of what was published must stay consistent.
        await self.lock.ensure()
        if events:
            await publish_events(
                self.sync.redis,
                events,
                stream=self.settings.catalog_stream,
                pipeline_size=self.settings.publish_batch_size,
                # Backpressure: wait while the embedders are this far behind (the lock is
                # renewed meanwhile).
                max_backlog=self.settings.max_backlog,
                request_id=run.run_id,  # the embedders log which sync published it
            )
        # Only now, with the events on the stream, is the record updated (see PublishedCatalog).
        await self.sync.catalog.record(changed)
        await self.sync.catalog.forget(deleted)
        run.published_fetched += len(changed)
        run.published_deleted += len(deleted)
        run.unchanged += len(unchanged)
        run.gone_unknown += len(gone) - len(deleted)
        EVENTS.labels("movie.fetched").inc(len(changed))
        EVENTS.labels("movie.deleted").inc(len(deleted))
        UNCHANGED.inc(len(unchanged))
        log.debug(
            "sync_step_published",
            fetched=len(fresh),
            changed=len(changed),
            deleted=len(deleted),
            last_id=chunk[-1].tmdb_id,
        )

    def _invalid(self, record: InvalidRecord) -> None:
        self.run.invalid += 1
        if len(self.run.invalid_records) < SHOWN_INVALID:
            self.run.invalid_records.append(f"{record.where}: {record.reason}")
        log.info("sync_record_invalid", where=record.where, reason=record.reason)
