"""What handlers render: plain data in the resident's language, no ORM objects."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Generic, TypeVar

T = TypeVar("T")


@dataclass(frozen=True)
class Page(Generic[T]):
    entries: list[T]
    page: int  # 0-based, clamped into range
    pages: int  # at least 1
    total: int
    size: int

    @property
    def has_prev(self) -> bool:
        return self.page > 0

    @property
    def has_next(self) -> bool:
        return self.page + 1 < self.pages

    @property
    def offset(self) -> int:
        return self.page * self.size


def page_bounds(total: int, page: int, size: int) -> tuple[int, int]:
    """(clamped page, page count) for `total` entries at `size` per page."""
    pages = max(1, -(-total // size))
    return min(max(page, 0), pages - 1), pages


@dataclass(frozen=True)
class FieldView:
    id: int
    key: str
    title: str
    items: int = 0


@dataclass(frozen=True)
class ItemSummary:
    id: int
    key: str
    title: str
    status: str
    supporters: int
    comments: int
    field_title: str


@dataclass(frozen=True)
class SessionLink:
    id: int
    key: str
    title: str
    starts_at: dt.datetime


@dataclass(frozen=True)
class HistoryLine:
    """One status change on the item card."""

    at: dt.datetime
    status: str
    note: str | None
    merged_into: str | None


@dataclass(frozen=True)
class ItemCard:
    id: int
    key: str
    title: str
    description: str
    status: str
    supporters: int
    comments: int
    field_id: int
    field_title: str
    supporting: bool
    following: bool
    sessions: list[SessionLink] = field(default_factory=list)
    #: Latest status changes first.
    history: list[HistoryLine] = field(default_factory=list)
    merged_into: ItemLink | None = None
    #: Goals this item is part of.
    goals: list[ItemLink] = field(default_factory=list)

    @property
    def decline_reason(self) -> str | None:
        if self.status != "declined":
            return None
        return next((h.note for h in self.history if h.status == "declined"), None)


@dataclass(frozen=True)
class MyItem:
    summary: ItemSummary
    following: bool
    supporting: bool
    commented: bool


@dataclass(frozen=True)
class SessionSummary:
    id: int
    key: str
    title: str
    starts_at: dt.datetime  # in the bot's time zone
    ends_at: dt.datetime
    location: str | None


@dataclass(frozen=True)
class SpeakerView:
    name: str
    role: str


@dataclass(frozen=True)
class HighlightView:
    text: str
    at_seconds: int | None
    #: The recording at that moment, when its URL supports a start time; else None.
    url: str | None


@dataclass(frozen=True)
class RecordingView:
    title: str
    url: str
    duration_seconds: int | None


@dataclass(frozen=True)
class ItemLink:
    id: int
    key: str
    title: str


@dataclass(frozen=True)
class SessionCard:
    id: int
    key: str
    title: str
    summary: str
    location: str | None
    starts_at: dt.datetime
    ends_at: dt.datetime
    speakers: list[SpeakerView]
    highlights: list[HighlightView]
    recordings: list[RecordingView]
    items: list[ItemLink]


@dataclass(frozen=True)
class Author:
    """How a resident appears to others: their chosen display name, else a pseudonym."""

    display_name: str | None
    pseudonym: int


@dataclass(frozen=True)
class CommentView:
    id: int
    text: str
    author: Author
    created_at: dt.datetime
    status: str
    item_id: int
    item_key: str
    item_title: str
    decided_by: str | None = None
    #: The author's resident id (no report button on one's own comment).
    author_id: int = 0
