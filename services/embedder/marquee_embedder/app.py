"""Composition root of the embedder: a FastStream consumer-group worker served as an ASGI app.

Run: ``uvicorn marquee_embedder.app:create_app --factory --port 8083``. Start N of them and
they share the stream: each has its own consumer name in the one consumer group.
"""

from __future__ import annotations

import asyncio
import time
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any

import anyio.to_thread
import structlog
from faststream import AckPolicy, Context, ContextRepo
from faststream.asgi import AsgiFastStream
from faststream.redis import RedisBroker, StreamSub
from redis.asyncio import Redis

from marquee_embedder.consumer import BatchProcessor, IndexUnavailableError, StreamFieldsFormat
from marquee_embedder.encoder import Encoder, load_encoder
from marquee_embedder.indexer import CatalogIndexer
from marquee_embedder.ledger import Ledger
from marquee_embedder.recovery import Recovery
from marquee_embedder.settings import EmbedderSettings
from marquee_embedder.streams import ensure_group_from_start
from marquee_shared.chroma import open_collection
from marquee_shared.health import Check, health_routes
from marquee_shared.internal_auth import InternalTokenMiddleware
from marquee_shared.logging import configure_logging

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

    from faststream.redis.message import RedisBatchStreamMessage


log = structlog.get_logger(__name__)


def create_app(
    settings: EmbedderSettings | None = None, *, encoder: Encoder | None = None
) -> AsgiFastStream:
    """Build the worker. ``encoder`` lets tests share one loaded model across app instances."""
    settings = settings or EmbedderSettings()
    configure_logging(settings.log_level, settings.log_format)
    # graceful_timeout: on SIGTERM the batch in hand is finished and acknowledged, not dropped.
    broker = RedisBroker(str(settings.redis_url), graceful_timeout=30.0)
    checks: dict[str, Check] = {}

    @asynccontextmanager
    async def lifespan(context: ContextRepo) -> AsyncIterator[None]:
        structlog.contextvars.bind_contextvars(consumer=settings.consumer_name)
        started = time.perf_counter()
        model = encoder
        if model is None:
            model = await anyio.to_thread.run_sync(
                lambda: load_encoder(
                    settings.model_path,
                    settings.backend,
                    threads=settings.torch_threads,
                    cache_dir=settings.onnx_cache_dir,
                )
            )
        chroma, collection = await open_collection(settings.chroma_url, settings.chroma_collection)
        redis: Redis = Redis.from_url(str(settings.redis_url))
        ledger = Ledger(redis, f"{settings.catalog_stream}:ledger")
        processor = BatchProcessor(CatalogIndexer(collection, model, ledger), redis, settings)
        # FastStream would create the group at "$" (the stream's end): events published before
        # the first worker started would never be read. Create it at "0" first.
        await ensure_group_from_start(redis, settings.catalog_stream, settings.group)
        recovery = Recovery(
            processor=processor,
            redis=redis,
            broker=broker,
            settings=settings,
            index_ok=chroma.heartbeat,
        )
        context.set_global("processor", processor)
        checks.update(
            redis=redis.ping,
            chroma=chroma.heartbeat,
            consumer=lambda: _subscriber_running(broker),
        )
        log.info(
            "embedder_started",
            group=settings.group,
            stream=settings.catalog_stream,
            batch_size=settings.batch_size,
            startup_s=round(time.perf_counter() - started, 2),
        )
        task = asyncio.create_task(recovery.run(), name="embedder-recovery")
        try:
            yield
        finally:
            recovery.stop()
            await task
            await redis.aclose()
            log.info("embedder_stopped")

    backoff = _Backoff()

    @broker.subscriber(
        stream=StreamSub(
            settings.catalog_stream,
            group=settings.group,
            consumer=settings.consumer_name,
            batch=True,
            max_records=settings.batch_size,
            polling_interval=settings.poll_ms,
        ),
        message_format=StreamFieldsFormat,
        # Acknowledged by BatchProcessor, entry by entry, once Chroma has each event.
        ack_policy=AckPolicy.MANUAL,
    )
    async def on_catalog_batch(
        entries: list[dict[str, Any]],
        message: RedisBatchStreamMessage = Context("message"),
        processor: BatchProcessor = Context("processor"),
    ) -> None:
        entry_ids = [i.decode() for i in message.raw_message["message_ids"]]
        try:
            await processor.process(entry_ids, entries)
        except IndexUnavailableError as exc:
            # Leave the batch pending (the recovery loop re-applies it once Chroma is back)
            # and slow the reading down instead of pulling the whole stream into the PEL.
            delay = backoff.next()
            log.warning(
                "index_unavailable", error=str(exc), entries=len(entry_ids), retry_in_s=delay
            )
            await asyncio.sleep(delay)
        else:
            backoff.reset()

    routes = health_routes("embedder", lambda: checks)
    return AsgiFastStream(
        broker,
        asgi_routes=[
            (r.path, InternalTokenMiddleware(r.app, settings.internal_token)) for r in routes
        ],
        lifespan=lifespan,
    )


class _Backoff:
    def __init__(self, first: float = 0.5, cap: float = 30.0) -> None:
        self._first, self._cap, self._delay = first, cap, first

    def next(self) -> float:
        delay, self._delay = self._delay, min(self._delay * 2, self._cap)
        return delay

    def reset(self) -> None:
        self._delay = self._first


async def _subscriber_running(broker: RedisBroker) -> None:
    # FastStream stops a subscriber for good when its group vanishes (NOGROUP, e.g. Redis
    # restarted without persistence); readiness must then fail so the process is restarted.
    if not all(sub.running for sub in broker.subscribers):
        msg = "stream subscriber stopped"
        raise RuntimeError(msg)
