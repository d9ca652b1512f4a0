"""The web UI: plain HTML, CSS and ES modules served by the gateway (no build step).

The page talks only to this gateway's public ``/v1`` API, so it works wherever the API does.
It gets a strict Content-Security-Policy (scripts, styles and requests from this origin only);
the page builds every piece of data into the DOM as text, never as HTML. index.html is served
with its search box's ``maxlength`` set to this gateway's query cap; the scripts read it there.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import TYPE_CHECKING

from fastapi import FastAPI, Request
from starlette.responses import Response
from starlette.staticfiles import StaticFiles

from marquee_shared.api import MAX_QUERY_CHARS

if TYPE_CHECKING:
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

SEARCH_BOX_MAXLENGTH = f'maxlength="{MAX_QUERY_CHARS}"'
"""The search box's ``maxlength`` as index.html ships it (the default cap; the page's only
maxlength): served with the gateway's own cap instead, which the scripts read from the box."""


def render_page(max_query_chars: int) -> bytes:
    html = (STATIC_DIR / "index.html").read_text(encoding="utf-8")
    if html.count(SEARCH_BOX_MAXLENGTH) != 1:
        msg = f"index.html must hold {SEARCH_BOX_MAXLENGTH} exactly once (the search box)"
        raise RuntimeError(msg)
    return html.replace(SEARCH_BOX_MAXLENGTH, f'maxlength="{max_query_chars}"').encode()


class _UiStaticFiles(StaticFiles):
    """Static assets with the page's headers (nosniff matters for ES modules)."""

    async def get_response(self, path: str, scope: Scope) -> Response:
        response = await super().get_response(path, scope)
        response.headers.update(PAGE_HEADERS)
        return response


def install_web_ui(app: FastAPI, max_query_chars: int = MAX_QUERY_CHARS) -> None:
    page = render_page(max_query_chars)  # once: the file and the cap change only with a restart
    etag = f'"{hashlib.sha256(page).hexdigest()[:32]}"'

    async def index(request: Request) -> Response:
        headers = {**PAGE_HEADERS, "ETag": etag}
        if request.headers.get("if-none-match") == etag:
            return Response(status_code=304, headers=headers)
        return Response(page, media_type="text/html", headers=headers)

    app.add_api_route("/", index, methods=["GET"], include_in_schema=False)
    app.mount("/static", _UiStaticFiles(directory=STATIC_DIR), name="static")
