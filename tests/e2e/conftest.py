"""End-to-end fixtures: the whole stack started by scripts/devstack.py, as `make run` does."""

from __future__ import annotations

import time
from collections.abc import Iterator

import httpx
import pytest

import devstack

pytestmark = pytest.mark.e2e


def wait_applied(stack: devstack.Stack, timeout: float = 600) -> None:
    """Until the embedders have applied (and acknowledged) every published event."""
    deadline = time.monotonic() + timeout
    left: int | None = None
    while time.monotonic() < deadline:
        left = devstack.backlog(stack.redis_url)
        if left == 0:
            return
        dead = [p.name for p in stack.procs if not p.alive]
        assert not dead, f"{dead} died; logs in {stack.log_dir}"
        time.sleep(0.3)
    msg = f"{left} events still not applied after {timeout}s; logs in {stack.log_dir}"
    raise AssertionError(msg)


def embedder_metric(url: str, outcome: str) -> float:
    text = httpx.get(url + "/metrics", timeout=10).text
    for line in text.splitlines():
        if line.startswith(f'marquee_embedder_events_total{{outcome="{outcome}"}}'):
            return float(line.split()[-1])
    return 0.0


def start_or_fail(stack: devstack.Stack) -> None:
    try:
        stack.start()
    except devstack.StackError as exc:
        pytest.fail(f"the stack did not start: {exc}", pytrace=False)


@pytest.fixture(scope="module")
def demo_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[devstack.Stack]:
    """The stack with the demo catalog ingested (`make run` minus the terminal)."""
    stack = devstack.Stack(
        tmp_path_factory.mktemp("stack"),
        embedders=1,
        ports=devstack.Ports.free(),
        # Blank counts as unset: a developer's real TMDB key must not start syncing in tests.
        # No images from TMDB's host either (tests never reach the internet); the poster test
        # starts a gateway of its own with a local stand-in.
        env={"TMDB_API_KEY": "", "TMDB_READ_TOKEN": "", "MARQUEE_GATEWAY_IMAGE_BASE_URL": ""},
        say=lambda _: None,
    )
    start_or_fail(stack)
    try:
        result = stack.ingest("demo", "--quiet")
        assert result.returncode == 0, result.stdout + result.stderr
        wait_applied(stack)
        yield stack
    finally:
        stack.stop()
