"""Connecting to the Chroma HTTP server and the movie collection (embedder, search, explainer).

Needs the ``chroma`` extra: ``pip install marquee-shared[chroma]``.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

import chromadb
import structlog
from chromadb.config import Settings as ChromaClientSettings

if TYPE_CHECKING:
    from chromadb.api import AsyncClientAPI
    from chromadb.api.models.AsyncCollection import AsyncCollection
    from pydantic import AnyHttpUrl


log = structlog.get_logger(__name__)


async def open_collection(
    chroma_url: AnyHttpUrl, name: str, *, wait_s: float = 30.0
) -> tuple[AsyncClientAPI, AsyncCollection]:
    """Connect (retrying while the server starts) and get or create the movie collection."""
    deadline = asyncio.get_running_loop().time() + wait_s
    delay = 0.2
    while True:
        try:
            client = await chromadb.AsyncHttpClient(
                host=chroma_url.host or "127.0.0.1",
                port=chroma_url.port or 8000,
                ssl=chroma_url.scheme == "https",
                # Telemetry would try to reach the internet from every process.
                settings=ChromaClientSettings(anonymized_telemetry=False),
            )
            collection = await client.get_or_create_collection(
                name,
                # Vectors are L2-normalised, so cosine is the natural space; no embedding
                # function: vectors always come from our model, never Chroma's default
                # (which would download one at run time).
                configuration={"hnsw": {"space": "cosine"}},
                embedding_function=None,
            )
        except Exception as exc:
            if asyncio.get_running_loop().time() > deadline:
                msg = f"cannot reach Chroma at {chroma_url} after {wait_s:g}s: {exc}"
                raise ConnectionError(msg) from exc
            log.warning("chroma_unavailable", url=str(chroma_url), error=str(exc), retry_in=delay)
            await asyncio.sleep(delay)
            delay = min(delay * 2, 2.0)
        else:
            return client, collection
