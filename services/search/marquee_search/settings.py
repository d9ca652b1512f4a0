"""Search settings, read once at startup (env prefix ``MARQUEE_SEARCH_``)."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, PositiveInt
from pydantic_settings import SettingsConfigDict

from marquee_embedder.encoder import Backend
from marquee_embedder.settings import default_model_path
from marquee_shared.settings import CommonSettings


class SearchSettings(CommonSettings):
    model_config = SettingsConfigDict(
        env_prefix="MARQUEE_SEARCH_", extra="ignore", validate_by_name=True
    )

    model_path: Path = Field(default_factory=default_model_path)
    backend: Backend = Field(
        default="onnx-int8",
        description="Model runtime: onnx-int8 (the default: the fastest whose quality holds, about "
        "2x fp32's throughput on AVX-512 VNNI, cosine 0.99 to fp32, tomt_dev recall@10 within "
        "half a point; docs/performance.md), onnx (fp32, the same vectors as torch) or torch. "
        "Keep it the same as the embedders', so queries and documents are embedded alike.",
    )
    onnx_cache_dir: Path | None = Field(
        default=None,
        description="Where exported ONNX files are kept (default ~/.cache/marquee/onnx).",
    )
    torch_threads: PositiveInt | None = Field(
        default=1,
        description="Intra-op threads per query encoding (default 1: a short query splits "
        "badly across threads, 2.6 ms on one against 3.4 ms on two here, and one thread "
        "leaves the other cores to the requests around it; docs/performance.md).",
    )
    encode_passes: PositiveInt = Field(
        default=2,
        description="Query-encoding passes run at once, each on TORCH_THREADS threads; queries "
        "that arrive meanwhile wait and share the next pass. About the replica's cores divided "
        "by TORCH_THREADS.",
    )
    query_cache_size: int = Field(
        default=4096, ge=0, description="Query vectors kept in memory (LRU); 0 disables."
    )
    exact_max_movies: int = Field(
        default=100_000,
        ge=0,
        description="Up to this many movies, each replica mirrors the vectors too (1.5 KiB a "
        "movie) and answers dense queries exactly in memory, filters as a mask, instead of "
        "asking Chroma; larger catalogs query Chroma's HNSW index. 0 always asks Chroma.",
    )
    max_in_flight: int = Field(
        default=256,
        ge=0,
        description="Requests one replica answers at once; beyond, it answers 503 with "
        "Retry-After at once instead of queueing past the callers' timeouts. 0: no limit.",
    )
    index_changes_stream: str = Field(
        default="marquee:index:v1:changes",
        description="The embedders' changelog of Chroma writes, tailed by every replica (plain "
        "XREAD, no group) to keep its keyword index in step.",
    )
    keyword_startup_wait_s: float = Field(
        default=60.0,
        ge=0,
        description="How long startup waits for the keyword index to load from Chroma before "
        "serving anyway (hybrid answers as semantic, keyword mode with 503, until it has).",
    )
