"""When the scheduled sync is due: intervals, cron expressions, and "already done" under the lock."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest
from pydantic import ValidationError

from marquee_ingest.schedule import Schedule, already_done, validate_cron
from marquee_ingest.settings import IngestSettings

T0 = datetime(2024, 5, 1, 6, 15, tzinfo=UTC)


def test_cron_whitespace_is_normalised() -> None:
    assert validate_cron("  15   */6 * *  * ") == "15 */6 * * *"


@pytest.mark.parametrize(
    ("expression", "message"),
    [
        ("", "has 0 fields; expected 5"),
        ("0 * * *", "has 4 fields; expected 5"),
        ("0 0 * * * *", "has 6 fields; expected 5"),  # croniter would read seconds
        ("61 * * * *", "invalid cron expression"),
        ("every day at 3 am", "invalid cron expression"),
    ],
)
def test_bad_cron_is_refused_with_the_reason(expression: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        validate_cron(expression)


def test_settings_refuse_a_bad_cron() -> None:
    with pytest.raises(ValidationError, match="sync_cron"):
        IngestSettings(sync_cron="61 * * * *")


def test_blank_cron_setting_means_none() -> None:
    assert IngestSettings(sync_cron="  ").sync_cron is None


def test_schedule_from_settings() -> None:
    assert Schedule.from_settings(0, None) is None
    every = Schedule.from_settings(900, None)
    assert every == Schedule(interval=timedelta(seconds=900))
    assert every.describe() == "every 900s"
    cron = Schedule.from_settings(900, "0 3 * * *")  # the cron expression wins
    assert cron == Schedule(cron="0 3 * * *")
    assert cron.describe() == "cron '0 3 * * *' (UTC)"


def test_a_schedule_has_exactly_one_rule() -> None:
    with pytest.raises(ValueError, match="either an interval or a cron"):
        Schedule()
    with pytest.raises(ValueError, match="either an interval or a cron"):
        Schedule(interval=timedelta(seconds=1), cron="* * * * *")
    with pytest.raises(ValueError, match="must be positive"):
        Schedule(interval=timedelta(0))


def test_never_synced_is_due_now() -> None:
    assert Schedule(interval=timedelta(hours=1)).next_due(None) is None
    assert Schedule(cron="0 3 * * *").next_due(None) is None


def test_interval_counts_from_the_last_finish() -> None:
    assert Schedule(interval=timedelta(hours=1)).next_due(T0) == T0 + timedelta(hours=1)


@pytest.mark.parametrize(
    ("last", "due"),
    [
        (T0, datetime(2024, 5, 1, 12, 15, tzinfo=UTC)),  # finished on a cron time: the next one
        (T0 - timedelta(seconds=1), T0),
        (datetime(2024, 5, 1, 18, 20, tzinfo=UTC), datetime(2024, 5, 2, 0, 15, tzinfo=UTC)),
    ],
)
def test_cron_due_time_is_the_next_match_after_the_last_finish(
    last: datetime, due: datetime
) -> None:
    assert Schedule(cron="15 */6 * * *").next_due(last) == due


def test_cron_works_in_utc_whatever_the_offset_of_the_last_finish() -> None:
    paris = T0.astimezone(timezone(timedelta(hours=2)))
    due = Schedule(cron="15 */6 * * *").next_due(paris)
    assert due == datetime(2024, 5, 1, 12, 15, tzinfo=UTC)
    assert due is not None and due.utcoffset() == timedelta(0)


def test_already_done() -> None:
    due = T0 + timedelta(hours=1)
    assert not already_done(None, None)  # never ran: not done
    assert not already_done(due, None)
    assert already_done(None, T0)  # "due since ever", and something ran: done
    assert not already_done(due, T0)  # the last sync finished before this due time
    assert already_done(due, due)
    assert already_done(due, due + timedelta(seconds=1))
