"""Concurrent queries share one forward pass of the model (opportunistic batching).

A query that arrives while the model is idle is encoded at once, alone: no added latency for a
lone client. Queries that arrive while a forward pass is running wait for it and then go
together in the next one. Under load this runs one forward pass at a time instead of one per
request in parallel threads, which on a few cores oversubscribes them (each ONNX Runtime call
spins up its own intra-op threads) and spends more time switching than computing; a batch of
short queries also costs far less than as many single calls.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

import anyio

if TYPE_CHECKING:
    from numpy.typing import NDArray

    from marquee_shared.model.encoder import Encoder

MAX_BATCH = 32
"""Queries per forward pass; more pad every query to the longest for little gain."""


class QueryBatcher:
    """``passes``: forward passes run at once, each in its own worker thread (set it to the
    cores the replica has over the model's threads per pass: a second single-threaded pass
    uses a second core, where a second thread inside one short pass mostly waits)."""

    def __init__(self, encoder: Encoder, max_batch: int = MAX_BATCH, passes: int = 1) -> None:
        self._encoder = encoder
        self._max_batch = max_batch
        self._passes = passes
        self._waiting: list[tuple[str, asyncio.Future[NDArray[Any]]]] = []
        self._workers: set[asyncio.Task[None]] = set()

    async def encode(self, text: str) -> NDArray[Any]:
        future: asyncio.Future[NDArray[Any]] = asyncio.get_running_loop().create_future()
        self._waiting.append((text, future))
        # done(), not a done-callback: a worker that has just found the queue empty is done at
        # once, while its callback would run later and leave this query waiting for nobody.
        self._workers = {w for w in self._workers if not w.done()}
        if len(self._workers) < self._passes:
            self._workers.add(asyncio.create_task(self._drain(), name="query-batcher"))
        return await future

    async def _drain(self) -> None:
        while self._waiting:
            batch = self._waiting[: self._max_batch]
            del self._waiting[: self._max_batch]
            # A request that gave up (client gone) needs no vector.
            batch = [(text, future) for text, future in batch if not future.done()]
            if not batch:
                continue
            try:
                vectors = await anyio.to_thread.run_sync(
                    self._encoder.encode, [text for text, _ in batch]
                )
            except Exception as exc:  # noqa: BLE001 - every waiter gets the model's error
                for _, future in batch:
                    if not future.done():
                        future.set_exception(exc)
                continue
            for (_, future), vector in zip(batch, vectors, strict=True):
                if not future.done():
                    future.set_result(vector)
