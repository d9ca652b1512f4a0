"""Helpers for tests that run the whole stack through scripts/devstack.py (as `make run`)."""

from __future__ import annotations

import time

import httpx
import pytest

import devstack


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
