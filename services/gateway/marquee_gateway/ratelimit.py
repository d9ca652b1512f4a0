"""Per-client rate limiting for the public API, shared by every gateway replica through Redis.

The algorithm is GCRA (the generic cell rate algorithm, as in redis-cell and Stripe's limiter):
one Redis key per client holds a "theoretical arrival time", updated by one Lua script, so a
check is a single atomic round trip whatever the number of replicas, and a client costs one
small key that expires once it is idle. A limit of N per minute lets a client send N requests
back to back, then one every 60/N seconds; a refused request says exactly when to retry.

Time comes from Redis (``TIME`` inside the script), not from each replica's clock, so replicas
with skewed clocks still agree.
"""

from __future__ import annotations

import asyncio
import hashlib
import ipaddress
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import structlog
from prometheus_client import Counter
from redis.exceptions import RedisError

from marquee_gateway.deps import is_configured_key
from marquee_shared.asgi import send_json_error
from marquee_shared.health import PROBE_PATHS

if TYPE_CHECKING:
    from pydantic import SecretStr
    from redis.asyncio import Redis
    from redis.commands.core import AsyncScript
    from starlette.types import ASGIApp, Receive, Scope, Send

    Network = ipaddress.IPv4Network | ipaddress.IPv6Network

log = structlog.get_logger(__name__)

KEY_PREFIX = "marquee:ratelimit"
EXEMPT_PATHS = PROBE_PATHS | {"/"}
"""Probes and scrapers poll these from few addresses; limiting them would fail health checks.
The web page (``/`` and ``/static/``) is a few small files: counting them would spend a
client's search budget on loading the page that searches."""
EXEMPT_PREFIXES = ("/static/",)
READ_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
REDIS_TIMEOUT_S = 0.25
"""A limiter that waits on a stuck Redis would stall every read; past this it fails open."""
WARN_EVERY_S = 30.0

RATE_LIMITED = Counter(
    "marquee_gateway_rate_limited_total",
    "Requests refused with 429 by the per-client rate limiter",
    ["kind"],
)
LIMITER_ERRORS = Counter(
    "marquee_gateway_rate_limiter_errors_total",
    "Rate-limit checks skipped (request allowed) because Redis did not answer in time",
)

# KEYS[1]: the client's key. ARGV[1]: emission interval in microseconds (60 s / limit).
# ARGV[2]: burst, the requests allowed back to back. Returns {allowed, retry_after_us, remaining}.
# Lua numbers are doubles: microseconds since the epoch (~1.8e15) are exact below 2^53.
GCRA_LUA = """
local interval = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local tat = tonumber(redis.call('GET', KEYS[1]) or now)
if tat < now then tat = now end
local new_tat = tat + interval
local allow_at = new_tat - interval * burst
if now < allow_at then
  return {0, math.ceil(allow_at - now), 0}
end
redis.call('SET', KEYS[1], string.format('%.0f', new_tat),
           'PX', math.ceil((new_tat - now) / 1000) + 1000)
return {1, 0, math.floor((now - allow_at) / interval)}
"""


@dataclass(frozen=True, slots=True)
class Decision:
    allowed: bool
    retry_after_s: float
    remaining: int


class RateLimiter:
    """GCRA checks against one Redis; safe to share between concurrent requests."""

    def __init__(self, redis: Redis, *, prefix: str = KEY_PREFIX) -> None:
        self.redis = redis
        self._prefix = prefix
        # EVALSHA with a transparent EVAL fallback: a restarted Redis has lost the script cache.
        self._script: AsyncScript = redis.register_script(GCRA_LUA)

    async def hit(self, bucket: str, per_minute: int) -> Decision:
        """Count one request against ``bucket``; allowed while under ``per_minute``."""
        interval_us = 60_000_000 / per_minute
        allowed, retry_us, remaining = await self._script(
            keys=[f"{self._prefix}:{bucket}"], args=[repr(interval_us), per_minute]
        )
        return Decision(bool(allowed), int(retry_us) / 1_000_000, int(remaining))


# --- who is the client ---------------------------------------------------------------------


def _header(scope: Scope, name: bytes) -> list[bytes]:
    return [v for k, v in scope.get("headers") or [] if k == name]


def _parse_ip(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    text = text.strip()
    if text.startswith("[") and "]" in text:  # "[2001:db8::1]:443"
        text = text[1 : text.index("]")]
    elif text.count(":") == 1:  # "203.0.113.7:51234": some proxies append the port
        text = text.split(":", 1)[0]
    try:
        return ipaddress.ip_address(text)
    except ValueError:
        return None


def _trusted(
    address: ipaddress.IPv4Address | ipaddress.IPv6Address | None, proxies: Sequence[Network]
) -> bool:
    return address is not None and any(address in network for network in proxies)


def client_ip(scope: Scope, trusted_proxies: Sequence[Network]) -> str:
    """The client's address: the TCP peer, unless the peer is a trusted proxy.

    Behind trusted proxies, X-Forwarded-For is read right to left and the first address that
    is not a trusted proxy is the client: everything left of it was written by the client
    itself and proves nothing (anyone can send ``X-Forwarded-For: 1.2.3.4``).
    """
    peer = str((scope.get("client") or ("unknown",))[0])
    if not _trusted(_parse_ip(peer), trusted_proxies):
        return peer
    hops = [
        hop.strip()
        for value in _header(scope, b"x-forwarded-for")
        for hop in value.decode("latin-1").split(",")
        if hop.strip()
    ]
    for hop in reversed(hops):
        address = _parse_ip(hop)
        if address is None:
            # Malformed: a trusted proxy never writes this, so it is the client's own text.
            return hop[:64]
        if not _trusted(address, trusted_proxies):
            return str(address)
    # Every hop is one of our proxies: the left-most is as close to the client as we know.
    return str(_parse_ip(hops[0])) if hops else peer


def client_identity(
    scope: Scope, api_keys: Sequence[bytes], trusted_proxies: Sequence[Network]
) -> str:
    """``key:<hash>`` for a request carrying a configured API key, else ``ip:<address>``.

    Only a *valid* key names the client: were any X-API-Key value accepted as an identity, a
    client could escape its address's limit by sending a new random key with every request.
    The key is hashed so no secret ends up in a Redis key name.
    """
    supplied = next(iter(_header(scope, b"x-api-key")), b"")
    if supplied and is_configured_key(supplied, api_keys):
        return "key:" + hashlib.sha256(supplied).hexdigest()[:32]
    return "ip:" + client_ip(scope, trusted_proxies)


# --- the middleware ------------------------------------------------------------------------


class RateLimitMiddleware:
    """Pure ASGI (no per-request task or body copy): answers 429 before the app runs.

    Reads and writes have separate limits and separate counters, so a client publishing events
    does not lose its search budget. ``redis`` is a callable because the gateway's Redis client
    is created in the app's lifespan, after the middleware stack is built.
    """

    def __init__(
        self,
        app: ASGIApp,
        *,
        redis: Callable[[], Redis | None],
        read_per_minute: int,
        write_per_minute: int,
        api_keys: Sequence[SecretStr] = (),
        trusted_proxies: Sequence[Network] = (),
        timeout_s: float = REDIS_TIMEOUT_S,
    ) -> None:
        self.app = app
        self._redis = redis
        self._limits = {"read": read_per_minute, "write": write_per_minute}
        self._api_keys = [k.get_secret_value().encode() for k in api_keys]
        self._trusted = list(trusted_proxies)
        self._timeout_s = timeout_s
        self._limiter: RateLimiter | None = None
        self._last_warning = -math.inf

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (
            scope["type"] != "http"
            or scope["path"] in EXEMPT_PATHS
            or scope["path"].startswith(EXEMPT_PREFIXES)
        ):
            await self.app(scope, receive, send)
            return
        kind = "read" if scope["method"] in READ_METHODS else "write"
        limit = self._limits[kind]
        if limit <= 0:
            await self.app(scope, receive, send)
            return
        identity = client_identity(scope, self._api_keys, self._trusted)
        decision = await self._check(f"{kind}:{identity}", limit)
        if decision is None or decision.allowed:
            await self.app(scope, receive, send)
            return
        RATE_LIMITED.labels(kind).inc()
        retry_after = max(1, math.ceil(decision.retry_after_s))
        log.info("rate_limited", kind=kind, client=identity, retry_after_s=retry_after)
        # "write" is by method: it also covers read-only POSTs (explanations, recommendations),
        # which are the expensive calls anyway.
        what = "requests" if kind == "read" else "POST/PUT/PATCH/DELETE requests"
        await send_json_error(
            send,
            429,
            f"rate limit exceeded: at most {limit} {what} per minute per client; "
            f"retry in {retry_after} s",
            [(b"retry-after", str(retry_after).encode())],
        )

    async def _check(self, bucket: str, limit: int) -> Decision | None:
        """The decision, or None when Redis cannot tell (the request is then allowed)."""
        redis = self._redis()
        if redis is None:  # lifespan not started (or already stopped): nothing to count with
            return None
        if self._limiter is None or self._limiter.redis is not redis:
            self._limiter = RateLimiter(redis)
        try:
            return await asyncio.wait_for(self._limiter.hit(bucket, limit), self._timeout_s)
        except (RedisError, OSError, TimeoutError) as exc:
            # Fail OPEN, on purpose: the limiter protects capacity, it is not an access
            # control (writes still need an API key). Failing closed would turn a Redis outage
            # into a total outage of searches, which do not need Redis at all. Writes need
            # Redis to publish anyway, so they fail on their own with 503.
            LIMITER_ERRORS.inc()
            now = time.monotonic()
            if now - self._last_warning >= WARN_EVERY_S:  # one line per 30 s, not per request
                self._last_warning = now
                log.warning(
                    "rate_limiter_unavailable",
                    error=f"{type(exc).__name__}: {exc}",
                    effect="requests allowed without rate limiting",
                )
            return None
