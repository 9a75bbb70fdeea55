"""Goals for residents and moderators: the goals menu by action field, the goal card, following
a goal, "I want to help" offers, and progress updates (`/progress Z-3 40 note`).

Public functions (other modules, e.g. goal creation and editing, may call them; their names
and signatures stay stable):

- `goals_by_field(uow, language, page=0)` → `GoalsOverview`: the menu, grouped by field
- `goal_card(uow, goal, language, resident_id)` → `GoalCard | None` (goal: id or key)
- `goal_id_for_key(uow, key)` → `int | None`
- `follow(uow, resident_id, goal_id, on)` → `bool | None`: set (not toggle) following
- `start_help(uow, resident_id, goal_id, origin)` → `HelpResult`: wait for the optional note
- `offer_help(uow, resident_id, goal_id, note)` → `HelpResult`
- `take_help_note(uow, resident_id, text)` → `HelpResult`: the awaited note
- `withdraw_help(uow, resident_id, goal_id)` → `bool | None`
- `awaited_help(uow, resident_id)` → `(goal id, origin) | None`: whose note is awaited
- `helpers(uow, key, language=..., actor=None)` → `HelpersView | None`
- `helpers_csv(view, tz)` → bytes: the CSV for the InnoLab team
- `record_progress(uow, actor, key, percent, note, language=...)` → `ProgressChange`
- `notify_formed(uow, goal_id)` → `int`: tell followers of the goal's items it was formed
- `progress_bar(percent)` → `"▰▰▰▰▱▱▱▱▱▱"`, `filled_cells(percent)` → cells of 10
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass, field
from enum import Enum
from zoneinfo import ZoneInfo

from domain.broadcasts import notify_goal_followers
from domain.export import csv_bytes
from domain.progress import BAR_CELLS as BAR_CELLS
from domain.progress import ProgressBar, key_order
from domain.progress import filled_cells as filled_cells
from domain.progress import progress_bar as progress_bar
from domain.staff import Actor, record
from domain.text import DEFAULT_LANGUAGE, clean_user_text, pick
from domain.views import Author, Page, page_bounds
from storage.models import GOAL_STATUSES, NOTE_MAX, Goal
from storage.uow import UnitOfWork

#: Goals per page of the goals menu.
GOALS_PER_PAGE = 8
#: Progress updates shown on the goal card.
UPDATES_ON_CARD = 3
#: An "I want to help" note (the database allows no more).
HELP_NOTE_MAX = 500
#: What the bot waits for after "I want to help": the optional note.
AWAITING_HELP = "help_note"
#: Columns of the /helpers CSV (internal data for the InnoLab team, not open data).
HELPER_COLUMNS = ("display_name", "pseudonym", "telegram_id", "language", "date", "note")

_WEB_LINK = re.compile(r"^https?://\S+$", re.IGNORECASE)


# --------------------------------------------------------------------------- the menu


@dataclass(frozen=True)
class GoalSummary(ProgressBar):
    id: int
    key: str
    title: str
    status: str
    progress: int
    field_id: int
    field_title: str


@dataclass(frozen=True)
class FieldGoals:
    """The goals of one action field (on the current page)."""

    field_id: int
    title: str
    goals: list[GoalSummary]


@dataclass(frozen=True)
class GoalsOverview:
    page: Page[GoalSummary]
    groups: list[FieldGoals]


async def goals_by_field(uow: UnitOfWork, language: str, page: int = 0) -> GoalsOverview:
    """All goals with their progress, in the action fields' order and by key within each
    field, `GOALS_PER_PAGE` a page; `groups` are the fields of this page."""
    rows = await uow.goals.with_fields()
    order = {f.id: n for n, (_, f) in enumerate(rows)}
    rows.sort(key=lambda r: (order[r[1].id], key_order(r[0].key)))
    page, pages = page_bounds(len(rows), page, GOALS_PER_PAGE)
    start = page * GOALS_PER_PAGE
    entries = [
        GoalSummary(
            id=g.id,
            key=g.key,
            title=pick(g.title, language),
            status=g.status,
            progress=g.progress,
            field_id=f.id,
            field_title=pick(f.title, language),
        )
        for g, f in rows[start : start + GOALS_PER_PAGE]
    ]
    groups: list[FieldGoals] = []
    for entry in entries:
        if not groups or groups[-1].field_id != entry.field_id:
            groups.append(FieldGoals(entry.field_id, entry.field_title, []))
        groups[-1].goals.append(entry)
    return GoalsOverview(Page(entries, page, pages, len(rows), GOALS_PER_PAGE), groups)


# --------------------------------------------------------------------------- the card


@dataclass(frozen=True)
class GoalItemView:
    id: int
    key: str
    title: str
    status: str


@dataclass(frozen=True)
class PartnerView:
    name: str
    description: str
    #: Only web links (http, https); None otherwise.
    url: str | None


@dataclass(frozen=True)
class MilestoneView:
    title: str
    due_on: dt.date | None
    done: bool


@dataclass(frozen=True)
class GoalUpdateView:
    at: dt.datetime
    progress: int | None
    #: Set when the update changed the goal's status.
    status: str | None
    note: str | None


@dataclass(frozen=True)
class GoalCard(ProgressBar):
    id: int
    key: str
    title: str
    description: str
    field_id: int
    field_title: str
    status: str
    progress: int
    items: list[GoalItemView] = field(default_factory=list)
    partners: list[PartnerView] = field(default_factory=list)
    milestones: list[MilestoneView] = field(default_factory=list)
    #: The latest progress updates, newest first.
    updates: list[GoalUpdateView] = field(default_factory=list)
    following: bool = False
    #: The resident offered to help (with `help_note`, if they wrote one).
    helping: bool = False
    help_note: str | None = None


async def _goal(uow: UnitOfWork, goal: int | str) -> Goal | None:
    if isinstance(goal, int):
        return await uow.goals.get(goal)
    key = goal.strip()
    found = await uow.goals.by_key(key)
    if found is None and key != key.upper():
        found = await uow.goals.by_key(key.upper())
    return found


async def goal_id_for_key(uow: UnitOfWork, key: str) -> int | None:
    goal = await _goal(uow, key)
    return goal.id if goal else None


def _web_link(url: str | None) -> str | None:
    return url if url and _WEB_LINK.match(url.strip()) else None


async def goal_card(
    uow: UnitOfWork, goal: int | str, language: str, resident_id: int
) -> GoalCard | None:
    """The goal (by id or key) as the resident sees it; None if there is no such goal."""
    row = await _goal(uow, goal)
    if row is None:
        return None
    action_field = await uow.goals.field(row)
    offer = await uow.goals.help_offer(resident_id, row.id)
    return GoalCard(
        id=row.id,
        key=row.key,
        title=pick(row.title, language),
        description=pick(row.description, language),
        field_id=row.action_field_id,
        field_title=pick(action_field.title, language) if action_field else "",
        status=row.status,
        progress=row.progress,
        items=[
            GoalItemView(i.id, i.key, pick(i.title, language), i.status)
            for i in await uow.goals.items(row.id)
        ],
        partners=[
            PartnerView(p.name, pick(p.description, language), _web_link(p.url))
            for p in await uow.goals.partners(row.id)
        ],
        milestones=[
            MilestoneView(pick(m.title, language), m.due_on, m.done)
            for m in await uow.goals.milestones(row.id)
        ],
        updates=[
            GoalUpdateView(u.created_at, u.progress, u.status, u.note)
            for u in await uow.goals.latest_updates(row.id, UPDATES_ON_CARD)
        ],
        following=await uow.goals.is_following(resident_id, row.id),
        helping=offer is not None,
        help_note=offer.note if offer else None,
    )


# --------------------------------------------------------------------------- following


async def follow(uow: UnitOfWork, resident_id: int, goal_id: int, on: bool) -> bool | None:
    """Follow (`on`) or unfollow the goal: sets the state, never toggles, so a double tap
    leaves what the resident meant. Returns whether anything changed; None if the goal
    does not exist."""
    async with uow.write():
        if await uow.goals.get(goal_id) is None:
            return None
        if on:
            return await uow.goals.follow(resident_id, goal_id)
        return await uow.goals.unfollow(resident_id, goal_id)


# --------------------------------------------------------------------------- "I want to help"


class HelpProblem(Enum):
    UNKNOWN_GOAL = "unknown_goal"
    BANNED = "banned"
    EMPTY = "empty"  # the awaited note had no text
    TOO_LONG = "too_long"
    NOT_AWAITED = "not_awaited"


@dataclass(frozen=True)
class HelpResult:
    goal_id: int | None = None
    problem: HelpProblem | None = None
    #: The first offer for this goal (False: the note of an earlier offer was replaced).
    new: bool = False
    #: Offering started following the goal.
    followed: bool = False
    note: str | None = None
    #: The length of a refused (too long) note.
    length: int = 0
    #: Where the goal card was opened from (for "Back"), kept while waiting for the note.
    origin: str = "H"

    @property
    def ok(self) -> bool:
        return self.problem is None


def _clean_note(note: str | None) -> tuple[str | None, HelpProblem | None, int]:
    cleaned = clean_user_text(note) if note else ""
    if len(cleaned) > HELP_NOTE_MAX:
        return None, HelpProblem.TOO_LONG, len(cleaned)
    return cleaned or None, None, len(cleaned)


async def start_help(uow: UnitOfWork, resident_id: int, goal_id: int, origin: str) -> HelpResult:
    """ "I want to help" was pressed: the next text is the (optional) note."""
    async with uow.write():
        if await uow.goals.get(goal_id) is None:
            return HelpResult(goal_id, HelpProblem.UNKNOWN_GOAL)
        if await uow.moderation.is_banned(resident_id):
            return HelpResult(goal_id, HelpProblem.BANNED)
        await uow.conversations.set_awaiting(
            resident_id, AWAITING_HELP, {"goal_id": goal_id, "origin": origin}
        )
    return HelpResult(goal_id, origin=origin)


async def offer_help(
    uow: UnitOfWork, resident_id: int, goal_id: int, note: str | None
) -> HelpResult:
    """Offer to help with a goal, with an optional note (at most `HELP_NOTE_MAX`
    characters). One offer per resident and goal: offering again replaces the note. The
    resident also follows the goal. Banned residents are refused; a refused offer changes
    nothing."""
    cleaned, problem, length = _clean_note(note)
    if problem is not None:
        return HelpResult(goal_id, problem, length=length)
    async with uow.write():
        if await uow.goals.get(goal_id) is None:
            return HelpResult(goal_id, HelpProblem.UNKNOWN_GOAL)
        if await uow.moderation.is_banned(resident_id):
            return HelpResult(goal_id, HelpProblem.BANNED)
        new = await uow.goals.help_offer(resident_id, goal_id) is None
        await uow.goals.offer_help(resident_id, goal_id, cleaned)
        followed = await uow.goals.follow(resident_id, goal_id)
    return HelpResult(goal_id, new=new, followed=followed, note=cleaned, length=length)


async def take_help_note(uow: UnitOfWork, resident_id: int, text: str) -> HelpResult:
    """The text a resident sent while the bot waited for their note. An empty or too long
    note is refused and the bot keeps waiting."""
    cleaned, problem, length = _clean_note(text)
    if problem is not None:
        return HelpResult(problem=problem, length=length)
    if cleaned is None:
        return HelpResult(problem=HelpProblem.EMPTY)
    async with uow.write():
        payload = await uow.conversations.take_awaiting(resident_id, AWAITING_HELP)
        if payload is None:
            return HelpResult(problem=HelpProblem.NOT_AWAITED)
        goal_id = payload.get("goal_id")
        origin = str(payload.get("origin") or "H")
        if not isinstance(goal_id, int) or isinstance(goal_id, bool):
            return HelpResult(problem=HelpProblem.UNKNOWN_GOAL)
        result = await offer_help(uow, resident_id, goal_id, cleaned)
    return HelpResult(
        result.goal_id,
        result.problem,
        result.new,
        result.followed,
        result.note,
        result.length,
        origin,
    )


async def awaited_help(uow: UnitOfWork, resident_id: int) -> tuple[int, str] | None:
    """The goal (id, and where its card was opened from) whose note the bot waits for."""
    state = await uow.conversations.get(resident_id)
    if state is None or state.awaiting != AWAITING_HELP:
        return None
    payload = state.payload or {}
    goal_id = payload.get("goal_id")
    if not isinstance(goal_id, int) or isinstance(goal_id, bool):
        return None
    return goal_id, str(payload.get("origin") or "H")


async def withdraw_help(uow: UnitOfWork, resident_id: int, goal_id: int) -> bool | None:
    """Take the offer back; whether there was one. None if the goal does not exist."""
    async with uow.write():
        if await uow.goals.get(goal_id) is None:
            return None
        return await uow.goals.withdraw_help(resident_id, goal_id)


@dataclass(frozen=True)
class HelperLine:
    author: Author
    telegram_id: int
    language: str
    note: str | None
    offered_at: dt.datetime


@dataclass(frozen=True)
class HelpersView:
    """Who offered to help with a goal: for moderators only (`/helpers Z-3`)."""

    goal_id: int
    key: str
    title: str
    helpers: list[HelperLine]


async def helpers(
    uow: UnitOfWork, key: str, language: str = DEFAULT_LANGUAGE, *, actor: Actor | None = None
) -> HelpersView | None:
    """Everyone who offered to help with the goal `key`, oldest offer first (the caller
    checks that a moderator asks). None if there is no such goal. With `actor`, the look at
    these personal data is written to the audit log ("helpers")."""
    goal = await _goal(uow, key)
    if goal is None:
        return None
    view = HelpersView(
        goal.id,
        goal.key,
        pick(goal.title, language),
        [
            HelperLine(
                Author(h.display_name, h.pseudonym), h.telegram_id, h.language, h.note, h.created_at
            )
            for h in await uow.goals.helpers(goal.id)
        ],
    )
    if actor is not None:
        async with uow.write():
            await record(uow, actor, "helpers", goal.key, {"count": len(view.helpers)})
    return view


def helpers_csv(view: HelpersView, tz: ZoneInfo) -> bytes:
    """The helpers as CSV for the InnoLab team: UTF-8 with BOM, semicolons, CRLF (opens as
    a table in a German Excel), with what is needed to get in touch. Internal data: it
    contains Telegram ids."""
    rows = [
        {
            "display_name": h.author.display_name or "",
            "pseudonym": h.author.pseudonym,
            "telegram_id": h.telegram_id,
            "language": h.language,
            "date": h.offered_at.astimezone(tz).strftime("%Y-%m-%d %H:%M"),
            "note": h.note or "",
        }
        for h in view.helpers
    ]
    return csv_bytes(HELPER_COLUMNS, rows)


# --------------------------------------------------------------------------- progress


class ProgressProblem(Enum):
    UNKNOWN_GOAL = "unknown_goal"
    BAD_PERCENT = "bad_percent"  # not within 0..100
    NOTE_TOO_LONG = "note_too_long"
    UNCHANGED = "unchanged"  # the same percentage and no note: nothing to tell


@dataclass(frozen=True)
class ProgressChange:
    key: str
    title: str = ""
    previous: int | None = None
    progress: int | None = None
    previous_status: str | None = None
    status: str | None = None
    note: str | None = None
    problem: ProgressProblem | None = None
    #: Residents told (followers of the goal and of its items, each once).
    notified: int = 0

    @property
    def filled(self) -> int:
        return filled_cells(self.progress or 0)

    @property
    def empty(self) -> int:
        return BAR_CELLS - self.filled

    @property
    def status_changed(self) -> bool:
        return self.status is not None and self.status != self.previous_status


def status_after(current: str, percent: int) -> str:
    """The goal's status after a progress update: reached at 100 %, under way once there is
    progress (also again after having been reached); paused stays paused."""
    if percent >= 100:
        return "done"
    if current == "done" or (current == "planned" and percent > 0):
        return "active"
    return current if current in GOAL_STATUSES else "active"


async def record_progress(
    uow: UnitOfWork,
    actor: Actor,
    key: str,
    percent: int,
    note: str | None = None,
    *,
    language: str = DEFAULT_LANGUAGE,
) -> ProgressChange:
    """A moderator's progress update (the caller checks the role): in one transaction a
    dated goal update, the goal's new percentage (and status, see `status_after`), an audit
    entry "progress", and a notification for the followers of the goal and of its items,
    each resident once. Refused (nothing changes) for an unknown key, a percentage outside
    0..100, a note over NOTE_MAX characters, or the same percentage without a note."""
    key = key.strip()
    note = clean_user_text(note) if note else None
    note = note or None
    if not 0 <= percent <= 100:
        return ProgressChange(key, problem=ProgressProblem.BAD_PERCENT)
    if note and len(note) > NOTE_MAX:
        return ProgressChange(key, problem=ProgressProblem.NOTE_TOO_LONG)
    async with uow.write():
        goal = await _goal(uow, key)
        if goal is None:
            return ProgressChange(key, problem=ProgressProblem.UNKNOWN_GOAL)
        key, title = goal.key, pick(goal.title, language)
        previous, previous_status = goal.progress, goal.status
        if previous == percent and note is None:
            return ProgressChange(
                key,
                title,
                previous,
                previous_status=previous_status,
                problem=ProgressProblem.UNCHANGED,
            )
        status = status_after(previous_status, percent)
        changed = status != previous_status
        await uow.goals.add_update(
            goal.id, percent, status, note, actor.telegram_id, status_changed=changed
        )
        notified = await notify_goal_followers(
            uow,
            goal.id,
            "progress",
            {"progress": percent, "note": note, "status": status if changed else None},
        )
        await record(
            uow,
            actor,
            "progress",
            key,
            {
                "from": previous,
                "to": percent,
                "note": note,
                "status": status if changed else None,
            },
        )
    return ProgressChange(
        key, title, previous, percent, previous_status, status, note, notified=notified
    )


async def notify_formed(uow: UnitOfWork, goal_id: int) -> int:
    """Tell the followers of a new goal's items (and of the goal) that it was formed ("goal"
    notification), each resident once. For goal creation; returns how many were told."""
    return await notify_goal_followers(uow, goal_id, "goal")
