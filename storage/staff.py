"""Roles of the InnoLab's staff, and the audit log of what they did."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from typing import Any

from sqlalchemy import bindparam, delete, select

from storage.models import AuditEntry, Role, utcnow
from storage.repositories import Repository


class RoleRepository(Repository):
    async def role(self, telegram_id: int) -> str | None:
        def build() -> Any:
            roles = Role.__table__.c
            return select(roles.role).where(roles.telegram_id == bindparam("p_telegram_id"))

        rows = await self._read("roles.role", build, {"p_telegram_id": telegram_id})
        return str(rows[0][0]) if rows else None

    async def set(self, telegram_id: int, role: str, granted_by: int) -> None:
        stmt = (
            self._insert(Role)
            .values(telegram_id=telegram_id, role=role, granted_by=granted_by, created_at=utcnow())
            .on_conflict_do_update(
                index_elements=[Role.telegram_id], set_={"role": role, "granted_by": granted_by}
            )
        )
        await self.session.execute(stmt)

    async def remove(self, telegram_id: int) -> bool:
        result = await self.session.execute(
            delete(Role).where(Role.telegram_id == telegram_id).returning(Role.telegram_id)
        )
        return result.scalar_one_or_none() is not None

    async def all(self) -> dict[int, str]:
        def build() -> Any:
            roles = Role.__table__.c
            return select(roles.telegram_id, roles.role)

        return {int(t): str(r) for t, r in await self._read("roles.all", build, {})}


class AuditRepository(Repository):
    async def add(
        self, actor_id: int, actor_name: str, action: str, target: str, details: dict[str, Any]
    ) -> None:
        self.session.add(
            AuditEntry(
                actor_telegram_id=actor_id,
                actor_name=actor_name[:64],
                action=action[:32],
                target=target[:64],
                details=details,
                created_at=utcnow(),
            )
        )
        await self.session.flush()

    async def latest(self, limit: int, before: dt.datetime | None = None) -> Sequence[AuditEntry]:
        stmt = select(AuditEntry).order_by(AuditEntry.created_at.desc(), AuditEntry.id.desc())
        if before is not None:
            stmt = stmt.where(AuditEntry.created_at < before)
        return (await self.session.execute(stmt.limit(limit))).scalars().all()
