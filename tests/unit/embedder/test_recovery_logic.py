"""The embedder's decisions that need no server: which claimed entries are poison
(recovery.triage_claimed), which event of a batch is a movie's newest
(indexer.newest_per_movie), and which movies the ledger has moved past while they were being
written (indexer.behind_the_ledger). The loops around them run against real Redis and Chroma in
tests/integration/embedder."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from marquee_embedder.indexer import behind_the_ledger, newest_per_movie
from marquee_embedder.ledger import _encode, decode_entry
from marquee_embedder.recovery import triage_claimed
from marquee_shared.events import MovieDeleted, decode_event, encode_event
from tests.support.movies import JAWS, MATRIX, fetched

T0 = datetime(2026, 3, 1, 12, tzinfo=UTC)


def _raw(event: object) -> dict[bytes, bytes]:
    """An entry's fields as XAUTOCLAIM returns them."""
    return {k.encode(): v.encode() for k, v in encode_event(event).items()}  # type: ignore[arg-type]


# -- triage of claimed entries --------------------------------------------------------------


def test_entries_delivered_up_to_the_limit_are_applied_again_in_order() -> None:
    jaws, matrix = fetched(JAWS), fetched(MATRIX)
    entries = [(b"1-0", _raw(jaws)), (b"2-0", _raw(matrix))]
    claimed = triage_claimed(
        entries, {"1-0": 2, "2-0": 3}, [None, b"ValueError: boom"], max_deliveries=3
    )
    assert claimed.poison == []
    assert claimed.retry_ids == ["1-0", "2-0"]
    assert [decode_event(f) for f in claimed.retry_fields] == [jaws, matrix]


def test_an_entry_past_the_limit_is_poison_with_its_last_error() -> None:
    jaws = fetched(JAWS)
    entries = [(b"1-0", _raw(jaws)), (b"2-0", _raw(fetched(MATRIX)))]
    claimed = triage_claimed(
        entries, {"1-0": 4, "2-0": 1}, [b"ChromaError: dimension 12", None], max_deliveries=3
    )
    (letter,) = claimed.poison
    assert letter.entry_id == "1-0"
    # The claim itself is the fourth delivery: three failed before it.
    assert letter.deliveries == 3
    assert letter.reason == "gave up after 3 deliveries: ChromaError: dimension 12"
    assert decode_event(letter.fields) == jaws
    assert claimed.retry_ids == ["2-0"]


def test_poison_without_a_recorded_error_says_so() -> None:
    claimed = triage_claimed([("7-1", _raw(fetched(JAWS)))], {"7-1": 9}, [None], max_deliveries=3)
    (letter,) = claimed.poison
    assert (
        letter.reason == "gave up after 8 deliveries: failed on every delivery (no error recorded)"
    )


def test_an_entry_redis_gives_no_count_for_counts_as_delivered_once() -> None:
    claimed = triage_claimed([(b"3-0", _raw(fetched(JAWS)))], {}, [None], max_deliveries=1)
    assert claimed.poison == []
    assert claimed.retry_ids == ["3-0"]


def test_an_entry_deleted_while_pending_comes_back_as_empty_fields() -> None:
    # XAUTOCLAIM may return None for the fields of an entry trimmed away; processing it turns
    # the missing event field into a dead letter with a reason, not a crash here.
    claimed = triage_claimed([(b"4-0", None)], {"4-0": 1}, [None], max_deliveries=3)
    assert claimed.retry_ids == ["4-0"]
    assert "event" not in claimed.retry_fields[0]


# -- the newest event per movie within a batch ------------------------------------------------


def test_the_event_that_occurred_last_wins_whatever_the_order() -> None:
    old = fetched(JAWS, occurred_at=T0)
    new = fetched(
        JAWS.model_copy(update={"title": "Jaws (restored)"}), occurred_at=T0 + timedelta(1)
    )
    matrix = fetched(MATRIX, occurred_at=T0)
    assert newest_per_movie([new, matrix, old]) == [new, matrix]
    assert newest_per_movie([old, matrix, new]) == [new, matrix]


def test_a_deletion_after_a_fetch_wins_and_a_tie_goes_to_the_later_entry() -> None:
    gone = MovieDeleted(source="test", tmdb_id=JAWS.tmdb_id, occurred_at=T0 + timedelta(1))
    assert newest_per_movie([fetched(JAWS, occurred_at=T0), gone]) == [gone]
    first = fetched(JAWS, occurred_at=T0)
    second = fetched(JAWS.model_copy(update={"title": "Jaws 2"}), occurred_at=T0)
    assert newest_per_movie([first, second]) == [second]


# -- converging on the ledger -----------------------------------------------------------------


def test_movies_the_ledger_moved_past_are_rewritten_with_the_ledgers_version() -> None:
    written = fetched(JAWS, occurred_at=T0)
    newer = fetched(
        JAWS.model_copy(update={"overview": "A new cut."}), occurred_at=T0 + timedelta(1)
    )
    same = fetched(MATRIX, occurred_at=T0)
    latest = {
        JAWS.tmdb_id: decode_entry(JAWS.tmdb_id, _encode(newer)),
        MATRIX.tmdb_id: decode_entry(MATRIX.tmdb_id, _encode(same)),
    }
    assert behind_the_ledger([written, same], latest) == [newer]


def test_nothing_to_converge_on_when_the_ledger_lacks_or_cannot_read_the_movie() -> None:
    written = fetched(JAWS, occurred_at=T0)
    unreadable = decode_entry(JAWS.tmdb_id, "1.0|abc|{not json")
    assert unreadable.event is None
    assert behind_the_ledger([written], {}) == []
    assert behind_the_ledger([written], {JAWS.tmdb_id: unreadable}) == []
