"""Cron expressions as cron means them, for APScheduler 3.

APScheduler 3 numbers weekdays from Monday = 0, cron from Sunday = 0 (and 7 = Sunday too), so
`0 9 * * 1` would fire on Tuesdays if passed through. We translate the weekday field into
names, which both agree on.
"""

from __future__ import annotations

import datetime as dt
import re
from zoneinfo import ZoneInfo

from apscheduler.triggers.cron import CronTrigger

_NAMES = ("sun", "mon", "tue", "wed", "thu", "fri", "sat")
_PART = re.compile(r"^(?P<range>\*|(?P<a>\w+)(?:-(?P<b>\w+))?)(?:/(?P<step>\d+))?$")


def _day(token: str) -> int:
    token = token.lower()
    if token.isdigit():
        number = int(token)
        if not 0 <= number <= 7:
            raise ValueError(f"weekday {token} is not between 0 and 7")
        return number % 7
    for n, name in enumerate(_NAMES):
        if token[:3] == name:
            return n
    raise ValueError(f"unknown weekday {token!r}")


def translate_weekdays(field: str) -> str:
    """A cron weekday field (0/7 = Sunday) as APScheduler weekday names."""
    if field == "*":
        return "*"
    days: set[int] = set()
    for part in field.split(","):
        match = _PART.match(part.strip())
        if not match:
            raise ValueError(f"cannot read weekday {part!r}")
        step = int(match["step"] or 1)
        if step < 1:
            raise ValueError("a step must be at least 1")
        if match["range"] == "*":
            first, last = 0, 6
        else:
            first = _day(match["a"])
            last = _day(match["b"]) if match["b"] else first
            if match["b"] and last == 0 and first > 0:
                last = 7  # "5-7" / "fri-sun": Friday to Sunday
            if last < first:
                raise ValueError(f"weekday range {part!r} runs backwards")
        days.update(d % 7 for d in range(first, last + 1, step))
    order = (1, 2, 3, 4, 5, 6, 0)  # Monday first, for readability
    return ",".join(_NAMES[d] for d in order if d in days)


def parse_cron(expression: str, tz: ZoneInfo) -> CronTrigger:
    fields = expression.split()
    if len(fields) != 5:
        raise ValueError("a cron expression has 5 fields: minute hour day month weekday")
    minute, hour, day, month, weekday = fields
    if day != "*" and weekday != "*":
        raise ValueError(
            "restrict either the day of the month or the weekday, not both "
            "(cron and APScheduler disagree on what that means)"
        )
    return CronTrigger(
        minute=minute,
        hour=hour,
        day=day,
        month=month,
        day_of_week=translate_weekdays(weekday),
        timezone=tz,
    )


def next_fire(trigger: CronTrigger, after: dt.datetime) -> dt.datetime | None:
    """The first fire time at or after `after`."""
    result: dt.datetime | None = trigger.get_next_fire_time(None, after)
    return result


def previous_fire(trigger: CronTrigger, now: dt.datetime) -> dt.datetime | None:
    """The last fire time at or before `now` (within a year)."""
    for window in (
        dt.timedelta(hours=1),
        dt.timedelta(days=1),
        dt.timedelta(days=8),
        dt.timedelta(days=32),
        dt.timedelta(days=400),
    ):
        candidate = next_fire(trigger, now - window)
        if candidate is None or candidate > now:
            continue
        while True:
            following = next_fire(trigger, candidate + dt.timedelta(seconds=1))
            if following is None or following > now:
                return candidate
            candidate = following
    return None
