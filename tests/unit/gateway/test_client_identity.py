"""Who a request counts against: the rules that decide whether a client can dodge its limit."""

from __future__ import annotations

import ipaddress
from typing import Any

import pytest

from marquee_gateway.ratelimit import client_identity, client_ip
from marquee_gateway.settings import GatewaySettings

PROXIES = [ipaddress.ip_network("10.0.0.0/8"), ipaddress.ip_network("fd00::/8")]
KEYS = [b"key-one", b"key-two"]


def scope(peer: str | None, *headers: tuple[str, str]) -> dict[str, Any]:
    return {
        "type": "http",
        "client": (peer, 51234) if peer else None,
        "headers": [(k.lower().encode(), v.encode()) for k, v in headers],
    }


def test_without_trusted_proxies_the_peer_is_the_client_whatever_it_claims():
    s = scope("198.51.100.7", ("X-Forwarded-For", "203.0.113.1"))
    assert client_ip(s, []) == "198.51.100.7"
    assert client_ip(s, PROXIES) == "198.51.100.7"  # the peer is not one of our proxies


@pytest.mark.parametrize(
    ("forwarded", "client"),
    [
        ("203.0.113.9", "203.0.113.9"),
        ("203.0.113.9, 10.1.2.3", "203.0.113.9"),  # our inner proxy is skipped
        # Whatever the client wrote itself sits left of what our proxy appended: ignored.
        ("1.1.1.1, 8.8.8.8, 203.0.113.9", "203.0.113.9"),
        ("203.0.113.9:44321", "203.0.113.9"),  # a proxy that appends the port
        ("[2001:db8::5]:443, fd00::1", "2001:db8::5"),
        ("10.0.0.9, 10.0.0.8", "10.0.0.9"),  # only our proxies: the left-most
        ("not-an-ip", "not-an-ip"),
    ],
)
def test_forwarded_for_is_read_right_to_left_from_a_trusted_proxy(forwarded, client):
    assert client_ip(scope("10.0.0.2", ("X-Forwarded-For", forwarded)), PROXIES) == client


def test_several_forwarded_for_headers_are_one_list():
    s = scope("10.0.0.2", ("X-Forwarded-For", "1.1.1.1"), ("X-Forwarded-For", "203.0.113.9"))
    assert client_ip(s, PROXIES) == "203.0.113.9"


def test_a_trusted_peer_without_forwarded_for_is_itself_the_client():
    assert client_ip(scope("10.0.0.2"), PROXIES) == "10.0.0.2"
    assert client_ip(scope(None), PROXIES) == "unknown"


def test_overlong_junk_cannot_make_huge_redis_keys():
    s = scope("10.0.0.2", ("X-Forwarded-For", "x" * 10_000))
    assert len(client_ip(s, PROXIES)) <= 64


def test_only_a_configured_api_key_names_the_client():
    anonymous = client_identity(scope("198.51.100.7"), KEYS, [])
    assert anonymous == "ip:198.51.100.7"
    made_up = client_identity(scope("198.51.100.7", ("X-API-Key", "random")), KEYS, [])
    assert made_up == anonymous

    one = client_identity(scope("198.51.100.7", ("X-API-Key", "key-one")), KEYS, [])
    one_elsewhere = client_identity(scope("192.0.2.1", ("X-API-Key", "key-one")), KEYS, [])
    two = client_identity(scope("198.51.100.7", ("X-API-Key", "key-two")), KEYS, [])
    assert one.startswith("key:")
    assert one == one_elsewhere  # the key's budget follows it across addresses
    assert two != one
    assert "key-one" not in one  # no secret in a Redis key name


def test_limit_settings_parse_from_the_environment(monkeypatch):
    monkeypatch.setenv("MARQUEE_GATEWAY_TRUSTED_PROXIES", "10.0.0.0/8, 192.0.2.1 ,fd00::/8")
    monkeypatch.setenv("MARQUEE_GATEWAY_RATE_LIMIT_PER_MINUTE", "0")
    monkeypatch.setenv("MARQUEE_GATEWAY_WRITE_RATE_LIMIT_PER_MINUTE", "5")
    monkeypatch.setenv("MARQUEE_GATEWAY_MAX_BODY_BYTES", "1024")
    monkeypatch.setenv("MARQUEE_INTERNAL_TOKEN", "  ")
    settings = GatewaySettings()
    assert [str(n) for n in settings.trusted_proxies] == ["10.0.0.0/8", "192.0.2.1/32", "fd00::/8"]
    assert settings.rate_limit_per_minute == 0
    assert settings.write_rate_limit_per_minute == 5
    assert settings.max_body_bytes == 1024
    assert settings.internal_token is None  # blank means unset

    monkeypatch.setenv("MARQUEE_INTERNAL_TOKEN", "s3cret")
    token = GatewaySettings().internal_token
    assert token is not None
    assert token.get_secret_value() == "s3cret"
    assert "s3cret" not in repr(GatewaySettings())


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("MARQUEE_GATEWAY_TRUSTED_PROXIES", "10.0.0.0/33"),
        ("MARQUEE_GATEWAY_RATE_LIMIT_PER_MINUTE", "-1"),
        ("MARQUEE_GATEWAY_MAX_BODY_BYTES", "0"),
    ],
)
def test_invalid_limit_settings_are_refused_at_startup(monkeypatch, name, value):
    monkeypatch.setenv(name, value)
    with pytest.raises(ValueError, match=name.removeprefix("MARQUEE_GATEWAY_").lower()):
        GatewaySettings()
