"""Strict JSON bodies and 422 answers that can always be written (marquee_shared.jsonbody),
on a small app through httpx's ASGI transport. The services' own routes are held to it in
tests/integration/gateway/test_bad_values.py."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest
from fastapi import APIRouter, FastAPI
from fastapi.routing import APIRoute
from pydantic import BaseModel, Field

from marquee_explainer.app import create_app as create_explainer
from marquee_gateway.app import create_app as create_gateway
from marquee_ingest.app import create_app as create_ingest
from marquee_search.app import create_app as create_search
from marquee_shared.jsonbody import StrictJSONRoute, install_validation_errors, loads_strict


class Payload(BaseModel):  # module level: FastAPI resolves annotations by name
    name: str = Field(max_length=8)
    weight: float = Field(default=0.5, ge=0, le=1)


def app_with(route_class: type[APIRoute]) -> FastAPI:
    app = FastAPI()
    router = APIRouter(route_class=route_class)

    @router.post("/items")
    async def items(body: Payload) -> dict[str, Any]:
        return body.model_dump()

    app.include_router(router)
    install_validation_errors(app)
    return app


def client(app: FastAPI) -> httpx.AsyncClient:
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    return httpx.AsyncClient(transport=transport, base_url="http://test")


@pytest.mark.parametrize(
    ("body", "says"),
    [
        (b'{"name": "a", "weight": NaN}', "NaN is not a JSON number"),
        (b'{"name": "a", "weight": Infinity}', "Infinity is not a JSON number"),
        (b'{"name": "a", "weight": -Infinity}', "-Infinity is not a JSON number"),
        (b'{"name": "a", "weight": 1e999}', "1e999 is too large"),
        (b'{"name": "\\ud800"}', r"\ud800 in name is a lone surrogate"),
        (b'{"name": "a\\udc00b"}', r"\udc00 in name is a lone surrogate"),
        (b'{"\\ud800": 1, "name": "a"}', r"\ud800 is a lone surrogate"),
    ],
)
async def test_what_json_does_not_allow_is_a_422_saying_what(body: bytes, says: str) -> None:
    async with client(app_with(StrictJSONRoute)) as c:
        r = await c.post("/items", content=body, headers={"content-type": "application/json"})
    assert r.status_code == 422, r.text
    (error,) = r.json()["detail"]
    assert error["type"] == "json_invalid"
    assert says in error["msg"]
    # The position points at the offending token.
    assert body[error["loc"][1] :].lstrip(b'"').startswith((b"NaN", b"-", b"I", b"1", b"\\u"))


async def test_what_json_allows_still_parses() -> None:
    async with client(app_with(StrictJSONRoute)) as c:
        for body, expected in [
            (b'{"name": "NaN", "weight": 1e-3}', {"name": "NaN", "weight": 0.001}),
            (b'{"name": "\\ud83d\\ude00"}', {"name": "😀", "weight": 0.5}),  # a pair: fine
            (b'{"name": "\\\\ud800"}', {"name": "\\ud800", "weight": 0.5}),  # text, not escape
            ('{"name": "café"}'.encode(), {"name": "café", "weight": 0.5}),
        ]:
            r = await c.post("/items", content=body, headers={"content-type": "application/json"})
            assert r.status_code == 200, (body, r.text)
            assert r.json() == expected


async def test_a_422_echoes_any_input_without_failing() -> None:
    # Not JSON at all (text/plain): FastAPI validates the raw bytes, and its own handler
    # failed encoding them (UnicodeDecodeError, a 500). The installed one always answers.
    async with client(app_with(StrictJSONRoute)) as c:
        r = await c.post("/items", content=b"\xff\xfe", headers={"content-type": "text/plain"})
        assert r.status_code == 422, r.text
        assert r.json()["detail"][0]["input"] == "\ufffd\ufffd"
        # Over a plain route (what strict parsing guards against): still a JSON 422.
    async with client(app_with(APIRoute)) as c:
        r = await c.post(
            "/items",
            content=b'{"name": "\\ud800 too long", "weight": NaN}',
            headers={"content-type": "application/json"},
        )
    assert r.status_code == 422, r.text
    inputs = {e["loc"][-1]: e["input"] for e in r.json()["detail"]}
    assert inputs == {"name": "\\ud800 too long", "weight": "nan"}


def test_loads_strict_reads_what_json_loads_reads() -> None:
    doc = {"a": [1, 2.5, -3e10, True, None], "b": {"c": "x\n\u00e9\u4e2d"}, "d": ""}
    text = json.dumps(doc)
    assert loads_strict(text.encode()) == doc == loads_strict(text)
    assert loads_strict(text.encode("utf-16")) == doc
    with pytest.raises(UnicodeDecodeError):
        loads_strict(b'{"a": "\xff"}')  # not UTF-8: FastAPI's 400, as before
    with pytest.raises(json.JSONDecodeError):
        loads_strict(b'{"a": ')


@pytest.mark.parametrize(
    "app",
    [
        pytest.param(create_gateway, id="gateway"),
        pytest.param(create_search, id="search"),
        pytest.param(create_explainer, id="explainer"),
        pytest.param(create_ingest, id="ingest"),
    ],
)
def test_every_route_of_every_service_that_reads_a_body_reads_it_strictly(app: Any) -> None:
    with_body = [
        route
        for route in _api_routes(app())
        if route.body_field is not None  # the route takes a JSON body
    ]
    lax = [route.path for route in with_body if not isinstance(route, StrictJSONRoute)]
    assert not lax, f"give these routers route_class=StrictJSONRoute: {lax}"
    assert with_body or app is create_ingest


def _api_routes(app: FastAPI) -> list[APIRoute]:
    found: list[APIRoute] = []
    pending: list[Any] = list(app.router.routes)
    while pending:
        route = pending.pop()
        if isinstance(route, APIRoute):
            found.append(route)
        # FastAPI 0.165 keeps an included router whole; its routes are the router's own.
        pending.extend(getattr(getattr(route, "original_router", None), "routes", []))
    return found
