"""What moderators do beyond one-press decisions: the optional reason of a rejection (asked
after Reject, kept in the conversation state until it is typed or skipped) and lifting a
ban. Decisions themselves live with their subject (domain.comments, domain.proposals)."""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

from domain import comments as comment_service
from domain import proposals as proposal_service
from domain.staff import Actor, record
from domain.text import clean_user_text
from storage.uow import UnitOfWork

AWAITING_REASON = "mod_reason"
REASON_MAX = 500
#: What a rejection is about: c a pending comment, p a pending proposal, h a comment hidden
#: after reports (see bot.callbacks.NO_REASON).
KINDS = ("c", "p", "h")


async def ask_reason(uow: UnitOfWork, resident_id: int, kind: str, subject_id: int) -> None:
    """After Reject: the moderator's next text is the reason (or they press "without")."""
    assert kind in KINDS
    async with uow.write():
        await uow.conversations.set_awaiting(
            resident_id, AWAITING_REASON, {"kind": kind, "id": subject_id}
        )


async def awaited_reason(uow: UnitOfWork, resident_id: int) -> tuple[str, int] | None:
    state = await uow.conversations.get(resident_id)
    if state is None or state.awaiting != AWAITING_REASON:
        return None
    payload = dict(state.payload or {})
    kind, subject_id = payload.get("kind"), payload.get("id")
    if kind not in KINDS or not isinstance(subject_id, int):
        return None
    return str(kind), subject_id


class ReasonProblem(Enum):
    TOO_LONG = "too_long"
    NOT_AWAITED = "not_awaited"


@dataclass(frozen=True)
class Rejection:
    kind: str = ""
    subject_id: int = 0
    comment: comment_service.Decision | None = None
    proposal: proposal_service.ProposalDecision | None = None
    problem: ReasonProblem | None = None
    length: int = 0


async def reject(
    uow: UnitOfWork,
    resident_id: int,
    actor: Actor,
    language: str,
    reason: str | None,
    *,
    expected: tuple[str, int] | None = None,
) -> Rejection:
    """Reject what the moderator was asked a reason for, with `reason` (None: without
    one). `expected` (from the "without reason" button) must be what is waited for. Taking
    the wait and the decision happen in one transaction."""
    if reason is not None:
        reason = clean_user_text(reason)
        if len(reason) > REASON_MAX:
            return Rejection(problem=ReasonProblem.TOO_LONG, length=len(reason))
    async with uow.write():
        awaited = await awaited_reason(uow, resident_id)
        if awaited is None or (expected is not None and awaited != expected):
            return Rejection(problem=ReasonProblem.NOT_AWAITED)
        if await uow.conversations.take_awaiting(resident_id, AWAITING_REASON) is None:
            return Rejection(problem=ReasonProblem.NOT_AWAITED)
        kind, subject_id = awaited
        if kind == "p":
            decision = await proposal_service.decide(
                uow, subject_id, False, actor, language, reason=reason
            )
            return Rejection(kind, subject_id, proposal=decision)
        if kind == "h":
            comment = await comment_service.decide_reported(
                uow, subject_id, False, actor, language, reason=reason
            )
        else:
            comment = await comment_service.decide(
                uow, subject_id, False, actor.telegram_id, actor.name, language, reason=reason
            )
        return Rejection(kind, subject_id, comment=comment)


class Unban(Enum):
    LIFTED = "lifted"
    NOT_BANNED = "not_banned"
    UNKNOWN = "unknown"


async def unban(uow: UnitOfWork, actor: Actor, telegram_id: int) -> Unban:
    async with uow.write():
        lifted = await uow.moderation.unban(telegram_id)
        if lifted is None:
            return Unban.UNKNOWN
        if not lifted:
            return Unban.NOT_BANNED
        await record(uow, actor, "unban", str(telegram_id))
    return Unban.LIFTED
