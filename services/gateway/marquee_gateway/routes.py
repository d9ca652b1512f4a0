"""The public ``/v1`` API. Handlers validate, forward and relay; no business logic here."""

from __future__ import annotations

from typing import Annotated, Any

import structlog
from fastapi import APIRouter, Depends, HTTPException, Query, Response
from pydantic import BaseModel, Field
from redis.exceptions import RedisError

from marquee_gateway.backends import BackendUnavailableError, query_pairs, relay
from marquee_gateway.deps import RedisDep, SearchBackend, SettingsDep, require_api_key
from marquee_gateway.limits import query_within_cap
from marquee_shared.api import (
    ErrorResponse,
    MovieDetail,
    SearchParams,
    SearchResponse,
    SimilarParams,
    SimilarResponse,
)
from marquee_shared.events import (
    EVENT_FIELD,
    MAX_EVENT_BYTES,
    CatalogEvent,
    MovieDeleted,
    MovieFetched,
    encode_event,
)
from marquee_shared.httpapi import TmdbIdPath
from marquee_shared.jsonbody import StrictJSONRoute
from marquee_shared.streams import publish_events, stream_backlog

log = structlog.get_logger(__name__)
router = APIRouter(prefix="/v1", route_class=StrictJSONRoute)

UNAVAILABLE: dict[int | str, dict[str, Any]] = {
    503: {"model": ErrorResponse, "description": "A backend service is down; retry later."}
}
NOT_FOUND: dict[int | str, dict[str, Any]] = {
    404: {"model": ErrorResponse, "description": "The movie is not in the catalog."}
}


BACKLOG_RETRY_AFTER_S = 10
"""Long enough for the embedders to apply a few hundred events (each replica does 15-30 a
second on two cores, docs/operations.md), short enough that a paused publisher resumes soon."""


def _check_event_sizes(events: list[MovieFetched | MovieDeleted]) -> None:
    """Each event must fit the stream's per-entry limit once encoded (embedders dead-letter
    larger entries), so refuse it here, naming it, rather than accept it to be parked later.

    Encoding twice (here and when publishing) costs well under a millisecond per event, and
    keeps publish_events the one write path every publisher shares."""
    for index, event in enumerate(events):
        size = len(encode_event(event)[EVENT_FIELD].encode())
        if size > MAX_EVENT_BYTES:
            raise HTTPException(
                422,
                [
                    {
                        "type": "value_error",
                        "loc": ["body", "events", index],
                        "msg": f"event is {size} bytes once encoded, above the "
                        f"{MAX_EVENT_BYTES}-byte limit per event",
                        "input": None,
                    }
                ],
            )


@router.get(
    "/search",
    response_model=SearchResponse,
    responses=UNAVAILABLE,
    summary="Search movies in natural language",
    description="Describe a plot, a mood, a title or a name, in a few words or a long "
    "paragraph; filters narrow the results. "
    "Example: `/v1/search?q=a shark terrorizes a beach town&k=5&year_max=1990`.",
    # q's cap is a setting (MARQUEE_GATEWAY_MAX_QUERY_CHARS), checked here, not in the model.
    dependencies=[Depends(query_within_cap)],
)
async def search(params: Annotated[SearchParams, Query()], backend: SearchBackend) -> Response:
    return relay(await backend.get("/search", query_pairs(params)))


@router.get(
    "/movies/{tmdb_id}",
    response_model=MovieDetail,
    responses={**NOT_FOUND, **UNAVAILABLE},
    summary="One movie by TMDB id",
)
async def get_movie(tmdb_id: TmdbIdPath, backend: SearchBackend) -> Response:
    return relay(await backend.get(f"/movies/{tmdb_id}"))


@router.get(
    "/movies/{tmdb_id}/similar",
    response_model=SimilarResponse,
    responses={**NOT_FOUND, **UNAVAILABLE},
    summary="Movies similar to one movie",
)
async def similar(
    tmdb_id: TmdbIdPath,
    params: Annotated[SimilarParams, Query()],
    backend: SearchBackend,
) -> Response:
    return relay(await backend.get(f"/movies/{tmdb_id}/similar", query_pairs(params)))


class CatalogEventsRequest(BaseModel):
    events: list[CatalogEvent] = Field(
        min_length=1,
        max_length=10_000,
        description="movie.fetched / movie.deleted events (docs/events.md).",
    )


class CatalogEventsAccepted(BaseModel):
    accepted: int
    stream: str
    entry_ids: list[str]


@router.post(
    "/catalog/events",
    status_code=202,
    response_model=CatalogEventsAccepted,
    dependencies=[Depends(require_api_key)],
    responses={
        401: {"model": ErrorResponse, "description": "No X-API-Key header."},
        403: {"model": ErrorResponse, "description": "Unknown API key."},
        413: {"model": ErrorResponse, "description": "Too many events in one request."},
        429: {
            "model": ErrorResponse,
            "description": "The embedders are too far behind (backlog at MARQUEE_MAX_BACKLOG), "
            "or this client's rate limit is spent: retry after Retry-After seconds.",
        },
        **UNAVAILABLE,
    },
    summary="Publish catalog events (needs an API key)",
    description="Validates every event against the public contract, then publishes them in "
    "order onto the catalog stream. All or nothing: one invalid event rejects the request "
    "(422, naming the event index and field).",
)
async def publish_catalog_events(
    body: CatalogEventsRequest,
    settings: SettingsDep,
    redis: RedisDep,
) -> CatalogEventsAccepted:
    if len(body.events) > settings.max_events_per_request:
        raise HTTPException(
            413, f"at most {settings.max_events_per_request} events per request; split the batch"
        )
    events: list[MovieFetched | MovieDeleted] = list(body.events)
    _check_event_sizes(events)
    try:
        backlog = await stream_backlog(redis, settings.catalog_stream, cap=settings.max_backlog)
        if backlog >= settings.max_backlog:
            # Backpressure: the stream is trimmed only below what the embedders acknowledged,
            # so accepting more while they lag would grow Redis without bound.
            log.warning("catalog_backlog_full", backlog=backlog, limit=settings.max_backlog)
            raise HTTPException(
                429,
                f"the catalog backlog is full ({backlog} events waiting, limit "
                f"{settings.max_backlog}); retry later",
                {"Retry-After": str(BACKLOG_RETRY_AFTER_S)},
            )
        entry_ids = await publish_events(
            redis,
            events,
            stream=settings.catalog_stream,
            request_id=structlog.contextvars.get_contextvars().get("request_id"),
        )
    except (RedisError, OSError) as exc:
        raise BackendUnavailableError("redis", str(exc)) from exc
    log.info("catalog_events_published", count=len(entry_ids))
    return CatalogEventsAccepted(
        accepted=len(entry_ids), stream=settings.catalog_stream, entry_ids=entry_ids
    )
