"""An asyncio token bucket shared by every concurrent request to one upstream API."""

from __future__ import annotations

import asyncio
import time
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

_EPSILON = 1e-9


class TokenBucket:
    """Allows ``rate`` acquisitions per second on average, bursts of at most ``burst``.

    Waiters are served in arrival order: the lock is held while sleeping, and asyncio locks
    wake waiters FIFO, so no request starves behind a stream of newer ones.
    """

    def __init__(
        self,
        rate: float,
        burst: float = 1.0,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        if rate <= 0:
            raise ValueError(f"rate must be positive, got {rate}")
        if burst < 1:
            raise ValueError(f"burst must be at least 1, got {burst}")
        self.rate = rate
        self._capacity = burst
        self._tokens = burst
        self._clock = clock
        self._sleep = sleep
        self._updated = clock()
        self._not_before = 0.0
        self._lock = asyncio.Lock()

    async def acquire(self) -> None:
        """Wait until one request may be sent."""
        async with self._lock:
            while True:
                now = self._clock()
                if now < self._not_before:
                    await self._sleep(self._not_before - now)
                    continue
                self._tokens = min(self._capacity, self._tokens + (now - self._updated) * self.rate)
                self._updated = now
                # The epsilon absorbs float error (0.1 s * 10/s can come out as 0.999...),
                # which would otherwise loop on ever tinier sleeps.
                if self._tokens >= 1 - _EPSILON:
                    self._tokens = max(0.0, self._tokens - 1)
                    return
                await self._sleep((1 - self._tokens) / self.rate)

    def hold(self, seconds: float) -> None:
        """Send nothing for ``seconds``: the upstream said so (HTTP 429 ``Retry-After``).

        Every request shares the one quota upstream, so every request backs off, not only the
        one that was refused.
        """
        self._not_before = max(self._not_before, self._clock() + seconds)
        # The bucket refills from the end of the hold, not from now: no burst right after it.
        self._tokens = 0.0
        self._updated = max(self._updated, self._not_before)
