"""Gateway settings, read once at startup (env prefix ``MARQUEE_GATEWAY_``)."""

from __future__ import annotations

from typing import Annotated

from pydantic import AnyHttpUrl, Field, PositiveFloat, PositiveInt, SecretStr, field_validator
from pydantic_settings import NoDecode, SettingsConfigDict

from marquee_shared.settings import CommonSettings


class GatewaySettings(CommonSettings):
    model_config = SettingsConfigDict(
        env_prefix="MARQUEE_GATEWAY_", extra="ignore", validate_by_name=True
    )

    search_url: AnyHttpUrl = Field(default=AnyHttpUrl("http://127.0.0.1:8081"))
    explainer_url: AnyHttpUrl = Field(default=AnyHttpUrl("http://127.0.0.1:8082"))
    api_keys: Annotated[list[SecretStr], NoDecode] = Field(
        default_factory=list,
        description="Comma-separated keys accepted in X-API-Key for writing endpoints. With "
        "none configured, writing endpoints refuse every request.",
    )
    backend_timeout_s: PositiveFloat = Field(default=5.0)
    backend_connections: PositiveInt = Field(
        default=100, description="Pooled keep-alive connections per backend."
    )
    max_events_per_request: PositiveInt = Field(default=1000, le=10_000)

    @field_validator("api_keys", mode="before")
    @classmethod
    def _split_keys(cls, value: object) -> object:
        if isinstance(value, str):
            return [k.strip() for k in value.split(",") if k.strip()]
        return value
