"""The search query's cap (issue 13): the 422 it answers, the query-string room it leaves, and
the page served with it."""

from __future__ import annotations

from urllib.parse import urlencode

import pytest

from marquee_gateway.limits import MAX_QUERY_STRING_BYTES, max_query_string_bytes
from marquee_gateway.settings import GatewaySettings
from marquee_gateway.web import SEARCH_BOX_MAXLENGTH, render_page
from marquee_shared.api import MAX_QUERY_CHARS, TMDB_GENRES, query_too_long


def test_a_query_within_the_cap_passes_and_one_over_is_told_the_limit() -> None:
    assert query_too_long(None, 10) is None  # missing: the model says so
    assert query_too_long("x" * 10, 10) is None
    error = query_too_long("x" * 2345, 2000)
    assert error is not None
    assert error["msg"] == "q is 2,345 characters; the limit is 2,000"
    assert (error["loc"], error["type"], error["ctx"]) == (
        ["query", "q"],
        "string_too_long",
        {"max_length": 2000},
    )
    assert error["input"] is None  # a long query is not echoed back


@pytest.mark.parametrize("cap", [1, 100, MAX_QUERY_CHARS, 5000])
def test_the_query_string_limit_admits_the_longest_query_with_every_filter(cap: int) -> None:
    widest = "\U0001f988" * cap  # 4 bytes of UTF-8, each percent-encoded: 12 bytes
    params = {
        "q": widest,
        "genres": list(TMDB_GENRES),
        "year_min": 1870,
        "year_max": 2100,
        "min_rating": 9.5,
        "min_votes": 10**9,
        "language": "yue",
        "k": 100,
        "mode": "semantic",
    }
    assert len(urlencode(params, doseq=True)) <= max_query_string_bytes(cap)
    assert max_query_string_bytes(MAX_QUERY_CHARS) == MAX_QUERY_STRING_BYTES


def test_the_page_is_served_with_the_gateway_s_cap() -> None:
    assert SEARCH_BOX_MAXLENGTH == 'maxlength="2000"'
    default = render_page(MAX_QUERY_CHARS).decode()
    assert default.count('maxlength="2000"') == 1
    page = render_page(1234).decode()
    assert page.count('maxlength="1234"') == 1
    assert "maxlength=" not in page.replace('maxlength="1234"', "")


def test_the_cap_is_a_gateway_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    assert GatewaySettings().max_query_chars == MAX_QUERY_CHARS == 2000
    monkeypatch.setenv("MARQUEE_GATEWAY_MAX_QUERY_CHARS", "3000")
    assert GatewaySettings().max_query_chars == 3000
