"""One leader among several worker processes: a PostgreSQL advisory lock.

The leader runs the scheduler (digest, notifications, inactivity) and the sender; the other
workers wait as standbys. The lock is held by a session on a connection of its own (not from
the pool), so it is released when the leader's process or connection dies, and a standby,
trying again every `retry_seconds`, takes over. The leader checks its connection at the same
pace and steps down at once when it is gone (the lock may already be someone else's).

With SQLite there is only one process (`--role all`): it leads without any election.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine
from sqlalchemy.pool import NullPool

log = logging.getLogger(__name__)

#: The advisory lock's key: arbitrary, but fixed ("toDO" + 1; the migration lock is "toDO").
LEADER_LOCK_ID = 0x746F_444F + 1

Callback = Callable[[], Awaitable[None]]


async def _nothing() -> None:
    return None


class LeaderElection:
    def __init__(
        self,
        url: str,
        *,
        lock_id: int = LEADER_LOCK_ID,
        retry_seconds: float = 2.0,
        on_elected: Callback = _nothing,
        on_lost: Callback = _nothing,
    ) -> None:
        self.url = url
        self.lock_id = lock_id
        self.retry_seconds = retry_seconds
        self.on_elected = on_elected
        self.on_lost = on_lost
        self.is_leader = False
        self.elected = asyncio.Event()
        #: Set after every try that found another leader (for tests and /healthz).
        self.tried = asyncio.Event()
        #: The PostgreSQL backend holding the lock while this process leads.
        self.backend_pid: int | None = None
        self._engine: AsyncEngine | None = None

    @property
    def state(self) -> str:
        """For /healthz: "leader" or "standby"."""
        return "leader" if self.is_leader else "standby"

    @property
    def engine(self) -> AsyncEngine:
        if self._engine is None:
            # A connection of its own that really closes: the lock dies with it.
            self._engine = create_async_engine(self.url, poolclass=NullPool)
        return self._engine

    async def run(self) -> None:
        """Campaign, lead, and campaign again after losing the lead; until cancelled."""
        try:
            while True:
                try:
                    async with self.engine.connect() as connection:
                        await self._campaign(connection)
                        await self._lead(connection)
                except asyncio.CancelledError:
                    raise
                except Exception as exc:  # the database went away: step down, try again
                    log.warning(
                        "leader election: database connection lost (%s)", type(exc).__name__
                    )
                finally:
                    await self._step_down()
                await asyncio.sleep(self.retry_seconds)
        finally:
            if self._engine is not None:
                await self._engine.dispose()

    async def _try_lock(self, connection: AsyncConnection) -> bool:
        result = await connection.execute(
            text("SELECT pg_try_advisory_lock(:id)"), {"id": self.lock_id}
        )
        await connection.commit()  # the lock is the session's, not the transaction's
        return bool(result.scalar_one())

    async def _campaign(self, connection: AsyncConnection) -> None:
        while not await self._try_lock(connection):
            self.tried.set()
            await asyncio.sleep(self.retry_seconds)
        pid = await connection.execute(text("SELECT pg_backend_pid()"))
        self.backend_pid = int(pid.scalar_one())
        await connection.commit()
        self.is_leader = True
        self.elected.set()
        log.info("leader election: this process leads now")
        await self.on_elected()

    async def _lead(self, connection: AsyncConnection) -> None:
        """Hold the lock; raise when the connection is gone."""
        while True:
            await asyncio.sleep(self.retry_seconds)
            await connection.execute(text("SELECT 1"))
            await connection.commit()

    async def _step_down(self) -> None:
        if not self.is_leader:
            return
        self.is_leader = False
        self.backend_pid = None
        self.elected.clear()
        log.warning("leader election: this process no longer leads")
        await self.on_lost()
