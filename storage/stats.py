"""Numbers for the InnoLab's reports. Every count is one aggregate query, never a loop over
rows in Python. Supports, approved comments and follows per action field are summed over
the counters the items keep; supports per week over the hour buckets of `support_counts`
(both changed in the same transaction as the rows they count, so equal to a count of the
rows)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import ColumnElement, Subquery, case, func, select

from storage.models import (
    ActionField,
    Comment,
    Follow,
    Goal,
    Item,
    Resident,
    Support,
    SupportCount,
)
from storage.repositories import Repository, hour_bucket


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


def _count_rows(start: dt.datetime, stop: dt.datetime) -> Any:
    """Supports given in [start, stop), counted on the index on created_at."""
    return (
        select(func.count())
        .where(Support.created_at >= start, Support.created_at < stop)
        .scalar_subquery()
    )


@dataclass(frozen=True)
class FieldCounts:
    field: ActionField
    supports: int
    comments: int
    follows: int


class StatsRepository(Repository):
    async def residents(self, active_since: dt.date) -> tuple[int, int]:
        """(all residents, those seen on or after `active_since`)."""
        active = func.count(case((Resident.last_seen_on >= active_since, 1)))
        # Telegram id 0: the placeholder keeping comments of deleted accounts.
        row = (
            await self.session.execute(
                select(func.count(), active).select_from(Resident).where(Resident.telegram_id != 0)
            )
        ).one()
        return int(row[0]), int(row[1] or 0)

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
        """Supports given in each period [bounds[i], bounds[i+1]) (the last one ends at `end`).

        The whole UTC hours of a period are summed over `support_counts` (a week: at most
        168 rows, instead of counting ~100,000 supports); what lies outside whole hours is
        counted from the rows on their index on created_at: the current hour up to `end`,
        and nothing else for weeks starting at local midnight in Europe/Berlin (always a
        whole UTC hour)."""
        if not bounds:
            return []
        stops = [*bounds[1:], end]
        counts: list[Any] = []
        for start, stop in zip(bounds, stops, strict=True):
            first, last = _ceil_hour(start), hour_bucket(stop)
            if first >= last:  # no whole hour inside: the rows
                counts.append(_count_rows(start, stop))
                continue
            summed = (
                select(func.coalesce(func.sum(SupportCount.n), 0))
                .where(SupportCount.bucket_start >= first, SupportCount.bucket_start < last)
                .scalar_subquery()
            )
            for edge_start, edge_stop in ((start, first), (last, stop)):
                if edge_start < edge_stop:
                    summed = summed + _count_rows(edge_start, edge_stop)
            counts.append(summed)
        row = (await self.session.execute(select(*counts))).one()
        return [int(n) for n in row]

    async def comments_per_week(self, bounds: Sequence[dt.datetime], end: dt.datetime) -> list[int]:
        """Approved comments by when they were written (index on status, created_at)."""
        return await self._per_period(
            Comment.created_at, (Comment.status == "approved",), bounds, end
        )

    async def _per_period(
        self,
        column: Any,
        where: Sequence[ColumnElement[bool]],
        bounds: Sequence[dt.datetime],
        end: dt.datetime,
    ) -> list[int]:
        """One statement with a range count per period: each is a scan of a small range
        of the index on `column` (8 weeks of 1 000 000 supports take milliseconds)."""
        if not bounds:
            return []
        stops = [*bounds[1:], end]
        counts = [
            select(func.count()).where(column >= start, column < stop, *where).scalar_subquery()
            for start, stop in zip(bounds, stops, strict=True)
        ]
        row = (await self.session.execute(select(*counts))).one()
        return [int(n) for n in row]
