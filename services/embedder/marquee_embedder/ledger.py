"""The ledger: the latest version of every movie that was published and delivered.

Redis Streams deliver at least once and in no guaranteed order across replicas, and the stream
is trimmed once entries are acknowledged. The ledger keeps, per TMDB id, the newest event seen
(by ``occurred_at``): it decides which version wins, and it is what the consistency audit
compares Chroma against (and what repair re-applies from).

Layout: one Redis hash, field = TMDB id, value = ``"<occurred_at>|<content_hash or ->|<event>"``.
The event JSON is kept for live movies so repair can re-apply them after Chroma lost records.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import structlog
from pydantic import ValidationError

from marquee_shared.events import (
    CATALOG_EVENT_ADAPTER,
    MovieDeleted,
    MovieFetched,
    describe_validation_error,
)

if TYPE_CHECKING:
    from collections.abc import Iterable, Sequence

    from redis.asyncio import Redis

log = structlog.get_logger(__name__)

# Atomic "keep the newest": two replicas may hold two versions of one movie at the same time.
# Ties (same occurred_at) go to the later arrival, so re-publishing an identical event is a no-op
# for the outcome but still counts as the latest. Returns 1/0 per field: this event is the latest.
_KEEP_NEWEST = """
local result = {}
for i = 1, #ARGV, 3 do
  local field, ts, value = ARGV[i], tonumber(ARGV[i + 1]), ARGV[i + 2]
  local current = redis.call('HGET', KEYS[1], field)
  local current_ts = current and tonumber(string.match(current, '^([^|]+)')) or nil
  if current_ts == nil or ts >= current_ts then
    redis.call('HSET', KEYS[1], field, value)
    table.insert(result, 1)
  else
    table.insert(result, 0)
  end
end
return result
"""


@dataclass(frozen=True, slots=True)
class LedgerEntry:
    tmdb_id: int
    occurred_at: float
    content_hash: str | None  # None: the latest event deleted the movie
    event: MovieFetched | MovieDeleted | None
    """None when the stored event no longer passes the contract (recorded before a rule was
    added, e.g. bounded years): its time and hash still count, but it cannot be re-applied."""
    unreadable: str | None = None
    """Why ``event`` is None."""


def _tmdb_id(event: MovieFetched | MovieDeleted) -> int:
    return event.movie.tmdb_id if isinstance(event, MovieFetched) else event.tmdb_id


def _encode(event: MovieFetched | MovieDeleted) -> str:
    digest = event.movie.content_hash() if isinstance(event, MovieFetched) else "-"
    return f"{event.occurred_at.timestamp()!r}|{digest}|{event.model_dump_json()}"


def _decode(tmdb_id: int, raw: bytes | str) -> LedgerEntry:
    text = raw.decode() if isinstance(raw, bytes) else raw
    ts, digest, event_json = text.split("|", 2)
    event: MovieFetched | MovieDeleted | None = None
    unreadable = None
    try:
        event = CATALOG_EVENT_ADAPTER.validate_json(event_json)
    except ValidationError as exc:
        # One bad entry must not fail the batch that meets it, nor the whole audit.
        unreadable = describe_validation_error(exc)
        log.warning("ledger_entry_unreadable", tmdb_id=tmdb_id, reason=unreadable[:300])
    return LedgerEntry(
        tmdb_id=tmdb_id,
        occurred_at=float(ts),
        content_hash=None if digest == "-" else digest,
        event=event,
        unreadable=unreadable,
    )


def decode_entry(tmdb_id: int, raw: bytes | str) -> LedgerEntry:
    """One ledger value as stored (read directly, e.g. by a migration's backfill)."""
    return _decode(tmdb_id, raw)


class Ledger:
    def __init__(self, redis: Redis, key: str) -> None:
        self._redis = redis
        self.key = key
        self._keep_newest = redis.register_script(_KEEP_NEWEST)

    async def record(self, events: Sequence[MovieFetched | MovieDeleted]) -> list[bool]:
        """Record the events; for each, whether it is now the latest version of its movie."""
        if not events:
            return []
        args: list[str] = []
        for event in events:
            args += [str(_tmdb_id(event)), repr(event.occurred_at.timestamp()), _encode(event)]
        flags = await self._keep_newest(keys=[self.key], args=args)
        return [bool(f) for f in flags]

    async def latest(self, tmdb_ids: Iterable[int]) -> dict[int, LedgerEntry]:
        ids = list(tmdb_ids)
        if not ids:
            return {}
        raws = await self._redis.hmget(self.key, [str(i) for i in ids])
        return {i: _decode(i, raw) for i, raw in zip(ids, raws, strict=True) if raw is not None}

    async def scan(self, count: int = 1000) -> list[LedgerEntry]:
        """Every entry (for the audit); the ledger is small (one line per movie)."""
        entries = []
        async for field, raw in self._redis.hscan_iter(self.key, count=count):
            entries.append(_decode(int(field), raw))
        return entries
