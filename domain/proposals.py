"""Residents' own proposals for the to:DO list: written in a short conversation (title,
description, action field, preview), kept in the conversation state so that a restart
between the steps loses nothing, and reviewed by moderators like comments. An approved
proposal becomes an open item with the next free key, which its proposer follows."""

from __future__ import annotations

import datetime as dt
import secrets
from collections.abc import Collection
from dataclasses import dataclass, replace
from enum import Enum
from typing import Any

from sqlalchemy.exc import IntegrityError

from domain.staff import Actor, record
from domain.text import DEFAULT_LANGUAGE, checked_text, clean_user_text, fold, pick
from domain.views import Author
from storage.moderation import ProposalRow
from storage.uow import UnitOfWork

AWAITING_TITLE = "proposal_title"
AWAITING_DESCRIPTION = "proposal_description"
AWAITING_FIELD = "proposal_field"  # buttons: the action field
AWAITING_CONFIRM = "proposal_confirm"  # buttons: send or cancel
AWAITING = (AWAITING_TITLE, AWAITING_DESCRIPTION, AWAITING_FIELD, AWAITING_CONFIRM)
TITLE_MAX = 120
DESCRIPTION_MAX = 1000
QUEUE_LIMIT = 10
#: Tries to find a free key when two proposals are approved at the same moment.
KEY_ATTEMPTS = 5


class ProposalProblem(Enum):
    BANNED = "banned"
    EMPTY = "empty"
    TOO_LONG = "too_long"
    NOT_AWAITED = "not_awaited"  # no proposal being written (any more): an old button
    BUTTONS = "buttons"  # a text where a button was expected
    UNKNOWN_FIELD = "unknown_field"


@dataclass(frozen=True)
class ProposalDraft:
    id: int
    title: str = ""
    description: str = ""
    field_id: int | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "draft": self.id,
            "title": self.title,
            "description": self.description,
            "field_id": self.field_id,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any] | None) -> ProposalDraft | None:
        try:
            assert data is not None
            field_id = data.get("field_id")
            return cls(
                id=int(data["draft"]),
                title=str(data.get("title") or ""),
                description=str(data.get("description") or ""),
                field_id=int(field_id) if field_id is not None else None,
            )
        except (AssertionError, KeyError, TypeError, ValueError):
            return None


@dataclass(frozen=True)
class Step:
    """Where the conversation stands after a text or a button: the step the bot now waits
    for and the draft, or the problem (the bot keeps waiting for a better answer)."""

    step: str | None = None
    draft: ProposalDraft | None = None
    problem: ProposalProblem | None = None
    length: int = 0


async def _save(uow: UnitOfWork, resident_id: int, step: str, draft: ProposalDraft) -> None:
    async with uow.write():
        await uow.conversations.set_awaiting(resident_id, step, draft.to_json())


async def stored(uow: UnitOfWork, resident_id: int) -> tuple[str, ProposalDraft] | None:
    state = await uow.conversations.get(resident_id)
    if state is None or state.awaiting not in AWAITING:
        return None
    draft = ProposalDraft.from_json(state.payload)
    return (state.awaiting, draft) if draft is not None else None


async def start(uow: UnitOfWork, resident_id: int) -> Step:
    """Begin a proposal: the next text is its title. Banned residents cannot propose."""
    async with uow.write():
        if await uow.moderation.is_banned(resident_id):
            return Step(problem=ProposalProblem.BANNED)
        draft = ProposalDraft(secrets.randbelow(999_999_999) + 1)
        await uow.conversations.set_awaiting(resident_id, AWAITING_TITLE, draft.to_json())
    return Step(AWAITING_TITLE, draft)


def _check(text: str, limit: int, *, one_line: bool) -> tuple[str, ProposalProblem | None, int]:
    cleaned, problem, length = checked_text(text, limit, one_line=one_line)
    return cleaned, ProposalProblem(problem) if problem else None, length


async def receive_text(uow: UnitOfWork, resident_id: int, text: str) -> Step:
    """The title, then the description; later steps are answered with buttons."""
    current = await stored(uow, resident_id)
    if current is None:
        return Step(problem=ProposalProblem.NOT_AWAITED)
    step, draft = current
    if step == AWAITING_TITLE:
        title, problem, length = _check(text, TITLE_MAX, one_line=True)
        if problem is not None:
            return Step(step, draft, problem, length)
        draft = replace(draft, title=title)
        await _save(uow, resident_id, AWAITING_DESCRIPTION, draft)
        return Step(AWAITING_DESCRIPTION, draft)
    if step == AWAITING_DESCRIPTION:
        description, problem, length = _check(text, DESCRIPTION_MAX, one_line=False)
        if problem is not None:
            return Step(step, draft, problem, length)
        draft = replace(draft, description=description)
        await _save(uow, resident_id, AWAITING_FIELD, draft)
        return Step(AWAITING_FIELD, draft)
    return Step(step, draft, ProposalProblem.BUTTONS)


async def _for_button(
    uow: UnitOfWork, resident_id: int, draft_id: int
) -> tuple[str, ProposalDraft] | None:
    current = await stored(uow, resident_id)
    if current is None or current[1].id != draft_id or not current[1].description:
        return None
    return current


async def choose_field(uow: UnitOfWork, resident_id: int, draft_id: int, field_id: int) -> Step:
    """The action field button: then the preview waits for Send."""
    current = await _for_button(uow, resident_id, draft_id)
    if current is None:
        return Step(problem=ProposalProblem.NOT_AWAITED)
    step, draft = current
    if await uow.content.action_field(field_id) is None:
        return Step(step, draft, ProposalProblem.UNKNOWN_FIELD)
    draft = replace(draft, field_id=field_id)
    await _save(uow, resident_id, AWAITING_CONFIRM, draft)
    return Step(AWAITING_CONFIRM, draft)


@dataclass(frozen=True)
class Sent:
    proposal_id: int | None = None
    problem: ProposalProblem | None = None


async def send(uow: UnitOfWork, resident_id: int, draft_id: int) -> Sent:
    """Store the previewed draft as a pending proposal — once, however often Send is
    pressed."""
    async with uow.write():
        if await uow.moderation.is_banned(resident_id):
            await uow.conversations.clear_awaiting(resident_id)
            return Sent(problem=ProposalProblem.BANNED)
        current = await _for_button(uow, resident_id, draft_id)
        if current is None or current[0] != AWAITING_CONFIRM or current[1].field_id is None:
            return Sent(problem=ProposalProblem.NOT_AWAITED)
        if await uow.conversations.take_awaiting(resident_id, AWAITING_CONFIRM) is None:
            return Sent(problem=ProposalProblem.NOT_AWAITED)
        draft = current[1]
        assert draft.field_id is not None
        if await uow.content.action_field(draft.field_id) is None:
            return Sent(problem=ProposalProblem.UNKNOWN_FIELD)
        proposal = await uow.proposals.add(
            resident_id, draft.title, draft.description, draft.field_id
        )
    return Sent(proposal.id)


# --------------------------------------------------------------------------- moderation


@dataclass(frozen=True)
class ProposalView:
    id: int
    title: str
    description: str
    field_title: str
    author: Author
    status: str
    created_at: dt.datetime
    decided_by: str | None = None
    reason: str | None = None
    item_id: int | None = None
    item_key: str | None = None
    #: For moderators: who to /unban.
    author_telegram_id: int = 0
    author_banned: bool = False


def view(row: ProposalRow, language: str) -> ProposalView:
    p = row.proposal
    return ProposalView(
        id=p.id,
        title=p.title,
        description=p.description,
        field_title=pick(row.field.title, language) if row.field else "",
        author=Author(row.author.display_name, row.author.pseudonym),
        status=p.status,
        created_at=p.created_at,
        decided_by=p.decided_by_name,
        reason=p.reason,
        item_id=row.item.id if row.item else None,
        item_key=row.item.key if row.item else None,
        author_telegram_id=row.author.telegram_id,
        author_banned=row.author.banned_at is not None,
    )


async def proposal(uow: UnitOfWork, proposal_id: int, language: str) -> ProposalView | None:
    row = await uow.proposals.get(proposal_id)
    if row is None:
        return None
    await uow.session.refresh(row.proposal)
    await uow.session.refresh(row.author)
    return view(row, language)


async def draft_field_title(uow: UnitOfWork, draft: ProposalDraft, language: str) -> str:
    if draft.field_id is None:
        return ""
    field = await uow.content.action_field(draft.field_id)
    return pick(field.title, language) if field else ""


@dataclass(frozen=True)
class ProposalDecision:
    """Like comments.Decision: `won` is False when another moderator decided first."""

    won: bool
    proposal: ProposalView
    author_telegram_id: int
    author_language: str
    author_blocked: bool = False
    banned: bool = False
    refused: bool = False  # staff members cannot be banned


async def decide(
    uow: UnitOfWork,
    proposal_id: int,
    approve: bool,
    actor: Actor,
    language: str,
    *,
    reason: str | None = None,
    ban: bool = False,
    protected: Collection[int] = (),
) -> ProposalDecision | None:
    """Approve (a new item, followed by the proposer), reject (with an optional reason) or
    reject and ban the proposer. The first decision wins and is audited with it."""
    approve = approve and not ban
    reason = (clean_user_text(reason) or None) if reason and not approve else None
    async with uow.write():
        row = await uow.proposals.get(proposal_id)
        if row is None:
            return None
        author = row.author
        if ban and author.telegram_id in protected:
            return ProposalDecision(
                False, view(row, language), author.telegram_id, author.language, refused=True
            )
        won = await uow.proposals.decide(
            proposal_id, approve, actor.telegram_id, actor.name, reason
        )
        banned = False
        if won and approve:
            key = await _create_item(uow, row)
            await record(
                uow,
                actor,
                "proposal_approve",
                key,
                {"proposal": proposal_id, "title": row.proposal.title},
            )
        elif won and ban:
            banned = await uow.moderation.ban(author.id)
            await record(uow, actor, "ban", str(author.telegram_id), {"proposal": proposal_id})
        elif won:
            await record(
                uow,
                actor,
                "proposal_reject",
                f"#{proposal_id}",
                {"reason": reason, "title": row.proposal.title},
            )
        row = await uow.proposals.get(proposal_id)
        assert row is not None
        await uow.session.refresh(row.proposal)
        await uow.session.refresh(row.author)
        return ProposalDecision(
            won,
            view(row, language),
            row.author.telegram_id,
            row.author.language,
            author_blocked=row.author.blocked_at is not None,
            banned=banned or (won and ban),
        )


async def _create_item(uow: UnitOfWork, row: ProposalRow) -> str:
    """The approved proposal as an open item with the next free key, in the proposer's
    language and in German (the fallback of every text); the proposer follows it."""
    p = row.proposal
    languages = sorted({row.author.language, DEFAULT_LANGUAGE})
    title = dict.fromkeys(languages, p.title)
    description = dict.fromkeys(languages, p.description)
    search = {lang: (fold(p.title), fold(p.description)) for lang in languages}
    field_id = p.action_field_id or await uow.proposals.first_field_id()
    assert field_id is not None, "an approved proposal needs an action field"
    for attempt in range(KEY_ATTEMPTS):
        key = await uow.proposals.next_item_key()
        try:
            async with uow.session.begin_nested():
                item = await uow.proposals.create_item(key, title, description, field_id, search)
        except IntegrityError:  # approved at the same moment elsewhere: take the next key
            if attempt + 1 == KEY_ATTEMPTS:
                raise
            continue
        await uow.proposals.set_item(p.id, item.id)
        await uow.engagement.follow(row.author.id, item.id)
        return key
    raise AssertionError("unreachable")


async def pending_queue(uow: UnitOfWork, language: str) -> tuple[int, list[ProposalView]]:
    total = await uow.proposals.count_pending()
    return total, [view(r, language) for r in await uow.proposals.pending(QUEUE_LIMIT)]


async def record_moderation_message(
    uow: UnitOfWork, proposal_id: int, chat_id: int, message_id: int
) -> None:
    async with uow.write():
        await uow.proposals.add_moderation_message(proposal_id, chat_id, message_id)


async def moderation_messages(uow: UnitOfWork, proposal_id: int) -> list[tuple[int, int]]:
    return await uow.proposals.moderation_messages(proposal_id)
