"""A fake of TMDB's image host (``https://image.tmdb.org/t/p/<size>/<file>``), for browser tests.

    with FakeTmdbImages() as images:                # serves on 127.0.0.1:<free port>
        images.add("/poster578.jpg")                # a file the host has (others get 404)
        MARQUEE_GATEWAY_IMAGE_BASE_URL=images.url   # ends in /t/p, as TMDB's base does
        images.requests                             # paths asked for, in order

Sizes are TMDB's (``w92`` ... ``w1280``, ``original``); an unknown size is a 404 as on TMDB.
Every file answers the same small PNG (a solid colour), whatever its extension: enough for a
browser to load, decode and lay out.
"""

from __future__ import annotations

import asyncio
import socket
import struct
import threading
import time
import zlib
from typing import TYPE_CHECKING, Self

import uvicorn
from starlette.applications import Starlette
from starlette.responses import Response
from starlette.routing import Route

if TYPE_CHECKING:
    from starlette.requests import Request

SIZES = frozenset({"w92", "w154", "w185", "w300", "w342", "w500", "w780", "w1280", "original"})


def solid_png(width: int, height: int, rgb: tuple[int, int, int] = (200, 60, 40)) -> bytes:
    """A valid PNG of one colour, from the format's chunks (no imaging library needed)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (
            struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
        )

    row = b"\x00" + bytes(rgb) * width  # filter type 0, then the pixels
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)  # 8-bit RGB
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(row * height))
        + chunk(b"IEND", b"")
    )


class FakeTmdbImages:
    def __init__(self) -> None:
        self.files: set[str] = set()
        self.requests: list[str] = []
        self._png = solid_png(60, 90)
        self._lock = threading.Lock()
        self._port = 0
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None

    def add(self, *paths: str) -> None:
        with self._lock:
            self.files.update(paths)

    def requested(self, path: str) -> list[str]:
        """The sizes in which ``path`` was asked for."""
        with self._lock:
            return [r.split("/")[3] for r in self.requests if r.endswith(path)]

    @property
    def url(self) -> str:
        if not self._port:
            raise RuntimeError("FakeTmdbImages is not running; use it as a context manager")
        return f"http://127.0.0.1:{self._port}/t/p"

    async def _handle(self, request: Request) -> Response:
        size, name = request.path_params["size"], request.path_params["name"]
        with self._lock:
            self.requests.append(request.url.path)
            found = size in SIZES and f"/{name}" in self.files
        if not found:
            return Response(b"Not Found", status_code=404, media_type="text/plain")
        return Response(self._png, media_type="image/png")

    def __enter__(self) -> Self:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", 0))
        self._port = sock.getsockname()[1]
        app = Starlette(routes=[Route("/t/p/{size}/{name}", self._handle, methods=["GET"])])
        config = uvicorn.Config(
            app, log_level="warning", lifespan="off", ws="none", access_log=False
        )
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(
            target=lambda: asyncio.run(self._server.serve(sockets=[sock])),  # type: ignore[union-attr]
            name="fake-tmdb-images",
            daemon=True,
        )
        self._thread.start()
        deadline = time.monotonic() + 10
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("the fake TMDB image server did not start")
            time.sleep(0.01)
        return self

    def __exit__(self, *exc_info: object) -> None:
        if self._server is not None:
            self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout=10)
