"""The hop from the gateway to internal services.

aiohttp rather than httpx: httpx's connection pool serialises badly under concurrency
(https://github.com/encode/httpx/issues/3215) and the hop is on every request; see
bench/gateway_hop.py for the side-by-side measurement.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import aiohttp

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence


class BackendUnavailableError(Exception):
    """The backend did not answer, or answered with a 5xx: the gateway says 503."""

    def __init__(self, backend: str, reason: str) -> None:
        super().__init__(f"the {backend} service is unavailable: {reason}")
        self.backend = backend


@dataclass(frozen=True, slots=True)
class BackendResponse:
    status: int
    body: bytes
    content_type: str


class Backend:
    """One internal service, reached over a pooled keep-alive session created once."""

    def __init__(self, name: str, base_url: str, session: aiohttp.ClientSession) -> None:
        self.name = name
        self._base = base_url.rstrip("/")
        self._session = session

    async def get(
        self,
        path: str,
        params: Sequence[tuple[str, str]] | Mapping[str, Any] = (),
        headers: Mapping[str, str] | None = None,
    ) -> BackendResponse:
        try:
            async with self._session.get(self._base + path, params=params, headers=headers) as resp:
                body = await resp.read()
        except (aiohttp.ClientError, TimeoutError) as exc:
            reason = type(exc).__name__ if not str(exc) else f"{type(exc).__name__}: {exc}"
            raise BackendUnavailableError(self.name, reason) from exc
        if resp.status >= 500:
            raise BackendUnavailableError(self.name, f"it answered HTTP {resp.status}")
        return BackendResponse(resp.status, body, resp.content_type)

    async def ping(self) -> None:
        resp = await self.get("/ready")
        if resp.status != 200:
            msg = f"{self.name} answered {resp.status} on /ready"
            raise RuntimeError(msg)


def make_session(timeout_s: float, connections: int) -> aiohttp.ClientSession:
    return aiohttp.ClientSession(
        timeout=aiohttp.ClientTimeout(total=timeout_s),
        connector=aiohttp.TCPConnector(limit=connections, ttl_dns_cache=300),
        raise_for_status=False,
    )
