"""Telegram update ids already taken up: a redelivered update (webhook retry, a second
replica, a restart before the offset was confirmed) is handled once."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import delete, update

from storage.models import ProcessedUpdate
from storage.repositories import Repository


class UpdateRepository(Repository):
    async def claim(self, update_id: int, now: dt.datetime, stale_before: dt.datetime) -> bool:
        """True if this update id is now ours: never seen before, or claimed before
        `stale_before` by a process that never finished it (it died: Telegram got no answer
        and delivers the update again)."""
        insert = self._insert(ProcessedUpdate).values(update_id=update_id, created_at=now)
        claimed = await self.session.execute(
            insert.on_conflict_do_update(
                index_elements=[ProcessedUpdate.update_id],
                set_={"created_at": now},
                where=(ProcessedUpdate.handled_at.is_(None))
                & (ProcessedUpdate.created_at < stale_before),
            ).returning(ProcessedUpdate.update_id)
        )
        return claimed.scalar_one_or_none() is not None

    async def handled(self, update_id: int, now: dt.datetime) -> None:
        await self.session.execute(
            update(ProcessedUpdate)
            .where(ProcessedUpdate.update_id == update_id)
            .values(handled_at=now)
        )

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
