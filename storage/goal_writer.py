"""Writes of moderators' goal editing (`/goal new`, `/goal Z-3`): the goal itself, its items,
partners and milestones, a status update, and the notification of the followers of newly
linked items. Reads only what the editing needs, so it does not depend on the residents'
goal views."""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, cast

from sqlalchemy import CursorResult, delete, func, insert, literal, select, union, update

from storage.goals import GoalRepository
from storage.models import (
    ActionField,
    Follow,
    Goal,
    GoalFollow,
    GoalItem,
    GoalUpdate,
    Item,
    Milestone,
    NotificationEvent,
    Partner,
    Resident,
    utcnow,
)

GOAL_KEY_PREFIX = "Z-"
_GOAL_NUMBER = re.compile(rf"^{re.escape(GOAL_KEY_PREFIX)}(\d+)$")


@dataclass(frozen=True)
class LinkedItem:
    """An item as goal editing sees it."""

    id: int
    key: str
    title: dict[str, str]
    status: str


class GoalWriter(GoalRepository):
    """Creating and editing goals; the reads are GoalRepository's."""

    # ------------------------------------------------------------------ the goal

    async def action_field(self, field_id: int) -> ActionField | None:
        return await self.session.get(ActionField, field_id)

    async def next_key(self) -> str:
        """The key after the highest Z-number: Z-4 after Z-3 (Z-1 for the first goal)."""
        keys = await self.session.execute(
            select(Goal.key).where(Goal.key.like(f"{GOAL_KEY_PREFIX}%"))
        )
        numbers = [int(m[1]) for key in keys.scalars() if (m := _GOAL_NUMBER.match(key))]
        return f"{GOAL_KEY_PREFIX}{max(numbers, default=0) + 1}"

    async def create(
        self, key: str, title: dict[str, str], description: dict[str, str], field_id: int
    ) -> Goal:
        """A new planned goal at 0 % (raises IntegrityError when the key is taken)."""
        now = utcnow()
        goal = Goal(
            key=key,
            title=title,
            description=description,
            action_field_id=field_id,
            status="planned",
            progress=0,
            created_at=now,
            updated_at=now,
        )
        self.session.add(goal)
        await self.session.flush()
        return goal

    async def update_goal(self, goal_id: int, **values: Any) -> None:
        await self.session.execute(
            update(Goal).where(Goal.id == goal_id).values(**values, updated_at=utcnow())
        )

    async def add_status_update(
        self, goal_id: int, progress: int, status: str, actor_telegram_id: int | None
    ) -> None:
        """A dated goal update that records a new status (the progress stays)."""
        now = utcnow()
        self.session.add(
            GoalUpdate(
                goal_id=goal_id,
                progress=progress,
                status=status,
                note=None,
                created_at=now,
                actor_telegram_id=actor_telegram_id,
            )
        )
        await self.update_goal(goal_id, status=status)
        await self.session.flush()

    # ------------------------------------------------------------------ items

    async def items_by_keys(self, keys: Iterable[str]) -> dict[str, LinkedItem]:
        wanted = sorted(set(keys))
        if not wanted:
            return {}
        result = await self.session.execute(
            select(Item.id, Item.key, Item.title, Item.status).where(Item.key.in_(wanted))
        )
        return {k: LinkedItem(i, k, dict(t), s) for i, k, t, s in result}

    async def linked_items(self, goal_id: int) -> list[LinkedItem]:
        """The goal's items, by key."""
        result = await self.session.execute(
            select(Item.id, Item.key, Item.title, Item.status)
            .join(GoalItem, GoalItem.item_id == Item.id)
            .where(GoalItem.goal_id == goal_id)
            .order_by(Item.key)
        )
        return [LinkedItem(i, k, dict(t), s) for i, k, t, s in result]

    async def set_items(self, goal_id: int, item_ids: Iterable[int]) -> tuple[set[int], set[int]]:
        """Link exactly these items; returns (added, removed) item ids."""
        wanted = set(item_ids)
        have = set(
            (
                await self.session.execute(
                    select(GoalItem.item_id).where(GoalItem.goal_id == goal_id)
                )
            ).scalars()
        )
        removed = have - wanted
        added = wanted - have
        if removed:
            await self.session.execute(
                delete(GoalItem).where(GoalItem.goal_id == goal_id, GoalItem.item_id.in_(removed))
            )
        if added:
            # Another moderator adding the same item at the same moment is no conflict.
            await self.session.execute(
                self._insert(GoalItem)
                .values([{"goal_id": goal_id, "item_id": i} for i in sorted(added)])
                .on_conflict_do_nothing(index_elements=[GoalItem.goal_id, GoalItem.item_id])
            )
        return added, removed

    async def notify_new_item_followers(
        self,
        goal_id: int,
        item_ids: Sequence[int],
        known_item_ids: Sequence[int],
        kind: str,
        params: dict[str, Any],
        *,
        now: dt.datetime,
    ) -> int:
        """Items were added to an existing goal that had `known_item_ids`: one event per
        resident who follows one of the new items but neither the goal nor one of the items
        it had (they heard of the goal before), and wants to hear right away."""
        if not item_ids:
            return 0
        knew = union(
            select(Follow.resident_id).where(Follow.item_id.in_(list(known_item_ids))),
            select(GoalFollow.resident_id).where(GoalFollow.goal_id == goal_id),
        )
        audience = select(Follow.resident_id).where(Follow.item_id.in_(item_ids))
        events = NotificationEvent.__table__.c
        source = select(
            Resident.id,
            literal(goal_id),
            literal(kind),
            literal(params, type_=events.params.type),
            literal(now, type_=events.created_at.type),
        ).where(
            Resident.id.in_(audience),
            Resident.id.not_in(select(knew.subquery().c.resident_id)),
            Resident.notify_mode == "instant",
            Resident.blocked_at.is_(None),
        )
        result = await self.session.execute(
            insert(NotificationEvent).from_select(
                ["resident_id", "goal_id", "kind", "params", "created_at"], source
            )
        )
        return int(cast(CursorResult[Any], result).rowcount or 0)

    # ------------------------------------------------------------------ partners

    async def _next_position(self, model: type[Partner] | type[Milestone], goal_id: int) -> int:
        result = await self.session.execute(
            select(func.max(model.position)).where(model.goal_id == goal_id)
        )
        highest = result.scalar_one_or_none()
        return 0 if highest is None else int(highest) + 1

    async def add_partner(
        self, goal_id: int, name: str, description: dict[str, str] | None, url: str | None
    ) -> Partner:
        partner = Partner(
            goal_id=goal_id,
            position=await self._next_position(Partner, goal_id),
            name=name,
            description=description,
            url=url,
        )
        self.session.add(partner)
        await self.session.flush()
        return partner

    async def remove_partner(self, goal_id: int, partner_id: int) -> Partner | None:
        """The removed partner; None if the goal has no such partner (any more)."""
        partner = await self.session.get(Partner, partner_id)
        if partner is None or partner.goal_id != goal_id:
            return None
        await self.session.delete(partner)
        await self.session.flush()
        return partner

    async def replace_partners(
        self, goal_id: int, partners: Sequence[tuple[str, dict[str, str] | None, str | None]]
    ) -> bool:
        """The import's list (name, description, url) in its order; False if it is the
        list the goal has already."""
        current = [(p.name, p.description, p.url) for p in await self.partners(goal_id)]
        if current == list(partners):
            return False
        await self.session.execute(delete(Partner).where(Partner.goal_id == goal_id))
        self.session.add_all(
            Partner(goal_id=goal_id, position=n, name=name, description=description, url=url)
            for n, (name, description, url) in enumerate(partners)
        )
        await self.session.flush()
        return True

    # ------------------------------------------------------------------ milestones

    async def add_milestone(
        self, goal_id: int, title: dict[str, str], due_on: dt.date | None
    ) -> Milestone:
        milestone = Milestone(
            goal_id=goal_id,
            position=await self._next_position(Milestone, goal_id),
            title=title,
            due_on=due_on,
            done=False,
        )
        self.session.add(milestone)
        await self.session.flush()
        return milestone

    async def milestone(self, goal_id: int, milestone_id: int) -> Milestone | None:
        milestone = await self.session.get(Milestone, milestone_id)
        return milestone if milestone is not None and milestone.goal_id == goal_id else None

    async def set_milestone_done(self, milestone_id: int, done: bool) -> None:
        await self.session.execute(
            update(Milestone).where(Milestone.id == milestone_id).values(done=done)
        )

    async def remove_milestone(self, milestone: Milestone) -> None:
        await self.session.delete(milestone)
        await self.session.flush()

    async def replace_milestones(
        self, goal_id: int, milestones: Sequence[tuple[dict[str, str], dt.date | None, bool]]
    ) -> bool:
        """The import's list (title, due date, done) in its order; False if unchanged."""
        current = [(m.title, m.due_on, m.done) for m in await self.milestones(goal_id)]
        if current == list(milestones):
            return False
        await self.session.execute(delete(Milestone).where(Milestone.goal_id == goal_id))
        self.session.add_all(
            Milestone(goal_id=goal_id, position=n, title=title, due_on=due_on, done=done)
            for n, (title, due_on, done) in enumerate(milestones)
        )
        await self.session.flush()
        return True
