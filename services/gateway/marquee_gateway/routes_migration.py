"""Admin API over a model migration (needs an API key): where it stands, switch, rollback.

Starting and finishing a migration stay with ``marquee-embedder migrate``: they create and drop
Chroma collections and need the model files, which the gateway has neither of. Switch and
rollback are Redis-only (one Lua script each, ``marquee_shared.migration``), so the CLI and this
API can never leave the alias and the migration's phase disagreeing.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from fastapi import APIRouter, Depends, HTTPException
from pydantic import BaseModel, Field
from redis.exceptions import RedisError

from marquee_gateway.backends import BackendUnavailableError
from marquee_gateway.deps import REDIS_ADMIN_ERRORS, RedisDep, SettingsDep, require_api_key
from marquee_shared import migration
from marquee_shared.api import ErrorResponse
from marquee_shared.jsonbody import StrictJSONRoute
from marquee_shared.migration import MigrationError, MigrationStatus

if TYPE_CHECKING:
    from redis.asyncio import Redis

router = APIRouter(
    prefix="/v1/admin/migration",
    route_class=StrictJSONRoute,
    tags=["admin"],
    dependencies=[Depends(require_api_key)],
    responses=REDIS_ADMIN_ERRORS,
)
REFUSED: dict[int | str, dict[str, Any]] = {
    409: {
        "model": ErrorResponse,
        "description": "Not now: no migration, the target not verified complete, not switched.",
    }
}


class IndexState(BaseModel):
    live_collection: str = Field(description="The Chroma collection search serves from.")
    migration: MigrationStatus | None = Field(description="The model migration, if one runs.")


@router.get("", summary="Which collection serves, and the model migration's progress")
async def status(settings: SettingsDep, redis: RedisDep) -> IndexState:
    # The logical index name: MARQUEE_CHROMA_COLLECTION, the same setting in every service.
    logical = settings.chroma_collection
    try:
        live = await migration.read_live(redis, logical)
        return IndexState(
            live_collection=live.collection, migration=await migration.read_status(redis, logical)
        )
    except RedisError as exc:
        raise BackendUnavailableError("redis", str(exc)) from exc


@router.post(
    "/switch",
    summary="Serve from the new model's collection",
    description="Flips the index alias to the migration's target once the embedders' last "
    "verification (at most three verify intervals old) found it holding every live movie at "
    "its newest version; every search replica and the explainer follow within seconds.",
    responses=REFUSED,
)
async def switch(settings: SettingsDep, redis: RedisDep) -> MigrationStatus:
    return await _flip(migration.switch, settings.chroma_collection, redis)


@router.post(
    "/rollback",
    summary="Serve from the old collection again",
    description="The double writes kept it current, so nothing is lost. Switch again later, "
    "or abort the migration with the CLI.",
    responses=REFUSED,
)
async def rollback(settings: SettingsDep, redis: RedisDep) -> MigrationStatus:
    return await _flip(migration.rollback, settings.chroma_collection, redis)


async def _flip(action: migration.Flip, logical: str, redis: Redis) -> MigrationStatus:
    try:
        return await action(redis, logical)
    except MigrationError as exc:
        raise HTTPException(409, str(exc)) from exc
    except RedisError as exc:
        raise BackendUnavailableError("redis", str(exc)) from exc
