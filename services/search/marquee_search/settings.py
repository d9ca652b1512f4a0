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
        default="onnx",
        description="Model runtime: torch, onnx (fp32, same vectors as torch, faster per call) or "
        "onnx-int8 (about 2x the throughput on AVX-512 VNNI, cosine 0.99 to fp32).",
    )
    onnx_cache_dir: Path | None = Field(
        default=None,
        description="Where exported ONNX files are kept (default ~/.cache/marquee/onnx).",
    )
    torch_threads: PositiveInt | None = Field(
        default=None, description="Intra-op threads for query encoding; default: CPU count."
    )
    query_cache_size: int = Field(
        default=4096, ge=0, description="Query vectors kept in memory (LRU); 0 disables."
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
