"""Explainer settings, read once at startup (env prefix ``MARQUEE_EXPLAINER_``)."""

from __future__ import annotations

from pydantic import AliasChoices, AnyHttpUrl, Field, PositiveFloat, SecretStr
from pydantic_settings import SettingsConfigDict

from marquee_shared.settings import CommonSettings


class ExplainerSettings(CommonSettings):
    model_config = SettingsConfigDict(
        env_prefix="MARQUEE_EXPLAINER_", extra="ignore", validate_by_name=True
    )

    # The plain ANTHROPIC_* names are the ones the SDK and Anthropic's docs use; accepting them
    # spares users a second copy of the same secret.
    anthropic_api_key: SecretStr | None = Field(
        default=None,
        validation_alias=AliasChoices("ANTHROPIC_API_KEY", "MARQUEE_EXPLAINER_ANTHROPIC_API_KEY"),
        description="Without a key every explanation comes from the deterministic explainer.",
    )
    anthropic_base_url: AnyHttpUrl | None = Field(
        default=None,
        validation_alias=AliasChoices("ANTHROPIC_BASE_URL", "MARQUEE_EXPLAINER_ANTHROPIC_BASE_URL"),
        description="Messages API base URL (a proxy, or a fake server in tests).",
    )
    model: str = Field(
        default="claude-haiku-4-5",
        min_length=1,
        description="Claude model; part of the cache key, so a change never serves old text.",
    )
    timeout_s: PositiveFloat = Field(default=8.0, le=120, description="Per LLM attempt.")
    max_retries: int = Field(
        default=2, ge=0, le=10, description="SDK retries on 429/5xx/connection errors."
    )
    max_tokens: int = Field(default=400, ge=64, le=4096)
    deadline_s: PositiveFloat = Field(
        default=20.0,
        le=300,
        description="Budget for all LLM work on one explanation (retries included); past it the "
        "deterministic explainer answers. Keep it below the gateway's wait for the explainer.",
    )
    cache_ttl_s: int = Field(
        default=24 * 3600, ge=1, description="How long an LLM-written explanation is reused."
    )
    fallback_cache_ttl_s: int = Field(
        default=60,
        ge=0,
        description="How long a fallback written while the LLM failed is reused (short, so "
        "Claude is tried again soon; it still spares a failing API a request per view). 0: not "
        "cached.",
    )
    context_liked: int = Field(
        default=5, ge=1, le=20, description="Nearest liked movies the explanation may draw on."
    )
    taste_block_movies: int = Field(
        default=8,
        ge=0,
        le=20,
        description="Liked movies in the prompt's cached taste block (the same for every target "
        "of one taste, so it is read from Anthropic's prompt cache after the first).",
    )
    title_refresh_s: PositiveFloat = Field(
        default=600.0, description="Seconds between rebuilds of the catalog title index."
    )
