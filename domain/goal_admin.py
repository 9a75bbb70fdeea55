"""Moderators create and edit goals.

`/goal new` is a short conversation kept in the conversation state (title, description,
action field, items, preview), so a restart between the steps loses nothing; the goal gets
the next free Z-number. `/goal Z-3` shows the goal with edit buttons: title, description,
action field, items, status, partners and milestones. Every change is one transaction with
its audit entry. Items newly linked to a goal become "adopted" (when they were open or in
review) with a dated history entry, and their followers are told once each — the same
happens when `todo-bot import` links them (see `items_linked`).

Moderators only: the callers check the role."""

from __future__ import annotations

import datetime as dt
import re
import secrets
from collections.abc import Sequence
from dataclasses import dataclass, replace
from enum import Enum
from typing import Any

from sqlalchemy.exc import IntegrityError

from domain.broadcasts import notify_goal_followers
from domain.importer import KEY_RE, _url
from domain.staff import Actor, record
from domain.text import DEFAULT_LANGUAGE, checked_text, clean_user_text, pick
from storage.goal_writer import LinkedItem
from storage.models import GOAL_STATUSES, Goal, utcnow
from storage.uow import UnitOfWork

AWAITING_TITLE = "goal_title"
AWAITING_DESCRIPTION = "goal_description"
AWAITING_FIELD = "goal_field"  # buttons: the action field
AWAITING_ITEMS = "goal_items"
AWAITING_CONFIRM = "goal_confirm"  # buttons: create or cancel
#: `/goal Z-3`, then an edit button: the new title, description, items, partner or milestone.
AWAITING_EDIT = "goal_edit"
NEW_STEPS = (AWAITING_TITLE, AWAITING_DESCRIPTION, AWAITING_FIELD, AWAITING_ITEMS, AWAITING_CONFIRM)
AWAITING = (*NEW_STEPS, AWAITING_EDIT)

TITLE_MAX = 200
DESCRIPTION_MAX = 2000
PARTNER_NAME_MAX = 200
PARTNER_DESCRIPTION_MAX = 500
MILESTONE_TITLE_MAX = 200
ITEMS_MAX = 50
PARTNERS_MAX = 20
MILESTONES_MAX = 30
#: Unknown item keys named back to the moderator (the rest is left out).
UNKNOWN_SHOWN = 10
#: Tries to find a free key when two goals are created at the same moment.
KEY_ATTEMPTS = 5
#: Items in these statuses become "adopted" when they are linked to a goal.
ADOPTABLE = ("open", "in_review")

GOAL_KEY = re.compile(r"^[Zz]-[0-9]{1,9}$")
_ITEM_SEPARATORS = re.compile(r"[\s,;]+")
_LOOKS_LIKE_URL = re.compile(r"^(?:[A-Za-z][A-Za-z0-9+.-]*://|www\.)", re.IGNORECASE)
_ISO_DATE = re.compile(r"^(\d{4})-(\d{1,2})-(\d{1,2})$")
_GERMAN_DATE = re.compile(r"^(\d{1,2})\.(\d{1,2})\.(\d{4})$")

#: What an edit button changes (the code in the callback data).
EDIT_TITLE = "t"
EDIT_DESCRIPTION = "d"
EDIT_FIELD = "f"  # buttons
EDIT_ITEMS = "i"
EDIT_STATUS = "s"  # buttons
EDIT_PARTNER_ADD = "a"
EDIT_PARTNER_REMOVE = "p"  # buttons
EDIT_MILESTONE_ADD = "m"
EDIT_MILESTONES = "l"  # buttons: done or not, remove
#: The edits answered with a text (the others with buttons).
TEXT_EDITS = (EDIT_TITLE, EDIT_DESCRIPTION, EDIT_ITEMS, EDIT_PARTNER_ADD, EDIT_MILESTONE_ADD)


class GoalProblem(Enum):
    EMPTY = "empty"
    TOO_LONG = "too_long"
    NOT_AWAITED = "not_awaited"  # no goal being written or edited (any more): an old button
    BUTTONS = "buttons"  # a text where a button was expected
    UNKNOWN_GOAL = "unknown_goal"
    UNKNOWN_FIELD = "unknown_field"
    NO_ITEMS = "no_items"
    UNKNOWN_ITEMS = "unknown_items"
    TOO_MANY = "too_many"  # items, partners or milestones over the limit
    BAD_FORMAT = "bad_format"  # a partner or milestone with too many parts
    BAD_URL = "bad_url"
    BAD_DATE = "bad_date"
    UNKNOWN_STATUS = "unknown_status"
    GONE = "gone"  # the partner or milestone is no longer there
    UNCHANGED = "unchanged"


# --------------------------------------------------------------------------- linking items


@dataclass(frozen=True)
class Linked:
    notified: int = 0
    #: Keys of the items that became "adopted".
    adopted: tuple[str, ...] = ()


async def items_linked(
    uow: UnitOfWork,
    goal_id: int,
    key: str,
    item_ids: Sequence[int],
    *,
    formed: bool,
    known_item_ids: Sequence[int] = (),
    actor_telegram_id: int | None = None,
) -> Linked:
    """Items were linked to the goal (they are in goal_items already): their followers
    hear of it once each ("goal" notification), and those that were open or in review
    become "adopted" with a dated history entry that names the goal. For a goal just
    formed everybody following one of its items is told; for items added to a goal only
    those who followed neither the goal nor one of the items it had (`known_item_ids`)."""
    if not item_ids:
        return Linked()
    async with uow.write():
        if formed:
            notified = await notify_goal_followers(uow, goal_id, "goal")
        else:
            notified = await uow.goal_writer.notify_new_item_followers(
                goal_id, item_ids, known_item_ids, "goal", {}, now=utcnow()
            )
        adopted = []
        wanted = set(item_ids)
        for item in await uow.goal_writer.linked_items(goal_id):
            if item.id in wanted and item.status in ADOPTABLE:
                await uow.content.set_status(item.id, "adopted")
                await uow.content.add_history(
                    item.id, item.status, "adopted", key, None, actor_telegram_id
                )
                adopted.append(item.key)
    return Linked(notified, tuple(adopted))


# --------------------------------------------------------------------------- parsing


def _check(text: str, limit: int, *, one_line: bool) -> tuple[str, GoalProblem | None, int]:
    cleaned, problem, length = checked_text(text, limit, one_line=one_line)
    return cleaned, GoalProblem(problem) if problem else None, length


@dataclass(frozen=True)
class ItemsParsed:
    items: tuple[LinkedItem, ...] = ()
    problem: GoalProblem | None = None
    unknown: tuple[str, ...] = ()


async def parse_items(uow: UnitOfWork, text: str) -> ItemsParsed:
    """ "TD-07 TD-12" (or with commas): every key must exist, at least one, each once."""
    tokens = [t for t in _ITEM_SEPARATORS.split(clean_user_text(text)) if t]
    keys = list(dict.fromkeys(tokens))
    if not keys:
        return ItemsParsed(problem=GoalProblem.NO_ITEMS)
    if len(keys) > ITEMS_MAX:
        return ItemsParsed(problem=GoalProblem.TOO_MANY)
    valid = [k for k in keys if KEY_RE.match(k)]
    found = await uow.goal_writer.items_by_keys([*valid, *(k.upper() for k in valid)])
    items: dict[str, LinkedItem] = {}
    unknown = []
    for key in keys:
        item = (found.get(key) or found.get(key.upper())) if KEY_RE.match(key) else None
        if item is None:
            unknown.append(key if len(key) <= 32 else key[:31] + "…")
        else:
            items.setdefault(item.key, item)
    if unknown:
        return ItemsParsed(problem=GoalProblem.UNKNOWN_ITEMS, unknown=tuple(unknown))
    return ItemsParsed(tuple(items.values()))


@dataclass(frozen=True)
class PartnerParsed:
    name: str = ""
    description: str | None = None
    url: str | None = None
    problem: GoalProblem | None = None
    length: int = 0
    limit: int = 0


def parse_partner(text: str) -> PartnerParsed:
    """`Name | short description | https://link`; description and link are optional (a
    part that looks like a link is the link)."""
    parts = [p.strip() for p in clean_user_text(text).split("|")]
    if len(parts) > 3:
        return PartnerParsed(problem=GoalProblem.BAD_FORMAT)
    name, problem, length = _check(parts[0], PARTNER_NAME_MAX, one_line=True)
    if problem is not None:
        return PartnerParsed(problem=problem, length=length, limit=PARTNER_NAME_MAX)
    description = url = None
    for part in parts[1:]:
        if not part:
            continue
        if _LOOKS_LIKE_URL.match(part):
            if url is not None:
                return PartnerParsed(problem=GoalProblem.BAD_FORMAT)
            try:
                url = _url(part)
            except ValueError:
                return PartnerParsed(problem=GoalProblem.BAD_URL)
            continue
        if description is not None:
            return PartnerParsed(problem=GoalProblem.BAD_FORMAT)
        description, problem, length = _check(part, PARTNER_DESCRIPTION_MAX, one_line=True)
        if problem is not None:
            return PartnerParsed(problem=problem, length=length, limit=PARTNER_DESCRIPTION_MAX)
    return PartnerParsed(name, description, url)


def parse_date(text: str) -> dt.date | None:
    """2027-03-31 or 31.03.2027; None if it is no valid date."""
    text = text.strip()
    iso, german = _ISO_DATE.match(text), _GERMAN_DATE.match(text)
    try:
        if iso:
            return dt.date(int(iso[1]), int(iso[2]), int(iso[3]))
        if german:
            return dt.date(int(german[3]), int(german[2]), int(german[1]))
    except ValueError:
        return None
    return None


@dataclass(frozen=True)
class MilestoneParsed:
    title: str = ""
    due_on: dt.date | None = None
    problem: GoalProblem | None = None
    length: int = 0


def parse_milestone(text: str) -> MilestoneParsed:
    """`Title | 2027-03-31`; the date is optional."""
    parts = [p.strip() for p in clean_user_text(text).split("|")]
    if len(parts) > 2:
        return MilestoneParsed(problem=GoalProblem.BAD_FORMAT)
    title, problem, length = _check(parts[0], MILESTONE_TITLE_MAX, one_line=True)
    if problem is not None:
        return MilestoneParsed(problem=problem, length=length)
    due_on = None
    if len(parts) == 2 and parts[1]:
        due_on = parse_date(parts[1])
        if due_on is None:
            return MilestoneParsed(problem=GoalProblem.BAD_DATE)
    return MilestoneParsed(title, due_on)


def _texts(text: str, language: str) -> dict[str, str]:
    """What a moderator typed, for their language and for German (every text's fallback)."""
    return dict.fromkeys(sorted({language, DEFAULT_LANGUAGE}), text)


# --------------------------------------------------------------------------- /goal new


@dataclass(frozen=True)
class GoalDraft:
    id: int
    title: str = ""
    description: str = ""
    field_id: int | None = None
    item_keys: tuple[str, ...] = ()

    def to_json(self) -> dict[str, Any]:
        return {
            "draft": self.id,
            "title": self.title,
            "description": self.description,
            "field_id": self.field_id,
            "items": list(self.item_keys),
        }

    @classmethod
    def from_json(cls, data: dict[str, Any] | None) -> GoalDraft | None:
        try:
            assert data is not None
            field_id = data.get("field_id")
            return cls(
                id=int(data["draft"]),
                title=str(data.get("title") or ""),
                description=str(data.get("description") or ""),
                field_id=int(field_id) if field_id is not None else None,
                item_keys=tuple(str(k) for k in data.get("items") or ()),
            )
        except (AssertionError, KeyError, TypeError, ValueError):
            return None


@dataclass(frozen=True)
class Step:
    """Where the conversation stands after a text or a button: the step the bot now waits
    for and the draft, or the problem (the bot keeps waiting for a better answer)."""

    step: str | None = None
    draft: GoalDraft | None = None
    problem: GoalProblem | None = None
    length: int = 0
    unknown: tuple[str, ...] = ()


async def _save(uow: UnitOfWork, resident_id: int, step: str, draft: GoalDraft) -> None:
    async with uow.write():
        await uow.conversations.set_awaiting(resident_id, step, draft.to_json())


async def stored(uow: UnitOfWork, resident_id: int) -> tuple[str, GoalDraft] | None:
    state = await uow.conversations.get(resident_id)
    if state is None or state.awaiting not in NEW_STEPS:
        return None
    draft = GoalDraft.from_json(state.payload)
    return (state.awaiting, draft) if draft is not None else None


async def start_new(uow: UnitOfWork, resident_id: int) -> Step:
    """Begin a new goal: the next text is its title."""
    draft = GoalDraft(secrets.randbelow(999_999_999) + 1)
    await _save(uow, resident_id, AWAITING_TITLE, draft)
    return Step(AWAITING_TITLE, draft)


async def receive_text(uow: UnitOfWork, resident_id: int, text: str) -> Step:
    """The title, the description, then (after the action field button) the items."""
    current = await stored(uow, resident_id)
    if current is None:
        return Step(problem=GoalProblem.NOT_AWAITED)
    step, draft = current
    if step == AWAITING_TITLE:
        title, problem, length = _check(text, TITLE_MAX, one_line=True)
        if problem is not None:
            return Step(step, draft, problem, length)
        draft = replace(draft, title=title)
        await _save(uow, resident_id, AWAITING_DESCRIPTION, draft)
        return Step(AWAITING_DESCRIPTION, draft)
    if step == AWAITING_DESCRIPTION:
        description, problem, length = _check(text, DESCRIPTION_MAX, one_line=False)
        if problem is not None:
            return Step(step, draft, problem, length)
        draft = replace(draft, description=description)
        await _save(uow, resident_id, AWAITING_FIELD, draft)
        return Step(AWAITING_FIELD, draft)
    if step == AWAITING_ITEMS:
        parsed = await parse_items(uow, text)
        if parsed.problem is not None:
            return Step(step, draft, parsed.problem, unknown=parsed.unknown[:UNKNOWN_SHOWN])
        draft = replace(draft, item_keys=tuple(i.key for i in parsed.items))
        await _save(uow, resident_id, AWAITING_CONFIRM, draft)
        return Step(AWAITING_CONFIRM, draft)
    return Step(step, draft, GoalProblem.BUTTONS)


async def choose_field(uow: UnitOfWork, resident_id: int, draft_id: int, field_id: int) -> Step:
    """The action field button: then the bot waits for the items."""
    current = await stored(uow, resident_id)
    if current is None or current[1].id != draft_id or not current[1].description:
        return Step(problem=GoalProblem.NOT_AWAITED)
    step, draft = current
    if await uow.content.action_field(field_id) is None:
        return Step(step, draft, GoalProblem.UNKNOWN_FIELD)
    draft = replace(draft, field_id=field_id)
    await _save(uow, resident_id, AWAITING_ITEMS, draft)
    return Step(AWAITING_ITEMS, draft)


@dataclass(frozen=True)
class ItemLine:
    key: str
    title: str
    status: str


@dataclass(frozen=True)
class Preview:
    field_title: str
    items: list[ItemLine]


async def preview(uow: UnitOfWork, draft: GoalDraft, language: str) -> Preview:
    field = await uow.content.action_field(draft.field_id) if draft.field_id else None
    found = await uow.goal_writer.items_by_keys(draft.item_keys)
    return Preview(
        pick(field.title, language) if field else "",
        [
            ItemLine(i.key, pick(i.title, language), i.status)
            for k in draft.item_keys
            if (i := found.get(k)) is not None
        ],
    )


@dataclass(frozen=True)
class Created:
    goal_id: int | None = None
    key: str = ""
    title: str = ""
    problem: GoalProblem | None = None
    unknown: tuple[str, ...] = ()
    notified: int = 0
    adopted: tuple[str, ...] = ()


async def create(
    uow: UnitOfWork, resident_id: int, draft_id: int, actor: Actor, language: str
) -> Created:
    """Create the previewed goal — once, however often Create is pressed — with the next
    free Z-number, in the moderator's language and in German. Its items' followers are
    told, open items become adopted, and it is audited ("goal_create")."""
    async with uow.write():
        current = await stored(uow, resident_id)
        if current is None or current[0] != AWAITING_CONFIRM or current[1].id != draft_id:
            return Created(problem=GoalProblem.NOT_AWAITED)
        if await uow.conversations.take_awaiting(resident_id, AWAITING_CONFIRM) is None:
            return Created(problem=GoalProblem.NOT_AWAITED)
        draft = current[1]
        field = await uow.content.action_field(draft.field_id) if draft.field_id else None
        if field is None:
            return Created(problem=GoalProblem.UNKNOWN_FIELD)
        found = await uow.goal_writer.items_by_keys(draft.item_keys)
        missing = tuple(k for k in draft.item_keys if k not in found)
        if missing or not draft.item_keys:
            return Created(problem=GoalProblem.UNKNOWN_ITEMS, unknown=missing[:UNKNOWN_SHOWN])
        title = _texts(draft.title, language)
        description = _texts(draft.description, language)
        goal: Goal | None = None
        for attempt in range(KEY_ATTEMPTS):
            key = await uow.goal_writer.next_key()
            try:
                async with uow.session.begin_nested():
                    goal = await uow.goal_writer.create(key, title, description, field.id)
            except IntegrityError:  # created at the same moment elsewhere: take the next key
                if attempt + 1 == KEY_ATTEMPTS:
                    raise
                continue
            break
        assert goal is not None
        item_ids = [found[k].id for k in draft.item_keys]
        await uow.goal_writer.set_items(goal.id, item_ids)
        linked = await items_linked(
            uow, goal.id, goal.key, item_ids, formed=True, actor_telegram_id=actor.telegram_id
        )
        await record(
            uow,
            actor,
            "goal_create",
            goal.key,
            {"title": draft.title, "field": field.key, "items": list(draft.item_keys)},
        )
        return Created(goal.id, goal.key, draft.title, None, (), linked.notified, linked.adopted)


# --------------------------------------------------------------------------- the card


@dataclass(frozen=True)
class PartnerLine:
    id: int
    name: str
    description: str
    url: str | None


@dataclass(frozen=True)
class MilestoneLine:
    id: int
    title: str
    due_on: dt.date | None
    done: bool


@dataclass(frozen=True)
class AdminCard:
    id: int
    key: str
    title: str
    description: str
    field_id: int
    field_title: str
    status: str
    progress: int
    items: list[ItemLine]
    partners: list[PartnerLine]
    milestones: list[MilestoneLine]


async def _goal(uow: UnitOfWork, goal: int | str) -> Goal | None:
    if isinstance(goal, int):
        return await uow.goals.get(goal)
    key = goal.strip()
    found = await uow.goals.by_key(key)
    if found is None and key != key.upper():
        found = await uow.goals.by_key(key.upper())
    return found


async def card(uow: UnitOfWork, goal: int | str, language: str) -> AdminCard | None:
    """The goal (by id or key) as moderators edit it; None if there is no such goal."""
    row = await _goal(uow, goal)
    if row is None:
        return None
    field = await uow.goal_writer.action_field(row.action_field_id)
    return AdminCard(
        id=row.id,
        key=row.key,
        title=pick(row.title, language),
        description=pick(row.description, language),
        field_id=row.action_field_id,
        field_title=pick(field.title, language) if field else "",
        status=row.status,
        progress=row.progress,
        items=[
            ItemLine(i.key, pick(i.title, language), i.status)
            for i in await uow.goal_writer.linked_items(row.id)
        ],
        partners=[
            PartnerLine(p.id, p.name, pick(p.description, language), p.url)
            for p in await uow.goals.partners(row.id)
        ],
        milestones=[
            MilestoneLine(m.id, pick(m.title, language), m.due_on, m.done)
            for m in await uow.goals.milestones(row.id)
        ],
    )


# --------------------------------------------------------------------------- editing


@dataclass(frozen=True)
class Edit:
    """The outcome of an edit. `problem` None: saved (`changed` False when the goal had
    that value already)."""

    goal_id: int = 0
    key: str = ""
    what: str = ""
    problem: GoalProblem | None = None
    changed: bool = False
    length: int = 0
    limit: int = 0
    unknown: tuple[str, ...] = ()
    notified: int = 0
    adopted: tuple[str, ...] = ()


async def start_edit(uow: UnitOfWork, resident_id: int, goal_id: int, what: str) -> Edit:
    """An edit button that is answered with a text: wait for it."""
    assert what in TEXT_EDITS
    async with uow.write():
        goal = await uow.goals.get(goal_id)
        if goal is None:
            return Edit(goal_id, what=what, problem=GoalProblem.UNKNOWN_GOAL)
        if what == EDIT_PARTNER_ADD and len(await uow.goals.partners(goal_id)) >= (PARTNERS_MAX):
            return Edit(goal_id, goal.key, what, GoalProblem.TOO_MANY, limit=PARTNERS_MAX)
        if what == EDIT_MILESTONE_ADD and len(await uow.goals.milestones(goal_id)) >= (
            MILESTONES_MAX
        ):
            return Edit(goal_id, goal.key, what, GoalProblem.TOO_MANY, limit=MILESTONES_MAX)
        await uow.conversations.set_awaiting(
            resident_id, AWAITING_EDIT, {"goal": goal_id, "what": what}
        )
    return Edit(goal_id, goal.key, what)


async def awaited_edit(uow: UnitOfWork, resident_id: int) -> tuple[int, str] | None:
    """(goal id, what) of the edit whose text the bot waits for."""
    state = await uow.conversations.get(resident_id)
    if state is None or state.awaiting != AWAITING_EDIT:
        return None
    payload = dict(state.payload or {})
    goal_id, what = payload.get("goal"), payload.get("what")
    if not isinstance(goal_id, int) or what not in TEXT_EDITS:
        return None
    return goal_id, str(what)


async def _receive_edit(
    uow: UnitOfWork, resident_id: int, actor: Actor, language: str, text: str
) -> Edit:
    """The new title or description (in the moderator's language; other languages stay),
    the items (the whole list), a partner or a milestone to add. A refused text changes
    nothing and the bot keeps waiting for a better one."""
    awaited = await awaited_edit(uow, resident_id)
    if awaited is None:
        return Edit(problem=GoalProblem.NOT_AWAITED)
    goal_id, what = awaited
    partner = parse_partner(text) if what == EDIT_PARTNER_ADD else None
    milestone = parse_milestone(text) if what == EDIT_MILESTONE_ADD else None
    items = await parse_items(uow, text) if what == EDIT_ITEMS else None
    async with uow.write():
        goal = await uow.goals.get(goal_id)
        if goal is None:
            await uow.conversations.clear_awaiting(resident_id)
            return Edit(goal_id, what=what, problem=GoalProblem.UNKNOWN_GOAL)
        base = Edit(goal_id, goal.key, what)
        if what in (EDIT_TITLE, EDIT_DESCRIPTION):
            limit = TITLE_MAX if what == EDIT_TITLE else DESCRIPTION_MAX
            value, problem, length = _check(text, limit, one_line=what == EDIT_TITLE)
            if problem is not None:
                return replace(base, problem=problem, length=length, limit=limit)
            result = await _edit_text(uow, actor, goal, what, value, language)
        elif what == EDIT_ITEMS:
            assert items is not None
            if items.problem is not None:
                return replace(
                    base,
                    problem=items.problem,
                    unknown=items.unknown[:UNKNOWN_SHOWN],
                    limit=ITEMS_MAX,
                )
            result = await _edit_items(uow, actor, goal, items.items)
        elif what == EDIT_PARTNER_ADD:
            assert partner is not None
            if partner.problem is not None:
                return replace(
                    base, problem=partner.problem, length=partner.length, limit=partner.limit
                )
            result = await _add_partner(uow, actor, goal, partner, language)
        else:
            assert milestone is not None
            if milestone.problem is not None:
                return replace(
                    base,
                    problem=milestone.problem,
                    length=milestone.length,
                    limit=MILESTONE_TITLE_MAX,
                )
            result = await _add_milestone(uow, actor, goal, milestone, language)
        if result.problem is not None and result.problem is not GoalProblem.UNCHANGED:
            return result
        if await uow.conversations.take_awaiting(resident_id, AWAITING_EDIT) is None:
            raise _Replayed  # the same text twice at once: the other one saved it
        return replace(result, problem=None)


class _Replayed(Exception):
    pass


async def receive_edit(
    uow: UnitOfWork, resident_id: int, actor: Actor, language: str, text: str
) -> Edit:
    """The text an edit button asked for (see `_receive_edit`); the same text delivered
    twice at once is saved once."""
    try:
        return await _receive_edit(uow, resident_id, actor, language, text)
    except _Replayed:
        return Edit(problem=GoalProblem.NOT_AWAITED)


async def _edit_text(
    uow: UnitOfWork, actor: Actor, goal: Goal, what: str, value: str, language: str
) -> Edit:
    name = "title" if what == EDIT_TITLE else "description"
    current: dict[str, str] = dict(goal.title if what == EDIT_TITLE else goal.description)
    if current.get(language) == value:
        return Edit(goal.id, goal.key, what, GoalProblem.UNCHANGED)
    before = pick(current, language)
    await uow.goal_writer.update_goal(goal.id, **{name: {**current, language: value}})
    await record(
        uow,
        actor,
        "goal_edit",
        goal.key,
        {"what": name, "language": language, "from": before, "to": value},
    )
    return Edit(goal.id, goal.key, what, changed=True)


async def _edit_items(
    uow: UnitOfWork, actor: Actor, goal: Goal, items: Sequence[LinkedItem]
) -> Edit:
    had = await uow.goal_writer.linked_items(goal.id)
    added, removed = await uow.goal_writer.set_items(goal.id, [i.id for i in items])
    if not added and not removed:
        return Edit(goal.id, goal.key, EDIT_ITEMS, GoalProblem.UNCHANGED)
    linked = await items_linked(
        uow,
        goal.id,
        goal.key,
        sorted(added),
        formed=False,
        known_item_ids=[i.id for i in had],
        actor_telegram_id=actor.telegram_id,
    )
    await record(
        uow,
        actor,
        "goal_edit",
        goal.key,
        {
            "what": "items",
            "from": " ".join(i.key for i in had),
            "to": " ".join(sorted(i.key for i in items)),
        },
    )
    return Edit(
        goal.id,
        goal.key,
        EDIT_ITEMS,
        changed=True,
        notified=linked.notified,
        adopted=linked.adopted,
    )


async def _add_partner(
    uow: UnitOfWork, actor: Actor, goal: Goal, partner: PartnerParsed, language: str
) -> Edit:
    if len(await uow.goals.partners(goal.id)) >= PARTNERS_MAX:
        return Edit(goal.id, goal.key, EDIT_PARTNER_ADD, GoalProblem.TOO_MANY, limit=PARTNERS_MAX)
    description = _texts(partner.description, language) if partner.description else None
    await uow.goal_writer.add_partner(goal.id, partner.name, description, partner.url)
    await uow.goal_writer.update_goal(goal.id)
    await record(
        uow,
        actor,
        "goal_edit",
        goal.key,
        {"what": "partner_add", "name": partner.name, "url": partner.url},
    )
    return Edit(goal.id, goal.key, EDIT_PARTNER_ADD, changed=True)


async def _add_milestone(
    uow: UnitOfWork, actor: Actor, goal: Goal, milestone: MilestoneParsed, language: str
) -> Edit:
    if len(await uow.goals.milestones(goal.id)) >= MILESTONES_MAX:
        return Edit(
            goal.id, goal.key, EDIT_MILESTONE_ADD, GoalProblem.TOO_MANY, limit=MILESTONES_MAX
        )
    await uow.goal_writer.add_milestone(
        goal.id, _texts(milestone.title, language), milestone.due_on
    )
    await uow.goal_writer.update_goal(goal.id)
    await record(
        uow,
        actor,
        "goal_edit",
        goal.key,
        {
            "what": "milestone_add",
            "title": milestone.title,
            "due": milestone.due_on.isoformat() if milestone.due_on else None,
        },
    )
    return Edit(goal.id, goal.key, EDIT_MILESTONE_ADD, changed=True)


async def set_field(uow: UnitOfWork, actor: Actor, goal_id: int, field_id: int) -> Edit:
    async with uow.write():
        goal = await uow.goals.get(goal_id)
        if goal is None:
            return Edit(goal_id, what=EDIT_FIELD, problem=GoalProblem.UNKNOWN_GOAL)
        field = await uow.goal_writer.action_field(field_id)
        if field is None:
            return Edit(goal_id, goal.key, EDIT_FIELD, GoalProblem.UNKNOWN_FIELD)
        if goal.action_field_id == field_id:
            return Edit(goal_id, goal.key, EDIT_FIELD)
        before = await uow.goal_writer.action_field(goal.action_field_id)
        await uow.goal_writer.update_goal(goal_id, action_field_id=field_id)
        await record(
            uow,
            actor,
            "goal_edit",
            goal.key,
            {"what": "field", "from": before.key if before else None, "to": field.key},
        )
    return Edit(goal_id, goal.key, EDIT_FIELD, changed=True)


async def set_status(uow: UnitOfWork, actor: Actor, goal_id: int, status: str) -> Edit:
    """A new status: a dated goal update, and the followers of the goal and of its items
    hear of it (like a progress update)."""
    if status not in GOAL_STATUSES:
        return Edit(goal_id, what=EDIT_STATUS, problem=GoalProblem.UNKNOWN_STATUS)
    async with uow.write():
        goal = await uow.goals.get(goal_id)
        if goal is None:
            return Edit(goal_id, what=EDIT_STATUS, problem=GoalProblem.UNKNOWN_GOAL)
        previous = goal.status
        if previous == status:
            return Edit(goal_id, goal.key, EDIT_STATUS)
        await uow.goal_writer.add_status_update(goal_id, goal.progress, status, actor.telegram_id)
        notified = await notify_goal_followers(
            uow,
            goal_id,
            "progress",
            {"progress": goal.progress, "note": None, "status": status},
        )
        await record(
            uow, actor, "goal_edit", goal.key, {"what": "status", "from": previous, "to": status}
        )
    return Edit(goal_id, goal.key, EDIT_STATUS, changed=True, notified=notified)


async def remove_partner(uow: UnitOfWork, actor: Actor, goal_id: int, partner_id: int) -> Edit:
    async with uow.write():
        goal = await uow.goals.get(goal_id)
        if goal is None:
            return Edit(goal_id, what=EDIT_PARTNER_REMOVE, problem=GoalProblem.UNKNOWN_GOAL)
        partner = await uow.goal_writer.remove_partner(goal_id, partner_id)
        if partner is None:
            return Edit(goal_id, goal.key, EDIT_PARTNER_REMOVE, GoalProblem.GONE)
        await uow.goal_writer.update_goal(goal_id)
        await record(
            uow,
            actor,
            "goal_edit",
            goal.key,
            {"what": "partner_remove", "name": partner.name, "url": partner.url},
        )
    return Edit(goal_id, goal.key, EDIT_PARTNER_REMOVE, changed=True)


async def set_milestone_done(
    uow: UnitOfWork, actor: Actor, goal_id: int, milestone_id: int, done: bool
) -> Edit:
    """Mark a milestone done or not (the button carries the state it sets)."""
    async with uow.write():
        goal = await uow.goals.get(goal_id)
        if goal is None:
            return Edit(goal_id, what=EDIT_MILESTONES, problem=GoalProblem.UNKNOWN_GOAL)
        milestone = await uow.goal_writer.milestone(goal_id, milestone_id)
        if milestone is None:
            return Edit(goal_id, goal.key, EDIT_MILESTONES, GoalProblem.GONE)
        before, title = milestone.done, pick(milestone.title, DEFAULT_LANGUAGE)
        if before == done:
            return Edit(goal_id, goal.key, EDIT_MILESTONES)
        await uow.goal_writer.set_milestone_done(milestone_id, done)
        await uow.goal_writer.update_goal(goal_id)
        await record(
            uow,
            actor,
            "goal_edit",
            goal.key,
            {
                "what": "milestone_done",
                "title": title,
                "from": before,
                "to": done,
            },
        )
    return Edit(goal_id, goal.key, EDIT_MILESTONES, changed=True)


async def remove_milestone(uow: UnitOfWork, actor: Actor, goal_id: int, milestone_id: int) -> Edit:
    async with uow.write():
        goal = await uow.goals.get(goal_id)
        if goal is None:
            return Edit(goal_id, what=EDIT_MILESTONES, problem=GoalProblem.UNKNOWN_GOAL)
        milestone = await uow.goal_writer.milestone(goal_id, milestone_id)
        if milestone is None:
            return Edit(goal_id, goal.key, EDIT_MILESTONES, GoalProblem.GONE)
        title = pick(milestone.title, DEFAULT_LANGUAGE)
        await uow.goal_writer.remove_milestone(milestone)
        await uow.goal_writer.update_goal(goal_id)
        await record(
            uow, actor, "goal_edit", goal.key, {"what": "milestone_remove", "title": title}
        )
    return Edit(goal_id, goal.key, EDIT_MILESTONES, changed=True)


async def cancel_waiting(uow: UnitOfWork, resident_id: int) -> bool:
    """Stop waiting for a goal's text (someone who is no longer a moderator)."""
    async with uow.write():
        return await uow.conversations.clear_awaiting(resident_id)
