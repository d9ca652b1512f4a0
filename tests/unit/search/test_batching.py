"""Opportunistic query batching: alone at once, together under load, errors to every waiter."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Sequence

import numpy as np
import pytest
from numpy.typing import NDArray

from marquee_search.batching import QueryBatcher


class RecordingEncoder:
    """A stand-in for the model (the real one is tested in integration): one vector per text,
    derived from the text, and a record of each forward pass. ``hold`` blocks the next pass."""

    backend = "onnx"

    def __init__(self) -> None:
        self.passes: list[list[str]] = []
        self.hold = threading.Event()
        self.hold.set()
        self.started = threading.Event()
        self.fail_next = False

    def encode(self, texts: Sequence[str], *, batch_size: int = 32) -> NDArray[np.float32]:
        self.passes.append(list(texts))
        self.started.set()
        self.hold.wait(10)
        if self.fail_next:
            self.fail_next = False
            msg = "model exploded"
            raise RuntimeError(msg)
        return np.array([[float(len(t)), float(sum(map(ord, t)))] for t in texts], np.float32)


def vector_of(text: str) -> list[float]:
    return [float(len(text)), float(sum(map(ord, text)))]


async def first_pass_in_flight(
    batcher: QueryBatcher, encoder: RecordingEncoder
) -> asyncio.Future[NDArray[np.float32]]:
    """Query "first", held inside the model until ``encoder.hold`` is set."""
    encoder.hold.clear()
    first = asyncio.ensure_future(batcher.encode("first"))
    await asyncio.to_thread(encoder.started.wait, 5)
    return first


async def test_a_lone_query_is_encoded_at_once_and_alone() -> None:
    encoder = RecordingEncoder()
    batcher = QueryBatcher(encoder)
    vector = await asyncio.wait_for(batcher.encode("a shark"), 5)
    assert vector.tolist() == vector_of("a shark")
    assert encoder.passes == [["a shark"]]


async def test_queries_arriving_during_a_pass_share_the_next_one() -> None:
    encoder = RecordingEncoder()
    batcher = QueryBatcher(encoder, max_batch=4)
    first = await first_pass_in_flight(batcher, encoder)
    later = [asyncio.ensure_future(batcher.encode(f"query {i}")) for i in range(6)]
    await asyncio.sleep(0.05)
    encoder.hold.set()
    results = await asyncio.wait_for(asyncio.gather(first, *later), 5)
    # One pass for the first, then the six waiting ones in passes of at most four.
    assert [len(p) for p in encoder.passes] == [1, 4, 2]
    texts = ["first"] + [f"query {i}" for i in range(6)]
    assert [r.tolist() for r in results] == [vector_of(t) for t in texts]


async def test_a_model_error_reaches_every_waiter_and_the_batcher_recovers() -> None:
    encoder = RecordingEncoder()
    batcher = QueryBatcher(encoder)
    first = await first_pass_in_flight(batcher, encoder)
    encoder.fail_next = True  # the pass in flight fails
    waiting = asyncio.ensure_future(batcher.encode("second"))
    encoder.hold.set()
    with pytest.raises(RuntimeError, match="model exploded"):
        await asyncio.wait_for(first, 5)
    assert (await asyncio.wait_for(waiting, 5)).tolist() == vector_of("second")
    assert (await asyncio.wait_for(batcher.encode("third"), 5)).tolist() == vector_of("third")


async def test_a_waiter_that_gives_up_does_not_disturb_the_others() -> None:
    encoder = RecordingEncoder()
    batcher = QueryBatcher(encoder)
    first = await first_pass_in_flight(batcher, encoder)
    gone = asyncio.ensure_future(batcher.encode("gone"))
    kept = asyncio.ensure_future(batcher.encode("kept"))
    await asyncio.sleep(0.01)
    gone.cancel()
    encoder.hold.set()
    assert (await asyncio.wait_for(kept, 5)).tolist() == vector_of("kept")
    await first
    assert encoder.passes[1] == ["kept"], "a cancelled query should not be encoded"


async def test_with_two_passes_a_query_does_not_wait_for_the_pass_in_flight() -> None:
    encoder = RecordingEncoder()
    batcher = QueryBatcher(encoder, max_batch=4, passes=2)
    first = await first_pass_in_flight(batcher, encoder)
    encoder.started.clear()
    # The first pass is held inside the model; a second query starts its own pass at once,
    # but the model holds that one too: both are in flight together.
    second = asyncio.ensure_future(batcher.encode("second"))
    await asyncio.to_thread(encoder.started.wait, 5)
    assert encoder.passes == [["first"], ["second"]]
    # With both passes busy, later queries wait and then share one.
    later = [asyncio.ensure_future(batcher.encode(f"query {i}")) for i in range(3)]
    await asyncio.sleep(0.05)
    assert len(encoder.passes) == 2
    encoder.hold.set()
    results = await asyncio.wait_for(asyncio.gather(first, second, *later), 5)
    assert sorted(len(p) for p in encoder.passes) == [1, 1, 3]
    texts = ["first", "second"] + [f"query {i}" for i in range(3)]
    assert [r.tolist() for r in results] == [vector_of(t) for t in texts]
