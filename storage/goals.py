"""Goals: what the InnoLab makes out of items, with partners, milestones and updates."""

from __future__ import annotations

from collections.abc import Iterable

from sqlalchemy import select

from storage.models import Goal, GoalItem
from storage.repositories import Repository


class GoalRepository(Repository):
    async def get(self, goal_id: int) -> Goal | None:
        return await self.session.get(Goal, goal_id)

    async def by_key(self, key: str) -> Goal | None:
        result = await self.session.execute(select(Goal).where(Goal.key == key))
        return result.scalar_one_or_none()

    async def by_ids(self, ids: Iterable[int]) -> dict[int, Goal]:
        wanted = list(ids)
        if not wanted:
            return {}
        result = await self.session.execute(select(Goal).where(Goal.id.in_(wanted)))
        return {g.id: g for g in result.scalars()}

    async def of_item(self, item_id: int) -> list[Goal]:
        result = await self.session.execute(
            select(Goal)
            .join(GoalItem, GoalItem.goal_id == Goal.id)
            .where(GoalItem.item_id == item_id)
            .order_by(Goal.key)
        )
        return list(result.scalars())

    async def item_ids(self, goal_id: int) -> list[int]:
        result = await self.session.execute(
            select(GoalItem.item_id).where(GoalItem.goal_id == goal_id).order_by(GoalItem.item_id)
        )
        return list(result.scalars())
