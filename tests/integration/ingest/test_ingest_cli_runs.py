"""``marquee-ingest`` as a user runs it: a separate process, real Redis, the fake TMDB.

A subprocess, not ``main()`` in the test process: the CLI configures logging for the whole
process, which must not leak into other tests.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from redis.asyncio import Redis

from marquee_shared.events import CATALOG_STREAM, MovieDeleted, decode_event
from tests.fakes.tmdb import FakeTmdb
from tests.support.ingest import run_cli

pytestmark = pytest.mark.integration


@pytest.fixture
def jsonl(tmp_path: Path) -> Path:
    lines = [
        json.dumps({"tmdb_id": 1, "title": "One", "overview": "First."}),
        json.dumps({"tmdb_id": 2, "title": "Two", "vote_average": 42}),
        json.dumps({"tmdb_id": 3, "title": "Three"}),
    ]
    path = tmp_path / "movies.jsonl"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


async def test_file_prints_a_summary(redis: Redis, redis_url: str, jsonl: Path) -> None:
    result = run_cli("file", str(jsonl), MARQUEE_REDIS_URL=redis_url)

    assert result.returncode == 0, result.stderr
    assert "published 2 movie.fetched events to marquee:catalog:v1" in result.stdout
    assert "invalid   1" in result.stdout
    assert "movies.jsonl:2 (tmdb_id 2): vote_average: Input should be less than" in result.stdout
    assert await redis.xlen(CATALOG_STREAM) == 2
    # Logs go to stderr, one JSON object per line (not a TTY), with the run's bound ids.
    finished = [
        json.loads(line) for line in result.stderr.splitlines() if "ingest_finished" in line
    ]
    assert finished[0]["published"] == 2
    assert finished[0]["run_id"]


async def test_file_json_summary(redis: Redis, redis_url: str, jsonl: Path) -> None:
    result = run_cli("file", str(jsonl), "--json", "--limit", "1", MARQUEE_REDIS_URL=redis_url)

    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout)
    assert summary["published"] == 1
    assert summary["invalid"] == 0
    assert summary["stream"] == CATALOG_STREAM
    assert summary["last_entry_id"]


async def test_file_repairs_mojibake_and_counts_it(
    redis: Redis, redis_url: str, tmp_path: Path
) -> None:
    # A Kaggle-style row: UTF-8 read as cp1252 ("BjÃ¶rk"), curly quotes that are fine as they are.
    row = {
        "tmdb_id": 16,
        "title": "Dancer in the Dark",
        "overview": "Selmaâ€™s eyesight fails; she hides it from everyone.",
        "tagline": "Selma\u2019s “last” song.",
        "cast": ["BjÃ¶rk", "Catherine Deneuve"],
    }
    path = tmp_path / "kaggle.jsonl"
    path.write_text(json.dumps(row, ensure_ascii=False) + "\n", encoding="utf-8")

    text = run_cli("file", str(path), MARQUEE_REDIS_URL=redis_url)
    assert text.returncode == 0, text.stderr
    assert "repaired  2 fields in 1 records" in text.stdout
    assert "kaggle.jsonl:1 (tmdb_id 16): overview, cast" in text.stdout
    as_json = json.loads(run_cli("file", str(path), "--json", MARQUEE_REDIS_URL=redis_url).stdout)
    assert as_json["repaired_fields"] == 2
    assert as_json["repaired_records"] == [
        {"where": "kaggle.jsonl:1 (tmdb_id 16)", "fields": ["overview", "cast"]}
    ]

    (_, fields), *_ = await redis.xrange(CATALOG_STREAM)
    movie = decode_event(fields).movie  # type: ignore[union-attr]
    assert movie.cast == ["Björk", "Catherine Deneuve"]
    assert movie.overview == "Selma\u2019s eyesight fails; she hides it from everyone."
    assert movie.tagline == row["tagline"]  # curly quotes kept


async def test_demo(redis: Redis, redis_url: str) -> None:
    result = run_cli("demo", "--json", MARQUEE_REDIS_URL=redis_url)

    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["published"] == await redis.xlen(CATALOG_STREAM) > 0


async def test_delete(redis: Redis, redis_url: str) -> None:
    result = run_cli("delete", "603", "604", "--json", MARQUEE_REDIS_URL=redis_url)

    assert result.returncode == 0, result.stderr
    entries = await redis.xrange(CATALOG_STREAM)
    events = [decode_event(fields) for _, fields in entries]
    assert [e.tmdb_id for e in events if isinstance(e, MovieDeleted)] == [603, 604]


async def test_tmdb(redis: Redis, redis_url: str, fake_tmdb: FakeTmdb) -> None:
    result = run_cli(
        "tmdb",
        "--list",
        "top_rated",
        "--pages",
        "1",
        "--json",
        MARQUEE_REDIS_URL=redis_url,
        TMDB_READ_TOKEN=fake_tmdb.read_token,
        MARQUEE_INGEST_TMDB_BASE_URL=fake_tmdb.url,
        MARQUEE_INGEST_TMDB_RATE_PER_SECOND="500",
    )

    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["published"] == 20
    assert await redis.xlen(CATALOG_STREAM) == 20


def test_unreachable_redis_exits_1(unused_redis_url: str, jsonl: Path) -> None:
    result = run_cli("file", str(jsonl), MARQUEE_REDIS_URL=unused_redis_url)

    assert result.returncode == 1
    assert f"marquee-ingest: cannot reach Redis at {unused_redis_url}: " in result.stderr
    assert result.stdout == ""


def test_tmdb_failing_exits_1(redis_url: str, fake_tmdb: FakeTmdb) -> None:
    fake_tmdb.fail_next(100, 503)

    result = run_cli(
        "tmdb",
        "--ids",
        "603",
        MARQUEE_REDIS_URL=redis_url,
        TMDB_API_KEY=fake_tmdb.api_key,
        MARQUEE_INGEST_TMDB_BASE_URL=fake_tmdb.url,
        MARQUEE_INGEST_TMDB_MAX_RETRIES="1",
    )

    assert result.returncode == 1
    assert "marquee-ingest: TMDB GET /movie/603 failed after 2 attempts" in result.stderr


def test_tmdb_wrong_key_exits_1(redis_url: str, fake_tmdb: FakeTmdb) -> None:
    result = run_cli(
        "tmdb",
        MARQUEE_REDIS_URL=redis_url,
        TMDB_API_KEY="wrong",
        MARQUEE_INGEST_TMDB_BASE_URL=fake_tmdb.url,
    )

    assert result.returncode == 1
    assert "TMDB refused the credentials (401): Invalid API key" in result.stderr


# -- sync -------------------------------------------------------------------------------------


def sync_env(redis_url: str, fake_tmdb: FakeTmdb) -> dict[str, str]:
    return {
        "MARQUEE_REDIS_URL": redis_url,
        "TMDB_API_KEY": fake_tmdb.api_key,
        "MARQUEE_INGEST_TMDB_BASE_URL": fake_tmdb.url,
        "MARQUEE_INGEST_TMDB_RATE_PER_SECOND": "500",
        "MARQUEE_INGEST_SYNC_INITIAL_PAGES": "1",
    }


async def test_sync_runs_one_sync_and_status_shows_it(
    redis: Redis, redis_url: str, fake_tmdb: FakeTmdb
) -> None:
    ran = run_cli("sync", "--now", "--status", **sync_env(redis_url, fake_tmdb))

    assert ran.returncode == 0, ran.stderr
    assert "initial run; 21 TMDB requests" in ran.stdout
    assert "published 20 movie.fetched, 0 movie.deleted" in ran.stdout
    assert "running        no" in ran.stdout
    assert "catalog        20 movies published by ingest" in ran.stdout
    assert await redis.xlen(CATALOG_STREAM) == 20

    # --status alone needs no TMDB key: it only reads Redis.
    status = run_cli("sync", "--status", "--json", MARQUEE_REDIS_URL=redis_url)

    assert status.returncode == 0, status.stderr
    shown = json.loads(status.stdout)
    assert shown["run"] is None
    assert shown["status"]["last_run"]["trigger"] == "cli"
    assert shown["status"]["last_run"]["published_fetched"] == 20
    assert shown["status"]["last_success_at"] is not None


async def test_sync_while_another_instance_syncs_exits_3(
    redis: Redis, redis_url: str, fake_tmdb: FakeTmdb
) -> None:
    await redis.set("marquee:catalog:v1:ingest:sync:lock", "ingest-7|token", px=30_000)

    result = run_cli("sync", **sync_env(redis_url, fake_tmdb))

    assert result.returncode == 3
    assert "another instance is syncing (ingest-7)" in result.stderr
    assert fake_tmdb.requests == []


async def test_sync_with_tmdb_down_exits_1_and_records_the_error(
    redis: Redis, redis_url: str, fake_tmdb: FakeTmdb
) -> None:
    fake_tmdb.fail_next(100, 503)

    result = run_cli(
        "sync", "--json", **sync_env(redis_url, fake_tmdb), MARQUEE_INGEST_TMDB_MAX_RETRIES="1"
    )

    assert result.returncode == 1
    assert "the sync failed: TmdbUnavailableError" in result.stderr
    assert json.loads(result.stdout)["run"]["outcome"] == "failed"
    error = await redis.hget("marquee:catalog:v1:ingest:sync", "last_error")
    assert error is not None and error.startswith(b"TmdbUnavailableError")
