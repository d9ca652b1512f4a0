"""The live-collection alias and the model-migration state, as every service sees them in Redis.

``MARQUEE_CHROMA_COLLECTION`` names the index *logically*. Which Chroma collection serves it
(and with which model) is the alias, a Redis hash the services read at start and follow while
running; without an alias the collection of that name serves, with the configured model. A model
switch (``marquee-embedder migrate``, docs/operations.md) builds a second collection next to the
live one, then flips the alias; every search replica and the explainer follow it without a
restart.

Layout, for the logical name ``N``:

* ``marquee:index:v1:N:alias`` (hash): ``collection``, ``model`` (its ``ModelId``),
  ``model_source`` (the ``MODEL`` setting that loads it: stock, movie-tuned or a path; checked
  against the id by whoever loads it), ``changed_at``.
* ``marquee:index:v1:N:migration`` (hash): ``phase`` (copying, verifying, ready, switched),
  ``source_*`` and ``target_*`` (collection, model, model_source), counts and timestamps; the
  backfill's cursor and claims live beside it (``marquee_embedder.migration``).

Switch and rollback are single Lua scripts, so two operators (CLI and admin API) can never
leave the alias and the phase disagreeing. This module needs Redis only: the gateway's admin API
uses it without Chroma; the embedders do the copying and the checking.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Literal

import structlog
from pydantic import BaseModel, Field
from redis.exceptions import RedisError

from marquee_shared.streams import as_text

if TYPE_CHECKING:
    from redis.asyncio import Redis

log = structlog.get_logger(__name__)

Phase = Literal["copying", "verifying", "ready", "switched"]
PHASES: tuple[Phase, ...] = ("copying", "verifying", "ready", "switched")


def alias_key(logical: str) -> str:
    return f"marquee:index:v1:{logical}:alias"


def state_key(logical: str) -> str:
    return f"marquee:index:v1:{logical}:migration"


class MigrationError(RuntimeError):
    """A migration command that does not apply now (no migration, not covered yet, ...): the
    message says why and what to do. The admin API answers it with 409."""


@dataclass(frozen=True, slots=True)
class LiveIndex:
    """The collection that serves the logical index, and its model when the alias names it."""

    collection: str
    model: str | None = None
    model_source: str | None = None


async def read_live(redis: Redis, logical: str) -> LiveIndex:
    """The alias, or the logical name itself (model unknown: the configured one) without one."""
    raw = await redis.hgetall(alias_key(logical))
    fields = {as_text(k): as_text(v) for k, v in raw.items()}
    if not fields.get("collection"):
        return LiveIndex(logical)
    return LiveIndex(fields["collection"], fields.get("model"), fields.get("model_source"))


async def read_live_or_configured(redis: Redis, logical: str) -> LiveIndex:
    """``read_live`` for services that start without Redis (search, explainer): with Redis
    down, the configured collection, and the alias follower moves to the alias's once Redis
    answers."""
    try:
        return await read_live(redis, logical)
    except (RedisError, OSError) as exc:
        log.warning("index_alias_unreadable", error=str(exc)[:300], collection=logical)
        return LiveIndex(logical)


class IndexRef(BaseModel):
    collection: str = Field(examples=["movies_minilm_l6_v1"])
    model: str = Field(examples=["all-MiniLM-L6-v2@0.1.0+9e9ef2af17f8"])
    model_source: str = Field(
        description="The MODEL setting that loads it (stock, movie-tuned or a path).",
        examples=["stock"],
    )


class MigrationStatus(BaseModel):
    """Where a model migration stands (``marquee-embedder migrate status``, the admin API and
    ``/v1/stats``)."""

    phase: Phase = Field(
        description="copying: the embedders fill the target from the ledger; verifying: "
        "comparing it with the ledger and fixing what differs; ready: it covers every live "
        "movie (switch allowed); switched: the alias names the target (rollback or finish)."
    )
    live_collection: str = Field(description="The collection search serves from now.")
    source: IndexRef
    target: IndexRef
    ledger_entries: int = Field(description="Movies in the ledger when the migration started.")
    scanned: int = Field(description="Ledger entries the backfill has gone through.")
    copied: int = Field(description="Live movies the backfill wrote to the target.")
    live: int | None = Field(description="Live movies in the ledger at the last verification.")
    missing: int | None = Field(
        description="Live movies the target lacked or held an older version of, or deleted "
        "ones it still held, at the last verification (0: covered)."
    )
    coverage_percent: float = Field(
        description="While copying: the share of the ledger gone through; then the share of "
        "live movies the target holds in their newest version (100: switch allowed)."
    )
    started_at: datetime | None
    verified_at: datetime | None
    switched_at: datetime | None
    verify_interval_s: float = Field(
        description="How often the target is re-verified; a switch needs a verification at "
        "most three intervals old."
    )


def _ms(value: str | None) -> datetime | None:
    return datetime.fromtimestamp(int(value) / 1000, UTC) if value else None


def _int(value: str | None) -> int | None:
    return int(value) if value not in (None, "") else None


def status_from(fields: Mapping[str, str]) -> MigrationStatus | None:
    """The status out of the state hash's fields (None: no migration)."""
    phase = fields.get("phase")
    if phase not in PHASES:
        return None
    entries = _int(fields.get("ledger_entries")) or 0
    scanned = _int(fields.get("scanned")) or 0
    live, missing = _int(fields.get("live")), _int(fields.get("missing"))
    if phase == "copying" or live is None or missing is None:
        # Never 100 before a verification said so: a switch needs that.
        coverage = min(99.9, 100.0 * scanned / entries) if entries else 0.0
    else:
        coverage = 100.0 if live == 0 else 100.0 * max(0, live - missing) / live
    source = IndexRef(
        collection=fields.get("source_collection", ""),
        model=fields.get("source_model", ""),
        model_source=fields.get("source_model_source", ""),
    )
    target = IndexRef(
        collection=fields.get("target_collection", ""),
        model=fields.get("target_model", ""),
        model_source=fields.get("target_model_source", ""),
    )
    return MigrationStatus(
        phase=phase,
        live_collection=target.collection if phase == "switched" else source.collection,
        source=source,
        target=target,
        ledger_entries=entries,
        scanned=scanned,
        copied=_int(fields.get("copied")) or 0,
        live=live,
        missing=missing,
        coverage_percent=round(coverage, 2),
        started_at=_ms(fields.get("started_at")),
        verified_at=_ms(fields.get("verified_at")),
        switched_at=_ms(fields.get("switched_at")),
        verify_interval_s=float(fields.get("verify_interval_s") or 0),
    )


async def read_state(redis: Redis, logical: str) -> dict[str, str]:
    raw = await redis.hgetall(state_key(logical))
    return {as_text(k): as_text(v) for k, v in raw.items()}


async def read_status(redis: Redis, logical: str) -> MigrationStatus | None:
    return status_from(await read_state(redis, logical))


# Both scripts return {1, ""} on success or {0, reason}. The freshness check uses the caller's
# clock (ARGV[1]): the embedders that wrote verified_at and the caller share NTP time, and a
# skew of seconds is small against three verify intervals.
_SWITCH = """
local s = redis.call('HGETALL', KEYS[1])
local st = {}
for i = 1, #s, 2 do st[s[i]] = s[i + 1] end
if st['phase'] == nil then return {0, 'no migration in progress'} end
if st['phase'] == 'switched' then return {0, 'already switched to ' .. st['target_collection']} end
if st['phase'] ~= 'ready' then
  return {0, 'the target is not covered yet (phase ' .. st['phase'] .. ')'}
end
if st['missing'] ~= '0' then
  return {0, 'the target lacks ' .. st['missing'] .. ' movie(s) at the last verification'}
end
local age = tonumber(ARGV[1]) - tonumber(st['verified_at'] or '0')
local max_age = 3000 * tonumber(st['verify_interval_s'] or '0')
if age > max_age then
  return {0, 'the last verification is ' .. math.floor(age / 1000) .. ' s old (are the '
    .. 'embedders running?); a switch needs one at most ' .. math.floor(max_age / 1000) .. ' s old'}
end
redis.call('HSET', KEYS[2], 'collection', st['target_collection'], 'model', st['target_model'],
  'model_source', st['target_model_source'], 'changed_at', ARGV[1])
redis.call('HSET', KEYS[1], 'phase', 'switched', 'switched_at', ARGV[1])
return {1, ''}
"""

_ROLLBACK = """
local phase = redis.call('HGET', KEYS[1], 'phase')
if not phase then return {0, 'no migration in progress'} end
if phase ~= 'switched' then
  return {0, 'not switched (phase ' .. phase .. '): nothing to roll back'}
end
local src = redis.call('HMGET', KEYS[1], 'source_collection', 'source_model', 'source_model_source')
redis.call('HSET', KEYS[2], 'collection', src[1], 'model', src[2], 'model_source', src[3],
  'changed_at', ARGV[1])
redis.call('HSET', KEYS[1], 'phase', 'ready')
redis.call('HDEL', KEYS[1], 'switched_at')
return {1, ''}
"""


async def _flip(redis: Redis, logical: str, script: str) -> MigrationStatus:
    reply: Any = await redis.eval(
        script, 2, state_key(logical), alias_key(logical), str(int(time.time() * 1000))
    )
    ok, reason = int(reply[0]), as_text(reply[1])
    if not ok:
        raise MigrationError(reason)
    status = await read_status(redis, logical)
    assert status is not None
    return status


Flip = Callable[["Redis", str], Awaitable[MigrationStatus]]
"""``switch`` or ``rollback``."""


async def switch(redis: Redis, logical: str) -> MigrationStatus:
    """Point the alias at the target, if the embedders' last verification found it complete
    and is recent. Raises ``MigrationError`` with the reason otherwise."""
    status = await _flip(redis, logical, _SWITCH)
    log.info("index_switched", logical=logical, collection=status.target.collection)
    return status


async def rollback(redis: Redis, logical: str) -> MigrationStatus:
    """Point the alias back at the source (kept current by the double writes)."""
    status = await _flip(redis, logical, _ROLLBACK)
    log.info("index_rolled_back", logical=logical, collection=status.source.collection)
    return status


class AliasFollower:
    """Polls the alias and hands each change to ``on_change`` (which loads the new collection
    and swaps it in). A failed change is logged and retried at the next poll, the current
    collection serving meanwhile. Polling, not keyspace notifications: those need
    ``notify-keyspace-events`` on the server and are lost across reconnects; one HGETALL a
    second per replica costs nothing."""

    def __init__(
        self,
        redis: Redis,
        logical: str,
        current: LiveIndex,
        on_change: Callable[[LiveIndex], Awaitable[None]],
        *,
        interval_s: float = 1.0,
        service: str,
    ) -> None:
        self._redis = redis
        self._logical = logical
        self.current = current
        self._on_change = on_change
        self._interval_s = interval_s
        self._service = service
        self.failures = 0

    async def check(self) -> bool:
        """Follow a change if there is one; whether the collection changed."""
        live = await read_live(self._redis, self._logical)
        if live.collection == self.current.collection:
            return False
        started = time.perf_counter()
        log.info(
            "index_alias_changed",
            service=self._service,
            old=self.current.collection,
            new=live.collection,
            model=live.model,
        )
        await self._on_change(live)
        self.current = live
        log.info(
            "index_alias_followed",
            service=self._service,
            collection=live.collection,
            model=live.model,
            duration_s=round(time.perf_counter() - started, 2),
        )
        return True

    async def run(self) -> None:
        while True:
            await asyncio.sleep(self._interval_s)
            try:
                await self.check()
                self.failures = 0
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - keep serving the current collection
                self.failures += 1
                log.warning(
                    "index_alias_follow_failed",
                    service=self._service,
                    error=f"{type(exc).__name__}: {exc}"[:500],
                    failures=self.failures,
                )
                await asyncio.sleep(min(30.0, self._interval_s * 2**self.failures))
