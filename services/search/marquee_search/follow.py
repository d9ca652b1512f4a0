"""What a replica serves from (one collection, the model of its vectors, the model guard), and
switching to another one when the index alias moves (a model migration's switch or rollback,
``marquee_shared.migration``).

A switch builds everything for the new collection beside the current one (the model, loaded
once per process and kept; the mirror and keyword index, loaded whole) and then swaps the app's
engine and guard in one step with no await in between: a request sees the old engine or the new
one, never a mix, and searches in flight finish on the old one (its collection stays until
``migrate finish``, which comes after every replica has followed).
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import anyio.to_thread
import structlog
from prometheus_client import Counter

from marquee_search.model_guard import ModelGuard
from marquee_shared.chroma import check_collection_model, open_collection
from marquee_shared.model.encoder import check_backend, load_encoder
from marquee_shared.model.files import ModelError, is_bundle
from marquee_shared.model.identity import ModelId, report_model
from marquee_shared.model.resolve import resolve_model

if TYPE_CHECKING:
    from collections.abc import Callable
    from pathlib import Path

    from chromadb.api import AsyncClientAPI
    from chromadb.api.models.AsyncCollection import AsyncCollection

    from marquee_search.engine import SearchEngine
    from marquee_search.settings import SearchSettings
    from marquee_search.sync import IndexSync
    from marquee_shared.health import Check
    from marquee_shared.migration import LiveIndex
    from marquee_shared.model.encoder import Backend, Encoder

log = structlog.get_logger(__name__)

SWITCHES = Counter(
    "marquee_search_index_switches_total",
    "Times this replica followed the index alias to another collection (model migration)",
)


@dataclass(frozen=True, slots=True)
class Serving:
    collection_name: str
    model_path: Path
    model: ModelId
    chroma: AsyncClientAPI
    collection: AsyncCollection
    guard: ModelGuard
    encoder: Encoder


class Encoders:
    """Models loaded by this replica, by digest: a rollback finds the old one still loaded."""

    def __init__(self, settings: SearchSettings, preloaded: Encoder | None = None) -> None:
        self._settings = settings
        self._preloaded = preloaded
        self._loaded: dict[str, Encoder] = {}

    def backend(self, model_path: Path) -> Backend:
        # A bundle runs on the one backend it was exported for; a migration may bring one in.
        return "onnx-int8" if is_bundle(model_path) else self._settings.backend

    async def get(self, model_path: Path, model: ModelId, *, configured: bool) -> Encoder:
        found = self._loaded.get(model.digest)
        if found is None and configured and self._preloaded is not None:
            found = self._preloaded  # tests hand the configured model in
        if found is None:
            settings = self._settings
            found = await anyio.to_thread.run_sync(
                lambda: load_encoder(
                    model_path,
                    self.backend(model_path),
                    threads=settings.torch_threads,
                    cache_dir=settings.onnx_cache_dir,
                    spin=False,
                )
            )
        self._loaded[model.digest] = found
        return found


async def open_serving(settings: SearchSettings, live: LiveIndex, encoders: Encoders) -> Serving:
    """The live collection once checked to hold the vectors of the model that will encode the
    queries: the alias's model when it names one, else the configured one. Checked before the
    (slow) model load, so a wrong model is refused at once, naming both ids."""
    configured = str(settings.model_path or settings.model)
    source = live.model_source or configured
    model_path, model_id = await anyio.to_thread.run_sync(resolve_model, source)
    if live.model is not None and not model_id.same_vectors(ModelId.parse(live.model)):
        msg = (
            f"the index alias names model {live.model} (loaded from {source!r}), but that "
            f"folder now holds {model_id} on this replica"
        )
        raise ModelError(msg)
    # The configured model on the configured backend (a bundle and another backend is an error
    # to fix); a model the alias brought in on the one it can run on.
    check_backend(
        model_path, settings.backend if source == configured else encoders.backend(model_path)
    )
    chroma, collection = await open_collection(
        settings.chroma_url, live.collection, model=model_id, token=settings.chroma_token
    )
    stored = await check_collection_model(
        chroma, collection, model_id, service="search", stamp_unstamped=False
    )
    encoder = await encoders.get(model_path, model_id, configured=source == configured)
    guard = ModelGuard(chroma, collection.name, model_id, stored=stored)
    guard.start()
    if source != configured:
        log.info("serving_alias_model", collection=live.collection, model=str(model_id))
    return Serving(live.collection, model_path, model_id, chroma, collection, guard, encoder)


class ServingSwitch:
    """Owns what the replica serves from (engine, guard, the mirror's sync task) and swaps it
    for another collection's; ``app_state`` is the FastAPI app's state the routes read."""

    def __init__(
        self,
        app_state: Any,
        *,
        settings: SearchSettings,
        encoders: Encoders,
        make_sync: Callable[[AsyncCollection], IndexSync],
        make_engine: Callable[[Serving, IndexSync], SearchEngine],
        checks: dict[str, Check],
    ) -> None:
        self._state = app_state
        self._settings = settings
        self._encoders = encoders
        self._make_sync = make_sync
        self._make_engine = make_engine
        self._checks = checks
        self.serving: Serving | None = None
        self.sync: IndexSync | None = None
        self._task: asyncio.Task[None] | None = None

    def start(self, serving: Serving) -> IndexSync:
        """Serve ``serving`` at once; its mirror loads in the background (``/ready`` says
        when), as at startup."""
        sync = self._make_sync(serving.collection)
        self._install(serving, sync)
        return sync

    async def switch(self, live: LiveIndex) -> None:
        """Follow the alias to ``live``: load all of it first, then swap."""
        serving = await open_serving(self._settings, live, self._encoders)
        try:
            sync = self._make_sync(serving.collection)
            await sync.load_now()
        except BaseException:
            serving.guard.stop()
            raise
        old_guard = self.serving.guard if self.serving is not None else None
        self._install(serving, sync)
        if old_guard is not None:
            old_guard.stop()
        SWITCHES.inc()
        log.info(
            "index_switched",
            collection=serving.collection_name,
            model=str(serving.model),
            movies=len(sync.mirror) if sync.mirror is not None else 0,
        )

    def _install(self, serving: Serving, sync: IndexSync) -> None:
        engine = self._make_engine(serving, sync)
        old_task = self._task
        # The swap: no await from here to the end, so every request sees one whole side.
        self._task = asyncio.create_task(sync.run(), name=f"keyword-index-sync-{serving.model}")
        self._state.engine = engine
        self._state.model_guard = serving.guard
        self.serving, self.sync = serving, sync
        self._checks.update(
            chroma=serving.chroma.heartbeat, keyword_index=sync.ready, model=serving.guard.ready
        )
        report_model("search", serving.model)
        if old_task is not None:
            old_task.cancel()

    async def stop(self) -> None:
        if self.serving is not None:
            self.serving.guard.stop()
        if self._task is not None:
            self._task.cancel()
            # Bounded: a load running in a worker thread cannot be interrupted, and shutdown
            # must not wait for it (the process is going away anyway).
            await asyncio.wait({self._task}, timeout=5)
