"""SIGTERM in the middle of a batch: a real embedder process (uvicorn, as `make run` and the
images start it) is stopped while its batch's write to Chroma is in flight. It exits within its
deadline (MARQUEE_EMBEDDER_SHUTDOWN_TIMEOUT_S), having either finished and acknowledged the
batch in hand or released it to the live replicas; a second worker then applies the rest, and
every movie is in Chroma at its latest version with nothing left pending.

The batch is held in flight by a real reverse proxy in front of the real Chroma that stalls the
write carrying a marker movie (tests/fakes/faulty_proxy.py); the signal is a real SIGTERM.
"""

from __future__ import annotations

import asyncio
import signal
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

import devstack
from marquee_embedder.app import create_app
from marquee_embedder.streams import RELEASED_IDLE_MS
from marquee_shared.events import CATALOG_STREAM, DEAD_LETTER_STREAM, Movie
from marquee_shared.streams import publish_events
from tests.fakes.faulty_proxy import FaultyProxy
from tests.support.asgi import serve
from tests.support.chroma import chroma_collection
from tests.support.embedder import fast_settings
from tests.support.movies import fetched
from tests.support.movies import numbered as movies
from tests.support.waiting import wait_until

pytestmark = pytest.mark.integration

GROUP = "embedders"
DOOMED = "doomed-worker"
BATCH = 32
N = 160
MARKER = b"SLOW-WRITE-MARKER"
EXIT_SLACK_S = 10.0
"""Beyond the deadline: interpreter teardown (and, at worst, a model forward pass running in a
worker thread, which cannot be interrupted) on a loaded 2-core machine."""


def catalog() -> list[Movie]:
    """N movies, the marker in the title of one in the third batch: two batches are applied
    before the stall."""
    films = movies(N)
    marked = films[2 * BATCH + 5]
    films[2 * BATCH + 5] = marked.model_copy(update={"title": f"{MARKER.decode()} {marked.title}"})
    return films


def worker(
    redis_url: str, chroma_url: str, collection: str, deadline_s: float, log_dir: Path
) -> devstack.Proc:
    env = {
        "MARQUEE_REDIS_URL": redis_url,
        "MARQUEE_CHROMA_URL": chroma_url,
        "MARQUEE_CHROMA_COLLECTION": collection,
        "MARQUEE_EMBEDDER_CONSUMER_NAME": DOOMED,
        "MARQUEE_EMBEDDER_BATCH_SIZE": str(BATCH),
        "MARQUEE_EMBEDDER_POLL_MS": "100",
        "MARQUEE_EMBEDDER_SHUTDOWN_TIMEOUT_S": str(deadline_s),
        "MARQUEE_EMBEDDER_TORCH_THREADS": "1",
        "MARQUEE_EMBEDDER_ONNX_CACHE_DIR": str(Path.home() / ".cache" / "marquee" / "onnx"),
        "MARQUEE_INTERNAL_TOKEN": "",
        "MARQUEE_LOG_FORMAT": "json",
        "HF_HUB_OFFLINE": "1",
        "TOKENIZERS_PARALLELISM": "false",
    }
    return devstack.service_proc(
        "embedder-sigterm", "marquee_embedder.app", devstack.free_port(), env, log_dir
    )


async def pending_of(redis, consumer: str) -> list[dict[str, object]]:  # type: ignore[no-untyped-def]
    return list(
        await redis.xpending_range(
            CATALOG_STREAM, GROUP, min="-", max="+", count=1000, consumername=consumer
        )
    )


async def group_drained(redis) -> bool:  # type: ignore[no-untyped-def]
    groups = {g["name"].decode(): g for g in await redis.xinfo_groups(CATALOG_STREAM)}
    g = groups.get(GROUP)
    return g is not None and g["pending"] == 0 and g.get("lag") == 0


@pytest.mark.parametrize(
    ("deadline_s", "stall_s", "outcome"),
    [
        # The stalled write ends well within the deadline: the batch is finished and acked.
        (30.0, 3.0, "finished"),
        # The write outlasts the deadline: the batch is cut off and released.
        (2.0, 12.0, "released"),
    ],
    ids=["batch-finishes-within-the-deadline", "batch-cut-off-and-released-at-the-deadline"],
)
async def test_sigterm_mid_batch_exits_within_the_deadline_and_loses_nothing(
    redis, redis_url, chroma_url, collection_name, encoder, tmp_path, deadline_s, stall_s, outcome
):
    films = catalog()
    await redis.xgroup_create(CATALOG_STREAM, GROUP, id="0", mkstream=True)
    old = datetime.now(UTC) - timedelta(hours=1)
    await publish_events(redis, [fetched(m, occurred_at=old) for m in films])
    # Newer versions of some, published behind: they must win wherever they are applied.
    newer = [m.model_copy(update={"vote_average": 9.9}) for m in films[::7]]
    await publish_events(redis, [fetched(m) for m in newer])
    expected = {m.tmdb_id: m.vote_average for m in [*films, *newer]}

    async with FaultyProxy(chroma_url).running() as proxy:
        proxy.stall_markers.add(MARKER)
        proxy.stall_s = stall_s
        proc = worker(redis_url, proxy.url, collection_name, deadline_s, tmp_path).start()
        try:
            # Mid-batch: the worker's write of the marker's batch is being held by the proxy,
            # with that batch delivered to it and not acknowledged.
            await wait_until(
                lambda: _true(proxy.stalled > 0 or not proc.alive),
                timeout=240,
                what="the worker reached the stalled batch",
            )
            assert proc.alive, proc.log_tail()
            held = await pending_of(redis, DOOMED)
            assert held, "the worker holds no batch"

            signalled = time.monotonic()
            proc.signal(signal.SIGTERM)
            code = await asyncio.to_thread(proc.popen.wait, deadline_s + EXIT_SLACK_S + 30)  # type: ignore[union-attr]
            took = time.monotonic() - signalled
        finally:
            proc.stop()
    log = proc.log_path.read_text()
    # uvicorn re-raises the SIGTERM once its shutdown is complete.
    assert code in (0, -signal.SIGTERM), proc.log_tail()
    assert took <= deadline_s + EXIT_SLACK_S, f"exited after {took:.1f}s; {proc.log_tail()}"
    assert '"embedder_stopping"' in log
    assert '"embedder_stopped"' in log
    assert log.count("waiting for messages") == 1, "more than one read loop"
    assert '"subscriber_restarting"' not in log
    left = await pending_of(redis, DOOMED)
    if outcome == "finished":
        after_sigterm = log[log.index('"embedder_stopping"') :]
        assert '"batch_applied"' in after_sigterm, "the batch in hand was not applied"
        assert left == [], "the batch in hand was not acknowledged"
    else:
        assert '"entries_released"' in log, proc.log_tail()
        assert {p["message_id"] for p in left} >= {p["message_id"] for p in held}
        # Released: idle far beyond any claim_idle_ms, so a live replica claims them at once.
        assert all(p["time_since_delivered"] >= RELEASED_IDLE_MS - 60_000 for p in left)

    # A live replica (straight to Chroma) picks up the rest. Its claim_idle_ms is longer than
    # this test, so released entries can only reach it through the release.
    settings = fast_settings(
        redis_url, chroma_url, collection_name, batch_size=BATCH, claim_idle_ms=600_000
    )
    async with serve(create_app(settings, encoder=encoder)):
        await wait_until(lambda: group_drained(redis), timeout=240, what="everything applied")

    got = chroma_collection(chroma_url, collection_name).get(
        ids=[str(i) for i in expected], include=["metadatas"]
    )
    stored = {
        int(i): md.get("vote_average") for i, md in zip(got["ids"], got["metadatas"], strict=True)
    }
    assert set(stored) == set(expected), f"missing: {sorted(set(expected) - set(stored))[:10]}"
    wrong = {i: (stored[i], v) for i, v in expected.items() if stored[i] != v}
    assert not wrong, f"not at their latest version: {list(wrong.items())[:10]}"
    assert await redis.xlen(DEAD_LETTER_STREAM) == 0


async def _true(value: bool) -> bool:
    return value
