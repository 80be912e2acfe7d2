"""Timer trigger schedules: NCRONTAB expressions and TimeSpan intervals, as the Functions host reads them.

NCRONTAB has six fields, ``{second} {minute} {hour} {day} {month} {day-of-week}`` (five without
seconds are accepted too); each field is ``*``, a value, a range, a list or a step, with month
and day names. When both day and day-of-week are restricted, NCrontab requires both (not either,
as Vixie cron does). ``croniter`` computes the occurrences, in ``WEBSITE_TIME_ZONE`` (default UTC).
A schedule that is not NCRONTAB but a TimeSpan (``hh:mm:ss``) fires that long after the last run.
"""

from __future__ import annotations

import itertools
import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, tzinfo
from typing import Protocol

from croniter import croniter  # type: ignore[import-untyped]  # croniter ships no type information (no py.typed)

from .trigger_settings import parse_timespan

# One NCRONTAB field: values or names, ranges, steps and lists; nothing of Quartz (``?``, ``L``, ``#``).
_VALUE = r"(?:\d+|[A-Za-z]{3})"
_ITEM = rf"(?:\*|{_VALUE}(?:-{_VALUE})?)(?:/\d+)?"
_FIELD = re.compile(rf"{_ITEM}(?:,{_ITEM})*")


class Schedule(Protocol):
    def next_after(self, moment: datetime) -> datetime:
        """The first occurrence strictly after ``moment`` (both aware, returned in UTC)."""
        ...


@dataclass(frozen=True)
class CronSchedule:
    expression: str
    time_zone: tzinfo | None = None

    def next_after(self, moment: datetime) -> datetime:
        local = moment.astimezone(self.time_zone or UTC)
        six_fields = len(self.expression.split()) == 6
        found: datetime = croniter(self.expression, local, day_or=False, second_at_beginning=six_fields).get_next(
            datetime
        )
        return found.astimezone(UTC)


@dataclass(frozen=True)
class IntervalSchedule:
    interval: timedelta

    def next_after(self, moment: datetime) -> datetime:
        return moment.astimezone(UTC) + self.interval


def parse_schedule(expression: str, time_zone: tzinfo | None = None) -> CronSchedule | IntervalSchedule:
    """NCRONTAB first, then TimeSpan, else the Functions host's error message."""
    fields = expression.split()
    if len(fields) in (5, 6) and all(_FIELD.fullmatch(f) for f in fields):
        schedule = CronSchedule(" ".join(fields), time_zone)
        try:
            schedule.next_after(datetime.now(UTC))
            return schedule
        except (ValueError, KeyError) as exc:  # croniter's CroniterBadCronError is a ValueError
            raise ValueError(f"The schedule expression '{expression}' is not a valid cron expression: {exc}") from None
    try:
        seconds = parse_timespan(expression, "schedule") if len(fields) == 1 else 0.0
    except ValueError:
        seconds = 0.0
    if seconds > 0:
        return IntervalSchedule(timedelta(seconds=seconds))
    raise ValueError(
        f"The schedule expression '{expression}' was not recognized as a valid cron expression or timespan string."
    )


def fires_at_most_once_a_minute(schedule: Schedule, now: datetime) -> bool:
    """Azure's default for ``useMonitor``: monitor schedules whose occurrences are a minute or more apart."""
    occurrences = [schedule.next_after(now)]
    for _ in range(4):
        occurrences.append(schedule.next_after(occurrences[-1]))
    return all(b - a >= timedelta(minutes=1) for a, b in itertools.pairwise(occurrences))
