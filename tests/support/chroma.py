"""Reading and preparing Chroma collections from tests, with the plain (sync) client."""

from __future__ import annotations

from typing import Any

import chromadb
from chromadb.config import Settings as ChromaSettings

from marquee_shared.chroma import MODEL_KEY


def chroma_client(chroma_url: str) -> Any:
    host, port = chroma_url.removeprefix("http://").split(":")
    return chromadb.HttpClient(
        host=host, port=int(port), settings=ChromaSettings(anonymized_telemetry=False)
    )


def create_collection(chroma_url: str, name: str, model: str | None, *, records: int = 0) -> None:
    """A collection stamped with ``model`` (None: unstamped, as before model ids) holding
    ``records`` placeholder records."""
    collection = chroma_client(chroma_url).create_collection(
        name,
        metadata={MODEL_KEY: model} if model else None,
        configuration={"hnsw": {"space": "cosine"}},
        embedding_function=None,
    )
    for i in range(records):
        collection.add(ids=[str(i + 1)], embeddings=[[1.0] + [0.0] * 383], metadatas=[{"x": i}])


def stamp_of(chroma_url: str, name: str) -> str | None:
    """The model id stamped on the collection, as Chroma has it now."""
    collection = chroma_client(chroma_url).get_collection(name, embedding_function=None)
    return (collection.metadata or {}).get(MODEL_KEY)


def chroma_collection(chroma_url: str, name: str) -> Any:
    """The collection as Chroma has it now (plain client: reads without the services)."""
    return chroma_client(chroma_url).get_collection(name)
