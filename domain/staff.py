"""The InnoLab's staff: who may moderate, who may manage roles, and the audit log.

Admins are the Telegram ids in ADMIN_IDS plus those promoted in the bot; moderators are
stored in the database. Admins can do everything moderators can, and manage roles."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from domain.views import Author
from storage.uow import UnitOfWork

ADMIN = "admin"
MODERATOR = "moderator"


@dataclass(frozen=True)
class Actor:
    """A staff member doing something (for the audit log and "decided by")."""

    telegram_id: int
    name: str


def effective_role(telegram_id: int, stored: str | None, admin_ids: Iterable[int]) -> str | None:
    return ADMIN if telegram_id in set(admin_ids) else stored


def can_moderate(role: str | None) -> bool:
    return role in (ADMIN, MODERATOR)


def can_manage_roles(role: str | None) -> bool:
    return role == ADMIN


async def role_of(uow: UnitOfWork, telegram_id: int, admin_ids: Iterable[int]) -> str | None:
    return effective_role(telegram_id, await uow.roles.role(telegram_id), admin_ids)


async def staff(uow: UnitOfWork, admin_ids: Iterable[int]) -> dict[int, str]:
    """Everybody with a role: Telegram id → role."""
    members = await uow.roles.all()
    for admin in admin_ids:
        members[admin] = ADMIN
    return members


async def record(
    uow: UnitOfWork, actor: Actor, action: str, target: str, details: dict[str, Any] | None = None
) -> None:
    """Write an audit entry (inside the caller's write transaction, so the entry and the
    action it describes are stored together or not at all)."""
    async with uow.write():
        await uow.audit.add(actor.telegram_id, actor.name, action, target, details or {})


class RoleChange:
    GRANTED = "granted"
    REVOKED = "revoked"
    UNCHANGED = "unchanged"
    CONFIG_ADMIN = "config_admin"  # in ADMIN_IDS: cannot be changed in the bot


async def set_role(
    uow: UnitOfWork, actor: Actor, telegram_id: int, role: str | None, admin_ids: Iterable[int]
) -> str:
    """Give a moderator (or admin) role, or take it away (role None)."""
    if telegram_id in set(admin_ids):
        return RoleChange.CONFIG_ADMIN
    async with uow.write():
        current = await uow.roles.role(telegram_id)
        if current == role:
            return RoleChange.UNCHANGED
        if role is None:
            await uow.roles.remove(telegram_id)
        else:
            await uow.roles.set(telegram_id, role, actor.telegram_id)
        await record(uow, actor, "role", str(telegram_id), {"from": current, "to": role})
    return RoleChange.REVOKED if role is None else RoleChange.GRANTED


@dataclass(frozen=True)
class AuditLine:
    created_at: dt.datetime
    actor: str
    action: str
    target: str
    details: dict[str, Any] = field(default_factory=dict)


async def audit_log(uow: UnitOfWork, limit: int = 20) -> list[AuditLine]:
    return [
        AuditLine(e.created_at, e.actor_name, e.action, e.target, dict(e.details or {}))
        for e in await uow.audit.latest(limit)
    ]


# --------------------------------------------------------------------------- /mod and /audit


@dataclass(frozen=True)
class StaffMember:
    telegram_id: int
    role: str
    #: In ADMIN_IDS: can only be changed there.
    from_config: bool
    #: How they appear in the bot; None if they have not started it.
    author: Author | None
    language: str | None
    #: Started the bot and has not blocked it: may be written to.
    reachable: bool


async def member(uow: UnitOfWork, telegram_id: int, admin_ids: Iterable[int]) -> StaffMember:
    """What the bot knows about one (possible) staff member; `role` is "" for none."""
    admins = set(admin_ids)
    role = effective_role(telegram_id, await uow.roles.role(telegram_id), admins) or ""
    resident = await uow.residents.by_telegram_id(telegram_id)
    return StaffMember(
        telegram_id,
        role,
        telegram_id in admins,
        Author(resident.display_name, resident.pseudonym) if resident else None,
        resident.language if resident else None,
        resident is not None and resident.blocked_at is None,
    )


async def staff_members(uow: UnitOfWork, admin_ids: Iterable[int]) -> list[StaffMember]:
    """Everybody with a role (a handful of people): admins first, then by id."""
    admins = set(admin_ids)
    found = [await member(uow, telegram_id, admins) for telegram_id in await staff(uow, admins)]
    return sorted(found, key=lambda m: (m.role != ADMIN, not m.from_config, m.telegram_id))


#: Names, targets and changed values are cut to this length in /audit.
NAME_SHOWN = 32
CHANGE_SHOWN = 24
#: How much of the details /audit shows: (note length, extra details, their length), from
#: the most to the least; the first that fits the budget is used.
DETAIL_LEVELS = ((80, 3, 40), (40, 1, 20), (0, 0, 0))
#: Characters for the entries of one /audit message (Telegram allows 4096 in all), and
#: what each entry adds besides its texts (date, labels, separators).
AUDIT_BUDGET = 3400
ENTRY_OVERHEAD = 40


@dataclass(frozen=True)
class AuditView:
    """One audit entry as /audit shows it: short enough that 20 fit in one message."""

    created_at: dt.datetime
    actor: str
    action: str
    target: str
    #: (from, to) when the entry records a change of a value (status, role, …).
    change: tuple[str | None, str | None] | None
    note: str | None
    extra: list[tuple[str, str]]

    def size(self) -> int:
        texts = [self.actor, self.action, self.target, self.note or ""]
        texts += [v or "" for v in self.change or ()]
        texts += [k + v for k, v in self.extra]
        return ENTRY_OVERHEAD + sum(len(t) for t in texts)


def _cut(text: str, limit: int) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "…"


def _value(value: Any) -> str:
    if isinstance(value, str):
        return value
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


def audit_view(line: AuditLine, level: tuple[int, int, int] = DETAIL_LEVELS[0]) -> AuditView:
    note_shown, extra_shown, value_shown = level
    details = dict(line.details)
    change = None
    if "from" in details or "to" in details:
        before, after = details.pop("from", None), details.pop("to", None)
        change = (
            None if before is None else _cut(_value(before), CHANGE_SHOWN),
            None if after is None else _cut(_value(after), CHANGE_SHOWN),
        )
    note = None
    for key in ("note", "reason", "text"):
        value = details.pop(key, None)
        if value and note is None and note_shown:
            note = _cut(_value(value), note_shown)
    extra = [
        (_cut(key, value_shown), _cut(_value(value), value_shown))
        for key, value in details.items()
        if value not in (None, "", [], {})
    ][:extra_shown]
    return AuditView(
        line.created_at,
        _cut(line.actor, NAME_SHOWN),
        _cut(line.action, NAME_SHOWN),
        _cut(line.target, NAME_SHOWN),
        change,
        note,
        extra,
    )


def fit_audit(lines: list[AuditLine], budget: int = AUDIT_BUDGET) -> list[AuditView]:
    """The entries with as much detail as fits into one message (long notes are cut
    further, extra details left out)."""
    views: list[AuditView] = []
    for level in DETAIL_LEVELS:
        views = [audit_view(line, level) for line in lines]
        if sum(v.size() for v in views) <= budget:
            break
    return views


async def latest_actions(uow: UnitOfWork, limit: int = 20) -> list[AuditView]:
    """The newest audit entries first, ready to show in one message."""
    return fit_audit(await audit_log(uow, limit))
