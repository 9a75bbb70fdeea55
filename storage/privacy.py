"""Privacy (GDPR): everything stored about one resident, deleting it, and finding residents
who have been away too long. Never commits (the unit of work does)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from typing import Any

from sqlalchemy import String, bindparam, cast, delete, func, or_, select, update

from storage.models import (
    AuditEntry,
    Broadcast,
    BroadcastRecipient,
    Comment,
    CommentReport,
    ConversationState,
    Follow,
    Goal,
    GoalFollow,
    GoalUpdate,
    HelpOffer,
    Item,
    ItemUpdate,
    ModerationMessage,
    NotificationEvent,
    Proposal,
    Resident,
    Role,
    Support,
    utcnow,
)
from storage.repositories import (
    ANONYMOUS_TELEGRAM_ID,
    APPROVED_COMMENTS,
    RESIDENTS,
    SUPPORTS,
    HourlyCountRepository,
    Repository,
)

#: The placeholder that keeps comments of deleted accounts: no Telegram user has id 0, and
#: real pseudonyms start at 1000.
ANONYMOUS_PSEUDONYM = 1
ANONYMOUS_NAME = "✖ gelöscht / deleted"
#: What an audit entry says instead of the deleted resident.
ANONYMISED = "deleted"


def _row(obj: Any, *columns: str) -> dict[str, Any]:
    return {c: getattr(obj, c) for c in columns}


class PrivacyRepository(Repository):
    # ------------------------------------------------------------------ export

    async def resident_data(self, resident_id: int) -> dict[str, Any] | None:
        """Every row about the resident, as plain values (dates as datetime)."""
        resident = await self.session.get(Resident, resident_id)
        if resident is None:
            return None
        s = self.session
        conversation = await s.get(ConversationState, resident_id)
        role = await s.get(Role, resident.telegram_id)
        supports = (
            await s.execute(
                select(Item.key, Support.created_at)
                .join(Item, Item.id == Support.item_id)
                .where(Support.resident_id == resident_id)
                .order_by(Item.key)
            )
        ).all()
        follows = (
            await s.execute(
                select(Item.key, Follow.created_at)
                .join(Item, Item.id == Follow.item_id)
                .where(Follow.resident_id == resident_id)
                .order_by(Item.key)
            )
        ).all()
        goal_follows = (
            await s.execute(
                select(Goal.key, GoalFollow.created_at)
                .join(Goal, Goal.id == GoalFollow.goal_id)
                .where(GoalFollow.resident_id == resident_id)
                .order_by(Goal.key)
            )
        ).all()
        help_offers = (
            await s.execute(
                select(Goal.key, HelpOffer.note, HelpOffer.created_at)
                .join(Goal, Goal.id == HelpOffer.goal_id)
                .where(HelpOffer.resident_id == resident_id)
                .order_by(Goal.key)
            )
        ).all()
        comments = (
            await s.execute(
                select(Comment.id, Item.key, Comment.text, Comment.status, Comment.created_at)
                .join(Item, Item.id == Comment.item_id)
                .where(Comment.resident_id == resident_id)
                .order_by(Comment.id)
            )
        ).all()
        proposals = (
            (
                await s.execute(
                    select(Proposal)
                    .where(Proposal.resident_id == resident_id)
                    .order_by(Proposal.id)
                )
            )
            .scalars()
            .all()
        )
        reports = (
            await s.execute(
                select(CommentReport.comment_id, CommentReport.created_at)
                .where(CommentReport.resident_id == resident_id)
                .order_by(CommentReport.comment_id)
            )
        ).all()
        events = (
            await s.execute(
                select(NotificationEvent.kind, func.count())
                .where(NotificationEvent.resident_id == resident_id)
                .group_by(NotificationEvent.kind)
                .order_by(NotificationEvent.kind)
            )
        ).all()
        recipients = (
            await s.execute(
                select(Broadcast.kind, BroadcastRecipient.state, func.count())
                .join(Broadcast, Broadcast.id == BroadcastRecipient.broadcast_id)
                .where(BroadcastRecipient.resident_id == resident_id)
                .group_by(Broadcast.kind, BroadcastRecipient.state)
                .order_by(Broadcast.kind, BroadcastRecipient.state)
            )
        ).all()
        return {
            "profile": _row(
                resident,
                "telegram_id",
                "language",
                "display_name",
                "pseudonym",
                "digest_enabled",
                "notify_mode",
                "created_at",
                "last_seen_on",
                "banned_at",
                "blocked_at",
                "inactivity_warned_at",
            ),
            "role": role.role if role is not None else None,
            "conversation": (
                _row(conversation, "awaiting", "payload", "last_search", "updated_at")
                if conversation is not None
                else None
            ),
            "supports": [{"item": k, "created_at": c} for k, c in supports],
            "follows": [{"item": k, "created_at": c} for k, c in follows],
            "goal_follows": [{"goal": k, "created_at": c} for k, c in goal_follows],
            "help_offers": [{"goal": k, "note": n, "created_at": c} for k, n, c in help_offers],
            "comments": [
                {"id": i, "item": k, "text": t, "status": st, "created_at": c}
                for i, k, t, st, c in comments
            ],
            "proposals": [
                _row(p, "id", "title", "description", "status", "created_at", "decided_at")
                | {"reason": p.reason}
                for p in proposals
            ],
            "reports": [{"comment": i, "created_at": c} for i, c in reports],
            "notification_events": [{"kind": k, "count": n} for k, n in events],
            "broadcasts_received": [
                {"kind": k, "state": st, "count": n} for k, st, n in recipients
            ],
        }

    # ------------------------------------------------------------------ deletion

    async def anonymous_id(self) -> int:
        """The placeholder resident that keeps comments of deleted accounts (created once;
        never written to: blocked, banned, no digest, no notifications)."""
        stmt = (
            self._insert(Resident)
            .values(
                telegram_id=ANONYMOUS_TELEGRAM_ID,
                language="de",
                pseudonym=ANONYMOUS_PSEUDONYM,
                display_name=ANONYMOUS_NAME,
                digest_enabled=False,
                notify_mode="off",
                blocked_at=utcnow(),
                banned_at=utcnow(),
                created_at=utcnow(),
            )
            .on_conflict_do_nothing(index_elements=[Resident.telegram_id])
        )
        await self.session.execute(stmt)
        found = await self.session.execute(
            select(Resident.id).where(Resident.telegram_id == ANONYMOUS_TELEGRAM_ID)
        )
        return found.scalar_one()

    async def delete_resident(self, resident_id: int, *, keep_comments: bool) -> bool:
        """Remove the resident and everything linked to them; their comments go to the
        anonymous placeholder (keep_comments) or are deleted. Counters follow."""
        s = self.session
        resident = await s.get(Resident, resident_id)
        if resident is None or resident.telegram_id == ANONYMOUS_TELEGRAM_ID:
            return False
        telegram_id = resident.telegram_id
        names = [n for n in (resident.display_name,) if n]

        # Supports and follows: the item counters and the hour buckets lose what was
        # deleted (RETURNING: exactly the rows this statement removed).
        supported = (
            await s.execute(
                delete(Support)
                .where(Support.resident_id == resident_id)
                .returning(Support.item_id, Support.created_at)
            )
        ).all()
        for item_id, _ in supported:
            await s.execute(
                update(Item).where(Item.id == item_id).values(support_count=Item.support_count - 1)
            )
        await HourlyCountRepository(s, SUPPORTS).add_moments([g for _, g in supported], -1)
        followed = (
            await s.execute(
                delete(Follow).where(Follow.resident_id == resident_id).returning(Follow.item_id)
            )
        ).scalars()
        for item_id in list(followed):
            await s.execute(
                update(Item).where(Item.id == item_id).values(follow_count=Item.follow_count - 1)
            )
        await s.execute(delete(GoalFollow).where(GoalFollow.resident_id == resident_id))
        await s.execute(delete(HelpOffer).where(HelpOffer.resident_id == resident_id))
        await s.execute(delete(CommentReport).where(CommentReport.resident_id == resident_id))
        await s.execute(
            delete(ConversationState).where(ConversationState.resident_id == resident_id)
        )
        await s.execute(
            delete(NotificationEvent).where(NotificationEvent.resident_id == resident_id)
        )
        await s.execute(
            delete(BroadcastRecipient).where(BroadcastRecipient.resident_id == resident_id)
        )

        # Comments.
        comment_ids = (
            (await s.execute(select(Comment.id).where(Comment.resident_id == resident_id)))
            .scalars()
            .all()
        )
        if keep_comments:
            if comment_ids:
                anonymous = await self.anonymous_id()
                await s.execute(
                    update(Comment)
                    .where(Comment.resident_id == resident_id)
                    .values(resident_id=anonymous)
                )
        elif comment_ids:
            approved = (
                await s.execute(
                    select(Comment.item_id, func.count())
                    .where(Comment.resident_id == resident_id, Comment.status == "approved")
                    .group_by(Comment.item_id)
                )
            ).all()
            for item_id, count in approved:
                await s.execute(
                    update(Item)
                    .where(Item.id == item_id)
                    .values(comment_count=Item.comment_count - count)
                )
            await HourlyCountRepository(s, APPROVED_COMMENTS).add_rows(
                Comment.resident_id == resident_id, -1
            )
            await s.execute(
                delete(ModerationMessage).where(ModerationMessage.comment_id.in_(comment_ids))
            )
            await s.execute(delete(CommentReport).where(CommentReport.comment_id.in_(comment_ids)))
            await s.execute(delete(Comment).where(Comment.id.in_(comment_ids)))

        # Proposals (an approved one's item stays: it is the city's list now).
        proposal_ids = (
            (await s.execute(select(Proposal.id).where(Proposal.resident_id == resident_id)))
            .scalars()
            .all()
        )
        if proposal_ids:
            await s.execute(
                delete(ModerationMessage).where(ModerationMessage.proposal_id.in_(proposal_ids))
            )
            await s.execute(delete(Proposal).where(Proposal.id.in_(proposal_ids)))

        # A staff member's traces: their role, their name on decisions, their chats.
        await s.execute(delete(Role).where(Role.telegram_id == telegram_id))
        await s.execute(update(Role).where(Role.granted_by == telegram_id).values(granted_by=None))
        for model in (Comment, Proposal):
            await s.execute(
                update(model)
                .where(model.decided_by_telegram_id == telegram_id)
                .values(decided_by_telegram_id=None, decided_by_name=None)
            )
        for history in (ItemUpdate, GoalUpdate):
            await s.execute(
                update(history)
                .where(history.actor_telegram_id == telegram_id)
                .values(actor_telegram_id=None)
            )
        await s.execute(
            update(Broadcast).where(Broadcast.requested_by == telegram_id).values(requested_by=None)
        )
        await s.execute(
            update(Broadcast)
            .where(Broadcast.progress_chat_id == telegram_id)
            .values(progress_chat_id=None, progress_message_id=None)
        )
        await s.execute(delete(ModerationMessage).where(ModerationMessage.chat_id == telegram_id))
        await self._anonymise_audit(telegram_id, names)

        await HourlyCountRepository(s, RESIDENTS).add_one(resident.created_at, -1)
        await s.execute(delete(Resident).where(Resident.id == resident_id))
        return True

    async def _anonymise_audit(self, telegram_id: int, names: Sequence[str]) -> None:
        """Audit entries by or about the resident keep what happened, not who."""
        s = self.session
        needle = str(telegram_id)
        conditions = [
            AuditEntry.actor_telegram_id == telegram_id,
            AuditEntry.target.contains(needle),
            cast(AuditEntry.details, String).contains(needle),
        ]
        for name in names:
            conditions += [
                AuditEntry.actor_name.contains(name),
                AuditEntry.target.contains(name),
                cast(AuditEntry.details, String).contains(name),
            ]
        entries = (await s.execute(select(AuditEntry).where(or_(*conditions)))).scalars().all()
        for entry in entries:
            values: dict[str, Any] = {}
            if entry.actor_telegram_id == telegram_id:
                values["actor_telegram_id"] = ANONYMOUS_TELEGRAM_ID
                values["actor_name"] = ANONYMISED
            target = _scrub(entry.target, needle, names)
            if target != entry.target:
                values["target"] = target[:64]
            details = _scrub_value(entry.details, telegram_id, names)
            if details != entry.details:
                values["details"] = details
            if entry.actor_name != ANONYMISED and _scrub(entry.actor_name, needle, names) != (
                entry.actor_name
            ):
                values["actor_name"] = ANONYMISED
            if values:
                await s.execute(update(AuditEntry).where(AuditEntry.id == entry.id).values(values))

    # ------------------------------------------------------------------ inactivity

    async def inactive_unwarned(self, seen_before: dt.date, limit: int) -> list[Resident]:
        result = await self.session.execute(
            select(Resident)
            .where(
                Resident.telegram_id != ANONYMOUS_TELEGRAM_ID,
                Resident.last_seen_on < seen_before,
                Resident.inactivity_warned_at.is_(None),
            )
            .order_by(Resident.id)
            .limit(limit)
        )
        return list(result.scalars().all())

    async def warned_before(self, warned_before: dt.datetime, limit: int) -> list[Resident]:
        result = await self.session.execute(
            select(Resident)
            .where(
                Resident.telegram_id != ANONYMOUS_TELEGRAM_ID,
                Resident.inactivity_warned_at <= warned_before,
            )
            .order_by(Resident.id)
            .limit(limit)
        )
        return list(result.scalars().all())

    async def mark_warned(self, resident_id: int, when: dt.datetime) -> None:
        await self.session.execute(
            update(Resident).where(Resident.id == resident_id).values(inactivity_warned_at=when)
        )

    async def clear_warning(self, resident_id: int) -> None:
        await self.session.execute(
            update(Resident).where(Resident.id == resident_id).values(inactivity_warned_at=None)
        )

    # ------------------------------------------------------------------ rate limits

    async def comments_since(self, resident_id: int, since: dt.datetime) -> int:
        def build() -> Any:
            comments = Comment.__table__.c
            return (
                select(func.count())
                .select_from(Comment.__table__)
                .where(
                    comments.resident_id == bindparam("p_resident"),
                    comments.created_at >= bindparam("p_since"),
                )
            )

        params = {"p_resident": resident_id, "p_since": since}
        return int((await self._read("privacy.comments_since", build, params))[0][0])

    async def proposals_since(self, resident_id: int, since: dt.datetime) -> int:
        result = await self.session.execute(
            select(func.count())
            .select_from(Proposal)
            .where(Proposal.resident_id == resident_id, Proposal.created_at >= since)
        )
        return int(result.scalar_one())


def _scrub_value(value: Any, telegram_id: int, names: Sequence[str]) -> Any:
    """The same JSON value with the resident's id and names replaced."""
    if isinstance(value, dict):
        return {k: _scrub_value(v, telegram_id, names) for k, v in value.items()}
    if isinstance(value, list):
        return [_scrub_value(v, telegram_id, names) for v in value]
    if isinstance(value, bool):
        return value
    if isinstance(value, int) and value == telegram_id:
        return ANONYMISED
    if isinstance(value, str):
        return _scrub(value, str(telegram_id), names)
    return value


def _scrub(text: str, needle: str, names: Sequence[str]) -> str:
    text = text.replace(needle, ANONYMISED)
    for name in names:
        text = text.replace(name, ANONYMISED)
    return text
