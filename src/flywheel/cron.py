"""Five-field cron expressions (minute hour day-of-month month day-of-week), in UTC.

Written here rather than taken from croniter: the trigger engine needs one
question answered (the newest tick at or before a time), and the configuration
must refuse a bad expression when it loads, so the bottom layer owns it.
The fields follow cron(8): `*`, lists, ranges, `/step`, month and day names,
0 or 7 for Sunday, and a tick matches either day field when both are restricted.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from flywheel.errors import FlywheelError

_ALIASES = {
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
    "@monthly": "0 0 1 * *",
    "@weekly": "0 0 * * 0",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@hourly": "0 * * * *",
}
_MONTHS = ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec")
_DAYS = ("sun", "mon", "tue", "wed", "thu", "fri", "sat")
# (name, lowest, highest, names numbered from `lowest`)
_FIELDS = (
    ("minute", 0, 59, ()),
    ("hour", 0, 23, ()),
    ("day of month", 1, 31, ()),
    ("month", 1, 12, _MONTHS),
    ("day of week", 0, 7, _DAYS),
)
# Feb 29 on a given weekday comes round within 28 years; look no further back.
_LOOKBACK_DAYS = 366 * 28
# The most days each month has (February in a leap year).
_LONGEST = (31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31)


class CronError(FlywheelError, ValueError):
    """The expression is not valid cron; the message names the field and the problem."""


@dataclass(frozen=True)
class Cron:
    """A parsed expression: the allowed values of each field."""

    text: str
    minutes: frozenset[int]
    hours: frozenset[int]
    days: frozenset[int]
    months: frozenset[int]
    weekdays: frozenset[int]  # 0 is Sunday
    any_day: bool  # the day-of-month field is *
    any_weekday: bool  # the day-of-week field is *

    def matches_day(self, when: datetime) -> bool:
        """Whether a tick may fall on this day."""
        if when.month not in self.months:
            return False
        in_month = when.day in self.days
        in_week = (when.isoweekday() % 7) in self.weekdays
        if self.any_day or self.any_weekday:
            return in_month and in_week
        return in_month or in_week

    def previous(self, at: datetime) -> datetime | None:
        """The newest tick at or before `at` (UTC), or None if there is none in 28 years."""
        at = at.astimezone(UTC).replace(second=0, microsecond=0)
        day = at.replace(hour=0, minute=0)
        for back in range(_LOOKBACK_DAYS):
            current = day - timedelta(days=back)
            if not self.matches_day(current):
                continue
            last_minute = at.hour * 60 + at.minute if back == 0 else 24 * 60 - 1
            for hour in sorted(self.hours, reverse=True):
                for minute in sorted(self.minutes, reverse=True):
                    if hour * 60 + minute <= last_minute:
                        return current.replace(hour=hour, minute=minute)
        return None


def parse(text: str) -> Cron:
    """Parse a five-field expression or an @alias; raises CronError, also for one that never
    fires (February 30th; February 29th fires in leap years)."""
    expression = _ALIASES.get(text.strip().lower(), text)
    parts = expression.split()
    if len(parts) != 5:
        raise CronError(
            f"{text!r} has {len(parts)} field(s); cron needs 5 "
            "(minute hour day-of-month month day-of-week), e.g. '0 3 * * 1'"
        )
    values = [_field(part, *spec) for part, spec in zip(parts, _FIELDS, strict=True)]
    weekdays = frozenset(d % 7 for d in values[4])
    days, months, any_weekday = values[2], values[3], parts[4] == "*"
    # Every month has every day of the week, so only days of the month alone can miss every
    # month (a restricted day of the week matches on its own, or within any day of the month).
    if any_weekday and not any(d <= _LONGEST[m - 1] for m in months for d in days):
        raise CronError(
            f"{text!r} never fires: no month it names has day {' or '.join(map(str, sorted(days)))}"
        )
    return Cron(
        text=text,
        minutes=values[0],
        hours=values[1],
        days=days,
        months=months,
        weekdays=weekdays,
        any_day=parts[2] == "*",
        any_weekday=any_weekday,
    )


def _field(part: str, name: str, low: int, high: int, names: tuple[str, ...]) -> frozenset[int]:
    allowed: set[int] = set()
    for item in part.split(","):
        span, _, step_text = item.partition("/")
        step = 1
        if step_text:
            step = _number(step_text, name, names, low, what="step")
            if step < 1:
                raise CronError(f"{name} field {part!r}: the step must be at least 1")
        if span == "*":
            first, last = low, high
        elif "-" in span:
            start, _, end = span.partition("-")
            first, last = _number(start, name, names, low), _number(end, name, names, low)
        else:
            first = _number(span, name, names, low)
            last = high if step_text else first
        for value in (first, last):
            if not low <= value <= high:
                raise CronError(f"{name} field {part!r}: {value} is outside {low}-{high}")
        if first > last:
            raise CronError(f"{name} field {part!r}: the range {first}-{last} runs backwards")
        allowed.update(range(first, last + 1, step))
    return frozenset(allowed)


def _number(text: str, name: str, names: tuple[str, ...], low: int, what: str = "value") -> int:
    lowered = text.strip().lower()
    if lowered in names and what == "value":
        return names.index(lowered) + low
    if not lowered.isdigit():
        raise CronError(f"{name} field: {text!r} is not a number" + (" or a name" if names else ""))
    return int(lowered)
