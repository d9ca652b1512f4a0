"""The recovery loop's trim point when the pending entries vanish between two replies.

Seen in a run with two replicas: XINFO GROUPS said one entry was pending, another replica
acknowledged it, and the XPENDING summary that followed had no first entry. The loop crashed
with ``recovery_failed ... _parse_id: 'NoneType' object has no attribute 'partition'``.
"""

from __future__ import annotations

from typing import Any

from redis._parsers.helpers import parse_xpending

from marquee_embedder.streams import safe_trim_point

STREAM = "marquee:catalog:v1"

# XINFO GROUPS as redis-py 8 parses Redis 7.0's reply, taken while one entry was pending.
GROUPS_ONE_PENDING = [
    {
        "name": b"embedders",
        "consumers": 2,
        "pending": 1,
        "last-delivered-id": b"1764930000000-7",
        "entries-read": 42,
        "lag": 0,
    }
]

# XPENDING <stream> <group> once nothing is pending: Redis replies with the count 0 and three
# nils (*4 :0 $-1 $-1 *-1), which redis-py turns into this.
EMPTY_SUMMARY_WIRE: list[Any] = [0, None, None, None]


class RaceRedis:
    """Answers as Redis did when another replica acknowledged between the two calls."""

    async def xinfo_groups(self, stream: str) -> list[dict[str, Any]]:
        assert stream == STREAM
        return GROUPS_ONE_PENDING

    async def xpending(self, stream: str, group: bytes) -> dict[str, Any]:
        assert (stream, group) == (STREAM, b"embedders")
        return dict(parse_xpending(list(EMPTY_SUMMARY_WIRE)))


def test_the_empty_summary_reply_is_what_redis_py_gives():
    assert parse_xpending(list(EMPTY_SUMMARY_WIRE)) == {
        "pending": 0,
        "min": None,
        "max": None,
        "consumers": [],
    }


async def test_no_pending_entry_left_trims_below_the_next_undelivered_entry():
    point = await safe_trim_point(RaceRedis(), STREAM)  # type: ignore[arg-type]
    # Nothing pending any more: only the last-delivered id bounds the trim.
    assert point == "1764930000000-8"
