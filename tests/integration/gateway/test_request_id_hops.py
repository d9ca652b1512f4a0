"""The caller's request id reaches the backend on every hop the gateway makes (the Backend adds
it from the request's bound context, so routes need not): the real search service logs each
relayed request under the id the client sent, and the gateway answers with that id."""

from __future__ import annotations

import re

import httpx
import pytest

from tests.support.gateway import Gateway

pytestmark = pytest.mark.integration


async def test_the_request_id_reaches_the_search_service_on_every_discovery_hop(
    gateway: Gateway, capfd: pytest.CaptureFixture[str]
) -> None:
    calls = {
        "/similar": ("GET", "/v1/similar", {"params": {"q": "a shark", "k": 2}}),
        "/browse/trending": ("GET", "/v1/browse/trending", {"params": {"k": 2}}),
        "/browse/top-rated": ("GET", "/v1/browse/top-rated", {"params": {"k": 2}}),
        "/recommendations": ("POST", "/v1/recommendations", {"json": {"liked": [578], "k": 2}}),
        "/search": ("GET", "/v1/search", {"params": {"q": "shark", "k": 2}}),
    }
    async with gateway(log_format="json") as url, httpx.AsyncClient(base_url=url) as client:
        capfd.readouterr()
        for backend_path, (method, path, kw) in calls.items():
            rid = f"hop-{backend_path.strip('/').replace('/', '-')}"
            r = await client.request(method, path, headers={"x-request-id": rid}, **kw)  # type: ignore[arg-type]
            assert r.status_code == 200, r.text
            assert r.headers["x-request-id"] == rid
    # The log lines are JSON or console-rendered, whichever structlog was set up with first.
    logged = capfd.readouterr().err.splitlines()
    for backend_path in calls:
        rid = f"hop-{backend_path.strip('/').replace('/', '-')}"
        at_backend = re.compile(rf"(?<!/v1){re.escape(backend_path)}\b")
        hits = [x for x in logged if "http_request" in x and rid in x and at_backend.search(x)]
        assert hits, f"the search service did not log {backend_path} under {rid}"
