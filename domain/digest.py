"""The weekly digest: what happened in a period, and what of it each subscriber gets."""

from __future__ import annotations

import datetime as dt
from dataclasses import asdict, dataclass, field
from typing import Any

from domain.progress import ProgressBar, key_order
from domain.text import pick
from storage.uow import UnitOfWork

TOP_ITEMS = 3
MAX_FOLLOWED = 8
MAX_NEW_ITEMS = 5
MAX_MEDIA = 5
MAX_GOALS = 6
#: A goal's latest progress note is cut to this length in the digest.
GOAL_NOTE_MAX = 120
#: Titles in the digest are cut to this length, so that the whole digest stays well within
#: one message however long the titles are.
TITLE_MAX = 90

Texts = dict[str, str]


@dataclass(frozen=True)
class ItemChange:
    item_id: int
    key: str
    title: Texts
    supporters: int  # new supports in the period
    comments: int  # newly approved comments in the period


@dataclass(frozen=True)
class NewItem:
    item_id: int
    key: str
    title: Texts


@dataclass(frozen=True)
class NewMedia:
    session_id: int
    key: str
    title: Texts
    recordings: int
    highlights: int


@dataclass(frozen=True)
class GoalNews:
    """A goal formed or progressed in the period: its progress now and the latest note."""

    goal_id: int
    key: str
    title: Texts
    progress: int
    note: str | None
    #: Formed in the period (else: progressed).
    formed: bool


@dataclass(frozen=True)
class FieldCount:
    title: Texts
    supports: int


@dataclass(frozen=True)
class DigestData:
    """Everything the digest of one period says, for everyone. Stored with the broadcast
    so that a restart sends exactly the same digest."""

    start: dt.datetime
    end: dt.datetime
    changes: list[ItemChange] = field(default_factory=list)
    top: list[ItemChange] = field(default_factory=list)
    new_items: list[NewItem] = field(default_factory=list)
    media: list[NewMedia] = field(default_factory=list)
    fields: list[FieldCount] = field(default_factory=list)
    #: Goals formed or progressed: new goals first, then by key.
    goals: list[GoalNews] = field(default_factory=list)

    @property
    def is_empty(self) -> bool:
        """Nothing happened at all: no digest is sent."""
        return not (self.changes or self.new_items or self.media or self.goals)

    @property
    def has_news_for_all(self) -> bool:
        return bool(self.top or self.new_items or self.media or self.goals)

    @property
    def has_chart(self) -> bool:
        return any(f.supports for f in self.fields)

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["start"], data["end"] = self.start.isoformat(), self.end.isoformat()
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> DigestData:
        return cls(
            start=dt.datetime.fromisoformat(data["start"]),
            end=dt.datetime.fromisoformat(data["end"]),
            changes=[ItemChange(**c) for c in data.get("changes", [])],
            top=[ItemChange(**c) for c in data.get("top", [])],
            new_items=[NewItem(**i) for i in data.get("new_items", [])],
            media=[NewMedia(**m) for m in data.get("media", [])],
            fields=[FieldCount(**f) for f in data.get("fields", [])],
            goals=[GoalNews(**g) for g in data.get("goals", [])],
        )


async def collect(uow: UnitOfWork, start: dt.datetime, end: dt.datetime) -> DigestData:
    """What happened between `start` (inclusive) and `end` (exclusive)."""
    supports = await uow.activity.supports_by_item(start, end)
    comments = await uow.activity.comments_by_item(start, end)
    items = await uow.activity.items(set(supports) | set(comments))
    changes = sorted(
        (
            ItemChange(i.id, i.key, dict(i.title), supports.get(i.id, 0), comments.get(i.id, 0))
            for i in items.values()
            if i.status != "merged"
        ),
        key=lambda c: (-c.supporters, -c.comments, c.key),
    )
    top = [c for c in changes if c.supporters > 0][:TOP_ITEMS]
    new_items = [
        NewItem(i.id, i.key, dict(i.title)) for i in await uow.activity.new_items(start, end)
    ]
    media = [
        NewMedia(s.id, s.key, dict(s.title), recordings, highlights)
        for s, recordings, highlights in await uow.activity.new_media(start, end)
    ]
    fields = [
        FieldCount(dict(f.title), n) for f, n in await uow.activity.supports_by_field(start, end)
    ]
    goals = await goal_news(uow, start, end)
    return DigestData(start, end, changes, top, new_items, media, fields, goals)


async def goal_news(uow: UnitOfWork, start: dt.datetime, end: dt.datetime) -> list[GoalNews]:
    """Goals formed in the period and goals with progress updates in it (each once, with
    its progress now and the latest note of the period)."""
    formed = {g.id for g in await uow.goals.created_between(start, end)}
    notes: dict[int, str | None] = {}
    for update in await uow.goals.updates_between(start, end):  # oldest first
        if update.note:
            notes[update.goal_id] = update.note
        else:
            notes.setdefault(update.goal_id, None)
    goals = await uow.goals.by_ids(formed | set(notes))
    news = [
        GoalNews(g.id, g.key, dict(g.title), g.progress, notes.get(g.id), g.id in formed)
        for g in goals.values()
    ]
    return sorted(news, key=lambda n: (not n.formed, key_order(n.key)))


@dataclass(frozen=True)
class ItemLine:
    key: str
    title: str
    supporters: int
    comments: int


@dataclass(frozen=True)
class MediaLine:
    key: str
    title: str
    recordings: int
    highlights: int


@dataclass(frozen=True)
class GoalLine(ProgressBar):
    key: str
    title: str
    progress: int
    note: str | None
    formed: bool


@dataclass(frozen=True)
class DigestView:
    """One subscriber's digest, in their language. Empty sections are left out."""

    start: dt.datetime
    end: dt.datetime
    followed: list[ItemLine]
    followed_more: int
    top: list[ItemLine]
    new_items: list[ItemLine]
    new_items_more: int
    media: list[MediaLine]
    goals: list[GoalLine] = field(default_factory=list)
    goals_more: int = 0

    @property
    def keys(self) -> list[str]:
        """Items the digest links to, in order of appearance, without repeats."""
        seen: list[str] = []
        for line in [*self.followed, *self.top, *self.new_items]:
            if line.key not in seen:
                seen.append(line.key)
        return seen


async def followed_items(uow: UnitOfWork, resident_ids: list[int]) -> dict[int, set[int]]:
    """What each subscriber follows, for the "your items" section. Who chose to hear nothing
    about followed items ("not at all") gets the digest without that section."""
    return await uow.activity.follows_of(resident_ids, notify_modes=("instant", "digest"))


def short(title: str, limit: int = TITLE_MAX) -> str:
    return title if len(title) <= limit else title[: limit - 1].rstrip() + "…"


def short_note(note: str | None) -> str | None:
    """A progress note on one line, cut to GOAL_NOTE_MAX."""
    return short(" ".join(note.split()), GOAL_NOTE_MAX) if note else None


def personal(data: DigestData, followed: set[int], language: str) -> DigestView | None:
    """The digest for someone following `followed`; None if there is nothing for them."""
    mine = [c for c in data.changes if c.item_id in followed]
    if not mine and not data.has_news_for_all:
        return None

    def line(c: ItemChange) -> ItemLine:
        return ItemLine(c.key, short(pick(c.title, language)), c.supporters, c.comments)

    return DigestView(
        start=data.start,
        end=data.end,
        followed=[line(c) for c in mine[:MAX_FOLLOWED]],
        followed_more=max(0, len(mine) - MAX_FOLLOWED),
        top=[line(c) for c in data.top],
        new_items=[
            ItemLine(i.key, short(pick(i.title, language)), 0, 0)
            for i in data.new_items[:MAX_NEW_ITEMS]
        ],
        new_items_more=max(0, len(data.new_items) - MAX_NEW_ITEMS),
        media=[
            MediaLine(m.key, short(pick(m.title, language)), m.recordings, m.highlights)
            for m in data.media[:MAX_MEDIA]
        ],
        goals=[
            GoalLine(
                g.key,
                short(pick(g.title, language)),
                g.progress,
                short_note(g.note),
                g.formed,
            )
            for g in data.goals[:MAX_GOALS]
        ],
        goals_more=max(0, len(data.goals) - MAX_GOALS),
    )
