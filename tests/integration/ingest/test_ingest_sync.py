"""The incremental TMDB sync against the fake TMDB server (real client, real Redis)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from redis.asyncio import Redis
from redis.exceptions import RedisError

from marquee_ingest.settings import IngestSettings
from marquee_ingest.state import SyncState
from marquee_ingest.sync import SyncRun, TmdbSync
from marquee_ingest.tmdb import TmdbClient
from marquee_shared.events import CATALOG_STREAM, MovieDeleted, MovieFetched, decode_event
from tests.fakes.tmdb import FakeTmdb, tmdb_movie, utc_today

pytestmark = pytest.mark.integration

MakeSync = Callable[..., TmdbSync]


@pytest.fixture
async def make_sync(
    settings: IngestSettings, fake_tmdb: FakeTmdb, redis_url: str
) -> AsyncIterator[MakeSync]:
    """A TmdbSync with its own Redis and TMDB clients, as a separate instance would have."""
    closers: list[Any] = []

    def make(*, tmdb_options: dict[str, Any] | None = None, **overrides: Any) -> TmdbSync:
        http = httpx.AsyncClient()
        redis = Redis.from_url(redis_url)
        closers.extend([http.aclose, redis.aclose])
        options: dict[str, Any] = {
            "api_key": fake_tmdb.api_key,
            "base_url": fake_tmdb.url,
            "rate_per_second": 1000.0,
            "backoff_base": 0.01,
            "max_retries": 2,
        }
        options.update(tmdb_options or {})
        updates = {"sync_initial_pages": 3, **overrides}
        return TmdbSync(redis, TmdbClient(http, **options), settings.model_copy(update=updates))

    yield make
    for close in closers:
        await close()


async def events(redis: Redis) -> list[MovieFetched | MovieDeleted]:
    return [decode_event(fields) for _, fields in await redis.xrange(CATALOG_STREAM)]


def summary(evts: list[MovieFetched | MovieDeleted]) -> tuple[list[int], list[int]]:
    fetched = sorted(e.movie.tmdb_id for e in evts if isinstance(e, MovieFetched))
    deleted = sorted(e.tmdb_id for e in evts if isinstance(e, MovieDeleted))
    return fetched, deleted


async def loaded(make_sync: MakeSync, redis: Redis, fake_tmdb: FakeTmdb) -> TmdbSync:
    """A sync whose initial load published the fake's 45 movies; stream and requests cleared."""
    sync = make_sync()
    run = await sync.run_once("cli")
    assert run.outcome == "succeeded", run.reason
    assert run.published_fetched == 45
    await redis.delete(CATALOG_STREAM)
    fake_tmdb.requests.clear()
    return sync


def changes_requests(fake_tmdb: FakeTmdb) -> list[tuple[str, str, str]]:
    return [
        (r.params["start_date"], r.params["end_date"], r.params["page"])
        for r in fake_tmdb.requests_to("/movie/changes")
    ]


# -- the first run ----------------------------------------------------------------------------


async def test_first_sync_is_a_bounded_initial_load(
    make_sync: MakeSync, redis: Redis, fake_tmdb: FakeTmdb
) -> None:
    sync = make_sync(sync_initial_pages=2)

    run = await sync.run_once("cli")

    assert run.outcome == "succeeded", run.reason
    assert run.mode == "initial"
    fetched, deleted = summary(await events(redis))
    assert fetched == sorted([603, *range(1001, 1040)])  # pages 1 and 2 of the list: 40
    assert deleted == []
    assert run.requests == 2 + 40
    assert not fake_tmdb.requests_to("/movie/changes")
    status = await sync.status()
    assert status.watermark == run.started_at
    assert status.last_success_at == run.finished_at
    assert status.catalog_size == 40
    assert status.last_run is not None and status.last_run.run_id == run.run_id


async def test_every_entry_a_sync_publishes_carries_its_run_id(
    make_sync: MakeSync, redis: Redis
) -> None:
    run = await make_sync(sync_initial_pages=1).run_once("admin")

    assert run.outcome == "succeeded", run.reason
    entries = await redis.xrange(CATALOG_STREAM)
    assert len(entries) == run.published_fetched > 0
    # request_id beside event: the embedders log which run published what they apply.
    assert {fields[b"request_id"] for _, fields in entries} == {run.run_id.encode()}


# -- a changes window -------------------------------------------------------------------------


async def test_a_changes_window_publishes_exactly_the_changes(
    make_sync: MakeSync, redis: Redis, fake_tmdb: FakeTmdb
) -> None:
    sync = await loaded(make_sync, redis, fake_tmdb)
    fake_tmdb.change_movie(1001, overview="A heist crew robs a casino during a boxing match.")
    fake_tmdb.add_movie(tmdb_movie(2001, "Brand New"), changed=True)
    fake_tmdb.remove_movie(1002)  # 404 from now on
    fake_tmdb.change_movie(1003, adult=True)  # flagged in the changes list itself
    fake_tmdb.record_change(1004)  # listed, but nothing we read changed
    fake_tmdb.record_change(999_999)  # gone, and never published: nothing to delete

    run = await sync.run_once("cli")

    assert run.outcome == "succeeded", run.reason
    published = await events(redis)
    assert summary(published) == ([1001, 2001], [1002, 1003])
    by_id = {e.movie.tmdb_id: e.movie for e in published if isinstance(e, MovieFetched)}
    assert by_id[1001].overview == "A heist crew robs a casino during a boxing match."
    assert all(e.source == "tmdb" for e in published)
    assert (run.listed, run.fetched, run.unchanged, run.gone_unknown) == (6, 3, 1, 1)
    # Only the changed ids were fetched; the adult one not even that.
    details = sorted(
        int(r.path.rsplit("/", 1)[1]) for r in fake_tmdb.requests if r.path[7:].isdigit()
    )
    assert details == [1001, 1002, 1004, 2001, 999_999]
    today = utc_today().isoformat()
    assert changes_requests(fake_tmdb) == [(today, today, "1")]
    assert run.requests == 1 + 5
    status = await sync.status()
    assert status.watermark == run.started_at
    assert status.catalog_size == 45 + 1 - 2


async def test_an_unchanged_movie_publishes_nothing(
    make_sync: MakeSync, redis: Redis, fake_tmdb: FakeTmdb
) -> None:
    sync = await loaded(make_sync, redis, fake_tmdb)
    fake_tmdb.change_movie(1001, overview="Changed once.")
    first = await sync.run_once("cli")
    assert summary(await events(redis)) == ([1001], [])

    # Same day, same changes list: both movies are fetched again and found unchanged.
    fake_tmdb.record_change(1005)
    second = await sync.run_once("cli")

    assert first.outcome == second.outcome == "succeeded"
    assert summary(await events(redis)) == ([1001], [])  # nothing new on the stream
    assert (second.fetched, second.unchanged, second.published_fetched) == (2, 2, 0)


async def test_only_content_changes_count_not_a_new_fetch_time(
    make_sync: MakeSync, redis: Redis, fake_tmdb: FakeTmdb
) -> None:
    """A rating change is a content change (filters use it); the record notices it."""
    sync = await loaded(make_sync, redis, fake_tmdb)
    fake_tmdb.change_movie(1006, vote_average=3.1)

    run = await sync.run_once("cli")

    (event,) = await events(redis)
    assert isinstance(event, MovieFetched)
    assert event.movie.vote_average == 3.1
    assert run.published_fetched == 1


# -- failures ---------------------------------------------------------------------------------


async def test_a_crash_between_fetching_and_publishing_repeats_the_window(
    make_sync: MakeSync, redis: Redis, fake_tmdb: FakeTmdb, monkeypatch: pytest.MonkeyPatch
) -> None:
    sync = await loaded(make_sync, redis, fake_tmdb)
    watermark = (await sync.status()).watermark
    fake_tmdb.change_movie(1001, overview="New text.")
    fake_tmdb.remove_movie(1002)

    async def crash(*args: object, **kwargs: object) -> list[str]:
        raise RedisError("Connection reset by peer")

    monkeypatch.setattr("marquee_ingest.sync.publish_events", crash)
    failed = await sync.run_once("cli")

    assert failed.outcome == "failed"
    assert "Connection reset by peer" in (failed.reason or "")
    assert await events(redis) == []
    status = await sync.status()
    assert status.watermark == watermark  # not advanced
    assert status.catalog_size == 45  # the record did not run ahead of the stream
    assert status.last_error is not None and "Connection reset" in status.last_error
    assert status.last_success_at is not None and status.last_success_at < failed.started_at

    monkeypatch.undo()
    again = await sync.run_once("cli")

    assert again.outcome == "succeeded", again.reason
    assert summary(await events(redis)) == ([1001], [1002])
    first_window, second_window = changes_requests(fake_tmdb)
    assert first_window == second_window  # the same window, asked for again
    assert (await sync.status()).watermark == again.started_at


async def test_a_run_failing_part_way_resumes_after_what_it_published(
    make_sync: MakeSync, redis: Redis, fake_tmdb: FakeTmdb
) -> None:
    sync = await loaded(make_sync, redis, fake_tmdb)
    sync = make_sync(sync_chunk_size=2)
    changed = [1011, 1012, 1013, 1014, 1015, 1016]
    for tmdb_id in changed:
        fake_tmdb.change_movie(tmdb_id, overview=f"Now {tmdb_id} is about something else.")
    # TMDB fails the third step (ids 1015, 1016) for one attempt and both retries.
    fake_tmdb.fail_next(3, 503, path="/movie/1015")

    failed = await sync.run_once("cli")

    assert failed.outcome == "failed"
    assert "TmdbUnavailableError" in (failed.reason or "")
    assert summary(await events(redis)) == ([1011, 1012, 1013, 1014], [])
    cursor = await sync.state.cursor()
    assert cursor is not None and cursor.last_id == 1014
    fake_tmdb.requests.clear()

    resumed = await sync.run_once("cli")

    assert resumed.outcome == "succeeded", resumed.reason
    published = await events(redis)
    assert summary(published) == (changed, [])
    assert len(published) == len(changed)  # each exactly once
    fetched = sorted(r.path for r in fake_tmdb.requests if r.path != "/movie/changes")
    assert fetched == ["/movie/1015", "/movie/1016"]
    assert await sync.state.cursor() is None


async def test_the_request_cap_stops_a_run_and_the_next_carries_on(
    make_sync: MakeSync, redis: Redis, fake_tmdb: FakeTmdb
) -> None:
    await loaded(make_sync, redis, fake_tmdb)
    sync = make_sync(sync_max_requests=10, sync_chunk_size=4)
    changed = list(range(1011, 1023))  # 12 movies
    for tmdb_id in changed:
        fake_tmdb.change_movie(tmdb_id, tagline=f"Tagline {tmdb_id}.")
    watermark = (await sync.status()).watermark

    first = await sync.run_once("cli")

    # 1 changes page + 4 + 4 + 1 details = the 10 allowed.
    assert first.outcome == "succeeded"
    assert first.capped
    assert first.requests == 10
    assert summary(await events(redis)) == (changed[:9], [])
    assert (await sync.status()).watermark == watermark  # the window is not done yet

    second = await sync.run_once("cli")

    assert not second.capped
    assert second.requests == 1 + 3
    published = await events(redis)
    assert summary(published) == (changed, [])
    assert len(published) == 12
    assert await sync.state.cursor() is None
    # Ids before the cursor were last looked at by the first run, and today goes on: the
    # watermark stays at the start of today so the next run lists today again, in full.
    assert (await sync.status()).watermark == watermark

    third = await sync.run_once("cli")

    assert (third.listed, third.unchanged, third.published_fetched) == (12, 9, 0)
    assert third.capped  # 1 page + 12 details > 10: the cap again, but nothing to publish
    assert len(await events(redis)) == 12


async def test_a_429_storm_slows_the_sync_without_failing_it(
    make_sync: MakeSync, redis: Redis, fake_tmdb: FakeTmdb
) -> None:
    await loaded(make_sync, redis, fake_tmdb)
    # Fewer error retries than some requests will see 429s: Retry-After waits are not errors.
    sync = make_sync(tmdb_options={"max_retries": 1, "concurrency": 8})
    changed = list(range(1011, 1031))
    for tmdb_id in changed:
        fake_tmdb.change_movie(tmdb_id, tagline=f"Tagline {tmdb_id}.")
    fake_tmdb.fail_next(20, 429, params={"append_to_response": "credits,keywords"}, retry_after=0.2)
    started = time.monotonic()

    run = await sync.run_once("cli")

    elapsed = time.monotonic() - started
    assert run.outcome == "succeeded", run.reason
    assert summary(await events(redis)) == (changed, [])
    refused = [r for r in fake_tmdb.requests if r.status == 429]
    assert len(refused) == 20
    assert run.requests == 1 + 20 + 20
    # Each refused request waited out the Retry-After before asking again.
    for refusal in refused:
        later = [r.at for r in fake_tmdb.requests_to(refusal.path) if r.at > refusal.at]
        assert later and min(later) - refusal.at >= 0.2
    assert elapsed >= 0.2


# -- windows ----------------------------------------------------------------------------------


async def test_a_long_absence_is_caught_up_in_14_day_windows(
    make_sync: MakeSync, redis: Redis, fake_tmdb: FakeTmdb
) -> None:
    sync = await loaded(make_sync, redis, fake_tmdb)
    today = utc_today()
    await sync.state.complete_window(
        datetime.combine(today - timedelta(days=20), datetime.min.time(), tzinfo=UTC)
    )
    fake_tmdb.change_movie(1001, overview="Changed 18 days ago.", on=today - timedelta(days=18))
    fake_tmdb.change_movie(1002, overview="Changed 3 days ago.", on=today - timedelta(days=3))
    fake_tmdb.change_movie(1003, overview="Changed today.")

    run = await sync.run_once("cli")

    assert run.outcome == "succeeded", run.reason
    assert summary(await events(redis)) == ([1001, 1002, 1003], [])
    day = lambda n: (today - timedelta(days=n)).isoformat()  # noqa: E731
    assert changes_requests(fake_tmdb) == [(day(20), day(7), "1"), (day(6), day(0), "1")]
    assert (run.window_start, run.window_end) == (today - timedelta(days=20), today)
    assert (await sync.status()).watermark == run.started_at


async def test_a_window_with_too_many_pages_is_halved(
    make_sync: MakeSync, redis: Redis, fake_tmdb: FakeTmdb
) -> None:
    sync = await loaded(make_sync, redis, fake_tmdb)
    sync = make_sync(sync_max_requests=10)  # at most 5 pages of changes per listing
    today = utc_today()
    await sync.state.complete_window(
        datetime.combine(today - timedelta(days=2), datetime.min.time(), tzinfo=UTC)
    )
    for offset, base in ((2, 500_000), (1, 600_000)):
        for i in range(300):  # 3 pages a day; the movies do not exist (nothing to publish)
            fake_tmdb.record_change(base + i, on=today - timedelta(days=offset))

    run = await sync.run_once("cli")

    day = lambda n: (today - timedelta(days=n)).isoformat()  # noqa: E731
    first_pages = [w for w in changes_requests(fake_tmdb) if w[2] == "1"]
    assert first_pages == [(day(2), day(0), "1"), (day(2), day(1), "1"), (day(2), day(2), "1")]
    assert run.capped  # 300 movies do not fit the 10 requests; the next run carries on
    assert await events(redis) == []


async def test_a_window_too_big_for_the_cap_fails_with_what_to_change(
    make_sync: MakeSync, redis: Redis, fake_tmdb: FakeTmdb
) -> None:
    sync = await loaded(make_sync, redis, fake_tmdb)
    sync = make_sync(sync_max_requests=10)
    for i in range(600):
        fake_tmdb.record_change(500_000 + i)

    run = await sync.run_once("cli")

    assert run.outcome == "failed"
    assert "6 pages of changes" in (run.reason or "")
    assert "MARQUEE_INGEST_SYNC_MAX_REQUESTS" in (run.reason or "")


# -- one sync at a time -----------------------------------------------------------------------


async def test_two_instances_started_together_run_one_scheduled_sync(
    make_sync: MakeSync, redis: Redis, fake_tmdb: FakeTmdb
) -> None:
    one, two = make_sync(), make_sync()

    runs = await asyncio.gather(one.run_once("schedule"), two.run_once("schedule"))

    outcomes = sorted(r.outcome for r in runs)
    assert outcomes == ["skipped", "succeeded"]
    assert len(await events(redis)) == 45  # the initial load, once
    assert len(fake_tmdb.requests_to("/movie/popular")) == 3


async def test_two_triggers_at_once_run_one_sync(
    make_sync: MakeSync, redis: Redis, fake_tmdb: FakeTmdb
) -> None:
    await loaded(make_sync, redis, fake_tmdb)
    fake_tmdb.change_movie(1001, overview="Once.")
    # The listing takes a while: both triggers arrive while the first run holds the lock.
    fake_tmdb.stall_next(1, 0.5, path="/movie/changes")
    one, two = make_sync(), make_sync()

    runs: list[SyncRun] = await asyncio.gather(one.run_once("admin"), two.run_once("admin"))

    skipped = [r for r in runs if r.outcome == "skipped"]
    assert len(skipped) == 1
    assert "another instance is syncing" in (skipped[0].reason or "")
    assert summary(await events(redis)) == ([1001], [])
    assert len(fake_tmdb.requests_to("/movie/changes")) == 1


async def test_a_scheduled_sync_another_instance_already_ran_is_skipped(
    make_sync: MakeSync, redis: Redis, fake_tmdb: FakeTmdb
) -> None:
    sync = await loaded(make_sync, redis, fake_tmdb)
    due = (await sync.status()).last_finished_at
    assert due is not None

    run = await make_sync().run_once("schedule", due=due)

    assert run.outcome == "skipped"
    assert "already ran" in (run.reason or "")
    assert fake_tmdb.requests == []


async def test_losing_the_lock_mid_run_stops_before_publishing(
    make_sync: MakeSync, redis: Redis, fake_tmdb: FakeTmdb, monkeypatch: pytest.MonkeyPatch
) -> None:
    sync = await loaded(make_sync, redis, fake_tmdb)
    fake_tmdb.change_movie(1001, overview="Never published by this run.")
    watermark = (await sync.status()).watermark
    unchanged = sync.catalog.unchanged

    async def taken_over(movies: Any) -> set[int]:
        # The lock expired during a long pause and another instance took it.
        await redis.set(sync.keys.lock, "other-instance|token")
        return await unchanged(movies)

    monkeypatch.setattr(sync.catalog, "unchanged", taken_over)

    run = await sync.run_once("cli")

    assert run.outcome == "failed"
    assert "LockLostError" in (run.reason or "")
    assert await events(redis) == []
    assert (await sync.status()).watermark == watermark
    # Our release did not delete the other instance's lock.
    assert await redis.get(sync.keys.lock) == b"other-instance|token"


async def test_status_shows_a_run_in_flight(
    make_sync: MakeSync, redis: Redis, fake_tmdb: FakeTmdb
) -> None:
    sync = await loaded(make_sync, redis, fake_tmdb)
    # A long stall and a generous deadline: on a loaded machine the run may take a while to
    # start, and it must still be in flight when the status is read.
    fake_tmdb.stall_next(1, 3.0, path="/movie/changes")
    task = asyncio.create_task(sync.run_once("admin", run_id="inflight"))
    try:
        status = await sync.status()
        deadline = asyncio.get_running_loop().time() + 10
        while not status.running and asyncio.get_running_loop().time() < deadline:
            await asyncio.sleep(0.01)
            status = await sync.status()
        assert status.running
        assert status.running_on == sync.instance
        assert status.current_run is not None and status.current_run.run_id == "inflight"
    finally:
        run = await task
    assert run.outcome == "succeeded"
    after = await sync.status()
    assert not after.running
    assert after.current_run is None
    assert await redis.hget(sync.keys.sync, SyncState.CURRENT_RUN) is None


async def test_a_sync_whose_instance_crashed_is_taken_over_once_its_lock_expires(
    make_sync: MakeSync, redis: Redis, fake_tmdb: FakeTmdb
) -> None:
    crashed = make_sync()
    crashed_run = SyncRun(
        run_id="crashed", trigger="schedule", instance="gone", started_at=datetime.now(UTC)
    )
    # What a killed instance leaves behind: it started, never finished; its lock expired.
    await crashed.state.set_fields(
        {
            SyncState.LAST_STARTED: crashed_run.started_at,
            SyncState.CURRENT_RUN: crashed_run.model_dump_json(),
        }
    )
    status = await crashed.status()
    assert not status.running
    assert status.current_run is None  # no lock: nobody is running it

    run = await make_sync().run_once("schedule", due=None)

    assert run.outcome == "succeeded", run.reason
    assert len(await events(redis)) == 45
