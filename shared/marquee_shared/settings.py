"""Settings every service shares. Each service subclasses with its own env prefix."""

from __future__ import annotations

from typing import Literal

from pydantic import AliasChoices, AnyHttpUrl, Field, RedisDsn, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from marquee_shared.events import CATALOG_STREAM


class CommonSettings(BaseSettings):
    """Connection and logging settings, the same variable names in every service.

    Fields here use explicit ``MARQUEE_*`` names (not the subclass prefix) so one ``.env`` or
    compose ``environment:`` block configures the whole system.
    """

    model_config = SettingsConfigDict(extra="ignore", validate_by_name=True)

    redis_url: RedisDsn = Field(
        default=RedisDsn("redis://127.0.0.1:6379/0"),
        validation_alias=AliasChoices("MARQUEE_REDIS_URL", "REDIS_URL"),
        description="Redis holding the catalog stream. A Redis with a password (requirepass) "
        "or an ACL user takes it in the URL: redis://:PASSWORD@host:6379/0 or "
        "redis://USER:PASSWORD@host:6379/0.",
    )
    chroma_url: AnyHttpUrl = Field(
        default=AnyHttpUrl("http://127.0.0.1:8000"),
        validation_alias=AliasChoices("MARQUEE_CHROMA_URL", "CHROMA_URL"),
        description="Chroma HTTP server.",
    )
    chroma_token: SecretStr | None = Field(
        default=None,
        validation_alias="MARQUEE_CHROMA_TOKEN",
        description="Sent to Chroma in X-Chroma-Token on every request when set: the token "
        "the authenticating proxy in front of Chroma demands (compose and k8s).",
    )
    chroma_collection: str = Field(
        default="movies_minilm_l6_v1",
        validation_alias="MARQUEE_CHROMA_COLLECTION",
        description="Collection name; versioned by model so a new model gets a fresh index.",
    )
    catalog_stream: str = Field(default=CATALOG_STREAM, validation_alias="MARQUEE_CATALOG_STREAM")
    max_backlog: int = Field(
        default=50_000,
        ge=1,
        validation_alias="MARQUEE_MAX_BACKLOG",
        description="Publishers wait (ingest) or answer 429 (gateway) while the embedders are "
        "this many events behind; bounds the stream's size.",
    )
    internal_token: SecretStr | None = Field(
        default=None,
        validation_alias="MARQUEE_INTERNAL_TOKEN",
        description="Shared secret between the gateway and the internal services: when set, "
        "internal services answer 401 to requests without it in X-Internal-Token (except "
        "/health, /ready and /metrics), and the gateway sends it.",
    )
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = Field(
        default="INFO", validation_alias="MARQUEE_LOG_LEVEL"
    )
    log_format: Literal["auto", "json", "console"] = Field(
        default="auto",
        validation_alias="MARQUEE_LOG_FORMAT",
        description="auto: console on a TTY, JSON otherwise.",
    )

    @field_validator("internal_token", "chroma_token", mode="after")
    @classmethod
    def _blank_token_is_unset(cls, value: SecretStr | None) -> SecretStr | None:
        # `MARQUEE_INTERNAL_TOKEN=` (compose passthrough, .env template) means "not configured".
        if value is not None and not value.get_secret_value().strip():
            return None
        return value
