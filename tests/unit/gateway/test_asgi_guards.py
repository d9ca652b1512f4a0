"""The pure-ASGI guards in front of the apps: body and query-string size (gateway) and the
internal token (internal services), exercised in process through httpx's ASGI transport."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from pydantic import BaseModel, SecretStr
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.types import Receive, Scope, Send

from marquee_gateway.limits import BodySizeLimitMiddleware
from marquee_shared.internal_auth import InternalTokenMiddleware


class Payload(BaseModel):  # module level: FastAPI resolves annotations by name
    data: str


class Recorder:
    """An ASGI app that reads the whole body and answers with its size."""

    def __init__(self) -> None:
        self.calls = 0

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        self.calls += 1
        body = await Request(scope, receive).body()
        await JSONResponse({"received": len(body)})(scope, receive, send)


def client(app: Any) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test")


async def chunked(data: bytes, size: int = 100) -> AsyncIterator[bytes]:
    for i in range(0, len(data), size):
        yield data[i : i + size]


async def test_a_declared_length_over_the_limit_never_reaches_the_app():
    inner = Recorder()
    async with client(BodySizeLimitMiddleware(inner, max_body_bytes=1000)) as c:
        r = await c.post("/", content=b"x" * 1001)
        assert r.status_code == 413
        assert r.json() == {"detail": "request body is larger than the 1000-byte limit"}
        assert r.headers["connection"] == "close"
        assert inner.calls == 0

        r = await c.post("/", content=b"x" * 1000)
        assert r.status_code == 200
        assert r.json() == {"received": 1000}


async def test_a_streamed_body_is_cut_off_once_past_the_limit():
    inner = Recorder()
    async with client(BodySizeLimitMiddleware(inner, max_body_bytes=1000)) as c:
        r = await c.post("/", content=chunked(b"x" * 5000))
        assert r.status_code == 413
        assert "1000-byte limit" in r.json()["detail"]
        r = await c.post("/", content=chunked(b"x" * 999))
        assert r.json() == {"received": 999}


async def test_fastapi_turns_the_streamed_overflow_into_its_json_413():
    # FastAPI wraps any error raised while it reads a body into a 400, except HTTPException:
    # the limit error is one, so the answer stays a 413 with the usual {"detail": ...}.
    app = FastAPI()

    @app.post("/items")
    async def create(payload: Payload) -> dict[str, int]:
        return {"length": len(payload.data)}

    guarded = BodySizeLimitMiddleware(app, max_body_bytes=200)
    async with client(guarded) as c:
        body = json.dumps({"data": "y" * 500}).encode()
        r = await c.post("/items", content=chunked(body, 50))
        assert r.status_code == 413
        assert r.json() == {"detail": "request body is larger than the 200-byte limit"}
        r = await c.post("/items", json={"data": "ok"})
        assert r.json() == {"length": 2}


async def test_a_long_query_string_is_414():
    inner = Recorder()
    async with client(BodySizeLimitMiddleware(inner, max_body_bytes=10, max_query_bytes=50)) as c:
        assert (await c.get("/", params={"q": "a" * 60})).status_code == 414
        assert (await c.get("/", params={"q": "a" * 40})).status_code == 200
    assert inner.calls == 1


# --- internal token --------------------------------------------------------------------------


@pytest.fixture
def protected() -> tuple[Recorder, InternalTokenMiddleware]:
    inner = Recorder()
    return inner, InternalTokenMiddleware(inner, SecretStr("s3cret-token"))


async def test_requests_without_the_internal_token_are_refused(protected):
    inner, app = protected
    async with client(app) as c:
        r = await c.get("/search?q=x")
        assert r.status_code == 401
        assert r.json() == {"detail": "missing or invalid X-Internal-Token"}
        wrong = await c.get("/search?q=x", headers={"X-Internal-Token": "s3cret-tokeN"})
        assert wrong.status_code == 401
        assert inner.calls == 0
        ok = await c.get("/search?q=x", headers={"X-Internal-Token": "s3cret-token"})
        assert ok.status_code == 200


async def test_probes_and_metrics_need_no_token_but_a_wrong_one_is_refused(protected):
    _, app = protected
    async with client(app) as c:
        for path in ("/health", "/ready", "/metrics"):
            assert (await c.get(path)).status_code == 200, path
            right = await c.get(path, headers={"X-Internal-Token": "s3cret-token"})
            assert right.status_code == 200, path
            # The gateway's readiness calls /ready with its token: a mismatch must show there.
            wrong = await c.get(path, headers={"X-Internal-Token": "other"})
            assert wrong.status_code == 401, path
        # Only the exact paths are open.
        assert (await c.get("/health/../search")).status_code == 401
        assert (await c.get("/healthz")).status_code == 401


async def test_without_a_configured_token_the_middleware_lets_everything_through():
    inner = Recorder()
    async with client(InternalTokenMiddleware(inner, None)) as c:
        assert (await c.get("/search")).status_code == 200
        assert (await c.get("/search", headers={"X-Internal-Token": "anything"})).status_code == 200
