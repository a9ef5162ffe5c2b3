"""Five-field cron: parsing, the newest tick at or before a time, and errors that name the field."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

import pytest

from flywheel import cron


def at(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


@pytest.mark.parametrize(
    ("expression", "now", "tick"),
    [
        ("0 3 * * 1", "2026-01-14T12:00", "2026-01-12T03:00"),  # Wednesday: Monday's tick
        ("0 3 * * 1", "2026-01-12T03:00", "2026-01-12T03:00"),  # the tick itself counts
        ("0 3 * * 1", "2026-01-12T02:59", "2026-01-05T03:00"),  # a minute early: last week's
        ("*/15 * * * *", "2026-01-14T12:44:59", "2026-01-14T12:30"),
        ("30 8-10 * * *", "2026-01-14T07:00", "2026-01-13T10:30"),
        ("0 0 1 jan *", "2026-06-01T00:00", "2026-01-01T00:00"),
        ("0 0 * * sun", "2026-01-14T00:00", "2026-01-11T00:00"),
        ("0 0 * * 7", "2026-01-14T00:00", "2026-01-11T00:00"),  # 7 is Sunday too
        ("@daily", "2026-01-14T12:00", "2026-01-14T00:00"),
        ("@hourly", "2026-01-14T12:59", "2026-01-14T12:00"),
        ("0 0 29 2 *", "2026-01-14T00:00", "2024-02-29T00:00"),  # leap days only
        # both day fields restricted: either matches, as cron(8) does (the 13th, or a Friday)
        ("0 0 13 * 5", "2026-01-12T00:00", "2026-01-09T00:00"),
        ("0 0 13 * 5", "2026-01-13T00:00", "2026-01-13T00:00"),
    ],
)
def test_previous_is_the_newest_tick_at_or_before(expression: str, now: str, tick: str) -> None:
    # given an expression, when asked for its newest tick at or before `now`, then it is `tick`
    assert cron.parse(expression).previous(at(now)) == at(tick)


def test_previous_agrees_with_a_minute_by_minute_walk() -> None:
    # given an irregular expression
    expression = cron.parse("5,35 */7 2-9 * mon-wed")
    now = at("2026-03-05T17:20")
    # when the newest tick is searched for minute by minute, backwards
    walk = now
    while not (
        expression.matches_day(walk)
        and walk.hour in expression.hours
        and walk.minute in expression.minutes
    ):
        walk -= timedelta(minutes=1)
    # then previous() finds the same one
    assert expression.previous(now) == walk


@pytest.mark.parametrize(
    ("expression", "message"),
    [
        ("0 0 30 2 *", "'0 0 30 2 *' never fires: no month it names has day 30"),
        ("0 0 31 4,6,9,11 *", "no month it names has day 31"),
        ("0 0 30,31 feb *", "no month it names has day 30 or 31"),
    ],
)
def test_an_expression_that_never_fires_is_refused(expression: str, message: str) -> None:
    # given a day no month it names has, when parsed, then it is refused, saying so
    with pytest.raises(cron.CronError, match=re.escape(message)):
        cron.parse(expression)


@pytest.mark.parametrize(
    ("expression", "now"),
    [
        ("0 0 29 2 *", "2104-03-01T00:00"),  # 2100 is no leap year: 8 years back to 2096
        ("0 0 31 2 5", "2026-03-01T00:00"),  # both day fields: any Friday in February
        ("0 0 31 2,3 *", "2026-03-01T00:00"),  # March has a 31st
    ],
)
def test_an_expression_that_can_fire_ticks_within_eight_years(expression: str, now: str) -> None:
    # given an expression the check accepts, then it ticks within eight years before any time
    tick = cron.parse(expression).previous(at(now))
    assert tick is not None and at(now) - tick <= timedelta(days=366 * 8)


@pytest.mark.parametrize(
    ("expression", "message"),
    [
        ("0 3 * *", "has 4 field(s); cron needs 5"),
        ("61 * * * *", "minute field '61': 61 is outside 0-59"),
        ("0 24 * * *", "hour field '24': 24 is outside 0-23"),
        ("0 0 0 * *", "day of month field '0': 0 is outside 1-31"),
        ("0 0 * 13 *", "month field '13': 13 is outside 1-12"),
        ("0 0 * * 8", "day of week field '8': 8 is outside 0-7"),
        ("0 0 * * fri-mon", "runs backwards"),
        ("*/0 * * * *", "the step must be at least 1"),
        ("x * * * *", "minute field: 'x' is not a number"),
        ("0 0 * foo *", "month field: 'foo' is not a number or a name"),
    ],
)
def test_bad_expressions_name_the_field(expression: str, message: str) -> None:
    # given a bad expression, when parsed, then the error names the field and the problem
    with pytest.raises(cron.CronError, match=message.replace("(", r"\(").replace(")", r"\)")):
        cron.parse(expression)
