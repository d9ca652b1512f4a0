"""The pattern Marquee grew from, as the baseline of bench/search_load.py: one FastAPI process
that embeds the query with sentence-transformers (torch fp32, its defaults) and asks Chroma for
the nearest movies, filters as a Chroma ``where``. Nothing else: no query-vector cache, no
keyword side, no separate services.

    SEED_CHROMA_URL=http://127.0.0.1:8000 SEED_COLLECTION=movies_minilm_l6_v1 \\
        uvicorn seed_app:app --app-dir bench --port 8079
"""

from __future__ import annotations

import os
from typing import Any
from urllib.parse import urlsplit

import chromadb
from chromadb.config import Settings
from fastapi import FastAPI
from sentence_transformers import SentenceTransformer

from marquee_shared.index import genre_key
from marquee_shared.model.encoder import default_model_path

url = urlsplit(os.environ.get("SEED_CHROMA_URL", "http://127.0.0.1:8000"))
client = chromadb.HttpClient(
    host=url.hostname or "127.0.0.1",
    port=url.port or 8000,
    settings=Settings(anonymized_telemetry=False),
)
collection = client.get_collection(os.environ.get("SEED_COLLECTION", "movies_minilm_l6_v1"))
model = SentenceTransformer(str(default_model_path()), device="cpu")
app = FastAPI()


@app.get("/health")
def health() -> dict[str, str]:
    return {"status": "ok"}


@app.get("/search")
def search(
    q: str, k: int = 10, genres: str | None = None, year_min: int | None = None
) -> dict[str, Any]:
    vector = model.encode(q, normalize_embeddings=True).tolist()
    clauses: list[dict[str, Any]] = [{genre_key(g): True} for g in (genres or "").split(",") if g]
    if year_min is not None:
        clauses.append({"year": {"$gte": year_min}})
    where: Any = None if not clauses else clauses[0] if len(clauses) == 1 else {"$and": clauses}
    found = collection.query(
        query_embeddings=[vector], n_results=k, where=where, include=["metadatas", "distances"]
    )
    return {
        "query": q,
        "results": [
            {"tmdb_id": md["tmdb_id"], "title": md["title"], "year": md.get("year"), "score": 1 - d}
            for md, d in zip(
                (found["metadatas"] or [[]])[0], (found["distances"] or [[]])[0], strict=True
            )
        ],
    }
