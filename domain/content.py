"""Content the importer hands to storage: plain, validated data (no ORM, no Telegram)."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field

Texts = dict[str, str]


@dataclass(frozen=True)
class ActionFieldData:
    key: str
    title: Texts
    position: int


@dataclass(frozen=True)
class SpeakerData:
    name: str
    role: Texts | None


@dataclass(frozen=True)
class HighlightData:
    text: Texts
    at_seconds: int | None


@dataclass(frozen=True)
class RecordingData:
    title: Texts
    url: str
    duration_seconds: int | None


@dataclass(frozen=True)
class SessionData:
    key: str
    title: Texts
    summary: Texts | None
    location: str | None
    starts_at: dt.datetime
    ends_at: dt.datetime
    speakers: tuple[SpeakerData, ...] = ()
    highlights: tuple[HighlightData, ...] = ()
    recordings: tuple[RecordingData, ...] = ()
    item_keys: tuple[str, ...] = ()


@dataclass(frozen=True)
class SearchText:
    """Folded title and description of an item in one language (see domain.text.fold)."""

    title: str
    body: str


@dataclass(frozen=True)
class ItemData:
    key: str
    title: Texts
    description: Texts
    action_field_key: str
    search: dict[str, SearchText] = field(default_factory=dict)


@dataclass(frozen=True)
class PartnerData:
    name: str
    description: Texts | None
    url: str | None


@dataclass(frozen=True)
class MilestoneData:
    title: Texts
    due_on: dt.date | None
    done: bool = False


@dataclass(frozen=True)
class GoalData:
    key: str
    title: Texts
    description: Texts
    action_field_key: str
    item_keys: tuple[str, ...]
    #: None: a new goal is planned at 0 %, an existing one keeps what moderators set.
    status: str | None = None
    progress: int | None = None
    partners: tuple[PartnerData, ...] = ()
    milestones: tuple[MilestoneData, ...] = ()


@dataclass(frozen=True)
class ContentBundle:
    action_fields: tuple[ActionFieldData, ...] = ()
    sessions: tuple[SessionData, ...] = ()
    items: tuple[ItemData, ...] = ()
    goals: tuple[GoalData, ...] = ()


@dataclass(frozen=True)
class GoalLinks:
    """Items an import linked to a goal that were not linked to it before."""

    goal_id: int
    key: str
    #: The goal is new: it was formed by this import.
    formed: bool
    item_ids: tuple[int, ...]
    #: The items the goal had before (their followers knew of it).
    known_item_ids: tuple[int, ...] = ()


@dataclass
class KindReport:
    created: list[str] = field(default_factory=list)
    updated: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    #: In the database but not in the file: kept as they are.
    kept: list[str] = field(default_factory=list)


@dataclass
class ImportReport:
    action_fields: KindReport = field(default_factory=KindReport)
    sessions: KindReport = field(default_factory=KindReport)
    items: KindReport = field(default_factory=KindReport)
    goals: KindReport = field(default_factory=KindReport)
    #: Goals formed or with items added (their followers are told once each).
    goal_links: list[GoalLinks] = field(default_factory=list)
    #: Residents told that items they follow are part of a goal now.
    notified: int = 0
    #: Items that became "adopted" because they were linked to a goal.
    adopted: list[str] = field(default_factory=list)

    def kinds(self) -> list[tuple[str, KindReport]]:
        return [
            ("action fields", self.action_fields),
            ("sessions", self.sessions),
            ("items", self.items),
            ("goals", self.goals),
        ]
