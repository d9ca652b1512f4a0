"""Gateway settings, read once at startup (env prefix ``MARQUEE_GATEWAY_``)."""

from __future__ import annotations

from ipaddress import IPv4Network, IPv6Network
from typing import Annotated

from pydantic import (
    AnyHttpUrl,
    BeforeValidator,
    Field,
    PositiveFloat,
    PositiveInt,
    SecretStr,
    field_validator,
)
from pydantic_settings import NoDecode, SettingsConfigDict

from marquee_shared.api import MAX_QUERY_CHARS, QUERY_CHARS_CEILING
from marquee_shared.settings import CommonSettings

TMDB_IMAGE_BASE_URL = "https://image.tmdb.org/t/p"


def _blank_is_none(value: object) -> object:
    return None if isinstance(value, str) and not value.strip() else value


class GatewaySettings(CommonSettings):
    model_config = SettingsConfigDict(
        env_prefix="MARQUEE_GATEWAY_", extra="ignore", validate_by_name=True
    )

    search_url: AnyHttpUrl = Field(default=AnyHttpUrl("http://127.0.0.1:8081"))
    explainer_url: AnyHttpUrl = Field(default=AnyHttpUrl("http://127.0.0.1:8082"))
    ingest_url: AnyHttpUrl = Field(
        default=AnyHttpUrl("http://127.0.0.1:8084"),
        description="The ingest service (TMDB sync admin, catalog size for /v1/stats).",
    )
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
    # -- abuse limits (marquee_gateway.ratelimit, marquee_gateway.limits) ---------------------
    rate_limit_per_minute: int = Field(
        default=600,
        ge=0,
        description="Requests per minute per client (API key, else IP), sustained, with bursts "
        "of as many at once; shared by every replica through Redis. 0 disables.",
    )
    write_rate_limit_per_minute: int = Field(
        default=60,
        ge=0,
        description="The same for writing requests (POST, PUT, PATCH, DELETE), counted "
        "separately from reads. 0 disables.",
    )
    trusted_proxies: Annotated[list[IPv4Network | IPv6Network], NoDecode] = Field(
        default_factory=list,
        description="Comma-separated addresses or CIDRs of reverse proxies whose "
        "X-Forwarded-For names the client; from any other peer the header is ignored.",
    )
    max_body_bytes: PositiveInt = Field(
        default=8 * 1024 * 1024,
        description="Largest request body accepted; larger ones get 413 before being read.",
    )
    max_query_chars: PositiveInt = Field(
        default=MAX_QUERY_CHARS,
        le=QUERY_CHARS_CEILING,
        description="Longest search query (q of /v1/search) in characters; longer ones get a "
        "422 saying so. The OpenAPI document, the web page's search box and the query-string "
        "limit (414) follow it. Keep the search service's MAX_QUERY_CHARS at least as large.",
    )

    image_base_url: Annotated[AnyHttpUrl | None, BeforeValidator(_blank_is_none)] = Field(
        default=AnyHttpUrl(TMDB_IMAGE_BASE_URL),
        description="Where the web page loads movie images from: TMDB's image host, or a "
        "mirror or cache of it (the page asks for <base>/<size>/<file>, e.g. /w342/abc.jpg). "
        "Empty turns images off: the page shows its gradients and never contacts TMDB.",
    )

    @field_validator("trusted_proxies", mode="before")
    @classmethod
    def _split_proxies(cls, value: object) -> object:
        if isinstance(value, str):
            return [p.strip() for p in value.split(",") if p.strip()]
        return value

    @field_validator("api_keys", mode="before")
    @classmethod
    def _split_keys(cls, value: object) -> object:
        if isinstance(value, str):
            return [k.strip() for k in value.split(",") if k.strip()]
        return value
