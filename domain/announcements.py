"""A moderator's announcement draft: written in steps (text, audience, time), kept in the
conversation state so that a restart between the steps loses nothing, and queued once —
however often the Send button is pressed."""

from __future__ import annotations

import datetime as dt
import secrets
from dataclasses import dataclass
from typing import Any, NamedTuple
from zoneinfo import ZoneInfo

from domain.broadcasts import Audience, count_audience, create_announcement
from domain.staff import Actor, record
from storage.models import utcnow
from storage.uow import UnitOfWork

AWAITING_TEXT = "broadcast_text"
AWAITING_CHOICE = "broadcast_choice"  # buttons: audience, send, schedule
AWAITING_ITEM = "broadcast_item"
AWAITING_TIME = "broadcast_time"
AWAITING = (AWAITING_TEXT, AWAITING_CHOICE, AWAITING_ITEM, AWAITING_TIME)
#: Visible characters of an announcement (the frame around it must fit into one message).
TEXT_LIMIT = 3500
_TIME_FORMATS = ("%Y-%m-%d %H:%M", "%d.%m.%Y %H:%M")


@dataclass(frozen=True)
class Draft:
    id: int
    html: str = ""
    audience: Audience | None = None
    at: dt.datetime | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "draft": self.id,
            "html": self.html,
            "audience": self.audience.to_json() if self.audience else None,
            "at": self.at.isoformat() if self.at else None,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any] | None) -> Draft | None:
        try:
            assert data is not None
            audience = data.get("audience")
            at = data.get("at")
            return cls(
                id=int(data["draft"]),
                html=str(data.get("html") or ""),
                audience=Audience.from_json(audience) if audience else None,
                at=dt.datetime.fromisoformat(at) if at else None,
            )
        except (AssertionError, KeyError, TypeError, ValueError):
            return None


def new_draft_id() -> int:
    """Every draft gets a random id; its buttons carry it, so old buttons do nothing."""
    return secrets.randbelow(999_999_999) + 1


def parse_local_time(text: str, tz: ZoneInfo) -> dt.datetime | None:
    """ "2026-05-18 09:30" or "18.05.2026 09:30" in the bot's time zone, as an aware time."""
    cleaned = " ".join(text.replace("T", " ").split())
    for pattern in _TIME_FORMATS:
        try:
            return dt.datetime.strptime(cleaned, pattern).replace(tzinfo=tz)
        except ValueError:
            continue
    return None


async def save_draft(uow: UnitOfWork, resident_id: int, step: str, draft: Draft) -> None:
    async with uow.write():
        await uow.conversations.set_awaiting(resident_id, step, draft.to_json())


async def stored_draft(uow: UnitOfWork, resident_id: int) -> tuple[str, Draft] | None:
    """The step and the draft being written, if any."""
    state = await uow.conversations.get(resident_id)
    if state is None or state.awaiting not in AWAITING:
        return None
    draft = Draft.from_json(state.payload)
    return (state.awaiting, draft) if draft is not None else None


async def draft_for(uow: UnitOfWork, resident_id: int, draft_id: int) -> tuple[str, Draft] | None:
    """The draft a button belongs to; None if that is not the one being written (any more)."""
    stored = await stored_draft(uow, resident_id)
    if stored is None or stored[1].id != draft_id or not stored[1].html:
        return None
    return stored


class Queued(NamedTuple):
    broadcast_id: int
    recipients: int
    draft: Draft


async def queue_draft(
    uow: UnitOfWork,
    resident_id: int,
    draft_id: int,
    *,
    requested_by: int,
    progress_chat_id: int,
    scheduled: bool,
    actor: Actor | None = None,
) -> Queued | None:
    """Take the draft (once, however often the button is pressed) and queue it, now or at
    its time, audited as `actor`'s. None if there is no such draft ready (any more)."""
    async with uow.write():
        current = await draft_for(uow, resident_id, draft_id)
        if current is None or current[0] != AWAITING_CHOICE or current[1].audience is None:
            return None
        step, draft = current
        if scheduled and (draft.at is None or draft.at <= utcnow()):
            return None
        if await uow.conversations.take_awaiting(resident_id, step) is None:
            return None
        assert draft.audience is not None
        broadcast_id = await create_announcement(
            uow,
            requested_by=requested_by,
            html=draft.html,
            audience=draft.audience,
            scheduled_for=draft.at if scheduled else None,
            progress_chat_id=progress_chat_id,
        )
        count = await count_audience(uow, draft.audience)
        if actor is not None:
            at = draft.at.isoformat() if scheduled and draft.at else None
            details = {"audience": draft.audience.to_json(), "at": at, "recipients": count}
            await record(uow, actor, "broadcast", f"#{broadcast_id}", details)
    return Queued(broadcast_id, count, draft)
