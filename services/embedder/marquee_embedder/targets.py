"""Which collections a catalog event is written to: the live one (the alias, or the configured
collection), plus the other side of a model migration while one is active (the target before
the switch, the source after it, so a rollback finds it current). Read from Redis for every
batch, so a replica starts and stops double writes within one batch of ``migrate start`` and
``migrate finish``; a model is loaded the first time a collection of it is written.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import TYPE_CHECKING

import anyio.to_thread
import structlog
from chromadb.errors import NotFoundError

from marquee_embedder.migration import other_collections
from marquee_shared.chroma import collection_model
from marquee_shared.migration import read_live, read_state
from marquee_shared.model.files import ModelError
from marquee_shared.model.identity import ModelId
from marquee_shared.model.resolve import resolve_model

if TYPE_CHECKING:
    from collections.abc import Callable

    from chromadb.api import AsyncClientAPI
    from chromadb.api.models.AsyncCollection import AsyncCollection
    from redis.asyncio import Redis

    from marquee_shared.model.encoder import Encoder

log = structlog.get_logger(__name__)


@dataclass(frozen=True, slots=True)
class IndexTarget:
    name: str
    collection: AsyncCollection
    encoder: Encoder
    model: str
    live: bool


def load_model(source: str, expected: str, load: Callable[[str], Encoder]) -> Encoder:
    """The encoder of ``source`` (a MODEL setting) once checked to be the model ``expected``
    names: a path that now holds other files must not fill a collection stamped otherwise."""
    _, found = resolve_model(source)
    if not found.same_vectors(ModelId.parse(expected)):
        msg = f"model {source!r} is now {found}, but the collection holds {expected}"
        raise ModelError(msg)
    return load(source)


def _digest(model: str) -> str:
    return model.rsplit("+", 1)[-1]


class IndexTargets:
    def __init__(
        self,
        chroma: AsyncClientAPI,
        redis: Redis,
        logical: str,
        *,
        live: IndexTarget,
        load: Callable[[str], Encoder],
        on_live_model: Callable[[str], None] | None = None,
    ) -> None:
        self._chroma = chroma
        self._redis = redis
        self.logical = logical
        self._load = load
        self._collections: dict[str, AsyncCollection] = {live.name: live.collection}
        self._encoders: dict[str, Encoder] = {_digest(live.model): live.encoder}
        """By digest: two ids of the same files are one model."""
        self._sources: dict[str, str] = {}
        """Model id -> the MODEL setting that loads it, as the alias or the state says."""
        self.configured = live
        self._live_model = live.model
        self._on_live_model = on_live_model
        """Told when a switch or rollback changes the live model (``/ready``, metrics)."""
        self._loading = asyncio.Lock()

    async def collection(self, name: str) -> AsyncCollection | None:
        """The collection by name (cached), or None if it does not exist (dropped by
        ``finish`` or ``abort`` while this replica still had the state of before)."""
        found = self._collections.get(name)
        if found is None:
            try:
                found = await self._chroma.get_collection(name, embedding_function=None)
            except (NotFoundError, ValueError):
                return None
            self._collections[name] = found
        return found

    def forget(self, name: str) -> None:
        self._collections.pop(name, None)

    async def encoder(self, model: str, source: str) -> Encoder:
        # One load per model, though the consumer and the backfill may both ask at once.
        async with self._loading:
            found = self._encoders.get(_digest(model))
            if found is None:
                log.info("model_loading", model=model, source=source)
                found = await anyio.to_thread.run_sync(load_model, source, model, self._load)
                self._encoders[_digest(model)] = found
        return found

    async def resolve(self) -> list[IndexTarget]:
        """The collections to write now, the live one first."""
        live_index = await read_live(self._redis, self.logical)
        fields = await read_state(self._redis, self.logical)
        if fields.get("phase") is not None:
            for side in ("source", "target"):
                model, source = fields.get(f"{side}_model"), fields.get(f"{side}_model_source")
                if model and source:
                    self._sources.setdefault(model, source)
        if live_index.model and live_index.model_source:
            self._sources.setdefault(live_index.model, live_index.model_source)
        out: list[IndexTarget] = []
        live_target = await self._target(live_index.collection, live=True)
        if live_target is not None:
            out.append(live_target)
        for name in other_collections(fields, live_index.collection):
            try:
                target = await self._target(name, live=False)
            except (ModelError, OSError, ValueError):
                # Never hold live events back (they would end as dead letters) for the other
                # side: the migration's verification re-applies what this replica skipped.
                log.exception("migration_model_unavailable", collection=name)
                continue
            if target is not None:
                out.append(target)
        if not out or not out[0].live:
            # The live collection is unreachable by name: keep writing the one this replica
            # started with rather than nothing (the audit reports any difference).
            out.insert(0, self.configured)
        if out[0].model != self._live_model:
            self._live_model = out[0].model
            log.info("live_model_changed", collection=out[0].name, model=out[0].model)
            if self._on_live_model is not None:
                self._on_live_model(out[0].model)
        return out

    async def live_collection(self) -> AsyncCollection:
        """The collection the alias names now (the one this replica started with when the
        alias is unset or names a collection that is gone)."""
        live_index = await read_live(self._redis, self.logical)
        found = await self.collection(live_index.collection)
        return found if found is not None else self.configured.collection

    async def _target(self, name: str, *, live: bool) -> IndexTarget | None:
        collection = await self.collection(name)
        if collection is None:
            return None
        model = collection_model(collection)
        if model is None:
            return None if name != self.configured.name else self.configured
        source = self._sources.get(model)
        if _digest(model) not in self._encoders and source is None:
            msg = f"no known way to load model {model} of collection {name}"
            raise ModelError(msg)
        encoder = await self.encoder(model, source or "")
        return IndexTarget(name, collection, encoder, model, live)
