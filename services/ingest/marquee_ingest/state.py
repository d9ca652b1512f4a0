"""What ingest keeps in Redis between runs: what it published, and where the TMDB sync stands.

Keys hang off the catalog stream's name (``marquee:catalog:v1:ingest:...``): the record of what
was published is about that stream, so a new stream version starts with a fresh record and
everything is published to it again, which is what a migration needs.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from typing import TYPE_CHECKING

from pydantic import BaseModel, ConfigDict

from marquee_shared.streams import as_text

if TYPE_CHECKING:
    from redis.asyncio import Redis
    from redis.typing import EncodableT, FieldT

    from marquee_shared.events import Movie


@dataclass(frozen=True, slots=True)
class StateKeys:
    published: str
    """Hash: tmdb_id -> content hash of the version ingest last published."""
    sync: str
    """Hash: the sync's watermark, window progress and last runs."""
    lock: str
    """String: the sync lock (holder|token), with an expiry."""

    @classmethod
    def for_stream(cls, stream: str) -> StateKeys:
        base = f"{stream}:ingest"
        return cls(published=f"{base}:published", sync=f"{base}:sync", lock=f"{base}:sync:lock")


class PublishedCatalog:
    """Ingest's record of what it published: one content hash per live movie.

    Written only *after* the events are on the stream: a crash in between means the next run
    publishes those movies again (harmless, the embedder skips unchanged content), never that
    a change is skipped because the record ran ahead of the stream.
    """

    def __init__(self, redis: Redis, key: str) -> None:
        self._redis = redis
        self.key = key

    @classmethod
    def for_stream(cls, redis: Redis, stream: str) -> PublishedCatalog:
        return cls(redis, StateKeys.for_stream(stream).published)

    async def unchanged(self, movies: Sequence[Movie]) -> set[int]:
        """Ids of the movies whose content equals what ingest last published for them."""
        if not movies:
            return set()
        stored = await self._redis.hmget(self.key, [str(m.tmdb_id) for m in movies])
        return {
            m.tmdb_id
            for m, held in zip(movies, stored, strict=True)
            if held is not None and as_text(held) == m.content_hash()
        }

    async def known(self, ids: Sequence[int]) -> set[int]:
        """The ids ingest has published and not deleted since."""
        if not ids:
            return set()
        stored = await self._redis.hmget(self.key, [str(i) for i in ids])
        return {i for i, held in zip(ids, stored, strict=True) if held is not None}

    async def record(self, movies: Iterable[Movie]) -> None:
        mapping: dict[FieldT, EncodableT] = {str(m.tmdb_id): m.content_hash() for m in movies}
        if mapping:
            await self._redis.hset(self.key, mapping=mapping)

    async def forget(self, ids: Iterable[int]) -> None:
        fields = [str(i) for i in ids]
        if fields:
            await self._redis.hdel(self.key, *fields)

    async def size(self) -> int:
        """Live movies ingest knows of: published and not deleted since."""
        return int(await self._redis.hlen(self.key))


class WindowCursor(BaseModel):
    """Progress through one changes window, saved after each published step.

    Ids are processed in ascending order, so "everything up to ``last_id``" is a complete
    description of what is done.
    """

    model_config = ConfigDict(frozen=True)

    start: date
    end: date
    listed_on: date
    """The UTC day the window was first listed (decides where the next window starts)."""
    last_id: int


class SyncState:
    """The sync's bookkeeping, one Redis hash shared by every instance (and the CLI)."""

    WATERMARK = "watermark"
    CURSOR = "cursor"
    LAST_STARTED = "last_started_at"
    LAST_FINISHED = "last_finished_at"
    LAST_SUCCESS = "last_success_at"
    LAST_ERROR = "last_error"
    LAST_ERROR_AT = "last_error_at"
    LAST_RUN = "last_run"
    CURRENT_RUN = "current_run"

    def __init__(self, redis: Redis, key: str) -> None:
        self._redis = redis
        self.key = key

    async def read(self) -> dict[str, str]:
        raw = await self._redis.hgetall(self.key)
        return {as_text(k): as_text(v) for k, v in raw.items()}

    async def get_time(self, name: str) -> datetime | None:
        value = await self._redis.hget(self.key, name)
        return None if value is None else datetime.fromisoformat(as_text(value))

    async def watermark(self) -> datetime | None:
        return await self.get_time(self.WATERMARK)

    async def cursor(self) -> WindowCursor | None:
        value = await self._redis.hget(self.key, self.CURSOR)
        return None if value is None else WindowCursor.model_validate_json(as_text(value))

    async def save_cursor(self, cursor: WindowCursor) -> None:
        await self._redis.hset(self.key, self.CURSOR, cursor.model_dump_json())

    async def complete_window(self, watermark: datetime) -> None:
        """The window is published: move the watermark and drop its cursor, atomically."""
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.hset(self.key, self.WATERMARK, watermark.isoformat())
            pipe.hdel(self.key, self.CURSOR)
            await pipe.execute()

    async def set_fields(self, fields: dict[str, str | datetime]) -> None:
        mapping: dict[FieldT, EncodableT] = {
            k: v.isoformat() if isinstance(v, datetime) else v for k, v in fields.items()
        }
        await self._redis.hset(self.key, mapping=mapping)

    async def delete_fields(self, *names: str) -> None:
        await self._redis.hdel(self.key, *names)
