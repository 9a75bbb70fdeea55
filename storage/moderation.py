"""Residents' proposals, reports of comments and bans: the queries of the moderation queue
beyond pending comments. Like every repository, nothing here commits."""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass

from sqlalchemy import Select, bindparam, delete, func, select, update

from storage.models import (
    ActionField,
    Comment,
    CommentReport,
    Item,
    ItemSearchText,
    ModerationMessage,
    Proposal,
    Resident,
    utcnow,
)
from storage.repositories import (
    APPROVED_COMMENTS,
    CommentRow,
    HourlyCountRepository,
    Repository,
    ReviewMessages,
)

ITEM_KEY_PREFIX = "TD-"
_ITEM_NUMBER = re.compile(rf"^{ITEM_KEY_PREFIX}(\d+)$")


@dataclass(frozen=True)
class ProposalRow:
    proposal: Proposal
    author: Resident
    field: ActionField | None
    item: Item | None


class ProposalRepository(ReviewMessages):
    async def add(self, resident_id: int, title: str, description: str, field_id: int) -> Proposal:
        proposal = Proposal(
            resident_id=resident_id,
            title=title,
            description=description,
            action_field_id=field_id,
            status="pending",
            created_at=utcnow(),
        )
        self.session.add(proposal)
        await self.session.flush()
        return proposal

    def _rows(self) -> Select[Proposal, Resident, ActionField, Item]:
        return (
            select(Proposal, Resident, ActionField, Item)
            .join(Resident, Proposal.resident_id == Resident.id)
            .outerjoin(ActionField, Proposal.action_field_id == ActionField.id)
            .outerjoin(Item, Proposal.item_id == Item.id)
        )

    async def get(self, proposal_id: int) -> ProposalRow | None:
        row = (await self.session.execute(self._rows().where(Proposal.id == proposal_id))).first()
        return ProposalRow(*row) if row else None

    async def decide(
        self,
        proposal_id: int,
        approve: bool,
        moderator_id: int,
        moderator_name: str,
        reason: str | None,
    ) -> bool:
        """Approve or reject a pending proposal; False when it was decided already (the
        first decision wins)."""
        result = await self.session.execute(
            update(Proposal)
            .where(Proposal.id == proposal_id, Proposal.status == "pending")
            .values(
                status="approved" if approve else "rejected",
                decided_at=utcnow(),
                decided_by_telegram_id=moderator_id,
                decided_by_name=moderator_name[:64],
                reason=reason,
            )
            .returning(Proposal.id)
        )
        return result.scalar_one_or_none() is not None

    async def set_item(self, proposal_id: int, item_id: int) -> None:
        await self.session.execute(
            update(Proposal).where(Proposal.id == proposal_id).values(item_id=item_id)
        )

    async def count_pending(self) -> int:
        stmt = select(func.count()).where(Proposal.status == "pending")
        return (await self.session.execute(stmt)).scalar_one()

    async def pending(self, limit: int) -> list[ProposalRow]:
        stmt = (
            self._rows()
            .where(Proposal.status == "pending")
            .order_by(Proposal.created_at, Proposal.id)
            .limit(limit)
        )
        return [ProposalRow(*row) for row in (await self.session.execute(stmt))]

    async def next_item_key(self) -> str:
        """The key after the highest TD-number: TD-06 after TD-05, TD-100 after TD-99."""
        keys = await self.session.execute(
            select(Item.key).where(Item.key.like(f"{ITEM_KEY_PREFIX}%"))
        )
        numbers = [int(m[1]) for key in keys.scalars() if (m := _ITEM_NUMBER.match(key))]
        return f"{ITEM_KEY_PREFIX}{max(numbers, default=0) + 1:02d}"

    async def create_item(
        self,
        key: str,
        title: dict[str, str],
        description: dict[str, str],
        field_id: int,
        search: dict[str, tuple[str, str]],
    ) -> Item:
        """A new open item with its search texts (language → folded title and body)."""
        now = utcnow()
        item = Item(
            key=key,
            title=title,
            description=description,
            action_field_id=field_id,
            status="open",
            support_count=0,
            comment_count=0,
            created_at=now,
            updated_at=now,
        )
        self.session.add(item)
        await self.session.flush()
        self.session.add_all(
            ItemSearchText(item_id=item.id, language=lang, title=t, body=b)
            for lang, (t, b) in search.items()
        )
        await self.session.flush()
        return item

    async def first_field_id(self) -> int | None:
        stmt = select(ActionField.id).order_by(ActionField.position, ActionField.key).limit(1)
        return (await self.session.execute(stmt)).scalar_one_or_none()

    async def add_moderation_message(self, proposal_id: int, chat_id: int, message_id: int) -> None:
        await self._add_review_message(chat_id, message_id, proposal_id=proposal_id)

    async def moderation_messages(self, proposal_id: int) -> list[tuple[int, int]]:
        return await self._review_messages(ModerationMessage.proposal_id, proposal_id)


class ModerationRepository(Repository):
    """Bans, and reports that hide an approved comment until a moderator decides."""

    async def is_banned(self, resident_id: int) -> bool:
        """As this update read it with the resident (Repository._known), else from the
        database."""
        known = self._known("banned")
        if resident_id not in known:
            stmt = self._prebuilt(
                "moderation.is_banned",
                lambda: select(Resident.banned_at).where(Resident.id == bindparam("p_resident")),
            )
            result = await self.session.execute(stmt, {"p_resident": resident_id})
            known[resident_id] = result.scalar_one_or_none() is not None
        return bool(known[resident_id])

    async def ban(self, resident_id: int) -> bool:
        """True if the resident was not banned before."""
        result = await self.session.execute(
            update(Resident)
            .where(Resident.id == resident_id, Resident.banned_at.is_(None))
            .values(banned_at=utcnow())
            .returning(Resident.id)
        )
        self._known("banned")[resident_id] = True
        return result.scalar_one_or_none() is not None

    async def unban(self, telegram_id: int) -> bool | None:
        """True if lifted, False if not banned, None if there is no such resident."""
        resident = (
            await self.session.execute(
                select(Resident.id, Resident.banned_at).where(Resident.telegram_id == telegram_id)
            )
        ).first()
        if resident is None:
            return None
        if resident.banned_at is None:
            return False
        self._known("banned")[resident.id] = False
        await self.session.execute(
            update(Resident).where(Resident.id == resident.id).values(banned_at=None)
        )
        return True

    async def lock_comment(self, comment_id: int) -> Comment | None:
        """The comment, locked until the transaction ends (PostgreSQL; SQLite's write
        transactions are serial anyway), so that reports of it are counted one at a time."""
        stmt = select(Comment).where(Comment.id == comment_id).with_for_update()
        comment = (await self.session.execute(stmt)).scalar_one_or_none()
        if comment is not None:
            await self.session.refresh(comment)
        return comment

    async def add_report(self, comment_id: int, resident_id: int) -> bool:
        """One report per resident and comment (the primary key): False if reported before."""
        stmt = (
            self._insert(CommentReport)
            .values(comment_id=comment_id, resident_id=resident_id, created_at=utcnow())
            .on_conflict_do_nothing(
                index_elements=[CommentReport.comment_id, CommentReport.resident_id]
            )
            .returning(CommentReport.comment_id)
        )
        return (await self.session.execute(stmt)).scalar_one_or_none() is not None

    async def count_reports(self, comment_id: int, since: dt.datetime | None) -> int:
        """Reports since the last decision (a restored comment starts afresh)."""
        stmt = select(func.count()).where(CommentReport.comment_id == comment_id)
        if since is not None:
            stmt = stmt.where(CommentReport.created_at >= since)
        return (await self.session.execute(stmt)).scalar_one()

    async def hide(self, comment_id: int) -> bool:
        """Hide an approved comment (its item counts one comment less). The review messages
        of its first approval are forgotten: the report is reviewed in new ones."""
        result = await self.session.execute(
            update(Comment)
            .where(Comment.id == comment_id, Comment.status == "approved")
            .values(status="hidden")
            .returning(Comment.item_id, Comment.created_at)
        )
        row = result.one_or_none()
        if row is None:
            return False
        item_id, written = row
        await self.session.execute(
            update(Item).where(Item.id == item_id).values(comment_count=Item.comment_count - 1)
        )
        await HourlyCountRepository(self.session, APPROVED_COMMENTS).add_one(written, -1)
        await self.session.execute(
            delete(ModerationMessage).where(ModerationMessage.comment_id == comment_id)
        )
        return True

    async def decide_hidden(
        self, comment_id: int, restore: bool, moderator_id: int, moderator_name: str
    ) -> bool:
        """Restore a hidden comment (counted again) or remove it for good; False when it was
        decided already."""
        result = await self.session.execute(
            update(Comment)
            .where(Comment.id == comment_id, Comment.status == "hidden")
            .values(
                status="approved" if restore else "rejected",
                decided_at=utcnow(),
                decided_by_telegram_id=moderator_id,
                decided_by_name=moderator_name[:64],
            )
            .returning(Comment.item_id, Comment.created_at)
        )
        row = result.one_or_none()
        if row is None:
            return False
        item_id, written = row
        if restore:
            await self.session.execute(
                update(Item).where(Item.id == item_id).values(comment_count=Item.comment_count + 1)
            )
            await HourlyCountRepository(self.session, APPROVED_COMMENTS).add_one(written)
        return True

    def _hidden(self) -> Select[Comment, Resident, Item]:
        return (
            select(Comment, Resident, Item)
            .join(Resident, Comment.resident_id == Resident.id)
            .join(Item, Comment.item_id == Item.id)
            .where(Comment.status == "hidden")
        )

    async def count_hidden(self) -> int:
        stmt = select(func.count()).where(Comment.status == "hidden")
        return (await self.session.execute(stmt)).scalar_one()

    async def hidden(self, limit: int) -> list[CommentRow]:
        stmt = self._hidden().order_by(Comment.created_at, Comment.id).limit(limit)
        return [CommentRow(*row) for row in (await self.session.execute(stmt))]
