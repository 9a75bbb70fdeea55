"""Comments: written by residents, reviewed by moderators, shown once approved."""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from enum import Enum
from typing import Any

from domain.broadcasts import notify_followers
from domain.staff import Actor, record
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
        author_id=row.author.id,
    )


class CommentProblem(Enum):
    EMPTY = "empty"
    TOO_LONG = "too_long"
    NOT_AWAITED = "not_awaited"
    ITEM_GONE = "item_gone"
    BANNED = "banned"  # banned residents can read, but not comment


@dataclass(frozen=True)
class CommentStart:
    """True when the bot now waits for the comment; else `problem` says why not."""

    problem: CommentProblem | None = None

    def __bool__(self) -> bool:
        return self.problem is None


async def start_comment(
    uow: UnitOfWork, resident_id: int, item_id: int, origin: str
) -> CommentStart:
    """Remember that the next text of this resident is a comment on the item."""
    async with uow.write(one_statement=True):  # the checks are reads
        if not await uow.content.has_item(item_id):
            return CommentStart(CommentProblem.ITEM_GONE)
        if await uow.moderation.is_banned(resident_id):
            return CommentStart(CommentProblem.BANNED)
        await uow.conversations.set_awaiting(
            resident_id, AWAITING_COMMENT, {"item_id": item_id, "origin": origin}
        )
    return CommentStart()


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
        if await uow.moderation.is_banned(resident_id):
            return CommentOutcome(problem=CommentProblem.BANNED)
        item_id = _int(payload.get("item_id"))
        origin = str(payload.get("origin") or "")
        if item_id is None or not await uow.content.has_item(item_id):
            return CommentOutcome(problem=CommentProblem.ITEM_GONE)
        comment_id = await uow.comments.add(resident_id, item_id, cleaned)
        followed = await uow.engagement.follow(resident_id, item_id)
        return CommentOutcome(
            comment_id=comment_id, item_id=item_id, origin=origin, followed=followed
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
    #: The reason given with a rejection (told to the author).
    reason: str | None = None
    #: The author was banned with this decision.
    banned: bool = False
    #: Nothing decided: staff members cannot be banned.
    refused: bool = False
    #: A decision on a comment hidden after reports (restore or remove).
    reported: bool = False


async def decide(
    uow: UnitOfWork,
    comment_id: int,
    approve: bool,
    moderator_telegram_id: int,
    moderator_name: str,
    language: str,
    *,
    reason: str | None = None,
    ban: bool = False,
    protected: Collection[int] = (),
) -> Decision | None:
    """Approve or reject a pending comment (`ban`: reject it and ban its author, unless the
    author's Telegram id is `protected`, i.e. staff). The first decision wins; the winning
    one is audited in the same transaction."""
    return await _decide(
        uow,
        comment_id,
        approve and not ban,
        Actor(moderator_telegram_id, moderator_name),
        language,
        reason=reason,
        ban=ban,
        protected=protected,
        reported=False,
    )


async def decide_reported(
    uow: UnitOfWork,
    comment_id: int,
    restore: bool,
    actor: Actor,
    language: str,
    *,
    reason: str | None = None,
    ban: bool = False,
    protected: Collection[int] = (),
) -> Decision | None:
    """A comment hidden after reports: restore it (shown and counted again) or remove it
    (`ban`: and ban its author). The first decision wins and is audited."""
    return await _decide(
        uow,
        comment_id,
        restore and not ban,
        actor,
        language,
        reason=reason,
        ban=ban,
        protected=protected,
        reported=True,
    )


async def _decide(
    uow: UnitOfWork,
    comment_id: int,
    approve: bool,
    actor: Actor,
    language: str,
    *,
    reason: str | None,
    ban: bool,
    protected: Collection[int],
    reported: bool,
) -> Decision | None:
    reason = (clean_user_text(reason) or None) if reason and not approve else None
    async with uow.write():
        row = await uow.comments.get(comment_id)
        if row is None:
            return None
        if ban and row.author.telegram_id in protected:
            return Decision(
                False,
                view(row, language),
                row.author.telegram_id,
                row.author.language,
                refused=True,
                reported=reported,
            )
        if reported:
            won = await uow.moderation.decide_hidden(
                comment_id, approve, actor.telegram_id, actor.name
            )
        else:
            won = await uow.comments.decide(comment_id, approve, actor.telegram_id, actor.name)
        banned = False
        if won:
            target = f"{row.item.key} #{comment_id}"
            if ban:
                banned = await uow.moderation.ban(row.author.id)
                await record(
                    uow,
                    actor,
                    "ban",
                    str(row.author.telegram_id),
                    {"comment": target, "reported": reported or None},
                )
            else:
                action = "comment_approve" if approve else "comment_reject"
                details: dict[str, Any] = {"reason": reason}
                if reported:
                    details["reported"] = True
                await record(uow, actor, action, target, details)
            if approve and not reported:
                # Followers who want to hear right away learn of it (the author knows).
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
            reason=reason if won else None,
            banned=banned or (won and ban),
            reported=reported,
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


# --------------------------------------------------------------------------- reports


class ReportResult(Enum):
    COUNTED = "counted"
    HIDDEN = "hidden"  # this report reached the threshold: hidden until a moderator decides
    AGAIN = "again"  # reported before by this resident: nothing changes
    OWN = "own"
    GONE = "gone"  # not (or no longer) shown
    BANNED = "banned"


async def report(
    uow: UnitOfWork, resident_id: int, comment_id: int, threshold: int
) -> ReportResult:
    """A resident reports an approved comment, once. At `threshold` reports since its last
    decision the comment is hidden (and its item counts one comment less) in the same
    transaction. Reports of one comment are counted one at a time (the row is locked)."""
    async with uow.write():
        if await uow.moderation.is_banned(resident_id):
            return ReportResult.BANNED
        comment = await uow.moderation.lock_comment(comment_id)
        if comment is None or comment.status not in ("approved", "hidden"):
            return ReportResult.GONE
        if comment.resident_id == resident_id:
            return ReportResult.OWN
        if not await uow.moderation.add_report(comment_id, resident_id):
            return ReportResult.AGAIN
        if comment.status == "hidden":
            return ReportResult.COUNTED
        if await uow.moderation.count_reports(comment_id, comment.decided_at) < threshold:
            return ReportResult.COUNTED
        return ReportResult.HIDDEN if await uow.moderation.hide(comment_id) else ReportResult.GONE


@dataclass(frozen=True)
class ReviewView:
    """A comment as moderators see it: with its reports since the last decision and
    whether its author is banned (then `/unban` with their Telegram id lifts it)."""

    comment: CommentView
    reports: int
    author_telegram_id: int
    author_banned: bool


def _review(row: CommentRow, reports: int, language: str) -> ReviewView:
    return ReviewView(
        view(row, language), reports, row.author.telegram_id, row.author.banned_at is not None
    )


async def review(uow: UnitOfWork, comment_id: int, language: str) -> ReviewView | None:
    row = await uow.comments.get(comment_id)
    if row is None:
        return None
    await uow.session.refresh(row.comment)
    await uow.session.refresh(row.author)
    reports = await uow.moderation.count_reports(comment_id, row.comment.decided_at)
    return _review(row, reports, language)


async def reported_queue(uow: UnitOfWork, language: str) -> tuple[int, list[ReviewView]]:
    """Comments hidden after reports, oldest first."""
    total = await uow.moderation.count_hidden()
    views = []
    for row in await uow.moderation.hidden(QUEUE_LIMIT):
        reports = await uow.moderation.count_reports(row.comment.id, row.comment.decided_at)
        views.append(_review(row, reports, language))
    return total, views
