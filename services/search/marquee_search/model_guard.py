"""The model check for a collection that had no model id when this replica started (one made
before model ids existed): search does not stamp it (the embedders write the vectors, so they
do), but checks again every few seconds until a stamp appears. A stamp of another model then
fails readiness and every request with 503 naming both ids, as startup would have refused.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

import structlog

from marquee_shared.chroma import ModelMismatchError, read_collection_model, same_model

if TYPE_CHECKING:
    from chromadb.api import AsyncClientAPI

    from marquee_shared.model.identity import ModelId

log = structlog.get_logger(__name__)


class ModelGuard:
    def __init__(
        self,
        client: AsyncClientAPI,
        collection: str,
        model: ModelId,
        *,
        stored: str | None,
        interval_s: float = 2.0,
    ) -> None:
        self._client = client
        self._collection = collection
        self._interval_s = interval_s
        self.model = model
        self.collection_model = stored
        """The collection's model id; None until one is stamped."""
        self.error: ModelMismatchError | None = None
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        """Watch in the background if the collection has no stamp yet."""
        if self.collection_model is None and self._task is None:
            self._task = asyncio.create_task(self.watch(), name="collection-model-watch")

    def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()

    async def watch(self) -> None:
        """Until the collection is stamped; then compare, once."""
        while self.collection_model is None:
            await asyncio.sleep(self._interval_s)
            try:
                stored = await read_collection_model(self._client, self._collection)
            except Exception as exc:  # noqa: BLE001 - Chroma down or the collection gone: retry
                log.warning("collection_model_unreadable", error=repr(exc)[:300])
                continue
            if stored is None:
                continue
            self.collection_model = stored
            if same_model(stored, self.model):
                log.info("collection_model_checked", model=stored)
            else:
                self.error = ModelMismatchError(self._collection, stored, self.model, "search")
                log.error("model_mismatch", error=str(self.error))

    def check(self) -> None:
        """Raise the mismatch, if one was found (readiness, and before every request)."""
        if self.error is not None:
            raise self.error

    async def ready(self) -> None:
        self.check()
