"""The web UI: plain HTML, CSS and ES modules served by the gateway (no build step).

The page talks only to this gateway's public ``/v1`` API, so it works wherever the API does.
It gets a strict Content-Security-Policy (scripts, styles and requests from this origin only);
the page builds every piece of data into the DOM as text, never as HTML. index.html is served
with its search box's ``maxlength`` set to this gateway's query cap, and with the image host
(``MARQUEE_GATEWAY_IMAGE_BASE_URL``, TMDB's by default) in a meta tag; the scripts read them
there, and the policy lets images come from that host alone.
"""

from __future__ import annotations

import hashlib
import html
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from fastapi import FastAPI, Request
from starlette.responses import Response
from starlette.staticfiles import StaticFiles

from marquee_shared.api import MAX_QUERY_CHARS

if TYPE_CHECKING:
    from starlette.types import Scope

STATIC_DIR = Path(__file__).parent / "static"


def content_security_policy(image_base_url: str | None = None) -> str:
    """The page's policy; images also from the origin of ``image_base_url`` when given."""
    images = "img-src 'self' data:"
    if image_base_url:
        parts = urlsplit(image_base_url)
        images += f" {parts.scheme}://{parts.netloc}"
    return "; ".join(
        (
            "default-src 'self'",
            "script-src 'self'",
            "style-src 'self'",
            images,
            "connect-src 'self'",
            "object-src 'none'",
            "base-uri 'none'",
            "form-action 'self'",
            "frame-ancestors 'none'",
        )
    )


CONTENT_SECURITY_POLICY = content_security_policy()
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


IMAGE_BASE_META = '<meta name="marquee-image-base" content="">'
"""Where index.html ships the image host (none); served with the gateway's own instead."""


def render_page(max_query_chars: int, image_base_url: str | None = None) -> bytes:
    page = (STATIC_DIR / "index.html").read_text(encoding="utf-8")
    for placeholder, what in ((SEARCH_BOX_MAXLENGTH, "the search box"), (IMAGE_BASE_META, "")):
        if page.count(placeholder) != 1:
            msg = f"index.html must hold {placeholder} exactly once {what}".rstrip()
            raise RuntimeError(msg)
    base = html.escape((image_base_url or "").rstrip("/"), quote=True)
    return (
        page.replace(SEARCH_BOX_MAXLENGTH, f'maxlength="{max_query_chars}"')
        .replace(IMAGE_BASE_META, IMAGE_BASE_META.replace('content=""', f'content="{base}"'))
        .encode()
    )


class _UiStaticFiles(StaticFiles):
    """Static assets with the page's headers (nosniff matters for ES modules)."""

    async def get_response(self, path: str, scope: Scope) -> Response:
        response = await super().get_response(path, scope)
        response.headers.update(PAGE_HEADERS)
        return response


def install_web_ui(
    app: FastAPI, max_query_chars: int = MAX_QUERY_CHARS, image_base_url: str | None = None
) -> None:
    # Once: the file, the cap and the image host change only with a restart.
    page = render_page(max_query_chars, image_base_url)
    etag = f'"{hashlib.sha256(page).hexdigest()[:32]}"'
    page_headers = {
        **PAGE_HEADERS,
        "Content-Security-Policy": content_security_policy(image_base_url),
    }

    async def index(request: Request) -> Response:
        headers = {**page_headers, "ETag": etag}
        if request.headers.get("if-none-match") == etag:
            return Response(status_code=304, headers=headers)
        return Response(page, media_type="text/html", headers=headers)

    app.add_api_route("/", index, methods=["GET"], include_in_schema=False)
    app.mount("/static", _UiStaticFiles(directory=STATIC_DIR), name="static")
