"""`kill -9` of an embedder under `make run` no longer ends the stack: the supervisor restarts
it with backoff and logs it, Redis, Chroma, search, explainer, ingest and the gateway keep
serving (the same processes throughout), and every event published before, during and after
the kill is applied."""

from __future__ import annotations

import json
import signal
import threading
import time
from pathlib import Path

import pytest

import devstack
from tests.support.stack import start_or_fail

pytestmark = pytest.mark.e2e

FIRST, SECOND = 600, 100


def catalog(path: Path, n: int, start: int) -> Path:
    with path.open("w", encoding="utf-8") as out:
        for i in range(start, start + n):
            movie = {
                "tmdb_id": i,
                "title": f"Lighthouse {i}",
                "year": 1950 + i % 70,
                "overview": f"Keeper number {i} of a lonely lighthouse watches the storms come "
                "in, writes letters nobody answers and one night sees a ship that is not there.",
            }
            out.write(json.dumps(movie) + "\n")
    return path


def poll(check, what: str, timeout: float, failures: list[BaseException]) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert not failures, f"the supervisor stopped the stack: {failures[0]}"
        if check():
            return
        time.sleep(0.05)
    raise AssertionError(f"{what} not reached within {timeout:g}s")


def test_a_killed_embedder_is_restarted_and_every_event_is_applied(tmp_path):
    messages: list[str] = []
    stack = devstack.Stack(
        tmp_path / "stack",
        embedders=1,
        ports=devstack.Ports.free(),
        env={
            "MARQUEE_EMBEDDER_CLAIM_IDLE_MS": "3000",
            "MARQUEE_EMBEDDER_RECOVERY_INTERVAL_S": "1",
            "MARQUEE_EMBEDDER_BATCH_SIZE": "16",
            "TMDB_API_KEY": "",
            "TMDB_READ_TOKEN": "",
        },
        say=lambda _: None,
    )
    start_or_fail(stack)
    # The supervisor `make run` runs in its main thread, here beside the test.
    supervisor = devstack.Supervisor(
        stack.procs, devstack.RestartPolicy(first_delay_s=0.5), say=messages.append
    )
    stop = threading.Event()
    failures: list[BaseException] = []

    def supervise() -> None:
        try:
            supervisor.run(stop, interval_s=0.1)
        except devstack.StackError as exc:
            failures.append(exc)

    thread = threading.Thread(target=supervise, name="supervisor", daemon=True)
    thread.start()
    try:
        embedder = stack.embedders[0]
        others = {p.name: p.popen.pid for p in stack.procs if p is not embedder}  # type: ignore[union-attr]
        killed_pid = embedder.popen.pid  # type: ignore[union-attr]

        first = stack.ingest("file", str(catalog(tmp_path / "a.jsonl", FIRST, 1)), "--quiet")
        assert first.returncode == 0, first.stderr

        def mid_flow() -> bool:
            left = devstack.backlog(stack.redis_url)
            return left is not None and 0 < left <= FIRST - 16  # a batch applied, most not

        poll(mid_flow, "the first batches applied", 300, failures)
        embedder.signal(signal.SIGKILL)

        # Events keep coming while it is down, and the rest of the stack keeps serving.
        second = stack.ingest("file", str(catalog(tmp_path / "b.jsonl", SECOND, 10_000)), "--quiet")
        assert second.returncode == 0, second.stderr
        assert devstack.http_ok(stack.gateway_url + "/health")

        def restarted() -> bool:
            pid = embedder.popen.pid  # type: ignore[union-attr]
            return pid != killed_pid and devstack.http_ok(stack.embedder_urls[0] + "/ready")

        poll(restarted, "the embedder restarted and ready", 300, failures)
        poll(lambda: devstack.backlog(stack.redis_url) == 0, "every event applied", 600, failures)
        assert stack.indexed_count() == FIRST + SECOND

        # Nothing else was restarted: the same processes, all up.
        assert {p.name: p.popen.pid for p in stack.procs if p is not embedder} == others  # type: ignore[union-attr]
        assert all(p.alive for p in stack.procs)
        assert supervisor.restarts == 1
        assert messages[0].startswith(
            "embedder-1 stopped unexpectedly (killed by SIGKILL); restarting in 0.5s"
        )
        assert messages[1].startswith("embedder-1 restarted (pid ")
        log = embedder.log_path.read_text()
        assert "--- devstack: killed by SIGKILL; restarting in 0.5s ---" in log
    finally:
        stop.set()
        thread.join(10)
        stack.stop()
    assert not failures
