"""Comments: written by residents, reviewed by moderators, shown once approved."""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum
from typing import Any

from domain.broadcasts import notify_followers
from domain.text import clean_user_text, pick
from domain.views import Author, CommentView, Page, page_bounds
from storage.models import COMMENT_MAX
from storage.repositories import CommentRow
from storage.uow import UnitOfWork

COMMENTS_PER_PAGE = 3
QUEUE_LIMIT = 10
AWAITING_COMMENT = "comment"


def view(row: CommentRow, language: str) -> CommentView:
    return CommentView(
        id=row.comment.id,
        text=row.comment.text,
        author=Author(row.author.display_name, row.author.pseudonym),
        created_at=row.comment.created_at,
        status=row.comment.status,
        item_id=row.item.id,
        item_key=row.item.key,
        item_title=pick(row.item.title, language),
        decided_by=row.comment.decided_by_name,
    )


async def start_comment(uow: UnitOfWork, resident_id: int, item_id: int, origin: str) -> bool:
    """Remember that the next text of this resident is a comment on the item."""
    async with uow.write():
        if await uow.content.item(item_id) is None:
            return False
        await uow.conversations.set_awaiting(
            resident_id, AWAITING_COMMENT, {"item_id": item_id, "origin": origin}
        )
    return True


class CommentProblem(Enum):
    EMPTY = "empty"
    TOO_LONG = "too_long"
    NOT_AWAITED = "not_awaited"
    ITEM_GONE = "item_gone"


@dataclass(frozen=True)
class CommentOutcome:
    problem: CommentProblem | None = None
    comment_id: int | None = None
    item_id: int | None = None
    origin: str = ""
    followed: bool = False
    length: int = 0


async def submit_comment(uow: UnitOfWork, resident_id: int, text: str) -> CommentOutcome:
    """Store the text as a pending comment, if a comment was awaited. A refused text (empty,
    too long) is not stored and the bot keeps waiting for a better one."""
    cleaned = clean_user_text(text)
    if not cleaned:
        return CommentOutcome(problem=CommentProblem.EMPTY)
    if len(cleaned) > COMMENT_MAX:
        return CommentOutcome(problem=CommentProblem.TOO_LONG, length=len(cleaned))
    async with uow.write():
        payload = await uow.conversations.take_awaiting(resident_id, AWAITING_COMMENT)
        if payload is None:
            return CommentOutcome(problem=CommentProblem.NOT_AWAITED)
        item_id = _int(payload.get("item_id"))
        origin = str(payload.get("origin") or "")
        if item_id is None or await uow.content.item(item_id) is None:
            return CommentOutcome(problem=CommentProblem.ITEM_GONE)
        comment = await uow.comments.add(resident_id, item_id, cleaned)
        followed = await uow.engagement.follow(resident_id, item_id)
        return CommentOutcome(
            comment_id=comment.id, item_id=item_id, origin=origin, followed=followed
        )


def _int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


async def awaiting(uow: UnitOfWork, resident_id: int) -> tuple[str, dict[str, Any]] | None:
    state = await uow.conversations.get(resident_id)
    if state is None or state.awaiting is None:
        return None
    return state.awaiting, dict(state.payload or {})


async def cancel(uow: UnitOfWork, resident_id: int) -> bool:
    """Stop waiting for text; True if something was being waited for."""
    async with uow.write():
        return await uow.conversations.clear_awaiting(resident_id)


async def approved_comments(
    uow: UnitOfWork, item_id: int, language: str, page: int
) -> Page[CommentView]:
    total = await uow.comments.count_approved(item_id)
    page, pages = page_bounds(total, page, COMMENTS_PER_PAGE)
    rows = await uow.comments.approved(item_id, page * COMMENTS_PER_PAGE, COMMENTS_PER_PAGE)
    return Page([view(r, language) for r in rows], page, pages, total, COMMENTS_PER_PAGE)


async def comment(uow: UnitOfWork, comment_id: int, language: str) -> CommentView | None:
    row = await uow.comments.get(comment_id)
    return view(row, language) if row else None


@dataclass(frozen=True)
class Decision:
    """`won` is False when another moderator decided first; `comment` shows the outcome
    and `author_telegram_id` who wrote it (to tell them, unless they blocked the bot)."""

    won: bool
    comment: CommentView
    author_telegram_id: int
    author_language: str
    author_blocked: bool = False


async def decide(
    uow: UnitOfWork,
    comment_id: int,
    approve: bool,
    moderator_telegram_id: int,
    moderator_name: str,
    language: str,
) -> Decision | None:
    async with uow.write():
        won = await uow.comments.decide(comment_id, approve, moderator_telegram_id, moderator_name)
        row = await uow.comments.get(comment_id)
        if row is None:
            return None
        if won and approve:
            # Followers who want to hear right away learn of it (the author knows already).
            await notify_followers(
                uow,
                row.item.id,
                "comment",
                {"comment_id": comment_id},
                exclude_resident_id=row.author.id,
            )
        await uow.session.refresh(row.comment)
        await uow.session.refresh(row.author)
        return Decision(
            won,
            view(row, language),
            row.author.telegram_id,
            row.author.language,
            author_blocked=row.author.blocked_at is not None,
        )


async def pending_queue(uow: UnitOfWork, language: str) -> tuple[int, list[CommentView]]:
    total = await uow.comments.count_pending()
    rows = await uow.comments.pending(QUEUE_LIMIT)
    return total, [view(r, language) for r in rows]


async def record_moderation_message(
    uow: UnitOfWork, comment_id: int, chat_id: int, message_id: int
) -> None:
    async with uow.write():
        await uow.comments.add_moderation_message(comment_id, chat_id, message_id)


async def moderation_messages(uow: UnitOfWork, comment_id: int) -> list[tuple[int, int]]:
    return await uow.comments.moderation_messages(comment_id)
