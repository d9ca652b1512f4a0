"""Composition root of the embedder: a FastStream consumer-group worker served as an ASGI app.

Run: ``uvicorn marquee_embedder.app:create_app --factory --port 8083``. Start N of them and
they share the stream: each has its own consumer name in the one consumer group.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any

import anyio.to_thread
import structlog
from faststream import AckPolicy, Context, ContextRepo
from faststream.asgi import AsgiFastStream
from faststream.redis import RedisBroker, StreamSub
from redis.asyncio import Redis
from redis.exceptions import RedisError

from marquee_embedder.consumer import BatchProcessor, IndexUnavailableError, StreamFieldsFormat
from marquee_embedder.indexer import CatalogIndexer
from marquee_embedder.ledger import Ledger
from marquee_embedder.recovery import Recovery
from marquee_embedder.settings import EmbedderSettings
from marquee_embedder.streams import ensure_group_from_start, release_pending
from marquee_shared.chroma import check_collection_model, open_collection
from marquee_shared.health import Check, health_routes
from marquee_shared.internal_auth import InternalTokenMiddleware
from marquee_shared.logging import configure_logging
from marquee_shared.model.encoder import Encoder, check_backend, load_encoder
from marquee_shared.model.identity import report_model
from marquee_shared.model.resolve import resolve_model

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
    # graceful_timeout: on SIGTERM the batch in hand is finished and acknowledged, not dropped
    # (unless it outlasts the deadline: then it is released, see _Shutdown).
    broker = RedisBroker(str(settings.redis_url), graceful_timeout=settings.shutdown_timeout_s)
    shutdown = _Shutdown(settings)
    checks: dict[str, Check] = {}
    info: dict[str, object] = {}

    @asynccontextmanager
    async def lifespan(context: ContextRepo) -> AsyncIterator[None]:
        structlog.contextvars.bind_contextvars(consumer=settings.consumer_name)
        started = time.perf_counter()
        if settings.model_path is not None:
            log.warning("model_path_deprecated", hint="set MARQUEE_EMBEDDER_MODEL instead")
        # Which model, and whether the collection holds its vectors, before the (slow) load:
        # a wrong model stops startup at once, with both ids.
        model_path, model_id = await anyio.to_thread.run_sync(
            resolve_model, settings.model_path or settings.model
        )
        check_backend(model_path, settings.backend)
        chroma, collection = await open_collection(
            settings.chroma_url, settings.chroma_collection, model=model_id
        )
        await check_collection_model(
            chroma, collection, model_id, service="embedder", stamp_unstamped=True
        )
        model = encoder
        if model is None:
            model = await anyio.to_thread.run_sync(
                lambda: load_encoder(
                    model_path,
                    settings.backend,
                    threads=settings.torch_threads,
                    cache_dir=settings.onnx_cache_dir,
                )
            )
        report_model("embedder", model_id)
        info["model"] = str(model_id)
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
            model=str(model_id),
            backend=settings.backend,
            group=settings.group,
            stream=settings.catalog_stream,
            batch_size=settings.batch_size,
            startup_s=round(time.perf_counter() - started, 2),
        )
        task = asyncio.create_task(recovery.run(), name="embedder-recovery")
        shutdown.recoveries.append(recovery)
        try:
            yield
        finally:
            # The broker has stopped (its batch finished, or cut off at the deadline).
            await shutdown.finish(task, redis)
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

    routes = health_routes("embedder", lambda: checks, lambda: info)
    return AsgiFastStream(
        broker,
        asgi_routes=[
            (r.path, InternalTokenMiddleware(r.app, settings.internal_token)) for r in routes
        ],
        lifespan=lifespan,
        # Runs first on SIGTERM, before the broker waits for the batch in hand.
        on_shutdown=[shutdown.begin],
    )


class _Shutdown:
    """SIGTERM within one deadline (``shutdown_timeout_s``): stop taking work, let the batch in
    hand (and a claimed batch being re-applied) finish and be acknowledged, cancel what is still
    running at the deadline, and release what this consumer still holds to the live replicas."""

    def __init__(self, settings: EmbedderSettings) -> None:
        self._settings = settings
        self._deadline: float | None = None
        self.recoveries: list[Recovery] = []

    async def begin(self) -> None:
        self._deadline = time.monotonic() + self._settings.shutdown_timeout_s
        log.info("embedder_stopping", deadline_s=self._settings.shutdown_timeout_s)
        for recovery in self.recoveries:
            recovery.stop()

    async def finish(self, recovery_task: asyncio.Task[None], redis: Redis) -> None:
        for recovery in self.recoveries:
            recovery.stop()
        deadline = self._deadline or time.monotonic() + self._settings.shutdown_timeout_s
        left = max(0.0, deadline - time.monotonic())
        _, running = await asyncio.wait({recovery_task}, timeout=left)
        if running:
            recovery_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await recovery_task
            log.warning("recovery_cut_off_at_deadline")
        s = self._settings
        try:
            async with asyncio.timeout(5):
                released = await release_pending(redis, s.catalog_stream, s.group, s.consumer_name)
        except (RedisError, OSError, TimeoutError) as exc:
            # Not lost: still pending, claimed by a live replica after claim_idle_ms.
            log.warning("release_failed", error=repr(exc))
        else:
            if released:
                log.info("entries_released", entries=len(released), first_id=released[0])


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
