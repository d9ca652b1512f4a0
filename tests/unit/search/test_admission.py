"""Admission control: past the limit a request is refused at once with 503 and Retry-After,
probes still answer, and a finished request frees its slot."""

from __future__ import annotations

import asyncio

import httpx

from marquee_search.admission import AdmissionLimit


class Gate:
    """An ASGI app whose requests wait until released, so 'in flight' is exact."""

    def __init__(self) -> None:
        self.release = asyncio.Event()
        self.entered = 0
        self._arrivals = asyncio.Condition()

    async def until_entered(self, n: int) -> None:
        async with self._arrivals:
            await self._arrivals.wait_for(lambda: self.entered >= n)

    async def __call__(self, scope, receive, send) -> None:  # type: ignore[no-untyped-def]
        async with self._arrivals:
            self.entered += 1
            self._arrivals.notify_all()
        if scope["path"] not in {"/health", "/ready", "/metrics"}:
            await self.release.wait()
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})


async def test_refuses_past_the_limit_then_admits_again() -> None:
    gate = Gate()
    app = AdmissionLimit(gate, limit=2, retry_after_s=3)
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://search"
    ) as client:
        held = [asyncio.create_task(client.get("/search", params={"q": str(i)})) for i in range(2)]
        await asyncio.wait_for(gate.until_entered(2), 5)

        refused = await client.get("/search", params={"q": "third"})
        assert refused.status_code == 503
        assert refused.headers["retry-after"] == "3"
        assert "overloaded" in refused.json()["detail"]
        assert gate.entered == 2  # never reached the app

        probe = await client.get("/ready")  # a busy replica is not a dead one
        assert probe.status_code == 200

        gate.release.set()
        assert [r.status_code for r in await asyncio.gather(*held)] == [200, 200]
        again = await client.get("/search", params={"q": "fourth"})
        assert again.status_code == 200


async def test_zero_means_no_limit() -> None:
    gate = Gate()
    app = AdmissionLimit(gate, limit=0)
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://search"
    ) as client:
        held = [asyncio.create_task(client.get("/search")) for _ in range(50)]
        await asyncio.wait_for(gate.until_entered(50), 5)
        gate.release.set()
        assert {r.status_code for r in await asyncio.gather(*held)} == {200}
