"""Model migration: the state machine in Redis and the commands that drive it.

``start`` creates the target collection (stamped with the new model) and writes the state
(``marquee_shared.migration`` describes the keys); from then on every embedder writes each
catalog event to both collections (``targets.py``) and copies the ledger into the target in the
background (``backfill.py``):

    copying --(ledger gone through, no chunk outstanding)--> verifying
    verifying --(target == ledger: every live movie at its newest version, no deleted one)--> ready
    ready --switch--> switched --rollback--> ready
    switched --finish--> (old collection dropped, state deleted; the alias stays on the target)
    copying|verifying|ready --abort--> (target dropped, state deleted)

The copy is claimed in chunks of the ledger's HSCAN (one Lua script advances the shared cursor
and records the claim with a lease), so N replicas never copy the same chunk twice while all are
alive; a chunk whose lease runs out (its replica was killed) is claimed again. The cursor lives
in Redis, so a restarted replica continues where the fleet stopped. Correctness does not rest on
the copy: HSCAN may miss entries added during the scan, a replica may still be writing to the
source only when ``start`` lands, so the verification compares the whole target with the ledger
and re-applies what differs before it says ``ready``, and keeps doing so while the migration
lasts.
"""

from __future__ import annotations

import contextlib
import re
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import structlog
from chromadb.errors import NotFoundError

from marquee_shared.chroma import collection_model, open_collection, same_model
from marquee_shared.migration import (
    MigrationError,
    MigrationStatus,
    read_live,
    read_state,
    rollback,
    state_key,
    status_from,
    switch,
)
from marquee_shared.model.files import ModelError
from marquee_shared.model.identity import ModelId
from marquee_shared.model.resolve import MOVIE_TUNED, STOCK, resolve_model
from marquee_shared.streams import as_text

if TYPE_CHECKING:
    from collections.abc import Iterable, Mapping

    from chromadb.api import AsyncClientAPI
    from pydantic import AnyHttpUrl
    from redis.asyncio import Redis

__all__ = ["MigrationError", "MigrationStatus", "rollback", "switch"]

log = structlog.get_logger(__name__)


def claims_key(logical: str) -> str:
    return f"{state_key(logical)}:claims"


def verifier_key(logical: str) -> str:
    return f"{state_key(logical)}:verifier"


def target_collection(logical: str, model: ModelId) -> str:
    """``<logical>--<model name>-<digest>``: one collection per model, recognisable in
    Chroma's listing. Chroma allows 3-512 of [a-zA-Z0-9._-], starting and ending alphanumeric."""
    name = re.sub(r"[^a-zA-Z0-9._-]+", "-", model.name).strip("-._")[:40] or "model"
    return f"{logical}--{name}-{model.digest}"


# -- pure logic -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Coverage:
    """The target compared with the ledger."""

    live: int
    missing: list[int] = field(default_factory=list)
    """Live in the ledger, absent from the target or held at another version."""
    extra: list[int] = field(default_factory=list)
    """In the target, but deleted (or unknown) in the ledger."""

    @property
    def differences(self) -> int:
        return len(self.missing) + len(self.extra)

    @property
    def percent(self) -> float:
        return 100.0 if not self.live else 100.0 * (self.live - len(self.missing)) / self.live


def compare(ledger: Mapping[int, str | None], target: Mapping[int, str]) -> Coverage:
    """``ledger``: TMDB id -> content hash of its newest event (None: deleted);
    ``target``: TMDB id -> content hash the target holds."""
    live = {i: h for i, h in ledger.items() if h is not None}
    missing = sorted(i for i, h in live.items() if target.get(i) != h)
    extra = sorted(i for i in target if i not in live)
    return Coverage(len(live), missing, extra)


def next_phase(phase: str, *, cursor_done: bool, claims: int, differences: int | None) -> str:
    """Where the backfill goes from ``phase`` (the Lua scripts apply the same rules atomically;
    this is their readable statement, tested on its own)."""
    if phase == "copying" and cursor_done and claims == 0:
        return "verifying"
    if phase == "verifying" and differences == 0:
        return "ready"
    return phase


# -- the state in Redis -----------------------------------------------------------------------

# KEYS: state, claims, ledger. ARGV: owner, now_ms, lease_ms, count.
# Returns false (nothing to claim) or {chunk, {field, value, ...}}. A chunk is named by the
# HSCAN cursor it starts at; an abandoned chunk (lease over) is taken before a new one.
_CLAIM = """
if redis.call('HGET', KEYS[1], 'phase') ~= 'copying' then return false end
local now = tonumber(ARGV[2])
local lease = ARGV[1] .. '|' .. string.format('%d', now + tonumber(ARGV[3]))
local claims = redis.call('HGETALL', KEYS[2])
for i = 1, #claims, 2 do
  local deadline = tonumber(string.match(claims[i + 1], '|(%d+)$'))
  if deadline < now then
    redis.call('HSET', KEYS[2], claims[i], lease)
    local page = redis.call('HSCAN', KEYS[3], claims[i], 'COUNT', ARGV[4])
    return {claims[i], page[2]}
  end
end
local cursor = redis.call('HGET', KEYS[1], 'cursor')
if cursor == 'done' then
  if #claims == 0 then redis.call('HSET', KEYS[1], 'phase', 'verifying') end
  return false
end
local page = redis.call('HSCAN', KEYS[3], cursor, 'COUNT', ARGV[4])
if page[1] == '0' then
  redis.call('HSET', KEYS[1], 'cursor', 'done')
else
  redis.call('HSET', KEYS[1], 'cursor', page[1])
end
redis.call('HSET', KEYS[2], cursor, lease)
return {cursor, page[2]}
"""

# KEYS: state, claims. ARGV: owner, chunk, scanned, copied. Counts once, by the claim's holder.
_COMPLETE = """
local held = redis.call('HGET', KEYS[2], ARGV[2])
if not held or string.sub(held, 1, #ARGV[1] + 1) ~= ARGV[1] .. '|' then return 0 end
redis.call('HDEL', KEYS[2], ARGV[2])
if redis.call('EXISTS', KEYS[1]) == 1 then
  redis.call('HINCRBY', KEYS[1], 'scanned', ARGV[3])
  redis.call('HINCRBY', KEYS[1], 'copied', ARGV[4])
end
return 1
"""

# KEYS: ledger. ARGV: cursor, count. One page of {id, content hash or '-'} without the event
# JSON (most of each value's bytes): the verification reads the whole ledger often.
_DIGESTS = """
local page = redis.call('HSCAN', KEYS[1], ARGV[1], 'COUNT', ARGV[2])
local out = {}
local kv = page[2]
for i = 1, #kv, 2 do
  table.insert(out, kv[i])
  table.insert(out, string.match(kv[i + 1], '^[^|]*|([^|]*)|') or '-')
end
return {page[1], out}
"""

# KEYS: state. ARGV: target collection, live, missing, now_ms, ready (1/0). Only for the
# migration it was computed for (an abort and a new start in between must not inherit it).
_VERIFIED = """
if redis.call('HGET', KEYS[1], 'target_collection') ~= ARGV[1] then return 0 end
local phase = redis.call('HGET', KEYS[1], 'phase')
redis.call('HSET', KEYS[1], 'live', ARGV[2], 'missing', ARGV[3], 'verified_at', ARGV[4])
if phase == 'verifying' and ARGV[5] == '1' then redis.call('HSET', KEYS[1], 'phase', 'ready') end
return 1
"""


@dataclass(frozen=True, slots=True)
class Chunk:
    name: str
    entries: list[tuple[int, bytes]]
    """(TMDB id, raw ledger value)."""


class MigrationStore:
    """The state of one logical index's migration, for the embedders and the CLI."""

    def __init__(self, redis: Redis, logical: str, ledger_key: str) -> None:
        self._redis = redis
        self.redis = redis
        self.logical = logical
        self.key = state_key(logical)
        self.claims = claims_key(logical)
        self._ledger_key = ledger_key
        self._claim = redis.register_script(_CLAIM)
        self._complete = redis.register_script(_COMPLETE)
        self._digests = redis.register_script(_DIGESTS)
        self._verified = redis.register_script(_VERIFIED)

    async def fields(self) -> dict[str, str]:
        return await read_state(self._redis, self.logical)

    async def status(self) -> MigrationStatus | None:
        return status_from(await self.fields())

    async def begin(self, fields: dict[str, str]) -> bool:
        """Write a new migration's state, unless one exists (then False)."""
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.hsetnx(self.key, "phase", "copying")
            pipe.hlen(self._ledger_key)
            created, entries = await pipe.execute()
        if not created:
            return False
        now = str(int(time.time() * 1000))
        mapping: dict[Any, Any] = {
            **fields,
            "cursor": "0",
            "ledger_entries": str(entries),
            "scanned": "0",
            "copied": "0",
            "started_at": now,
        }
        await self._redis.hset(self.key, mapping=mapping)
        await self._redis.delete(self.claims, verifier_key(self.logical))
        return True

    async def claim(self, owner: str, *, count: int, lease_ms: int) -> Chunk | None:
        now = int(time.time() * 1000)
        reply: Any = await self._claim(
            keys=[self.key, self.claims, self._ledger_key], args=[owner, now, lease_ms, count]
        )
        if not reply:
            return None
        raw = reply[1]
        entries = [(int(as_text(raw[i])), bytes(raw[i + 1])) for i in range(0, len(raw), 2)]
        return Chunk(as_text(reply[0]), entries)

    async def complete(self, owner: str, chunk: Chunk, *, copied: int) -> bool:
        done = await self._complete(
            keys=[self.key, self.claims], args=[owner, chunk.name, len(chunk.entries), copied]
        )
        return bool(done)

    async def ledger_digests(self, page: int = 2000) -> dict[int, str | None]:
        """TMDB id -> content hash of its newest event (None: deleted), the whole ledger."""
        out: dict[int, str | None] = {}
        cursor = "0"
        while True:
            reply: Any = await self._digests(keys=[self._ledger_key], args=[cursor, page])
            cursor = as_text(reply[0])
            pairs = reply[1]
            for i in range(0, len(pairs), 2):
                digest = as_text(pairs[i + 1])
                out[int(as_text(pairs[i]))] = None if digest == "-" else digest
            if cursor == "0":
                return out

    async def record_verification(self, target: str, coverage: Coverage, *, ready: bool) -> None:
        await self._verified(
            keys=[self.key],
            args=[
                target,
                coverage.live,
                coverage.differences,
                int(time.time() * 1000),
                1 if ready else 0,
            ],
        )

    async def hold_verifier(self, owner: str, lease_ms: int) -> bool:
        """One verifier at a time: take or renew the lease."""
        key = verifier_key(self.logical)
        if await self._redis.set(key, owner, nx=True, px=lease_ms):
            return True
        if as_text(await self._redis.get(key) or b"") == owner:
            await self._redis.pexpire(key, lease_ms)
            return True
        return False

    async def clear(self) -> None:
        await self._redis.delete(self.key, self.claims, verifier_key(self.logical))


def other_collections(fields: Mapping[str, str], live: str) -> list[str]:
    """The collections an active migration writes besides the live one."""
    if fields.get("phase") is None:
        return []
    names: Iterable[str] = (
        fields.get("source_collection", ""),
        fields.get("target_collection", ""),
    )
    return [n for n in dict.fromkeys(names) if n and n != live]


# -- commands (the CLI) -----------------------------------------------------------------------


def resolve_target(model: str) -> tuple[str, ModelId]:
    """``--model``: a MODEL setting (stock, movie-tuned, a path), or the id of a packaged model.
    Returns the setting that loads it and its id."""
    try:
        wanted = ModelId.parse(model)
    except ValueError:
        return model, resolve_model(model)[1]
    for source in (STOCK, MOVIE_TUNED):
        try:
            found = resolve_model(source)[1]
        except ModelError:
            continue
        if found.same_vectors(wanted):
            return source, found
    msg = (
        f"model {model} is not one of the packaged models ({STOCK}, {MOVIE_TUNED}); give the "
        "path of its folder instead"
    )
    raise MigrationError(msg)


async def start(
    store: MigrationStore,
    chroma: AsyncClientAPI,
    chroma_url: AnyHttpUrl,
    *,
    model: str,
    configured_source: str,
    verify_interval_s: float,
) -> MigrationStatus:
    """Create the target collection and the state; the embedders do the rest. Starting the
    migration that is in progress again is a no-op (its status is returned)."""
    target_source, target_id = resolve_target(model)
    current = await store.status()
    name = target_collection(store.logical, target_id)
    if current is not None:
        if current.target.collection == name:
            return current
        msg = (
            f"a migration to {current.target.model} is in progress (phase {current.phase}); "
            "finish or abort it first"
        )
        raise MigrationError(msg)
    live = await read_live(store.redis, store.logical)
    try:
        live_collection = await chroma.get_collection(live.collection, embedding_function=None)
    except (NotFoundError, ValueError) as exc:
        msg = f"the live collection {live.collection!r} does not exist: nothing to migrate from"
        raise MigrationError(msg) from exc
    live_model = collection_model(live_collection)
    if live_model is None:
        msg = f"the live collection {live.collection!r} has no model id yet: start an embedder"
        raise MigrationError(msg)
    source = live.model_source
    if source is None:
        # No alias yet: the live model is the configured one, if the stamp agrees.
        source = configured_source
        if not same_model(live_model, resolve_model(source)[1]):
            msg = (
                f"the live collection holds {live_model}, not the configured model "
                f"{configured_source!r}: set MARQUEE_EMBEDDER_MODEL to the live model"
            )
            raise MigrationError(msg)
    if same_model(live_model, target_id):
        msg = f"the live collection {live.collection!r} holds {live_model} already"
        raise MigrationError(msg)
    with contextlib.suppress(NotFoundError, ValueError):
        # Left by an aborted migration (never live: the live one is checked above).
        await chroma.delete_collection(name)
        log.info("migration_stale_target_dropped", collection=name)
    await open_collection(chroma_url, name, model=target_id)
    began = await store.begin(
        {
            "source_collection": live.collection,
            "source_model": live_model,
            "source_model_source": source,
            "target_collection": name,
            "target_model": str(target_id),
            "target_model_source": target_source,
            "verify_interval_s": repr(verify_interval_s),
        }
    )
    if not began:
        msg = "another migration was started at the same moment; see migrate status"
        raise MigrationError(msg)
    log.info("migration_started", source=live.collection, target=name, model=str(target_id))
    status = await store.status()
    assert status is not None
    return status


async def finish(store: MigrationStore, chroma: AsyncClientAPI) -> str:
    """After a switch: stop the double writes and drop the old collection; returns its name."""
    status = await store.status()
    if status is None:
        raise MigrationError("no migration in progress")
    if status.phase != "switched":
        msg = f"not switched yet (phase {status.phase}): switch first, or abort"
        raise MigrationError(msg)
    # State first: a replica that still writes the old collection after the drop gets "not
    # found" and drops it from its writes (targets.py).
    await store.clear()
    with contextlib.suppress(NotFoundError, ValueError):
        await chroma.delete_collection(status.source.collection)
    log.info("migration_finished", dropped=status.source.collection, live=status.target.collection)
    return status.source.collection


async def abort(store: MigrationStore, chroma: AsyncClientAPI) -> str:
    """Before a switch (or after a rollback): drop the target and forget the migration."""
    status = await store.status()
    if status is None:
        raise MigrationError("no migration in progress")
    if status.phase == "switched":
        raise MigrationError("switched: roll back first, or finish")
    await store.clear()
    with contextlib.suppress(NotFoundError, ValueError):
        await chroma.delete_collection(status.target.collection)
    log.info("migration_aborted", dropped=status.target.collection)
    return status.target.collection
