"""Numbers for the InnoLab's reports. Every count is one aggregate query, never a loop over
rows in Python. Supports, approved comments and follows per action field are summed over
the counters the items keep; residents, and supports and approved comments per week, over
hourly counts (models.HourlyCount). Both are changed in the same transaction as the rows
they count, so they equal a count of the rows."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Subquery, bindparam, func, select

from storage.models import (
    ActionField,
    Comment,
    Follow,
    Goal,
    Item,
    Resident,
    ResidentCount,
    Support,
    UTCDateTime,
)
from storage.repositories import (
    APPROVED_COMMENTS,
    RESIDENTS,
    SUPPORTS,
    Hourly,
    Repository,
    hour_bucket,
)


def supports_per_item() -> Subquery:
    return (
        select(Support.item_id.label("item_id"), func.count().label("n"))
        .group_by(Support.item_id)
        .subquery("supports_per_item")
    )


def approved_comments_per_item() -> Subquery:
    """Uses the index on (item_id, status, created_at)."""
    return (
        select(Comment.item_id.label("item_id"), func.count().label("n"))
        .where(Comment.status == "approved")
        .group_by(Comment.item_id)
        .subquery("comments_per_item")
    )


def follows_per_item() -> Subquery:
    return (
        select(Follow.item_id.label("item_id"), func.count().label("n"))
        .group_by(Follow.item_id)
        .subquery("follows_per_item")
    )


def _ceil_hour(moment: dt.datetime) -> dt.datetime:
    hour = hour_bucket(moment)
    return hour if hour == moment else hour + dt.timedelta(hours=1)


def _count_rows(kind: Hourly, start: Any, stop: Any) -> Any:
    """The counted rows created in [start, stop), on their index on created_at."""
    return (
        select(func.count())
        .select_from(kind.moment.class_)
        .where(kind.moment >= start, kind.moment < stop, *kind.where)
        .scalar_subquery()
    )


def _periods(kind: Hourly, shape: tuple[tuple[str, ...], ...]) -> Any:
    """SELECT of one count per period, each the sum of its pieces: whole hours summed over
    the kind's hourly counts, or rows counted; bounds as parameters p_<period>_<piece>_a/b."""
    hours = kind.counts
    counts: list[Any] = []
    for i, pieces in enumerate(shape):
        total: Any = None
        for j, what in enumerate(pieces):
            a: Any = bindparam(f"p_{i}_{j}_a", type_=UTCDateTime())
            b: Any = bindparam(f"p_{i}_{j}_b", type_=UTCDateTime())
            if what == "hours":
                piece: Any = (
                    select(func.coalesce(func.sum(hours.n), 0))
                    .where(hours.bucket_start >= a, hours.bucket_start < b)
                    .scalar_subquery()
                )
            else:
                piece = _count_rows(kind, a, b)
            total = piece if total is None else total + piece
        counts.append(total)
    return select(*counts)


@dataclass(frozen=True)
class FieldCounts:
    field: ActionField
    supports: int
    comments: int
    follows: int


class StatsRepository(Repository):
    async def residents(self, active_since: dt.date) -> tuple[int, int]:
        """(all residents, those seen on or after `active_since`). All: summed over
        `resident_counts` (counting 100,000 rows took 10 ms on PostgreSQL); active: a range
        of the covering index on (last_seen_on, telegram_id)."""

        def build() -> Any:
            total = select(func.coalesce(func.sum(ResidentCount.n), 0)).scalar_subquery()
            active = (
                select(func.count())
                .select_from(Resident)
                .where(Resident.last_seen_on >= bindparam("p_since"), *RESIDENTS.where)
                .scalar_subquery()
            )
            return select(total, active)

        stmt = self._prebuilt("stats.residents", build)
        row = (await self.session.execute(stmt, {"p_since": active_since})).one()
        return int(row[0]), int(row[1])

    async def goals(self) -> int:
        return int(
            (await self.session.execute(select(func.count()).select_from(Goal))).scalar_one()
        )

    async def by_field(self) -> list[FieldCounts]:
        """Supports, approved comments and follows per action field (every field, also
        those without any), summed over the items' counters (equal to the rows, see
        `EngagementRepository`): grouping 1,000,000 supports or 300,000 follows took most
        of /stats' time."""
        stmt = select(
            Item.action_field_id,
            func.coalesce(func.sum(Item.support_count), 0),
            func.coalesce(func.sum(Item.comment_count), 0),
            func.coalesce(func.sum(Item.follow_count), 0),
        ).group_by(Item.action_field_id)
        counts = {
            field_id: (int(s), int(c), int(f))
            for field_id, s, c, f in await self.session.execute(stmt)
        }
        fields = await self.session.execute(
            select(ActionField).order_by(ActionField.position, ActionField.key)
        )
        return [FieldCounts(field, *counts.get(field.id, (0, 0, 0))) for field in fields.scalars()]

    async def supports_per_week(self, bounds: Sequence[dt.datetime], end: dt.datetime) -> list[int]:
        """Supports given in each period [bounds[i], bounds[i+1]) (the last one ends at `end`)."""
        return await self._per_period(SUPPORTS, bounds, end)

    async def comments_per_week(self, bounds: Sequence[dt.datetime], end: dt.datetime) -> list[int]:
        """Approved comments by when they were written."""
        return await self._per_period(APPROVED_COMMENTS, bounds, end)

    async def _per_period(
        self, kind: Hourly, bounds: Sequence[dt.datetime], end: dt.datetime
    ) -> list[int]:
        """One statement with a count per period [bounds[i], bounds[i+1]) (the last one
        ends at `end`). The whole UTC hours of a period are summed over the kind's hourly
        counts (a week: at most 169 rows, instead of counting ~100,000 supports); what lies
        outside whole hours is counted from the rows on their index on created_at: the
        current hour up to `end`, and nothing else for weeks starting at local midnight in
        Europe/Berlin (always a whole UTC hour)."""
        if not bounds:
            return []
        stops = [*bounds[1:], end]
        # Per period its pieces: ("hours" or "rows", from, to).
        periods: list[list[tuple[str, dt.datetime, dt.datetime]]] = []
        for start, stop in zip(bounds, stops, strict=True):
            first, last = _ceil_hour(start), hour_bucket(stop)
            if first >= last:  # no whole hour inside: the rows
                periods.append([("rows", start, stop)])
                continue
            pieces = [("hours", first, last)]
            pieces += [("rows", a, b) for a, b in ((start, first), (last, stop)) if a < b]
            periods.append(pieces)
        # Built once per shape (which pieces each period has: the same every call for
        # weeks in Europe/Berlin), the moments bound: building this statement of a dozen
        # subqueries cost more than running it.
        shape = tuple(tuple(what for what, _, _ in pieces) for pieces in periods)
        stmt = self._prebuilt(
            f"stats.per_period.{kind.name}.{shape}", lambda: _periods(kind, shape)
        )
        params = {
            f"p_{i}_{j}_{side}": moment
            for i, pieces in enumerate(periods)
            for j, (_, a, b) in enumerate(pieces)
            for side, moment in (("a", a), ("b", b))
        }
        row = (await self.session.execute(stmt, params)).one()
        return [int(n) for n in row]
