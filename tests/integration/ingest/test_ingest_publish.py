"""Publishing into a real redis-server: files, the demo catalog, TMDB, deletions."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest
from redis.asyncio import Redis

from marquee_ingest.ingest import (
    DEMO_SOURCE,
    RedisUnavailableError,
    connect_redis,
    delete_movies,
    ingest_demo,
    ingest_file,
    ingest_tmdb,
)
from marquee_ingest.publish import DUPLICATE, publish_deletions, publish_movies
from marquee_ingest.records import InvalidRecord, Record, SkippedRecord
from marquee_ingest.settings import IngestSettings
from marquee_ingest.state import PublishedCatalog
from marquee_ingest.tmdb import TmdbClient, TmdbUnavailableError
from marquee_shared.events import (
    CATALOG_STREAM,
    Movie,
    MovieDeleted,
    MovieFetched,
    decode_event,
)
from tests.fakes.tmdb import FakeTmdb, tmdb_movie
from tests.support.movies import movie as support_movie

pytestmark = pytest.mark.integration


def movie(tmdb_id: int, title: str | None = None) -> Movie:
    return support_movie(tmdb_id, title, overview="A film.")


async def stream_events(redis: Redis, stream: str = CATALOG_STREAM) -> list[object]:
    entries = await redis.xrange(stream)
    return [decode_event(fields) for _, fields in entries]


async def test_movies_land_on_the_stream_as_decodable_events(redis: Redis) -> None:
    records: list[Record] = [
        movie(1),
        InvalidRecord("f.csv:3", "title: Field required"),
        movie(2),
        SkippedRecord("tmdb:9", "not found on TMDB (404)"),
    ]

    summary = await publish_movies(redis, records, source="test")

    events = await stream_events(redis)
    assert all(isinstance(e, MovieFetched) for e in events)
    assert [e.movie.tmdb_id for e in events if isinstance(e, MovieFetched)] == [1, 2]
    assert {e.source for e in events if isinstance(e, MovieFetched)} == {"test"}
    assert summary.published == 2
    assert summary.invalid == [InvalidRecord("f.csv:3", "title: Field required")]
    assert summary.skipped == 1
    assert summary.last_entry_id == (await redis.xrevrange(CATALOG_STREAM, count=1))[0][0].decode()


async def test_duplicate_ids_keep_the_last_record(redis: Redis) -> None:
    records = [movie(1, "First"), movie(2), movie(1, "Second"), movie(1, "Third")]

    summary = await publish_movies(redis, records, source="test")

    events = await stream_events(redis)
    titles = {e.movie.tmdb_id: e.movie.title for e in events if isinstance(e, MovieFetched)}
    assert titles == {1: "Third", 2: "Movie 2"}
    assert summary.published == 2
    assert summary.skipped_reasons == {DUPLICATE: 2}


async def test_large_runs_are_published_in_batches(redis: Redis) -> None:
    summary = await publish_movies(
        redis, (movie(i) for i in range(1, 1201)), source="test", batch_size=500
    )

    assert summary.published == 1200
    assert await redis.xlen(CATALOG_STREAM) == 1200
    first, last = (
        await redis.xrange(CATALOG_STREAM, count=1),
        await redis.xrevrange(CATALOG_STREAM, count=1),
    )
    assert decode_event(first[0][1]).movie.tmdb_id == 1  # type: ignore[union-attr]
    assert decode_event(last[0][1]).movie.tmdb_id == 1200  # type: ignore[union-attr]


async def test_streaming_mode_publishes_what_came_before_a_source_failure(redis: Redis) -> None:
    async def flaky() -> object:
        for i in range(1, 4):
            yield movie(i)
        raise TmdbUnavailableError("TMDB went away")

    with pytest.raises(TmdbUnavailableError):
        await publish_movies(redis, flaky(), source="test", dedupe=False, batch_size=500)  # type: ignore[arg-type]

    assert await redis.xlen(CATALOG_STREAM) == 3


async def test_deletions(redis: Redis) -> None:
    summary = await publish_deletions(redis, [5, 6, 5, 0], source="test")

    events = await stream_events(redis)
    assert [e.tmdb_id for e in events if isinstance(e, MovieDeleted)] == [5, 6]
    assert summary.published == 2
    assert summary.skipped == 1
    assert len(summary.invalid) == 1
    assert "tmdb_id" in summary.invalid[0].reason
    assert summary.event_type == "movie.deleted"


async def test_delete_movies_uses_the_configured_stream(
    redis: Redis, settings: IngestSettings
) -> None:
    custom = settings.model_copy(update={"catalog_stream": "test:catalog"})

    await delete_movies([42], redis, custom)

    assert await redis.xlen("test:catalog") == 1
    assert await redis.xlen(CATALOG_STREAM) == 0


# -- files ------------------------------------------------------------------------------------


def write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


async def test_ingest_jsonl_file(redis: Redis, settings: IngestSettings, tmp_path: Path) -> None:
    good = movie(10).model_dump_json()
    path = write(
        tmp_path / "movies.jsonl", f"{good}\n\n{{not json\n{json.dumps({'tmdb_id': 11})}\n"
    )

    summary = await ingest_file(path, redis, settings)

    assert summary.published == 1
    assert [r.where for r in summary.invalid] == ["movies.jsonl:3", "movies.jsonl:4 (tmdb_id 11)"]
    (event,) = await stream_events(redis)
    assert isinstance(event, MovieFetched)
    assert event.source == "file:movies.jsonl"


async def test_ingest_catalog_csv_with_limit(
    redis: Redis, settings: IngestSettings, tmp_path: Path
) -> None:
    header = "tmdb_id,title,year,release_date,genres,overview,vote_average,vote_count\n"
    rows = "".join(f"{i},Film {i},2001,2001-01-01,Drama,Story {i}.,7.5,10\n" for i in range(1, 6))
    path = write(tmp_path / "catalog.csv", header + rows + "6,,2001,,Drama,No title,7,1\n")

    summary = await ingest_file(path, redis, settings, limit=3)

    assert summary.published == 3
    assert await redis.xlen(CATALOG_STREAM) == 3


async def test_ingest_demo_catalog(redis: Redis, settings: IngestSettings) -> None:
    summary = await ingest_demo(redis, settings)

    assert summary.published >= 100
    assert summary.invalid == []
    events = await stream_events(redis)
    assert len(events) == summary.published
    assert {e.source for e in events if isinstance(e, MovieFetched)} == {DEMO_SOURCE}


@pytest.mark.shared_data
async def test_the_shared_catalog_csv_publishes_whole(
    redis: Redis, settings: IngestSettings, catalog_csv: Path
) -> None:
    summary = await ingest_file(catalog_csv, redis, settings)

    reasons = "\n".join(f"{r.where}: {r.reason}" for r in summary.invalid[:50])
    assert summary.published >= 15_000, reasons
    assert len(summary.invalid) <= 100, reasons  # a handful of bad rows at most, each explained
    assert await redis.xlen(CATALOG_STREAM) == summary.published


# -- TMDB -------------------------------------------------------------------------------------


@pytest.fixture
def tmdb_client(make_tmdb: Callable[..., TmdbClient]) -> TmdbClient:
    return make_tmdb()


async def test_ingest_tmdb_list(
    redis: Redis, settings: IngestSettings, fake_tmdb: FakeTmdb, tmdb_client: TmdbClient
) -> None:
    fake_tmdb.add_movie(tmdb_movie(77, "Broken", vote_average=42))
    fake_tmdb.set_list("popular", [603, 77, 999_999, *range(1001, 1031)])

    summary = await ingest_tmdb(tmdb_client, redis, settings, list_source="popular", pages=2)

    events = await stream_events(redis)
    ids = [e.movie.tmdb_id for e in events if isinstance(e, MovieFetched)]
    assert ids == [603, *range(1001, 1031)]
    assert {e.source for e in events if isinstance(e, MovieFetched)} == {"tmdb"}
    assert summary.published == 31
    assert [r.where for r in summary.invalid] == ["tmdb:77"]
    assert summary.skipped_reasons == {"not found on TMDB (404)": 1}


async def test_ingest_tmdb_ids(
    redis: Redis, settings: IngestSettings, fake_tmdb: FakeTmdb, tmdb_client: TmdbClient
) -> None:
    summary = await ingest_tmdb(tmdb_client, redis, settings, ids=[603, 1001, 603])

    assert summary.published == 2
    assert fake_tmdb.requests_to("/movie/popular") == []


# -- connecting -------------------------------------------------------------------------------


async def test_connect_redis_names_the_url_when_unreachable(unused_redis_url: str) -> None:
    settings = IngestSettings(redis_url=unused_redis_url)

    with pytest.raises(RedisUnavailableError, match=f"cannot reach Redis at {unused_redis_url}"):
        await connect_redis(settings)


async def test_connect_redis_hides_the_password(unused_redis_url: str) -> None:
    url = unused_redis_url.replace("redis://", "redis://user:hunter2@")

    with pytest.raises(RedisUnavailableError) as caught:
        await connect_redis(IngestSettings(redis_url=url))
    assert "hunter2" not in str(caught.value)
    assert "user:***@" in str(caught.value)


# -- the record of what ingest published (catalog size in /v1/stats) ---------------------------


async def test_publishing_records_content_hashes_and_deleting_forgets_them(
    redis: Redis, redis_url: str
) -> None:
    settings = IngestSettings(redis_url=redis_url)
    catalog = PublishedCatalog.for_stream(redis, CATALOG_STREAM)

    summary = await ingest_demo(redis, settings)

    assert await catalog.size() == summary.published == await redis.xlen(CATALOG_STREAM)
    assert len(await redis.hget(catalog.key, "603")) == 32  # a content hash

    await delete_movies([603, 424242], redis, settings)

    assert await catalog.size() == summary.published - 1
    assert await catalog.known([603, 578]) == {578}
