"""Admin API over the dead-letter stream (needs an API key): list, inspect, replay, purge."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, HTTPException, Path, Query
from pydantic import BaseModel, Field
from redis.exceptions import RedisError

from marquee_gateway.backends import BackendUnavailableError
from marquee_gateway.deps import REDIS_ADMIN_ERRORS, RedisDep, require_api_key
from marquee_shared import deadletters
from marquee_shared.api import ErrorResponse
from marquee_shared.deadletters import DeadLetterRecord
from marquee_shared.jsonbody import StrictJSONRoute

# 19 digits at most: Redis stream ids are two 64-bit integers, and 10^19 - 1 < 2^64.
ENTRY_ID = r"^\d{1,19}-\d{1,19}$"

router = APIRouter(
    prefix="/v1/admin/dead-letters",
    route_class=StrictJSONRoute,
    tags=["admin"],
    dependencies=[Depends(require_api_key)],
    responses=REDIS_ADMIN_ERRORS,
)


LetterId = Annotated[
    str, Path(pattern=ENTRY_ID, description="Dead-letter id", examples=["1716200000000-0"])
]


class DeadLetterPage(BaseModel):
    total: int
    items: list[DeadLetterRecord]
    next_after: str | None = Field(description="Pass as `after` for the next page.")


class LetterIds(BaseModel):
    ids: list[Annotated[str, Field(pattern=ENTRY_ID)]] = Field(min_length=1, max_length=1000)


class ReplayResult(BaseModel):
    replayed: dict[str, str] = Field(description="Dead-letter id -> new catalog-stream entry id.")
    not_found: list[str]


class PurgeResult(BaseModel):
    purged: int


def _unavailable(exc: Exception) -> BackendUnavailableError:
    return BackendUnavailableError("redis", str(exc))


@router.get("", summary="List dead letters, oldest first")
async def list_letters(
    redis: RedisDep,
    after: Annotated[str | None, Query(pattern=ENTRY_ID)] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
) -> DeadLetterPage:
    try:
        items = await deadletters.list_dead_letters(redis, after=after or "-", limit=limit)
        total = await deadletters.count_dead_letters(redis)
    except RedisError as exc:
        raise _unavailable(exc) from exc
    return DeadLetterPage(
        total=total, items=items, next_after=items[-1].id if len(items) == limit else None
    )


@router.get(
    "/{letter_id}",
    summary="One dead letter",
    responses={404: {"model": ErrorResponse, "description": "No such dead letter."}},
)
async def get_letter(letter_id: LetterId, redis: RedisDep) -> DeadLetterRecord:
    try:
        letter = await deadletters.get_dead_letter(redis, letter_id)
    except RedisError as exc:
        raise _unavailable(exc) from exc
    if letter is None:
        raise HTTPException(404, f"no dead letter {letter_id}")
    return letter


@router.post("/replay", summary="Re-publish dead letters onto the catalog stream (after a fix)")
async def replay(body: LetterIds, redis: RedisDep) -> ReplayResult:
    try:
        replayed = await deadletters.replay_dead_letters(redis, body.ids)
    except RedisError as exc:
        raise _unavailable(exc) from exc
    return ReplayResult(replayed=replayed, not_found=[i for i in body.ids if i not in replayed])


@router.post("/purge", summary="Delete the given dead letters")
async def purge(body: LetterIds, redis: RedisDep) -> PurgeResult:
    try:
        return PurgeResult(purged=await deadletters.purge_dead_letters(redis, body.ids))
    except RedisError as exc:
        raise _unavailable(exc) from exc
