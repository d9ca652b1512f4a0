"""Search settings, read once at startup (env prefix ``MARQUEE_SEARCH_``)."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, PositiveInt
from pydantic_settings import SettingsConfigDict

from marquee_embedder.settings import default_model_path
from marquee_shared.settings import CommonSettings


class SearchSettings(CommonSettings):
    model_config = SettingsConfigDict(
        env_prefix="MARQUEE_SEARCH_", extra="ignore", validate_by_name=True
    )

    model_path: Path = Field(default_factory=default_model_path)
    torch_threads: PositiveInt | None = Field(
        default=None, description="Intra-op threads for query encoding; default: CPU count."
    )
    query_cache_size: int = Field(
        default=4096, ge=0, description="Query vectors kept in memory (LRU); 0 disables."
    )
