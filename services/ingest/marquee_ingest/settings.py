"""Ingest settings, read once in the CLI entry point (env prefix ``MARQUEE_INGEST_``)."""

from __future__ import annotations

from pydantic import AliasChoices, Field, HttpUrl, SecretStr, field_validator
from pydantic_settings import SettingsConfigDict

from marquee_shared.settings import CommonSettings


class IngestSettings(CommonSettings):
    model_config = SettingsConfigDict(
        env_prefix="MARQUEE_INGEST_", extra="ignore", validate_by_name=True
    )

    # The plain TMDB_* names are what TMDB's own docs and most .env files use; accepting them
    # spares users a second copy of the same secret.
    tmdb_api_key: SecretStr | None = Field(
        default=None,
        validation_alias=AliasChoices("MARQUEE_INGEST_TMDB_API_KEY", "TMDB_API_KEY"),
        description="TMDB v3 API key, sent as the api_key query parameter.",
    )
    tmdb_read_token: SecretStr | None = Field(
        default=None,
        validation_alias=AliasChoices("MARQUEE_INGEST_TMDB_READ_TOKEN", "TMDB_READ_TOKEN"),
        description="TMDB v4 read access token, sent as a bearer token; preferred over the key.",
    )
    tmdb_base_url: HttpUrl = Field(default=HttpUrl("https://api.themoviedb.org/3"))
    tmdb_rate_per_second: float = Field(
        default=20.0,
        gt=0,
        le=1000,
        description="Request rate towards TMDB. TMDB tolerates about 40/s; stay well below.",
    )
    tmdb_max_retries: int = Field(default=5, ge=0, le=20)
    tmdb_timeout_seconds: float = Field(default=10.0, gt=0, le=300)
    tmdb_concurrency: int = Field(default=8, ge=1, le=64)
    tmdb_language: str = Field(default="en-US", min_length=2, max_length=10)
    publish_batch_size: int = Field(
        default=500, ge=1, le=10_000, description="Events per pipelined XADD round trip."
    )

    @field_validator("tmdb_api_key", "tmdb_read_token", mode="after")
    @classmethod
    def _blank_secret_is_unset(cls, value: SecretStr | None) -> SecretStr | None:
        # `TMDB_API_KEY=` in a compose file or .env template means "not configured".
        if value is not None and not value.get_secret_value().strip():
            return None
        return value
