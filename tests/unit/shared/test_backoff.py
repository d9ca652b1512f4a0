"""The shared retry policy: doubling delays with a cap, reset after a success, and equal
jitter that stays between half the ceiling and the ceiling."""

from __future__ import annotations

import pytest

from marquee_shared.backoff import Backoff


def test_delays_double_up_to_the_cap_and_reset_after_a_success() -> None:
    backoff = Backoff(0.5, 3.0)
    assert [backoff.next() for _ in range(5)] == [0.5, 1.0, 2.0, 3.0, 3.0]
    backoff.reset()
    assert backoff.next() == 0.5


def test_the_attempt_number_gives_the_same_policy() -> None:
    backoff = Backoff(0.2, 2.0)
    assert [backoff.delay(i) for i in range(6)] == [0.2, 0.4, 0.8, 1.6, 2.0, 2.0]
    assert backoff.delay(10_000) == 2.0  # no overflow on a very long outage


def test_equal_jitter_keeps_each_delay_between_half_its_ceiling_and_the_ceiling() -> None:
    backoff = Backoff(1.0, 8.0, jitter=True)
    for attempt, ceiling in enumerate([1.0, 2.0, 4.0, 8.0, 8.0]):
        delays = {backoff.delay(attempt) for _ in range(200)}
        assert all(ceiling / 2 <= d <= ceiling for d in delays)
        assert len(delays) > 100  # spread out, not one value


@pytest.mark.parametrize(("first", "cap"), [(0.0, 1.0), (-1.0, 1.0), (2.0, 1.0)])
def test_a_policy_that_cannot_work_is_refused(first: float, cap: float) -> None:
    with pytest.raises(ValueError, match="first"):
        Backoff(first, cap)
