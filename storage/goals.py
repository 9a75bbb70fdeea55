"""Goals: what the InnoLab makes out of items, with partners, milestones and updates; who
follows a goal and who offered to help with it."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from sqlalchemy import bindparam, delete, exists, select, update

from storage.models import (
    ActionField,
    Goal,
    GoalFollow,
    GoalItem,
    GoalUpdate,
    HelpOffer,
    Item,
    Milestone,
    Partner,
    Resident,
    utcnow,
)
from storage.repositories import Repository


@dataclass(frozen=True)
class GoalItemRow:
    """An item a goal is made of, as the goal card lists it."""

    id: int
    key: str
    title: dict[str, str]
    status: str


@dataclass(frozen=True)
class HelperRow:
    """One "I want to help" offer with what the InnoLab team needs to get in touch."""

    resident_id: int
    telegram_id: int
    display_name: str | None
    pseudonym: int
    language: str
    note: str | None
    created_at: dt.datetime


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
        stmt = self._prebuilt(
            "goals.of_item",
            lambda: (
                select(Goal)
                .join(GoalItem, GoalItem.goal_id == Goal.id)
                .where(GoalItem.item_id == bindparam("p_item"))
                .order_by(Goal.key)
            ),
        )
        result = await self.session.execute(stmt, {"p_item": item_id})
        return list(result.scalars())

    async def item_ids(self, goal_id: int) -> list[int]:
        result = await self.session.execute(
            select(GoalItem.item_id).where(GoalItem.goal_id == goal_id).order_by(GoalItem.item_id)
        )
        return list(result.scalars())

    # ------------------------------------------------------------------ menu and card

    async def with_fields(self) -> list[tuple[Goal, ActionField]]:
        """Every goal with its action field, in the fields' order (then by key)."""
        result = await self.session.execute(
            select(Goal, ActionField)
            .join(ActionField, ActionField.id == Goal.action_field_id)
            .order_by(ActionField.position, ActionField.id, Goal.key)
        )
        return [(g, f) for g, f in result.all()]

    async def field(self, goal: Goal) -> ActionField | None:
        return await self.session.get(ActionField, goal.action_field_id)

    async def items(self, goal_id: int) -> list[GoalItemRow]:
        result = await self.session.execute(
            select(Item.id, Item.key, Item.title, Item.status)
            .join(GoalItem, GoalItem.item_id == Item.id)
            .where(GoalItem.goal_id == goal_id)
            .order_by(Item.key)
        )
        return [GoalItemRow(i, k, dict(t), s) for i, k, t, s in result.all()]

    async def partners(self, goal_id: int) -> Sequence[Partner]:
        result = await self.session.execute(
            select(Partner).where(Partner.goal_id == goal_id).order_by(Partner.position, Partner.id)
        )
        return result.scalars().all()

    async def milestones(self, goal_id: int) -> Sequence[Milestone]:
        result = await self.session.execute(
            select(Milestone)
            .where(Milestone.goal_id == goal_id)
            .order_by(Milestone.position, Milestone.id)
        )
        return result.scalars().all()

    async def latest_updates(self, goal_id: int, limit: int) -> Sequence[GoalUpdate]:
        """The newest progress updates first."""
        result = await self.session.execute(
            select(GoalUpdate)
            .where(GoalUpdate.goal_id == goal_id)
            .order_by(GoalUpdate.created_at.desc(), GoalUpdate.id.desc())
            .limit(limit)
        )
        return result.scalars().all()

    # ------------------------------------------------------------------ following

    async def is_following(self, resident_id: int, goal_id: int) -> bool:
        stmt = select(
            exists().where(GoalFollow.resident_id == resident_id, GoalFollow.goal_id == goal_id)
        )
        return bool((await self.session.execute(stmt)).scalar())

    async def follow(self, resident_id: int, goal_id: int) -> bool:
        """Start following; False if the resident followed the goal already."""
        stmt = (
            self._insert(GoalFollow)
            .values(resident_id=resident_id, goal_id=goal_id, created_at=utcnow())
            .on_conflict_do_nothing(index_elements=[GoalFollow.resident_id, GoalFollow.goal_id])
            .returning(GoalFollow.goal_id)
        )
        return (await self.session.execute(stmt)).scalar_one_or_none() is not None

    async def unfollow(self, resident_id: int, goal_id: int) -> bool:
        stmt = (
            delete(GoalFollow)
            .where(GoalFollow.resident_id == resident_id, GoalFollow.goal_id == goal_id)
            .returning(GoalFollow.goal_id)
        )
        return (await self.session.execute(stmt)).scalar_one_or_none() is not None

    async def follower_ids(self, goal_id: int) -> list[int]:
        """Residents following the goal itself (notifications also reach the followers of
        its items: NotificationRepository.add_for_goal)."""
        result = await self.session.execute(
            select(GoalFollow.resident_id)
            .where(GoalFollow.goal_id == goal_id)
            .order_by(GoalFollow.resident_id)
        )
        return list(result.scalars())

    # ------------------------------------------------------------------ help offers

    async def help_offer(self, resident_id: int, goal_id: int) -> HelpOffer | None:
        return await self.session.get(HelpOffer, (resident_id, goal_id))

    async def offer_help(self, resident_id: int, goal_id: int, note: str | None) -> None:
        """One offer per resident and goal: offering again replaces the note (the date of
        the first offer stays)."""
        stmt = (
            self._insert(HelpOffer)
            .values(resident_id=resident_id, goal_id=goal_id, note=note, created_at=utcnow())
            .on_conflict_do_update(
                index_elements=[HelpOffer.resident_id, HelpOffer.goal_id], set_={"note": note}
            )
        )
        await self.session.execute(stmt)

    async def withdraw_help(self, resident_id: int, goal_id: int) -> bool:
        stmt = (
            delete(HelpOffer)
            .where(HelpOffer.resident_id == resident_id, HelpOffer.goal_id == goal_id)
            .returning(HelpOffer.goal_id)
        )
        return (await self.session.execute(stmt)).scalar_one_or_none() is not None

    async def helpers(self, goal_id: int) -> list[HelperRow]:
        """Everyone who offered to help, oldest offer first."""
        result = await self.session.execute(
            select(
                Resident.id,
                Resident.telegram_id,
                Resident.display_name,
                Resident.pseudonym,
                Resident.language,
                HelpOffer.note,
                HelpOffer.created_at,
            )
            .join(Resident, Resident.id == HelpOffer.resident_id)
            .where(HelpOffer.goal_id == goal_id)
            .order_by(HelpOffer.created_at, Resident.id)
        )
        return [HelperRow(*row) for row in result.all()]

    # ------------------------------------------------------------------ progress

    async def add_update(
        self,
        goal_id: int,
        progress: int,
        status: str,
        note: str | None,
        actor_telegram_id: int | None,
        *,
        status_changed: bool,
    ) -> GoalUpdate:
        """A dated progress update; the goal's progress (and status) become the new ones."""
        now = utcnow()
        entry = GoalUpdate(
            goal_id=goal_id,
            progress=progress,
            status=status if status_changed else None,
            note=note,
            created_at=now,
            actor_telegram_id=actor_telegram_id,
        )
        self.session.add(entry)
        await self.session.execute(
            update(Goal)
            .where(Goal.id == goal_id)
            .values(progress=progress, status=status, updated_at=now)
        )
        await self.session.flush()
        return entry

    # ------------------------------------------------------------------ the digest

    async def created_between(self, start: dt.datetime, end: dt.datetime) -> Sequence[Goal]:
        result = await self.session.execute(
            select(Goal).where(Goal.created_at >= start, Goal.created_at < end).order_by(Goal.key)
        )
        return result.scalars().all()

    async def updates_between(self, start: dt.datetime, end: dt.datetime) -> Sequence[GoalUpdate]:
        """Progress updates in the period, oldest first."""
        result = await self.session.execute(
            select(GoalUpdate)
            .where(GoalUpdate.created_at >= start, GoalUpdate.created_at < end)
            .order_by(GoalUpdate.created_at, GoalUpdate.id)
        )
        return result.scalars().all()
