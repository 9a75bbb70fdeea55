"""The InnoLab's staff: who may moderate, who may manage roles, and the audit log.

Admins are the Telegram ids in ADMIN_IDS plus those promoted in the bot; moderators are
stored in the database. Admins can do everything moderators can, and manage roles."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

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
