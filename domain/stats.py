"""/stats: the numbers the InnoLab puts into its reports — residents, supports, comments,
follows and goals, by action field and per week. The counting happens in the database
(storage/stats.py); this module decides what is counted over which period."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from zoneinfo import ZoneInfo

from domain.text import pick
from storage.uow import UnitOfWork

WEEKS = 8
#: "Active this week": seen on one of the last 7 days (today included).
ACTIVE_DAYS = 7


@dataclass(frozen=True)
class FieldStats:
    key: str
    title: dict[str, str]
    supports: int
    comments: int
    follows: int

    def title_in(self, language: str) -> str:
        return pick(self.title, language)


@dataclass(frozen=True)
class WeekStats:
    #: Monday of the week (local time).
    start: dt.date
    supports: int
    comments: int

    @property
    def number(self) -> int:
        """The ISO calendar week ("KW 23")."""
        return self.start.isocalendar().week


@dataclass(frozen=True)
class Stats:
    as_of: dt.datetime
    residents: int
    active: int
    supports: int
    comments: int  # approved
    follows: int
    goals: int
    fields: list[FieldStats]
    weeks: list[WeekStats]  # oldest first, the current (partial) week last


def week_starts(now: dt.datetime, tz: ZoneInfo, weeks: int = WEEKS) -> list[dt.datetime]:
    """Local Mondays 00:00 of the last `weeks` weeks (this one included), oldest first."""
    today = now.astimezone(tz).date()
    monday = today - dt.timedelta(days=today.weekday())
    days = [monday - dt.timedelta(weeks=back) for back in range(weeks - 1, -1, -1)]
    return [dt.datetime.combine(day, dt.time(), tzinfo=tz) for day in days]


async def collect(uow: UnitOfWork, now: dt.datetime, tz: ZoneInfo) -> Stats:
    today = now.astimezone(tz).date()
    residents, active = await uow.stats.residents(today - dt.timedelta(days=ACTIVE_DAYS - 1))
    fields = [
        FieldStats(f.field.key, dict(f.field.title), f.supports, f.comments, f.follows)
        for f in await uow.stats.by_field()
    ]
    starts = week_starts(now, tz)
    supports = await uow.stats.supports_per_week(starts, now)
    comments = await uow.stats.comments_per_week(starts, now)
    weeks = [
        WeekStats(start.date(), s, c)
        for start, s, c in zip(starts, supports, comments, strict=True)
    ]
    return Stats(
        as_of=now,
        residents=residents,
        active=active,
        supports=sum(f.supports for f in fields),
        comments=sum(f.comments for f in fields),
        follows=sum(f.follows for f in fields),
        goals=await uow.stats.goals(),
        fields=fields,
        weeks=weeks,
    )
