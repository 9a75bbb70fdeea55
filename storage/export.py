"""What the open-data export reads: items, goals and approved comments with their counts.
Nothing here selects a Telegram id or a pseudonym."""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from dataclasses import dataclass

from sqlalchemy import func, select
from sqlalchemy.orm import aliased

from storage.models import ActionField, Comment, Goal, GoalFollow, GoalItem, Item, Partner, Resident
from storage.repositories import Repository
from storage.stats import approved_comments_per_item, follows_per_item, supports_per_item


@dataclass(frozen=True)
class ItemRecord:
    key: str
    title: dict[str, str]
    field_key: str
    field_title: dict[str, str]
    status: str
    merged_into: str | None
    supporters: int
    comments: int
    followers: int
    created_at: dt.datetime


@dataclass(frozen=True)
class PartnerRecord:
    name: str
    url: str | None


@dataclass(frozen=True)
class GoalRecord:
    key: str
    title: dict[str, str]
    field_key: str
    field_title: dict[str, str]
    status: str
    progress: int
    items: list[str]
    partners: list[PartnerRecord]
    followers: int


@dataclass(frozen=True)
class CommentRecord:
    item_key: str
    created_at: dt.datetime
    #: Only a name the resident chose; None for everyone shown under a pseudonym.
    display_name: str | None
    text: str


class ExportRepository(Repository):
    async def items(self) -> list[ItemRecord]:
        supports, comments, follows = (
            supports_per_item(),
            approved_comments_per_item(),
            follows_per_item(),
        )
        target = aliased(Item)
        stmt = (
            select(
                Item.key,
                Item.title,
                ActionField.key,
                ActionField.title,
                Item.status,
                target.key,
                func.coalesce(supports.c.n, 0),
                func.coalesce(comments.c.n, 0),
                func.coalesce(follows.c.n, 0),
                Item.created_at,
            )
            .join(ActionField, ActionField.id == Item.action_field_id)
            .outerjoin(target, target.id == Item.merged_into_id)
            .outerjoin(supports, supports.c.item_id == Item.id)
            .outerjoin(comments, comments.c.item_id == Item.id)
            .outerjoin(follows, follows.c.item_id == Item.id)
            .order_by(Item.key)
        )
        return [
            ItemRecord(
                key,
                dict(title),
                field,
                dict(field_title),
                status,
                merged,
                int(s),
                int(c),
                int(f),
                created,
            )
            for key, title, field, field_title, status, merged, s, c, f, created in (
                await self.session.execute(stmt)
            )
        ]

    async def goals(self) -> list[GoalRecord]:
        goals = (
            await self.session.execute(
                select(Goal, ActionField.key, ActionField.title)
                .join(ActionField, ActionField.id == Goal.action_field_id)
                .order_by(Goal.key)
            )
        ).all()
        items: dict[int, list[str]] = defaultdict(list)
        for goal_id, key in await self.session.execute(
            select(GoalItem.goal_id, Item.key)
            .join(Item, Item.id == GoalItem.item_id)
            .order_by(GoalItem.goal_id, Item.key)
        ):
            items[goal_id].append(key)
        partners: dict[int, list[PartnerRecord]] = defaultdict(list)
        for goal_id, name, url in await self.session.execute(
            select(Partner.goal_id, Partner.name, Partner.url).order_by(
                Partner.goal_id, Partner.position, Partner.id
            )
        ):
            partners[goal_id].append(PartnerRecord(name, url))
        followers = dict(
            (
                await self.session.execute(
                    select(GoalFollow.goal_id, func.count()).group_by(GoalFollow.goal_id)
                )
            ).all()
        )
        return [
            GoalRecord(
                goal.key,
                dict(goal.title),
                field,
                dict(field_title),
                goal.status,
                goal.progress,
                items[goal.id],
                partners[goal.id],
                int(followers.get(goal.id, 0)),
            )
            for goal, field, field_title in goals
        ]

    async def comments(self) -> list[CommentRecord]:
        stmt = (
            select(Item.key, Comment.created_at, Resident.display_name, Comment.text)
            .join(Item, Item.id == Comment.item_id)
            .join(Resident, Resident.id == Comment.resident_id)
            .where(Comment.status == "approved")
            .order_by(Item.key, Comment.created_at, Comment.id)
        )
        return [CommentRecord(*row) for row in await self.session.execute(stmt)]
