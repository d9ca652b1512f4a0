"""The public ``/v1`` API. Handlers validate, forward and relay; no business logic here."""

from __future__ import annotations

import hmac
from typing import Annotated, Any

import structlog
from fastapi import APIRouter, Depends, Header, HTTPException, Path, Query, Request, Response
from pydantic import BaseModel, Field
from redis.asyncio import Redis
from redis.exceptions import RedisError

from marquee_gateway.backends import Backend, BackendResponse, BackendUnavailableError
from marquee_gateway.settings import GatewaySettings
from marquee_shared.api import (
    ErrorResponse,
    MovieDetail,
    SearchParams,
    SearchResponse,
    SimilarParams,
    SimilarResponse,
)
from marquee_shared.events import CatalogEvent, MovieDeleted, MovieFetched
from marquee_shared.requests import REQUEST_ID_HEADER
from marquee_shared.streams import publish_events

log = structlog.get_logger(__name__)
router = APIRouter(prefix="/v1")

TmdbIdPath = Annotated[int, Path(gt=0, lt=2**31, description="TMDB movie id", examples=[578])]

UNAVAILABLE: dict[int | str, dict[str, Any]] = {
    503: {"model": ErrorResponse, "description": "A backend service is down; retry later."}
}
NOT_FOUND: dict[int | str, dict[str, Any]] = {
    404: {"model": ErrorResponse, "description": "The movie is not in the catalog."}
}


def _search(request: Request) -> Backend:
    backend: Backend = request.app.state.search
    return backend


def _settings(request: Request) -> GatewaySettings:
    settings: GatewaySettings = request.app.state.settings
    return settings


def _redis(request: Request) -> Redis:
    redis: Redis = request.app.state.redis
    return redis


SearchBackend = Annotated[Backend, Depends(_search)]


def require_api_key(
    settings: Annotated[GatewaySettings, Depends(_settings)],
    x_api_key: Annotated[
        str | None, Header(description="A key from MARQUEE_GATEWAY_API_KEYS.")
    ] = None,
) -> None:
    """Writing endpoints need a configured key (compared in constant time, never logged)."""
    if not x_api_key:
        raise HTTPException(401, "missing X-API-Key header", {"WWW-Authenticate": "ApiKey"})
    supplied = x_api_key.encode()
    # Compare against every key (no early exit) so timing does not reveal which one matched.
    matches = [
        hmac.compare_digest(supplied, k.get_secret_value().encode()) for k in settings.api_keys
    ]
    if not any(matches):
        raise HTTPException(403, "invalid API key")


def _forward(resp: BackendResponse) -> Response:
    # Relay the backend's JSON bytes as-is: re-validating and re-serialising every result list
    # would double the hop's CPU cost for no gain (the backend validated it).
    return Response(content=resp.body, status_code=resp.status, media_type="application/json")


def _params(model: BaseModel) -> list[tuple[str, str]]:
    pairs: list[tuple[str, str]] = []
    for key, value in model.model_dump(exclude_none=True).items():
        if isinstance(value, list):
            pairs.extend((key, str(v)) for v in value)
        else:
            pairs.append((key, str(value)))
    return pairs


def _trace_headers(request: Request) -> dict[str, str]:
    rid = request.headers.get(REQUEST_ID_HEADER)
    return {REQUEST_ID_HEADER: rid} if rid else {}


@router.get(
    "/search",
    response_model=SearchResponse,
    responses=UNAVAILABLE,
    summary="Search movies in natural language",
    description="Describe a plot, a mood, a title or a name; filters narrow the results. "
    "Example: `/v1/search?q=a shark terrorizes a beach town&k=5&year_max=1990`.",
)
async def search(
    request: Request, params: Annotated[SearchParams, Query()], backend: SearchBackend
) -> Response:
    return _forward(await backend.get("/search", _params(params), _trace_headers(request)))


@router.get(
    "/movies/{tmdb_id}",
    response_model=MovieDetail,
    responses={**NOT_FOUND, **UNAVAILABLE},
    summary="One movie by TMDB id",
)
async def get_movie(request: Request, tmdb_id: TmdbIdPath, backend: SearchBackend) -> Response:
    return _forward(await backend.get(f"/movies/{tmdb_id}", headers=_trace_headers(request)))


@router.get(
    "/movies/{tmdb_id}/similar",
    response_model=SimilarResponse,
    responses={**NOT_FOUND, **UNAVAILABLE},
    summary="Movies similar to one movie",
)
async def similar(
    request: Request,
    tmdb_id: TmdbIdPath,
    params: Annotated[SimilarParams, Query()],
    backend: SearchBackend,
) -> Response:
    return _forward(
        await backend.get(f"/movies/{tmdb_id}/similar", _params(params), _trace_headers(request))
    )


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
        **UNAVAILABLE,
    },
    summary="Publish catalog events (needs an API key)",
    description="Validates every event against the public contract, then publishes them in "
    "order onto the catalog stream. All or nothing: one invalid event rejects the request "
    "(422, naming the event index and field).",
)
async def publish_catalog_events(
    body: CatalogEventsRequest,
    settings: Annotated[GatewaySettings, Depends(_settings)],
    redis: Annotated[Redis, Depends(_redis)],
) -> CatalogEventsAccepted:
    if len(body.events) > settings.max_events_per_request:
        raise HTTPException(
            413, f"at most {settings.max_events_per_request} events per request; split the batch"
        )
    events: list[MovieFetched | MovieDeleted] = list(body.events)
    try:
        entry_ids = await publish_events(redis, events, stream=settings.catalog_stream)
    except (RedisError, OSError) as exc:
        raise BackendUnavailableError("redis", str(exc)) from exc
    log.info("catalog_events_published", count=len(entry_ids))
    return CatalogEventsAccepted(
        accepted=len(entry_ids), stream=settings.catalog_stream, entry_ids=entry_ids
    )
