"""The TMDB sync's admin endpoints (API key), relayed to the ingest service, and ``/v1/stats``.

The sync's models (``SyncStatus``, ``SyncStarted``) are the ingest service's own, from
``marquee_shared.api``.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Any

import structlog
from fastapi import APIRouter, Depends, Response
from pydantic import AwareDatetime, BaseModel, Field, ValidationError
from redis.asyncio import Redis
from redis.exceptions import RedisError

from marquee_gateway.backends import Backend, BackendUnavailableError
from marquee_gateway.deps import (
    IngestBackend,
    RedisDep,
    SearchBackend,
    SettingsDep,
    require_api_key,
)
from marquee_shared.api import ErrorResponse, SyncStarted, SyncStatus
from marquee_shared.events import DEAD_LETTER_STREAM
from marquee_shared.jsonbody import StrictJSONRoute
from marquee_shared.migration import MigrationStatus, read_status
from marquee_shared.streams import group_backlogs

log = structlog.get_logger(__name__)
router = APIRouter(prefix="/v1", route_class=StrictJSONRoute)

EMBEDDER_GROUP = "embedders"
"""The embedders' consumer group (their MARQUEE_EMBEDDER_GROUP default)."""

ADMIN_ERRORS: dict[int | str, dict[str, Any]] = {
    401: {"model": ErrorResponse, "description": "No X-API-Key header."},
    403: {"model": ErrorResponse, "description": "Unknown API key."},
    503: {"model": ErrorResponse, "description": "The ingest service is unavailable."},
}


# -- stats ------------------------------------------------------------------------------------


class StreamStats(BaseModel):
    name: str = Field(examples=["marquee:catalog:v1"])
    length: int | None = Field(description="Entries on the stream (it is trimmed once applied).")
    backlog: int | None = Field(
        description="Events published but not yet applied by the embedders: the group's "
        "pending entries plus the entries after its last-delivered id, counted.",
        examples=[0],
    )
    lag: int | None = Field(
        description="Redis's own estimate of the entries not yet delivered (XINFO GROUPS lag), "
        "as a hint: it drifts after trims and restarts (redis/redis#12898), so backlog does "
        "not use it. Null when Redis cannot tell."
    )
    pending: int | None = Field(description="Delivered, not yet acknowledged.")
    dead_letters: int | None = Field(description="Entries parked as unprocessable.")


class CatalogStats(BaseModel):
    """Is the system keeping up? Every part is measured on its own; a part that cannot be
    reached is null and named in ``unavailable``."""

    catalog_size: int | None = Field(
        description="Live movies ingest has published (and not deleted since).", examples=[418]
    )
    embedded: int | None = Field(description="Movies in the search index.", examples=[418])
    model: str | None = Field(
        description="The embedding model the search index was built with and search serves: "
        "name@version+the first 12 hex digits of its files' sha256.",
        examples=["all-MiniLM-L6-v2@0.1.0+9e9ef2af17f8"],
    )
    coverage_percent: float | None = Field(
        description="embedded / catalog_size, in percent (null while the catalog is empty). "
        "Above 100 when the index holds movies published by others (the public events API).",
        examples=[100.0],
    )
    stream: StreamStats
    last_sync_at: AwareDatetime | None = Field(
        description="When the last successful TMDB sync finished."
    )
    freshness_seconds: float | None = Field(
        description="Age of the last successful sync: how stale the catalog may be.",
        examples=[312.5],
    )
    sync_running: bool | None
    last_sync_outcome: str | None = Field(examples=["succeeded"])
    last_sync_error: str | None
    migration: MigrationStatus | None = Field(
        default=None,
        description="A model migration's progress (marquee-embedder migrate), while one runs.",
    )
    unavailable: dict[str, str] = Field(
        default_factory=dict, description="Parts that could not be measured, and why."
    )


# -- dependencies -----------------------------------------------------------------------------


def _relay(backend: Backend, status: int, body: bytes, *, ok: set[int]) -> Response:
    if status not in ok:
        # 401 here means the gateway and ingest disagree on MARQUEE_INTERNAL_TOKEN: a
        # deployment fault the caller cannot fix, so not relayed as the caller's 401.
        raise BackendUnavailableError(backend.name, f"it answered HTTP {status}")
    return Response(content=body, status_code=status, media_type="application/json")


# -- routes -----------------------------------------------------------------------------------


@router.post(
    "/admin/sync",
    status_code=202,
    tags=["admin"],
    response_model=SyncStarted,
    dependencies=[Depends(require_api_key)],
    responses={
        **ADMIN_ERRORS,
        409: {
            "model": ErrorResponse,
            "description": "A sync is running already, or the ingest service has no TMDB "
            "credentials.",
        },
    },
    summary="Start a TMDB sync now (needs an API key)",
    description="The ingest service starts an incremental sync in the background (the "
    "initial load if none ever ran). Follow it with GET /v1/admin/sync.",
)
async def start_sync(ingest: IngestBackend) -> Response:
    resp = await ingest.post("/admin/sync", json={})
    return _relay(ingest, resp.status, resp.body, ok={202, 409})


@router.get(
    "/admin/sync",
    tags=["admin"],
    response_model=SyncStatus,
    dependencies=[Depends(require_api_key)],
    responses=ADMIN_ERRORS,
    summary="Where the TMDB sync stands (needs an API key)",
    description="Running or not (and where), the watermark, the last success and error, and "
    "the counts of the last run (or of the one in flight).",
)
async def sync_status(ingest: IngestBackend) -> Response:
    resp = await ingest.get("/admin/sync")
    return _relay(ingest, resp.status, resp.body, ok={200})


@router.get(
    "/stats",
    tags=["stats"],
    summary="Catalog coverage and freshness",
    description="Catalog size, movies embedded, coverage, stream backlog, dead letters and "
    "the last sync's time and age: whether the system is keeping up, at a glance.",
)
async def stats(
    settings: SettingsDep, ingest: IngestBackend, search: SearchBackend, redis: RedisDep
) -> CatalogStats:
    unavailable: dict[str, str] = {}
    sync, index, stream, migrating = await asyncio.gather(
        _sync_status(ingest, unavailable),
        _index_stats(search, unavailable),
        _stream_stats(redis, settings.catalog_stream, unavailable),
        _migration(redis, settings.chroma_collection, unavailable),
    )
    embedded = index.movies if index else None
    catalog_size = sync.catalog_size if sync else None
    coverage = (
        round(100.0 * embedded / catalog_size, 2) if embedded is not None and catalog_size else None
    )
    last_success = sync.last_success_at if sync else None
    freshness = (
        round((datetime.now(UTC) - last_success).total_seconds(), 3) if last_success else None
    )
    last_run = sync.last_run if sync else None
    return CatalogStats(
        catalog_size=catalog_size,
        embedded=embedded,
        model=index.model if index else None,
        coverage_percent=coverage,
        stream=stream,
        last_sync_at=last_success,
        freshness_seconds=freshness,
        sync_running=sync.running if sync else None,
        last_sync_outcome=last_run.outcome if last_run else None,
        last_sync_error=last_run.reason if last_run and last_run.outcome == "failed" else None,
        migration=migrating,
        unavailable=unavailable,
    )


async def _sync_status(ingest: Backend, unavailable: dict[str, str]) -> SyncStatus | None:
    try:
        resp = await ingest.get("/admin/sync")
        if resp.status != 200:
            unavailable["ingest"] = f"it answered HTTP {resp.status}"
            return None
        return SyncStatus.model_validate_json(resp.body)
    except (BackendUnavailableError, ValidationError) as exc:
        unavailable["ingest"] = str(exc)[:300]
        return None


async def _index_stats(search: Backend, unavailable: dict[str, str]) -> _IndexStats | None:
    try:
        resp = await search.get("/stats")
        if resp.status != 200:
            unavailable["search"] = f"it answered HTTP {resp.status}"
            return None
        return _IndexStats.model_validate_json(resp.body)
    except (BackendUnavailableError, ValidationError) as exc:
        unavailable["search"] = str(exc)[:300]
        return None


class _IndexStats(BaseModel):
    movies: int
    model: str | None = None


async def _migration(
    redis: Redis, logical: str, unavailable: dict[str, str]
) -> MigrationStatus | None:
    try:
        return await read_status(redis, logical)
    except (RedisError, OSError) as exc:
        unavailable["redis"] = str(exc)[:300]
        return None


async def _stream_stats(redis: Redis, stream: str, unavailable: dict[str, str]) -> StreamStats:
    try:
        async with redis.pipeline(transaction=False) as pipe:
            pipe.exists(stream)
            pipe.xlen(stream)
            pipe.xlen(DEAD_LETTER_STREAM)
            exists, length, dead = await pipe.execute()
        groups = await group_backlogs(redis, stream) if exists else []
    except (RedisError, OSError) as exc:
        unavailable["redis"] = str(exc)[:300]
        return StreamStats(
            name=stream, length=None, backlog=None, lag=None, pending=None, dead_letters=None
        )
    group = next((g for g in groups if g.group == EMBEDDER_GROUP), None)
    lag: int | None
    if group is None:
        # No embedder has joined yet: everything on the stream is still to be applied.
        backlog, lag, pending = int(length), int(length), 0
    else:
        backlog, lag, pending = group.backlog, group.lag_hint, group.pending
    return StreamStats(
        name=stream,
        length=int(length),
        backlog=backlog,
        lag=lag,
        pending=pending,
        dead_letters=int(dead),
    )
