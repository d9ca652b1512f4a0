"""A fault-injecting HTTP reverse proxy, to put real failures between a client and a real server
(like toxiproxy): requests whose body contains a marker get an HTTP 500 (or are held for
``stall_s`` first), or everything is refused while ``down`` is set. The real Chroma server
sits behind it; nothing is mocked."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import aiohttp
from aiohttp import web

import devstack


class FaultyProxy:
    def __init__(self, upstream: str) -> None:
        self.upstream = upstream.rstrip("/")
        self.poison_markers: set[bytes] = set()
        self.stall_markers: set[bytes] = set()
        self.stall_s = 0.0
        self.stalled = 0
        self.down = False
        self.refused = 0
        """Requests dropped while ``down``: evidence that clients kept trying."""
        self.injected = 0
        self.url = ""

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        if self.down:
            self.refused += 1
            # Drop the connection, as a crashed server would.
            if request.transport is not None:
                request.transport.close()
            raise web.HTTPServiceUnavailable
        body = await request.read()
        if any(m in body for m in self.poison_markers):
            self.injected += 1
            return web.json_response(
                {"error": "InternalError", "message": "injected fault"}, status=500
            )
        if any(m in body for m in self.stall_markers):
            self.stalled += 1  # a slow network: held, then forwarded
            await asyncio.sleep(self.stall_s)
            if request.transport is None or request.transport.is_closing():
                raise web.HTTPServiceUnavailable  # the client gave up: it never reaches Chroma
        async with self._session.request(
            request.method,
            self.upstream + request.path_qs,
            data=body,
            headers={
                k: v
                for k, v in request.headers.items()
                if k.lower() not in {"host", "content-length"}
            },
        ) as resp:
            payload = await resp.read()
            return web.Response(body=payload, status=resp.status, content_type=resp.content_type)

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[FaultyProxy]:
        self._session = aiohttp.ClientSession()
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_route("*", "/{tail:.*}", self._handle)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        port = devstack.free_port()
        site = web.TCPSite(runner, "127.0.0.1", port)
        await site.start()
        self.url = f"http://127.0.0.1:{port}"
        try:
            yield self
        finally:
            await runner.cleanup()
            await self._session.close()
            await asyncio.sleep(0)
