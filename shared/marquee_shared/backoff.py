"""One retry policy for every loop that waits for something to come back (Chroma at startup,
TMDB, the embedder's reading while Chroma is away, the search replica's keyword sync): delays
that double from ``first`` up to ``cap``."""

from __future__ import annotations

import random


class Backoff:
    """``next()`` gives the delay before the next attempt and doubles it (up to ``cap``);
    ``reset()`` after a success. ``delay(attempt)`` is the same policy by attempt number, for
    loops that count their attempts themselves.

    With ``jitter`` ("equal jitter"), a delay is half its ceiling plus a random half: retries
    still spread out, and clients that failed together (concurrent requests to one API) do not
    retry together."""

    def __init__(self, first: float, cap: float, *, jitter: bool = False) -> None:
        if first <= 0 or cap < first:
            msg = f"backoff needs 0 < first <= cap, got first={first} cap={cap}"
            raise ValueError(msg)
        self.first, self.cap, self.jitter = first, cap, jitter
        self._attempt = 0

    def delay(self, attempt: int) -> float:
        ceiling = min(self.cap, self.first * 2.0 ** min(attempt, 64))
        if not self.jitter:
            return ceiling
        return ceiling / 2 + random.uniform(0, ceiling / 2)  # noqa: S311 - jitter, not crypto

    def next(self) -> float:
        delay = self.delay(self._attempt)
        self._attempt += 1
        return delay

    def reset(self) -> None:
        self._attempt = 0
