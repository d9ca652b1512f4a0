"""One function per kind of run: a file, the bundled demo catalog, TMDB, deletions.

These are the Python API of the service (the CLI is a thin shell around them): each takes a
connected ``redis.asyncio.Redis`` and the settings, publishes, and returns a ``Summary``.
"""

from __future__ import annotations

import importlib.resources
from datetime import UTC, datetime
from itertools import islice
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlsplit, urlunsplit

import structlog
from redis.asyncio import Redis
from redis.exceptions import RedisError

from marquee_ingest.publish import Progress, Summary, publish_deletions, publish_movies
from marquee_ingest.records import Repair
from marquee_ingest.sources import FormatChoice, read_records
from marquee_ingest.state import PublishedCatalog

if TYPE_CHECKING:
    from collections.abc import Iterable, Sequence

    from marquee_ingest.settings import IngestSettings
    from marquee_ingest.tmdb import ListSource, TmdbClient

log = structlog.get_logger(__name__)

DEMO_CATALOG = "demo_catalog.jsonl"
DEMO_SOURCE = "demo"
DEMO_SNAPSHOT_AT = datetime(2023, 1, 1, tzinfo=UTC)
"""When the demo catalog's figures stand (after its newest film, 2022-05-24): the
``occurred_at`` of every demo event. Fixed, never the time of publishing, so however often
`make run` publishes the demo again, it never replaces a movie's newer version (a catalog file,
TMDB, the gateway) nor brings back a movie deleted since: the embedders keep the newest."""
TMDB_SOURCE = "tmdb"


class RedisUnavailableError(ConnectionError):
    """Redis did not answer; the message names the (password-redacted) URL."""


def redact_url(url: str) -> str:
    """The URL without its password, for messages and logs."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.rsplit("@", 1)[1]
    user = parts.username or ""
    return urlunsplit(parts._replace(netloc=f"{user}:***@{netloc}"))


async def connect_redis(settings: IngestSettings) -> Redis:
    """A client for ``settings.redis_url`` that has answered PING; RedisUnavailableError if not.

    Checked up front so an unreachable Redis fails in a second with one clear line, instead of
    after a TMDB fetch of several minutes.
    """
    url = str(settings.redis_url)
    redis = Redis.from_url(url, socket_connect_timeout=5, socket_timeout=30)
    try:
        await redis.ping()
    except (RedisError, OSError) as exc:
        await redis.aclose()
        raise RedisUnavailableError(f"cannot reach Redis at {redact_url(url)}: {exc}") from exc
    return redis


async def ingest_file(
    path: Path | str,
    redis: Redis,
    settings: IngestSettings,
    *,
    fmt: FormatChoice = "auto",
    limit: int | None = None,
    source: str | None = None,
    progress: Progress | None = None,
    request_id: str | None = None,
    occurred_at: datetime | None = None,
) -> Summary:
    """Publish a catalog file (JSONL, catalog CSV or TMDB 5000 CSV; see ``sources``).

    ``limit`` reads only the first N records (valid or not). Raises ``SourceFormatError`` before
    publishing anything when the file's format is unknown or its header is wrong.
    ``request_id`` (the run's id; every function here takes it) goes on each stream entry.
    ``occurred_at`` dates every event (default: now; see ``publish_movies``).
    """
    path = Path(path)
    repairs: list[Repair] = []
    records = read_records(path, fmt, repairs=repairs)
    if limit is not None:
        records = islice(records, limit)
    label = source or f"file:{path.name}"
    with structlog.contextvars.bound_contextvars(source=label):
        summary = await publish_movies(
            redis,
            records,
            source=label,
            stream=settings.catalog_stream,
            batch_size=settings.publish_batch_size,
            progress=progress,
            catalog=PublishedCatalog.for_stream(redis, settings.catalog_stream),
            max_backlog=settings.max_backlog,
            request_id=request_id,
            occurred_at=occurred_at,
        )
        summary.repaired = repairs
        _log_summary(summary)
    return summary


async def ingest_demo(
    redis: Redis,
    settings: IngestSettings,
    *,
    limit: int | None = None,
    progress: Progress | None = None,
    request_id: str | None = None,
) -> Summary:
    """Publish the demo catalog bundled with the package (``data/demo_catalog.jsonl``), dated
    ``DEMO_SNAPSHOT_AT``: it fills an empty index and never overwrites newer data."""
    resource = importlib.resources.files("marquee_ingest").joinpath("data", DEMO_CATALOG)
    # as_file: a real path even when the package is installed zipped.
    with importlib.resources.as_file(resource) as path:
        if not path.is_file():
            raise FileNotFoundError(f"the demo catalog is missing from the package: {path}")
        return await ingest_file(
            path,
            redis,
            settings,
            fmt="jsonl",
            limit=limit,
            source=DEMO_SOURCE,
            progress=progress,
            request_id=request_id,
            occurred_at=DEMO_SNAPSHOT_AT,
        )


async def ingest_tmdb(
    tmdb: TmdbClient,
    redis: Redis,
    settings: IngestSettings,
    *,
    ids: Sequence[int] | None = None,
    list_source: ListSource = "popular",
    pages: int = 1,
    progress: Progress | None = None,
    request_id: str | None = None,
) -> Summary:
    """Fetch movies from TMDB and publish them as they arrive.

    ``ids`` fetches exactly those movies; otherwise the ids come from ``pages`` pages of the
    ``list_source`` list. Movies TMDB no longer has (404) are counted as skipped.
    """
    with structlog.contextvars.bound_contextvars(source=TMDB_SOURCE):
        if ids is None:
            ids = await tmdb.list_movie_ids(list_source, pages)
        else:
            ids = list(dict.fromkeys(ids))  # the order given, each id once
        if progress is not None:
            progress.reset(total=len(ids))
        log.info("tmdb_fetch_started", movies=len(ids))
        summary = await publish_movies(
            redis,
            tmdb.fetch_movies(ids),
            source=TMDB_SOURCE,
            stream=settings.catalog_stream,
            batch_size=settings.publish_batch_size,
            dedupe=False,  # ids are unique already; publish while fetching
            progress=progress,
            catalog=PublishedCatalog.for_stream(redis, settings.catalog_stream),
            max_backlog=settings.max_backlog,
            request_id=request_id,
        )
        _log_summary(summary)
    return summary


async def delete_movies(
    ids: Iterable[int], redis: Redis, settings: IngestSettings, *, request_id: str | None = None
) -> Summary:
    """Publish a ``MovieDeleted`` per id."""
    summary = await publish_deletions(
        redis,
        ids,
        source="ingest",
        stream=settings.catalog_stream,
        batch_size=settings.publish_batch_size,
        catalog=PublishedCatalog.for_stream(redis, settings.catalog_stream),
        max_backlog=settings.max_backlog,
        request_id=request_id,
    )
    _log_summary(summary)
    return summary


def _log_summary(summary: Summary) -> None:
    # One canonical line per run, the numbers a dashboard or a grep needs.
    log.info(
        "ingest_finished",
        source=summary.source,
        stream=summary.stream,
        published=summary.published,
        skipped=summary.skipped,
        invalid=len(summary.invalid),
        repaired_fields=summary.repaired_fields,
        elapsed_s=round(summary.elapsed, 3),
        last_entry_id=summary.last_entry_id,
    )
