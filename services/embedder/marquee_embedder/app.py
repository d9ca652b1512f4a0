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

from marquee_embedder import self_repair
from marquee_embedder.backfill import Backfill
from marquee_embedder.consumer import (
    INDEX_AWAY,
    BatchProcessor,
    IndexUnavailableError,
    StreamFieldsFormat,
)
from marquee_embedder.indexer import CatalogIndexer
from marquee_embedder.ledger import Ledger
from marquee_embedder.migration import MigrationStore
from marquee_embedder.recovery import Recovery
from marquee_embedder.settings import EmbedderSettings
from marquee_embedder.streams import ensure_group_from_start, release_pending
from marquee_embedder.targets import IndexTarget, IndexTargets
from marquee_shared.backoff import Backoff
from marquee_shared.chroma import check_collection_model, open_collection
from marquee_shared.health import Check, health_routes
from marquee_shared.internal_auth import InternalTokenMiddleware
from marquee_shared.logging import broker_logger, configure_logging
from marquee_shared.migration import read_live
from marquee_shared.model.encoder import Backend, Encoder, check_backend, load_encoder
from marquee_shared.model.files import is_bundle
from marquee_shared.model.identity import ModelId, report_model
from marquee_shared.model.resolve import resolve_model

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Callable
    from pathlib import Path

    from chromadb.api import AsyncClientAPI
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
    broker = RedisBroker(
        str(settings.redis_url),
        graceful_timeout=settings.shutdown_timeout_s,
        logger=broker_logger(),  # its lines in the service's one log format
    )
    shutdown = _Shutdown(settings)
    checks: dict[str, Check] = {}
    info: dict[str, object] = {}

    @asynccontextmanager
    async def lifespan(context: ContextRepo) -> AsyncIterator[None]:
        structlog.contextvars.bind_contextvars(consumer=settings.consumer_name)
        started = time.perf_counter()
        redis: Redis = Redis.from_url(str(settings.redis_url))
        chroma, live_target = await _open_live(settings, redis, encoder)

        def live_model(model: str) -> None:  # at startup, and when a switch changes it
            report_model("embedder", ModelId.parse(model))
            info["model"] = model

        live_model(live_target.model)
        # Every event also goes to the other collection of a model migration, and idle time
        # copies the ledger into it (backfill.py).
        indexer, backfill, targets = _indexer(settings, chroma, redis, live_target, live_model)
        processor = BatchProcessor(indexer, redis, settings)
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
            model=live_target.model,
            backend=settings.backend,
            group=settings.group,
            stream=settings.catalog_stream,
            batch_size=settings.batch_size,
            startup_s=round(time.perf_counter() - started, 2),
        )
        task = asyncio.create_task(recovery.run(), name="embedder-recovery")
        shutdown.recoveries.append(recovery)
        migrating = asyncio.create_task(backfill.run(), name="migration-backfill")
        # Records Chroma no longer returns to queries are re-indexed (self_repair.py).
        shutdown.self_repair = self_repair.start(
            settings, redis, live_target.collection, follow=targets.live_collection
        )
        try:
            yield
        finally:
            # A chunk cut off here stays claimed until its lease ends; then another replica
            # copies it again (idempotent upserts).
            backfill.stop()
            migrating.cancel()
            await asyncio.wait({migrating}, timeout=5)
            # The broker has stopped (its batch finished, or cut off at the deadline).
            await shutdown.finish(task, redis)
            await redis.aclose()
            log.info("embedder_stopped")

    backoff = Backoff(first=0.5, cap=30.0)

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
            INDEX_AWAY.labels("batch").inc()
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


async def _open_live(
    settings: EmbedderSettings, redis: Redis, encoder: Encoder | None
) -> tuple[AsyncClientAPI, IndexTarget]:
    """The live collection and its model: the alias's once a model migration switched
    (marquee_shared.migration), else the configured ones."""
    if settings.model_path is not None:
        log.warning("model_path_deprecated", hint="set MARQUEE_EMBEDDER_MODEL instead")
    configured = str(settings.model_path or settings.model)
    live = await read_live(redis, settings.chroma_collection)
    model_source = live.model_source or configured
    # Which model, and whether the collection holds its vectors, before the (slow) load:
    # a wrong model stops startup at once, with both ids.
    model_path, model_id = await anyio.to_thread.run_sync(resolve_model, model_source)
    # The configured model on the configured backend (a bundle and another backend is an
    # error to fix); a model the alias brought in on the one it can run on.
    check_backend(
        model_path,
        settings.backend if model_source == configured else backend_for(model_path, settings),
    )
    chroma, collection = await open_collection(
        settings.chroma_url,
        live.collection,
        model=model_id,
        token=settings.chroma_token,
    )
    await check_collection_model(
        chroma, collection, model_id, service="embedder", stamp_unstamped=True
    )
    if model_source != configured:
        log.warning("following_alias", collection=live.collection, model=str(model_id))
    # The injected encoder (tests) is the configured model's.
    model = encoder if model_source == configured else None
    if model is None:
        model = await anyio.to_thread.run_sync(load_model, model_source, settings)
    return chroma, IndexTarget(live.collection, collection, model, str(model_id), live=True)


def _indexer(
    settings: EmbedderSettings,
    chroma: AsyncClientAPI,
    redis: Redis,
    live: IndexTarget,
    on_live_model: Callable[[str], None],
) -> tuple[CatalogIndexer, Backfill, IndexTargets]:
    ledger = Ledger(redis, f"{settings.catalog_stream}:ledger")
    targets = IndexTargets(
        chroma,
        redis,
        settings.chroma_collection,
        live=live,
        load=lambda source: load_model(source, settings),
        on_live_model=on_live_model,
    )
    indexer = CatalogIndexer(live.collection, live.encoder, ledger, targets=targets)
    store = MigrationStore(redis, settings.chroma_collection, ledger.key)
    return indexer, Backfill(store, targets, indexer, ledger, settings), targets


def backend_for(model_path: Path, settings: EmbedderSettings) -> Backend:
    """A bundle serves only the backend it was exported for; any other folder the configured
    one (a migration's target may be either kind)."""
    return "onnx-int8" if is_bundle(model_path) else settings.backend


def load_model(source: str, settings: EmbedderSettings) -> Encoder:
    """The encoder of a MODEL setting (the configured one, the alias's or a migration's)."""
    model_path, _ = resolve_model(source)
    return load_encoder(
        model_path,
        backend_for(model_path, settings),
        threads=settings.torch_threads,
        cache_dir=settings.onnx_cache_dir,
    )


class _Shutdown:
    """SIGTERM within one deadline (``shutdown_timeout_s``): stop taking work, let the batch in
    hand (and a claimed batch being re-applied) finish and be acknowledged, cancel what is still
    running at the deadline, and release what this consumer still holds to the live replicas."""

    def __init__(self, settings: EmbedderSettings) -> None:
        self._settings = settings
        self._deadline: float | None = None
        self.recoveries: list[Recovery] = []
        self.self_repair: self_repair.Running | None = None

    async def begin(self) -> None:
        self._deadline = time.monotonic() + self._settings.shutdown_timeout_s
        log.info("embedder_stopping", deadline_s=self._settings.shutdown_timeout_s)
        for recovery in self.recoveries:
            recovery.stop()

    async def finish(self, recovery_task: asyncio.Task[None], redis: Redis) -> None:
        for recovery in self.recoveries:
            recovery.stop()
        await self_repair.stop(self.self_repair)
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


async def _subscriber_running(broker: RedisBroker) -> None:
    # FastStream stops a subscriber for good when its group vanishes (NOGROUP, e.g. Redis
    # restarted without persistence); readiness must then fail so the process is restarted.
    if not all(sub.running for sub in broker.subscribers):
        msg = "stream subscriber stopped"
        raise RuntimeError(msg)
