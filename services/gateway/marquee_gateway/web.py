"""The web UI: plain HTML, CSS and ES modules served by the gateway (no build step).

The page talks only to this gateway's public ``/v1`` API, so it works wherever the API does.
It gets a strict Content-Security-Policy (scripts, styles and requests from this origin only);
the page builds every piece of data into the DOM as text, never as HTML.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from fastapi import APIRouter, FastAPI
from fastapi.responses import FileResponse
from starlette.staticfiles import StaticFiles

if TYPE_CHECKING:
    from starlette.responses import Response
    from starlette.types import Scope

STATIC_DIR = Path(__file__).parent / "static"

CONTENT_SECURITY_POLICY = "; ".join(
    (
        "default-src 'self'",
        "script-src 'self'",
        "style-src 'self'",
        "img-src 'self' data:",
        "connect-src 'self'",
        "object-src 'none'",
        "base-uri 'none'",
        "form-action 'self'",
        "frame-ancestors 'none'",
    )
)
PAGE_HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    # The page is tiny and changes with each release; revalidate (ETag) rather than go stale.
    "Cache-Control": "no-cache",
}

router = APIRouter(include_in_schema=False)


@router.get("/")
async def index() -> FileResponse:
    return FileResponse(STATIC_DIR / "index.html", headers=PAGE_HEADERS)


class _UiStaticFiles(StaticFiles):
    """Static assets with the page's headers (nosniff matters for ES modules)."""

    async def get_response(self, path: str, scope: Scope) -> Response:
        response = await super().get_response(path, scope)
        response.headers.update(PAGE_HEADERS)
        return response


def install_web_ui(app: FastAPI) -> None:
    app.include_router(router)
    app.mount("/static", _UiStaticFiles(directory=STATIC_DIR), name="static")
