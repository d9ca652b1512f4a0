"""The pure parts of a model migration: comparing a target with the ledger, the phases, the
status and coverage the operator reads, naming the target collection."""

from __future__ import annotations

import pytest

from marquee_embedder.migration import compare, next_phase, resolve_target, target_collection
from marquee_shared.migration import MigrationError, status_from
from marquee_shared.model.identity import ModelId
from marquee_shared.model.resolve import resolve_model


def test_compare_finds_missing_outdated_and_deleted_records() -> None:
    ledger = {1: "a", 2: "b", 3: None, 4: "d"}
    target = {1: "a", 2: "old", 3: "c", 5: "e"}
    coverage = compare(ledger, target)
    assert coverage.live == 3
    assert coverage.missing == [2, 4]  # outdated, absent
    assert coverage.extra == [3, 5]  # deleted in the ledger, never in it
    assert coverage.differences == 4
    assert coverage.percent == pytest.approx(100 / 3)


def test_a_target_equal_to_the_ledger_is_covered() -> None:
    coverage = compare({1: "a", 2: None}, {1: "a"})
    assert (coverage.differences, coverage.percent) == (0, 100.0)
    assert compare({}, {}).percent == 100.0


@pytest.mark.parametrize(
    ("phase", "cursor_done", "claims", "differences", "expected"),
    [
        ("copying", False, 0, None, "copying"),
        ("copying", True, 1, None, "copying"),  # a chunk still being copied
        ("copying", True, 0, None, "verifying"),
        ("verifying", True, 0, 3, "verifying"),
        ("verifying", True, 0, 0, "ready"),
        ("switched", True, 0, 0, "switched"),
    ],
)
def test_phases(phase, cursor_done, claims, differences, expected) -> None:  # type: ignore[no-untyped-def]
    assert next_phase(phase, cursor_done=cursor_done, claims=claims, differences=differences) == (
        expected
    )


def _fields(**kw: str) -> dict[str, str]:
    base = {
        "phase": "copying",
        "source_collection": "movies",
        "source_model": "a@1+000000000000",
        "source_model_source": "stock",
        "target_collection": "movies--b-111111111111",
        "target_model": "b@1+111111111111",
        "target_model_source": "/models/b",
        "ledger_entries": "200",
        "scanned": "50",
        "copied": "40",
        "verify_interval_s": "30.0",
        "started_at": "1700000000000",
    }
    return {**base, **kw}


def test_status_while_copying_counts_the_ledger_scanned_and_never_says_100() -> None:
    status = status_from(_fields())
    assert status is not None
    assert status.coverage_percent == 25.0
    assert status.live_collection == "movies"
    done = status_from(_fields(scanned="200"))
    assert done is not None
    assert done.coverage_percent == 99.9  # 100 only once a verification says so


def test_status_after_verification_and_switch() -> None:
    status = status_from(_fields(phase="ready", live="180", missing="9", verified_at="1"))
    assert status is not None
    assert status.coverage_percent == 95.0
    switched = status_from(_fields(phase="switched", live="180", missing="0"))
    assert switched is not None
    assert switched.coverage_percent == 100.0
    assert switched.live_collection == "movies--b-111111111111"
    assert status_from({}) is None


def test_target_collection_names_are_valid_for_chroma() -> None:
    name = target_collection("movies_minilm_l6_v1", ModelId("movie tuned/x", "1", "ab" * 6))
    assert name == "movies_minilm_l6_v1--movie-tuned-x-abababababab"


def test_resolve_target_accepts_a_setting_or_a_packaged_models_id() -> None:
    stock = resolve_model("stock")[1]
    assert resolve_target("stock") == ("stock", stock)
    assert resolve_target(str(stock)) == ("stock", stock)
    with pytest.raises(MigrationError, match="not one of the packaged models"):
        resolve_target("nobody@1+0123456789ab")
