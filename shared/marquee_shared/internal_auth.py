"""A shared internal token between the gateway and the services behind it.

The internal services (search, explainer, embedder, ingest) are not meant to be reachable from
outside: they listen on loopback (``make run``) or on an internal network (compose, Kubernetes
NetworkPolicy). The token is the second wall, for when the first is misconfigured: with
``MARQUEE_INTERNAL_TOKEN`` set, a request without the same value in ``X-Internal-Token`` gets
401 and never reaches a route. The gateway sends the token on every hop.

Open without the token: ``/health``, ``/ready`` and ``/metrics``. Orchestrator probes (kubelet
``httpGet``, compose healthchecks) and Prometheus scrapers cannot read a Secret into a header
(a probe header would hold the token in plain text in the manifest), and these endpoints
neither change anything nor return catalog data: /ready only names the dependencies that fail.
A *wrong* token is refused there too, so the gateway's readiness check (which calls the
backends' /ready with its token) fails when the two sides were given different tokens, instead
of reporting ready while every real request is refused.
"""

from __future__ import annotations

import hmac
from typing import TYPE_CHECKING

import structlog

from marquee_shared.asgi import send_json_error
from marquee_shared.health import PROBE_PATHS

if TYPE_CHECKING:
    from pydantic import SecretStr
    from starlette.types import ASGIApp, Receive, Scope, Send

INTERNAL_TOKEN_HEADER = "x-internal-token"  # noqa: S105 - a header name, not a secret

log = structlog.get_logger(__name__)


class InternalTokenMiddleware:
    """Pure ASGI: rejects HTTP requests that lack the internal token. A no-op without a token
    configured, so one line in every app factory installs it unconditionally."""

    def __init__(self, app: ASGIApp, token: SecretStr | None) -> None:
        self.app = app
        self._token = token.get_secret_value().encode() if token is not None else None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self._token is None or scope["type"] not in {"http", "websocket"}:
            await self.app(scope, receive, send)
            return
        supplied = next(
            (v for k, v in scope.get("headers") or [] if k == INTERNAL_TOKEN_HEADER.encode()), b""
        )
        # compare_digest: the time taken does not depend on how much of the token matched.
        if hmac.compare_digest(supplied, self._token) or (
            not supplied and scope["path"] in PROBE_PATHS
        ):
            await self.app(scope, receive, send)
            return
        # Logged without the header's content: a near-miss token is still a secret.
        log.warning(
            "internal_token_rejected",
            path=scope["path"],
            client=(scope.get("client") or ("?",))[0],
            reason="missing" if not supplied else "mismatch",
        )
        if scope["type"] == "websocket":
            await send({"type": "websocket.close", "code": 1008})
            return
        await send_json_error(send, 401, "missing or invalid X-Internal-Token")
