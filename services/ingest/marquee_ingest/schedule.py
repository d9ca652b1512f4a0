"""When the scheduled sync is due: every N seconds, or at the times of a cron expression (UTC).

Due times are computed from the last sync *any* instance finished (kept in Redis), not from a
per-process timer, so replicas started together agree on one due time and run one sync. From
the last *finished* one, not started: a sync whose instance crashed never finishes, so another
instance takes it over once the lock expires, instead of waiting a whole interval.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

# croniter ships no type information (no py.typed); its stubs (types-croniter) are not a
# dependency here, so the two calls below are typed by hand.
from croniter import croniter  # type: ignore[import-untyped]

CRON_FIELDS = 5


def validate_cron(expression: str) -> str:
    """The expression with its whitespace normalised; ValueError saying what is wrong if not.

    Only the classic five fields (minute hour day-of-month month day-of-week): croniter also
    accepts a sixth (seconds) field, which would make a schedule silently mean something else.
    """
    normalised = " ".join(expression.split())
    fields = normalised.split(" ") if normalised else []
    if len(fields) != CRON_FIELDS:
        msg = (
            f"cron expression {expression!r} has {len(fields)} fields; expected 5 "
            "(minute hour day-of-month month day-of-week), e.g. '15 */6 * * *'"
        )
        raise ValueError(msg)
    if not croniter.is_valid(normalised):
        msg = f"invalid cron expression {expression!r}"
        raise ValueError(msg)
    return normalised


@dataclass(frozen=True, slots=True)
class Schedule:
    """Exactly one of ``interval`` and ``cron``."""

    interval: timedelta | None = None
    cron: str | None = None

    def __post_init__(self) -> None:
        if (self.interval is None) == (self.cron is None):
            raise ValueError("a schedule has either an interval or a cron expression")
        if self.interval is not None and self.interval <= timedelta(0):
            raise ValueError(f"the interval must be positive, got {self.interval}")
        if self.cron is not None:
            validate_cron(self.cron)

    @classmethod
    def from_settings(cls, interval_seconds: int, cron: str | None) -> Schedule | None:
        """The configured schedule; None when scheduling is off (interval 0 and no cron)."""
        if cron:
            return cls(cron=validate_cron(cron))
        if interval_seconds > 0:
            return cls(interval=timedelta(seconds=interval_seconds))
        return None

    def describe(self) -> str:
        if self.cron is not None:
            return f"cron '{self.cron}' (UTC)"
        assert self.interval is not None
        return f"every {int(self.interval.total_seconds())}s"

    def next_due(self, last_finished: datetime | None) -> datetime | None:
        """When the next scheduled sync is due, or None if one is due now (none ever finished).

        A service that was down past one or more due times gets a due time in the past, so it
        syncs once on startup (not once per missed time).
        """
        if last_finished is None:
            return None
        if self.interval is not None:
            return last_finished + self.interval
        nxt: datetime = croniter(self.cron, last_finished.astimezone(UTC)).get_next(datetime)
        return nxt.astimezone(UTC)


def already_done(due: datetime | None, last_finished: datetime | None) -> bool:
    """Whether a sync due at ``due`` has been done already (by any instance).

    Checked again under the sync lock: of two instances that found the same sync due, the one
    that gets the lock second sees the first one's finish time and stands down.
    """
    if last_finished is None:
        return False
    return due is None or last_finished >= due
