"""Telegram update ids already taken up: a redelivered update (webhook retry, a second
replica, a restart before the offset was confirmed) is handled once."""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import bindparam, delete, update

from storage.models import ProcessedUpdate
from storage.repositories import Repository


class UpdateRepository(Repository):
    async def claim(self, update_id: int, now: dt.datetime, stale_before: dt.datetime) -> bool:
        """True if this update id is now ours: never seen before, or claimed before
        `stale_before` by a process that never finished it (it died: Telegram got no answer
        and delivers the update again)."""

        def build() -> Any:
            rows: dict[str, Any] = {
                "update_id": bindparam("p_update"),
                "created_at": bindparam("p_now"),
            }
            return self._claiming(rows, bindparam("p_stale_before"))

        stmt = self._prebuilt("updates.claim", build)
        params = {"p_update": update_id, "p_now": now, "p_stale_before": stale_before}
        return (await self.session.execute(stmt, params)).scalar_one_or_none() is not None

    async def claim_many(
        self, update_ids: list[int], now: dt.datetime, stale_before: dt.datetime
    ) -> set[int]:
        """`claim` for several distinct update ids in one statement: the ids now ours."""
        rows = [{"update_id": update_id, "created_at": now} for update_id in update_ids]
        stmt = self._claiming(rows, stale_before)
        return {int(i) for i in (await self.session.execute(stmt)).scalars()}

    def _claiming(self, rows: Any, stale_before: Any) -> Any:
        """INSERT of these claims that takes over a stale, unfinished one and returns the
        update ids it took."""
        table = ProcessedUpdate.__table__
        insert = self._insert(table).values(rows)
        return insert.on_conflict_do_update(
            index_elements=[table.c.update_id],
            set_={"created_at": insert.excluded.created_at},
            where=(table.c.handled_at.is_(None)) & (table.c.created_at < stale_before),
        ).returning(table.c.update_id)

    async def handled(self, update_ids: list[int], now: dt.datetime) -> None:
        """Mark these claims as handled to the end."""
        stmt = self._prebuilt(
            "updates.handled",
            lambda: (
                update(ProcessedUpdate)
                .where(ProcessedUpdate.update_id.in_(bindparam("p_updates", expanding=True)))
                .values(handled_at=bindparam("p_now"))
            ),
        )
        await self.session.execute(stmt, {"p_updates": update_ids, "p_now": now})

    async def release(self, update_id: int) -> None:
        """Forget a claim (handling failed): a redelivery may try again."""
        await self.session.execute(
            delete(ProcessedUpdate).where(ProcessedUpdate.update_id == update_id)
        )

    async def prune(self, before: dt.datetime) -> int:
        """Drop ids older than `before` (Telegram stops redelivering long before)."""
        result = await self.session.execute(
            delete(ProcessedUpdate).where(ProcessedUpdate.created_at < before)
        )
        return int(getattr(result, "rowcount", 0) or 0)
