"""How the embedder reads a stream entry before validation (consumer.StreamFieldsFormat): any
shape becomes a str->str dict for the handler, so that a malformed entry is dead-lettered
with a reason instead of crashing the parser and leaving the batch pending."""

from __future__ import annotations

import json

import pytest

from marquee_embedder.consumer import StreamFieldsFormat, entry_fields
from marquee_shared.events import (
    EVENT_FIELD,
    UNREADABLE_FIELD,
    InvalidEventError,
    decode_event,
    encode_event,
)
from tests.support.movies import JAWS, fetched


def test_an_entry_as_redis_returns_it_decodes_to_the_event() -> None:
    event = fetched(JAWS)
    raw = {k.encode(): v.encode() for k, v in encode_event(event).items()}
    fields = entry_fields(raw)
    assert set(fields) == {EVENT_FIELD}
    assert decode_event(fields) == event


def test_invalid_utf8_is_marked_and_dead_lettered_not_indexed_as_replacement_characters() -> None:
    raw = {EVENT_FIELD.encode(): encode_event(fetched(JAWS))[EVENT_FIELD].encode() + b"\xff"}
    fields = entry_fields(raw)
    assert "byte 0xff" in fields[UNREADABLE_FIELD]
    with pytest.raises(InvalidEventError, match="not valid UTF-8"):
        decode_event(fields)


def test_an_entry_without_an_event_field_names_the_fields_it_has() -> None:
    fields = entry_fields({b"title": b"Jaws"})
    with pytest.raises(InvalidEventError, match=r"no 'event' field.*title"):
        decode_event(fields)


def test_a_body_that_is_not_a_faststream_envelope_becomes_a_dead_letter_not_a_crash() -> None:
    body, headers = StreamFieldsFormat.parse(b"\x00\x01 not an envelope")
    assert headers == {}
    # Either way round (no envelope found, or its body is not JSON), a reason to dead-letter.
    with pytest.raises(InvalidEventError, match=r"Invalid JSON|no 'event' field"):
        decode_event(json.loads(body))


async def test_the_embedder_never_publishes_through_the_format() -> None:
    with pytest.raises(NotImplementedError, match=r"marquee_shared\.streams"):
        await StreamFieldsFormat.encode()
