"""Creating what the sender delivers: announcements, the weekly digest, and notifications
to followers (merged per resident, held during quiet hours)."""

from __future__ import annotations

import datetime as dt
import re
from collections import defaultdict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any
from zoneinfo import ZoneInfo

from domain.digest import DigestData, collect
from domain.staff import Actor, record
from storage.models import utcnow
from storage.uow import UnitOfWork

#: Lower goes first.
PRIORITY = {"notification": 0, "announcement": 1, "digest": 2}
AUDIENCE_TYPES = ("all", "language", "item", "field")
DEFAULT_DIGEST_PERIOD = dt.timedelta(days=7)
NOTIFY_BATCH = 1000

_QUIET = re.compile(r"^\s*(\d{1,2}):(\d{2})\s*-\s*(\d{1,2}):(\d{2})\s*$")


# --------------------------------------------------------------------------- quiet hours


def parse_quiet_hours(text: str) -> tuple[dt.time, dt.time] | None:
    """ "22:00-08:00" → (22:00, 08:00); empty → None (no quiet hours)."""
    if not text.strip():
        return None
    match = _QUIET.match(text)
    if not match:
        raise ValueError('quiet hours look like "22:00-08:00" (or are empty)')
    h1, m1, h2, m2 = (int(g) for g in match.groups())
    if h1 > 23 or h2 > 23 or m1 > 59 or m2 > 59:
        raise ValueError("quiet hours need times between 00:00 and 23:59")
    return dt.time(h1, m1), dt.time(h2, m2)


def is_quiet(moment: dt.datetime, window: tuple[dt.time, dt.time] | None, tz: ZoneInfo) -> bool:
    if window is None:
        return False
    start, end = window
    local = moment.astimezone(tz).time()
    if start == end:
        return False
    if start < end:
        return start <= local < end
    return local >= start or local < end  # over midnight


# --------------------------------------------------------------------------- notifications


async def notify_followers(
    uow: UnitOfWork,
    item_id: int,
    kind: str,
    params: dict[str, Any] | None = None,
    *,
    exclude_resident_id: int | None = None,
) -> int:
    """Tell the followers of an item that something happened ("comment", "status", …).
    Residents who want to hear right away get it after a short delay, merged with whatever
    else happened meanwhile; the others read it in the weekly digest."""
    async with uow.write():
        return await uow.notifications.add_for_followers(
            item_id, kind, params or {}, exclude_resident_id=exclude_resident_id, now=utcnow()
        )


async def notify_goal_followers(
    uow: UnitOfWork,
    goal_id: int,
    kind: str,
    params: dict[str, Any] | None = None,
) -> int:
    """Tell the followers of a goal and of all its items ("goal" formed, "progress"), each
    resident once."""
    async with uow.write():
        item_ids = await uow.goals.item_ids(goal_id)
        return await uow.notifications.add_for_goal(
            goal_id, item_ids, kind, params or {}, now=utcnow()
        )


async def flush_notifications(
    uow: UnitOfWork,
    now: dt.datetime,
    *,
    delay: dt.timedelta,
    quiet: tuple[dt.time, dt.time] | None,
    tz: ZoneInfo,
) -> int | None:
    """Put the waiting events of residents whose first event is older than `delay` into one
    notification broadcast — one message per resident. Nothing during quiet hours."""
    if is_quiet(now, quiet, tz):
        return None
    residents = await uow.notifications.due_residents(now - delay, NOTIFY_BATCH)
    if not residents:
        return None
    async with uow.write():
        broadcast = await uow.outbox.create(
            kind="notification",
            audience={"type": "explicit"},
            template="notification",
            params={},
            priority=PRIORITY["notification"],
            state="pending",
        )
        assert broadcast is not None
        events = await uow.notifications.take(residents, broadcast.id)
        chats = await uow.notifications.chat_ids(residents)
        merged: dict[int, list[dict[str, Any]]] = defaultdict(list)
        for resident_id, item_id, goal_id, kind, params, created_at in events:
            merged[resident_id].append(
                {
                    "item_id": item_id,
                    "goal_id": goal_id,
                    "kind": kind,
                    "params": params,
                    "at": created_at.isoformat(),
                }
            )
        await uow.outbox.add_recipients(
            broadcast.id,
            [
                (resident_id, chats[resident_id][0], chats[resident_id][1], {"events": found})
                for resident_id, found in merged.items()
                if resident_id in chats
            ],
        )
        return broadcast.id


async def set_notify_mode(uow: UnitOfWork, resident_id: int, mode: str) -> bool:
    from storage.models import NOTIFY_MODES

    if mode not in NOTIFY_MODES:
        return False
    async with uow.write():
        await uow.residents.set_notify_mode(resident_id, mode)
        if mode != "instant":
            await uow.notifications.drop_waiting(resident_id)
    return True


# --------------------------------------------------------------------------- announcements


@dataclass(frozen=True)
class Audience:
    type: str  # all | language | item | field
    language: str | None = None
    item_id: int | None = None
    field_id: int | None = None

    def to_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {"type": self.type}
        if self.type == "language":
            data["language"] = self.language
        elif self.type == "item":
            data["item_id"] = self.item_id
        elif self.type == "field":
            data["field_id"] = self.field_id
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Audience:
        kind = str(data.get("type"))
        if kind not in AUDIENCE_TYPES:
            raise ValueError(f"unknown audience {kind!r}")
        return cls(
            type=kind,
            language=data.get("language"),
            item_id=data.get("item_id"),
            field_id=data.get("field_id"),
        )


async def count_audience(uow: UnitOfWork, audience: Audience) -> int:
    return await uow.outbox.count_audience(audience.to_json())


async def create_announcement(
    uow: UnitOfWork,
    *,
    requested_by: int,
    html: str,
    audience: Audience,
    scheduled_for: dt.datetime | None = None,
    progress_chat_id: int | None = None,
) -> int:
    """Queue an announcement (HTML validated by the caller) for the audience; the sender
    resolves the audience when it starts, so a restart sends to the same people."""
    async with uow.write():
        broadcast = await uow.outbox.create(
            kind="announcement",
            audience=audience.to_json(),
            template="announcement",
            params={"html": html},
            priority=PRIORITY["announcement"],
            requested_by=requested_by,
            scheduled_for=scheduled_for,
            progress_chat_id=progress_chat_id,
        )
        assert broadcast is not None
        return broadcast.id


async def cancel(uow: UnitOfWork, broadcast_id: int, actor: Actor | None = None) -> bool:
    """Stop a queued or scheduled broadcast (audited as `actor`'s); False if too late."""
    async with uow.write():
        cancelled = await uow.outbox.cancel(broadcast_id, utcnow())
        if cancelled and actor is not None:
            await record(uow, actor, "broadcast_stop", f"#{broadcast_id}")
        return cancelled


# --------------------------------------------------------------------------- the digest


def week_key(moment: dt.datetime, tz: ZoneInfo) -> str:
    """The digest's once-per-week key: ISO week in the bot's time zone."""
    year, week, _ = moment.astimezone(tz).isocalendar()
    return f"digest:{year}-W{week:02d}"


async def digest_period_start(uow: UnitOfWork, end: dt.datetime) -> dt.datetime:
    """Since the previous digest (or a week, for the first one)."""
    last = await uow.outbox.last_of_kind("digest")
    if last is not None and "end" in last.params:
        start = dt.datetime.fromisoformat(last.params["end"])
        if start < end:
            return start
    return end - DEFAULT_DIGEST_PERIOD


@dataclass(frozen=True)
class DigestCreated:
    broadcast_id: int
    data: DigestData


ChartRenderer = Callable[[DigestData], Awaitable[dict[str, bytes]]]


async def create_digest(
    uow: UnitOfWork,
    *,
    period_key: str,
    now: dt.datetime,
    charts: ChartRenderer | None = None,
    requested_by: int | None = None,
    progress_chat_id: int | None = None,
    actor: Actor | None = None,
) -> DigestCreated | None:
    """The digest for the period since the previous one, once per `period_key` (however
    often this is called, from however many processes). None if it exists already. Charts
    (one picture per language) are stored with it before the sender can see it. A period in
    which nothing happened is recorded as done without sending anything."""
    if await uow.outbox.by_period(period_key) is not None:
        return None
    start = await digest_period_start(uow, now)
    data = await collect(uow, start, now)
    await uow.end_reads()
    pictures = await charts(data) if charts is not None and data.has_chart else {}
    async with uow.write():
        broadcast = await uow.outbox.create(
            kind="digest",
            audience={"type": "digest"},
            template="digest",
            params={"end": now.isoformat(), "data": data.to_json()},
            priority=PRIORITY["digest"],
            period_key=period_key,
            requested_by=requested_by,
            progress_chat_id=progress_chat_id,
            state="done" if data.is_empty else "pending",
        )
        if broadcast is None:  # another process was quicker
            return None
        if data.is_empty:
            broadcast.started_at = broadcast.finished_at = now
        if actor is not None:  # sent by a moderator, not by the schedule
            await record(uow, actor, "digest_send", period_key, {"broadcast": broadcast.id})
        for language, png in pictures.items():
            await uow.outbox.save_asset(broadcast.id, language, png)
        return DigestCreated(broadcast.id, data)
