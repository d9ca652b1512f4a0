"""HTTP pieces the FastAPI services share, beside the contracts in ``api.py``: the TMDB id path
parameter, and the answers to a movie that is not in the catalog (404) and to the vector index
being down (503).

For the FastAPI services only (gateway, search, explainer), each of which depends on FastAPI
itself, as for ``jsonbody``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import structlog
from fastapi import Path
from starlette.responses import JSONResponse

if TYPE_CHECKING:
    from fastapi import FastAPI
    from starlette.requests import Request

log = structlog.get_logger(__name__)

TmdbIdPath = Annotated[int, Path(gt=0, lt=2**31, description="TMDB movie id", examples=[578])]


class MovieNotFoundError(LookupError):
    """The movie asked for is not in the catalog: answered with 404."""

    def __init__(self, tmdb_id: int) -> None:
        super().__init__(f"movie {tmdb_id} is not in the catalog")
        self.tmdb_id = tmdb_id


async def _not_found(_: Request, exc: Exception) -> JSONResponse:
    return JSONResponse({"detail": str(exc)}, status_code=404)


async def _index_down(_: Request, exc: Exception) -> JSONResponse:
    log.warning("index_unavailable", error=str(exc))
    return JSONResponse(
        {"detail": f"the vector index (Chroma) is unavailable: {exc}"}, status_code=503
    )


def install_catalog_errors(app: FastAPI) -> None:
    """404 for ``MovieNotFoundError``; 503 when Chroma cannot be reached (a refused connection,
    or a transport error of the chromadb client's httpx)."""
    # Imported here: httpx comes with chromadb, which the services that read the index install
    # (the chroma extra); the gateway uses this module only for TmdbIdPath and has no httpx.
    import httpx  # noqa: PLC0415

    app.add_exception_handler(MovieNotFoundError, _not_found)
    app.add_exception_handler(ConnectionError, _index_down)
    app.add_exception_handler(httpx.TransportError, _index_down)
