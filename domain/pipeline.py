"""Item status: open → in_review → adopted → in_progress → done, or declined (with a reason)
or merged (into another item). Every change is a dated history entry, is audited, and tells
the item's followers."""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

from domain.broadcasts import notify_followers
from domain.staff import Actor, record
from domain.text import clean_user_text
from storage.models import ITEM_STATUSES, NOTE_MAX
from storage.uow import UnitOfWork


class StatusProblem(Enum):
    UNKNOWN_ITEM = "unknown_item"
    UNKNOWN_STATUS = "unknown_status"
    REASON_REQUIRED = "reason_required"  # declined without a note
    TARGET_REQUIRED = "target_required"  # merged without the key it goes into
    UNKNOWN_TARGET = "unknown_target"
    SAME_ITEM = "same_item"
    TARGET_MERGED = "target_merged"
    ALREADY_MERGED = "already_merged"  # a merged item stays merged
    NOTE_TOO_LONG = "note_too_long"
    UNCHANGED = "unchanged"


@dataclass(frozen=True)
class StatusChange:
    key: str
    previous: str | None = None
    status: str | None = None
    note: str | None = None
    merged_into: str | None = None
    problem: StatusProblem | None = None
    notified: int = 0


async def change_status(
    uow: UnitOfWork,
    actor: Actor,
    key: str,
    status: str,
    note: str | None = None,
    *,
    merge_into: str | None = None,
) -> StatusChange:
    """Set an item's status (moderators only: the caller checks the role). For "merged",
    `merge_into` is the key of the item it goes into: supports and follows move there, and
    who supported both counts once."""
    status = status.strip().lower()
    note = clean_user_text(note) if note else None
    if status not in ITEM_STATUSES:
        return StatusChange(key, problem=StatusProblem.UNKNOWN_STATUS)
    if note and len(note) > NOTE_MAX:
        return StatusChange(key, problem=StatusProblem.NOTE_TOO_LONG)
    if status == "declined" and not note:
        return StatusChange(key, problem=StatusProblem.REASON_REQUIRED)
    if status == "merged" and not merge_into:
        return StatusChange(key, problem=StatusProblem.TARGET_REQUIRED)
    async with uow.write():
        row = await uow.content.item_by_key(key)
        if row is None:
            return StatusChange(key, problem=StatusProblem.UNKNOWN_ITEM)
        item = row.item
        previous = item.status
        if previous == "merged":
            return StatusChange(key, previous, problem=StatusProblem.ALREADY_MERGED)
        if previous == status and status != "declined":
            return StatusChange(key, previous, problem=StatusProblem.UNCHANGED)
        target_id = None
        if status == "merged":
            assert merge_into is not None
            target = await uow.content.item_by_key(merge_into.strip())
            if target is None:
                return StatusChange(key, previous, problem=StatusProblem.UNKNOWN_TARGET)
            if target.item.id == item.id:
                return StatusChange(key, previous, problem=StatusProblem.SAME_ITEM)
            if target.item.status == "merged":
                return StatusChange(key, previous, problem=StatusProblem.TARGET_MERGED)
            target_id = target.item.id
            merge_into = target.item.key
        # Tell the followers first: after a merge they follow the other item.
        notified = await notify_followers(
            uow,
            item.id,
            "status",
            {"status": status, "note": note, "merged_into": merge_into if target_id else None},
        )
        if target_id is not None:
            await uow.engagement.move(item.id, target_id)
        await uow.content.set_status(item.id, status, target_id)
        await uow.content.add_history(item.id, previous, status, note, target_id, actor.telegram_id)
        await record(
            uow,
            actor,
            "status",
            key,
            {"from": previous, "to": status, "note": note, "merged_into": merge_into},
        )
    return StatusChange(
        key, previous, status, note, merge_into if target_id else None, notified=notified
    )
