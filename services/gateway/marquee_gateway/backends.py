"""The hop from the gateway to internal services.

aiohttp rather than httpx: httpx's connection pool serialises badly under concurrency
(https://github.com/encode/httpx/issues/3215) and the hop is on every request; see
bench/gateway_hop.py for the side-by-side measurement.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import aiohttp
import structlog
from pydantic import BaseModel
from starlette.responses import Response

from marquee_shared.internal_auth import INTERNAL_TOKEN_HEADER
from marquee_shared.requests import REQUEST_ID_HEADER

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence

    from pydantic import SecretStr


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
    ) -> BackendResponse:
        try:
            async with self._session.get(
                self._base + path, params=params, headers=_traced()
            ) as resp:
                body = await resp.read()
        except (aiohttp.ClientError, TimeoutError) as exc:
            reason = type(exc).__name__ if not str(exc) else f"{type(exc).__name__}: {exc}"
            raise BackendUnavailableError(self.name, reason) from exc
        _raise_if_unavailable(self.name, resp.status)
        return BackendResponse(resp.status, body, resp.content_type)

    async def post(
        self,
        path: str,
        json: Any,
        timeout_s: float | None = None,
    ) -> BackendResponse:
        """Like ``get``, with a JSON body; ``timeout_s`` overrides the session's for slow calls
        (an explanation may wait on an LLM)."""
        # Never None: aiohttp reads timeout=None as "no timeout at all".
        timeout = aiohttp.ClientTimeout(total=timeout_s) if timeout_s else self._session.timeout
        try:
            async with self._session.post(
                self._base + path, json=json, headers=_traced(), timeout=timeout
            ) as resp:
                body = await resp.read()
        except (aiohttp.ClientError, TimeoutError) as exc:
            reason = type(exc).__name__ if not str(exc) else f"{type(exc).__name__}: {exc}"
            raise BackendUnavailableError(self.name, reason) from exc
        _raise_if_unavailable(self.name, resp.status)
        return BackendResponse(resp.status, body, resp.content_type)

    async def ping(self) -> None:
        resp = await self.get("/ready")
        if resp.status != 200:
            msg = f"{self.name} answered {resp.status} on /ready"
            raise RuntimeError(msg)


def _raise_if_unavailable(backend: str, status: int) -> None:
    if status >= 500:
        raise BackendUnavailableError(backend, f"it answered HTTP {status}")
    if status == 401:
        # Inside, only the internal-token check answers 401. Relaying it would tell a public
        # client to authenticate when the fault is the deployment's: the two tokens differ.
        raise BackendUnavailableError(backend, "it refused the gateway's internal token")


def make_session(
    timeout_s: float, connections: int, internal_token: SecretStr | None = None
) -> aiohttp.ClientSession:
    # The internal token rides on every request to every backend (marquee_shared.internal_auth).
    headers = {INTERNAL_TOKEN_HEADER: internal_token.get_secret_value()} if internal_token else {}
    return aiohttp.ClientSession(
        headers=headers,
        timeout=aiohttp.ClientTimeout(total=timeout_s),
        connector=aiohttp.TCPConnector(limit=connections, ttl_dns_cache=300),
        raise_for_status=False,
    )


def _traced() -> dict[str, str]:
    """The request's id on every hop, so one id ties the gateway's and the backend's log lines
    together (the middleware binds it, taken from the caller or generated)."""
    request_id = structlog.contextvars.get_contextvars().get("request_id")
    return {REQUEST_ID_HEADER: str(request_id)} if request_id else {}


def relay(resp: BackendResponse) -> Response:
    """The backend's JSON as it came: re-validating and re-serialising every result list would
    double the hop's CPU cost for no gain (the backend validated it)."""
    return Response(content=resp.body, status_code=resp.status, media_type="application/json")


def query_pairs(params: BaseModel) -> list[tuple[str, str]]:
    """Validated query parameters back into pairs for the hop (lists as repeated keys)."""
    pairs: list[tuple[str, str]] = []
    for key, value in params.model_dump(exclude_none=True).items():
        values = value if isinstance(value, list) else [value]
        pairs.extend((key, str(v)) for v in values)
    return pairs
