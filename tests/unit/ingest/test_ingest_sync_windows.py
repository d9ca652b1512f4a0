"""Which days of TMDB changes a sync asks for, and where the watermark goes afterwards."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta, timezone

from marquee_ingest.state import WindowCursor
from marquee_ingest.sync import Window, midnight, next_window, watermark_after

TODAY = date(2024, 5, 20)
STARTED = datetime(2024, 5, 20, 9, 30, tzinfo=UTC)


def test_a_fresh_window_runs_from_the_watermark_day_to_today() -> None:
    watermark = datetime(2024, 5, 18, 22, 0, tzinfo=UTC)

    assert next_window(watermark, None, TODAY, 14) == Window(
        date(2024, 5, 18), TODAY, listed_on=TODAY
    )


def test_a_long_absence_is_cut_to_the_window_size() -> None:
    watermark = datetime(2024, 4, 1, tzinfo=UTC)

    window = next_window(watermark, None, TODAY, 14)

    assert (window.start, window.end) == (date(2024, 4, 1), date(2024, 4, 14))
    assert (window.end - window.start).days == 13  # 14 days, both ends included


def test_the_watermark_day_is_taken_in_utc() -> None:
    # 01:00 on the 19th in UTC+3 is still the 18th in UTC (TMDB files changes by UTC day).
    watermark = datetime(2024, 5, 19, 1, 0, tzinfo=timezone(timedelta(hours=3)))
    assert next_window(watermark, None, TODAY, 14).start == date(2024, 5, 18)


def test_a_watermark_in_the_future_does_not_stall() -> None:
    window = next_window(datetime(2024, 6, 1, tzinfo=UTC), None, TODAY, 14)
    assert (window.start, window.end) == (TODAY, TODAY)


def test_a_window_in_progress_is_resumed_as_it_was() -> None:
    cursor = WindowCursor(
        start=date(2024, 5, 1), end=date(2024, 5, 14), listed_on=date(2024, 5, 15), last_id=603
    )

    window = next_window(datetime(2024, 5, 1, tzinfo=UTC), cursor, TODAY, 14)

    assert window == Window(date(2024, 5, 1), date(2024, 5, 14), date(2024, 5, 15), after=603)


def test_after_a_window_of_past_days_the_next_starts_the_day_after() -> None:
    window = Window(date(2024, 4, 1), date(2024, 4, 14), listed_on=TODAY)

    assert watermark_after(window, TODAY, STARTED) == midnight(date(2024, 4, 15))


def test_after_a_window_listed_in_full_today_the_watermark_is_the_run_start() -> None:
    window = Window(date(2024, 5, 18), TODAY, listed_on=TODAY)

    assert watermark_after(window, TODAY, STARTED) == STARTED


def test_after_a_window_resumed_on_its_last_day_that_day_is_listed_again() -> None:
    # Listed earlier today, stopped at the request cap, finished now: ids before the cursor
    # may have changed again since the first listing.
    window = Window(date(2024, 5, 18), TODAY, listed_on=TODAY, after=603)
    assert watermark_after(window, TODAY, STARTED) == midnight(TODAY)

    # Listed on its last day (then "today"), resumed days later: the same.
    window = Window(date(2024, 5, 10), date(2024, 5, 12), listed_on=date(2024, 5, 12), after=7)
    assert watermark_after(window, TODAY, STARTED) == midnight(date(2024, 5, 12))


def test_a_window_resumed_after_its_days_were_over_is_complete() -> None:
    window = Window(date(2024, 5, 10), date(2024, 5, 12), listed_on=date(2024, 5, 13), after=7)

    assert watermark_after(window, TODAY, STARTED) == midnight(date(2024, 5, 13))
