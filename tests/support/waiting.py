"""Waiting for something to happen, with a deadline: instead of fixed sleeps, poll and fail
with what was last seen."""

from __future__ import annotations

import asyncio
import time
from typing import TYPE_CHECKING, TypeVar

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

T = TypeVar("T")


async def wait_until(
    check: Callable[[], Awaitable[T]],
    *,
    timeout: float = 30.0,
    what: str = "condition",
    interval: float = 0.1,
) -> T:
    """Call ``check`` until it returns something truthy, and return that. Past ``timeout``
    seconds, fail naming ``what`` and the last value."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        last = await check()
        if last:
            return last
        if loop.time() >= deadline:
            msg = f"{what} not reached within {timeout:g}s (last: {last!r})"
            raise AssertionError(msg)
        await asyncio.sleep(interval)


async def eventually(
    assertion: Callable[[], Awaitable[object]], *, timeout: float = 15.0, interval: float = 0.2
) -> None:
    """Run an async assertion until it passes; past ``timeout`` seconds its last
    AssertionError is raised."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        try:
            await assertion()
        except AssertionError:
            if loop.time() >= deadline:
                raise
            await asyncio.sleep(interval)
        else:
            return


def wait_until_sync(
    check: Callable[[], T],
    *,
    timeout: float = 30.0,
    what: str = "condition",
    interval: float = 0.05,
) -> T:
    """``wait_until`` for synchronous checks (subprocesses, a stack run by devstack)."""
    deadline = time.monotonic() + timeout
    while True:
        last = check()
        if last:
            return last
        if time.monotonic() >= deadline:
            msg = f"{what} not reached within {timeout:g}s (last: {last!r})"
            raise AssertionError(msg)
        time.sleep(interval)
