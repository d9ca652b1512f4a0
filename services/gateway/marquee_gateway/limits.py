"""Request size limits, and the one call that installs every abuse limit on the gateway.

Field-level limits (``k``, filters, events per request, event size) live in the request models
and routes; this module bounds what arrives before any of them runs: the body (413) and the
query string (414). It also holds the one field limit that is a setting, the length of a search
query (``query_within_cap``), since the query-string limit follows it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from fastapi import Request
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException

from marquee_gateway.ratelimit import RateLimitMiddleware
from marquee_shared.api import (
    MAX_QUERY_CHARS,
    QUERY_CHARS_CEILING,
    ErrorResponse,
    query_too_long,
)
from marquee_shared.asgi import send_json_error

if TYPE_CHECKING:
    from fastapi import FastAPI
    from starlette.types import ASGIApp, Message, Receive, Scope, Send

    from marquee_gateway.settings import GatewaySettings

QUERY_STRING_ROOM_BYTES = 2048
"""What a query string holds besides ``q``: every filter written plainly (all 19 genres, both
years, rating, votes, language, ``k``, ``mode``) takes under 600 bytes."""


def max_query_string_bytes(max_query_chars: int) -> int:
    """Room for the longest valid ``q`` (up to 12 bytes a character: 4 bytes of UTF-8, each
    percent-encoded) plus every filter; anything longer is not a search, and gets 414."""
    return 12 * max_query_chars + QUERY_STRING_ROOM_BYTES


MAX_QUERY_STRING_BYTES = max_query_string_bytes(MAX_QUERY_CHARS)
"""26,048 bytes with the default cap. Servers in front must admit it in the request line
(uvicorn's httptools and h11 do; nginx's default 8 KiB admits only mostly-ASCII queries)."""


class BodyTooLargeError(HTTPException):
    """Raised from ``receive``. An HTTPException so FastAPI passes it through its body parsing
    (which turns any other error into a 400) to its handler, which answers JSON 413."""

    def __init__(self, limit: int) -> None:
        super().__init__(413, f"request body is larger than the {limit}-byte limit")


class BodySizeLimitMiddleware:
    """Pure ASGI. A declared Content-Length over the limit is refused before anything is read;
    a chunked body is counted as it streams in and refused as soon as it passes the limit, so
    the gateway never holds more than ``max_body_bytes`` of one request."""

    def __init__(
        self, app: ASGIApp, max_body_bytes: int, max_query_bytes: int = MAX_QUERY_STRING_BYTES
    ) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes
        self.max_query_bytes = max_query_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if len(scope.get("query_string", b"")) > self.max_query_bytes:
            await _reject(send, 414, f"query string is longer than {self.max_query_bytes} bytes")
            return
        declared = _content_length(scope)
        if declared is not None and declared > self.max_body_bytes:
            await _reject(send, 413, BodyTooLargeError(self.max_body_bytes).detail)
            return

        received = 0
        response_started = False

        async def counting_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_body_bytes:
                    raise BodyTooLargeError(self.max_body_bytes)
            return message

        async def tracking_send(message: Message) -> None:
            nonlocal response_started
            if message["type"] == "http.response.start":
                response_started = True
            await send(message)

        try:
            await self.app(scope, counting_receive, tracking_send)
        except BodyTooLargeError as exc:
            # Reached here only when no handler inside turned it into a response.
            if response_started:
                raise
            await _reject(send, 413, exc.detail)


def _content_length(scope: Scope) -> int | None:
    for key, value in scope.get("headers") or []:
        if key == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None  # the server (h11/httptools) rejects these before we see them
    return None


async def _reject(send: Send, status: int, detail: str) -> None:
    # The unread body may still be arriving: do not reuse the connection.
    await send_json_error(send, status, detail, [(b"connection", b"close")])


async def query_within_cap(request: Request) -> None:
    """Route dependency: ``q`` within ``MARQUEE_GATEWAY_MAX_QUERY_CHARS``, counted as sent. A
    setting, so not in ``SearchParams`` (it bounds ``q`` by the ceiling only); as a dependency
    it runs before the parameters are validated, and ``install_limits`` writes the cap into
    the OpenAPI document of every route that uses it."""
    limit: int = request.app.state.settings.max_query_chars
    if error := query_too_long(request.query_params.get("q"), limit):
        raise RequestValidationError([error])


# --- installing the limits -------------------------------------------------------------------

_LIMIT_RESPONSES: dict[str, dict[str, Any]] = {
    "429": {
        "description": "Too many requests from this client (per-client rate limit); wait "
        "Retry-After seconds.",
        "headers": {
            "Retry-After": {"description": "Seconds to wait.", "schema": {"type": "integer"}}
        },
    },
    "414": {"description": "The query string is too long."},
}
_BODY_RESPONSES: dict[str, dict[str, Any]] = {
    "413": {
        "description": "The request body is larger than the gateway accepts, or the request "
        "has too many events."
    },
    # FastAPI's own answer to a body it cannot decode (not UTF-8, cut short); every operation
    # with a body can give it, so every one documents it.
    "400": {"description": "The body could not be read as JSON."},
}


def install_limits(app: FastAPI, settings: GatewaySettings) -> None:
    """Add the size and rate limits, outside everything added later, and document their
    answers on every operation of the OpenAPI schema (clients and schema fuzzers rely on it).

    Call it before the request-context middleware is added, so that middleware stays
    outermost and refused requests still get a request id, an access line and metrics.
    """
    app.add_middleware(
        BodySizeLimitMiddleware,
        max_body_bytes=settings.max_body_bytes,
        max_query_bytes=max_query_string_bytes(settings.max_query_chars),
    )
    # Added last = outermost: an abusive client is refused before its body is even looked at.
    app.add_middleware(
        RateLimitMiddleware,
        redis=lambda: getattr(app.state, "redis", None),
        read_per_minute=settings.rate_limit_per_minute,
        write_per_minute=settings.write_rate_limit_per_minute,
        api_keys=settings.api_keys,
        trusted_proxies=settings.trusted_proxies,
    )
    build_schema = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = build_schema()  # fills app.openapi_schema; amended in place
            _document_limits(schema)
            _document_query_cap(schema, settings.max_query_chars)
        return app.openapi_schema  # type: ignore[return-value]

    app.openapi = openapi  # type: ignore[method-assign]


def _document_limits(schema: dict[str, Any]) -> None:
    error = {"content": {"application/json": {"schema": ErrorResponse.model_json_schema()}}}
    for path_item in schema.get("paths", {}).values():
        for operation in path_item.values():
            if not isinstance(operation, dict) or "responses" not in operation:
                continue
            responses = operation["responses"]
            for status, spec in _LIMIT_RESPONSES.items():
                documented = responses.setdefault(status, {**spec, **error})
                if "headers" in spec:  # a route's own 429 (backpressure) gets Retry-After too
                    documented.setdefault("headers", {}).update(spec["headers"])
            if "requestBody" in operation:
                for status, spec in _BODY_RESPONSES.items():
                    responses.setdefault(status, {**spec, **error})


def _document_query_cap(schema: dict[str, Any], limit: int) -> None:
    """The cap as ``q``'s maxLength where the model documents only the ceiling: that is
    ``SearchParams.q``, and every route taking it depends on ``query_within_cap`` (the long
    query tests hold the document and the answers to agreeing)."""
    for path_item in schema.get("paths", {}).values():
        for operation in path_item.values():
            if not isinstance(operation, dict):
                continue
            for param in operation.get("parameters", []):
                bounds = param.get("schema", {})
                is_q = (param["in"], param["name"]) == ("query", "q")
                if is_q and bounds.get("maxLength") == QUERY_CHARS_CEILING:
                    bounds["maxLength"] = limit
                    said = param.get("description", "")
                    param["description"] = f"{said} At most {limit:,} characters.".lstrip()
