"""The gateway's FastAPI dependencies: what the lifespan put on ``app.state`` (the backends,
Redis, the settings), and the API-key check of the writing endpoints.

They are async even when they only read app.state: FastAPI runs a plain ``def`` dependency in
its threadpool, a thread hop per request (about 0.3 ms of the hop's CPU).
"""

from __future__ import annotations

import hmac
from typing import TYPE_CHECKING, Annotated, Any

from fastapi import Depends, Header, HTTPException, Request
from redis.asyncio import Redis

from marquee_gateway.backends import Backend
from marquee_gateway.settings import GatewaySettings
from marquee_shared.api import ErrorResponse

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, Iterable


def _state(name: str) -> Callable[[Request], Awaitable[Any]]:
    """A dependency answering ``app.state.<name>``, which the lifespan set."""

    async def dependency(request: Request) -> Any:
        return getattr(request.app.state, name)

    dependency.__name__ = f"app_state_{name}"
    return dependency


SettingsDep = Annotated[GatewaySettings, Depends(_state("settings"))]
RedisDep = Annotated[Redis, Depends(_state("redis"))]
SearchBackend = Annotated[Backend, Depends(_state("search"))]
ExplainerBackend = Annotated[Backend, Depends(_state("explainer"))]
IngestBackend = Annotated[Backend, Depends(_state("ingest"))]


def is_configured_key(supplied: bytes, keys: Iterable[bytes]) -> bool:
    """Whether ``supplied`` is one of ``keys``, compared in constant time against every key
    (no early exit), so timing reveals neither how much of a key matched nor which one."""
    matches = [hmac.compare_digest(supplied, key) for key in keys]
    return any(matches)


async def require_api_key(
    settings: SettingsDep,
    x_api_key: Annotated[
        str | None, Header(description="A key from MARQUEE_GATEWAY_API_KEYS.")
    ] = None,
) -> None:
    """Writing endpoints need a configured key (never logged)."""
    if not x_api_key:
        raise HTTPException(401, "missing X-API-Key header", {"WWW-Authenticate": "ApiKey"})
    keys = (k.get_secret_value().encode() for k in settings.api_keys)
    if not is_configured_key(x_api_key.encode(), keys):
        raise HTTPException(403, "invalid API key")


REDIS_ADMIN_ERRORS: dict[int | str, dict[str, Any]] = {
    401: {"model": ErrorResponse, "description": "No X-API-Key header."},
    403: {"model": ErrorResponse, "description": "Unknown API key."},
    503: {"model": ErrorResponse, "description": "Redis is unavailable."},
}
"""The errors of the admin routes that read Redis directly (dead letters, model migration)."""
