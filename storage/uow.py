"""Unit of work: one database session with its repositories, per update or per job."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from types import TracebackType

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from storage.content_writer import ContentWriter
from storage.database import create_engine, write_intent
from storage.export import ExportRepository
from storage.goal_writer import GoalWriter
from storage.goals import GoalRepository
from storage.moderation import ModerationRepository, ProposalRepository
from storage.outbox import (
    ActivityRepository,
    LeaseRepository,
    NotificationRepository,
    OutboxRepository,
)
from storage.privacy import PrivacyRepository
from storage.repositories import (
    APPROVED_COMMENTS,
    RESIDENTS,
    SUPPORTS,
    CommentRepository,
    ContentRepository,
    ConversationRepository,
    EngagementRepository,
    HourlyCountRepository,
    ResidentRepository,
)
from storage.staff import AuditRepository, RoleRepository
from storage.stats import StatsRepository
from storage.updates import UpdateRepository

#: A session-level advisory lock (held across the unit of work's transactions).
_LOCK = text("SELECT pg_advisory_lock(:kind, :key)")
_UNLOCK = text("SELECT pg_advisory_unlock(:kind, :key)")


def _lock_params(lock: tuple[int, int]) -> dict[str, int]:
    return {"kind": lock[0], "key": lock[1]}


class UnitOfWork:
    """Bundles the repositories over one session. Reads happen in an implicit transaction;
    every change goes through `async with uow.write():`, which commits on success and rolls
    back on error, so a write is all or nothing."""

    def __init__(self, session: AsyncSession, write_gate: asyncio.Lock | None = None) -> None:
        self.session = session
        self._write_gate = write_gate
        self.residents = ResidentRepository(session)
        self.content = ContentRepository(session)
        self.engagement = EngagementRepository(session)
        #: The hourly counts /stats sums (kept by the repositories writing the rows).
        self.support_counts = HourlyCountRepository(session, SUPPORTS)
        self.approved_comment_counts = HourlyCountRepository(session, APPROVED_COMMENTS)
        self.resident_counts = HourlyCountRepository(session, RESIDENTS)
        self.comments = CommentRepository(session)
        self.conversations = ConversationRepository(session)
        self.content_writer = ContentWriter(session)
        self.outbox = OutboxRepository(session)
        self.notifications = NotificationRepository(session)
        self.activity = ActivityRepository(session)
        self.leases = LeaseRepository(session)
        self.roles = RoleRepository(session)
        self.audit = AuditRepository(session)
        self.goals = GoalRepository(session)
        self.goal_writer = GoalWriter(session)
        self.proposals = ProposalRepository(session)
        self.moderation = ModerationRepository(session)
        self.stats = StatsRepository(session)
        self.export = ExportRepository(session)
        self.updates = UpdateRepository(session)
        self.privacy = PrivacyRepository(session)
        self._write_depth = 0
        #: An advisory lock (class, key) to take with the first write transaction, and
        #: whether it is held (PostgreSQL; see Database.uow).
        self.pending_lock: tuple[int, int] | None = None
        self.locked = False

    @asynccontextmanager
    async def write(self) -> AsyncIterator[None]:
        if self._write_depth:
            # Nested: part of the enclosing write transaction.
            self._write_depth += 1
            try:
                yield
            finally:
                self._write_depth -= 1
            return
        if self.session.in_transaction():
            # End the read transaction, so that the write one starts with the write lock.
            await self.session.commit()
        async with self._gate():
            token = write_intent.set(True)
            self._write_depth = 1
            try:
                if self.pending_lock is not None and not self.locked:
                    # Session-level: held past this transaction's end, until released.
                    await self.session.execute(_LOCK, _lock_params(self.pending_lock))
                    self.locked = True
                yield
                await self.session.commit()
            except BaseException:
                await self.session.rollback()
                raise
            finally:
                self._write_depth = 0
                write_intent.reset(token)

    @asynccontextmanager
    async def _gate(self) -> AsyncIterator[None]:
        """On SQLite, one write transaction of this process at a time, in arrival order.
        SQLite lets one writer in anyway; without the gate the others wait in its busy
        handler, which polls with sleeps of up to 100 ms, so under load most of the time
        went to sleeping. (A write opened inside another write of the same task, on a unit
        of work of its own, skips the gate and meets SQLite's busy handler as before,
        rather than waiting for itself.)"""
        if self._write_gate is None or write_intent.get():
            yield
            return
        async with self._write_gate:
            yield

    async def end_reads(self) -> None:
        """Finish the implicit read transaction (before slow network calls)."""
        if self.session.in_transaction():
            await self.session.commit()

    async def close(self) -> None:
        await self.session.close()


class Database:
    def __init__(
        self,
        url: str,
        *,
        pool_size: int = 10,
        inline: bool = True,
        write_gate: asyncio.Lock | None = None,
    ) -> None:
        self.url = url
        self.engine: AsyncEngine = create_engine(url, pool_size=pool_size, inline=inline)
        self._sessions = async_sessionmaker(self.engine, expire_on_commit=False)
        #: SQLite takes one writer at a time: this process's writers queue here (see
        #: UnitOfWork._gate). PostgreSQL needs no gate.
        self._write_gate = write_gate or (asyncio.Lock() if self.dialect == "sqlite" else None)

    def beside(self) -> Database:
        """The database for work that runs beside the updates, the sender above all. On
        SQLite that is a second engine whose statements run in aiosqlite's thread, in
        parallel with the event loop (inline, the sender reached 71 % of a paid 1000/s
        instead of 96 %), queueing with this process's other writers; elsewhere this one.
        The caller disposes it when it is not this one."""
        if self.dialect != "sqlite":
            return self
        return Database(self.url, inline=False, write_gate=self._write_gate)

    @property
    def dialect(self) -> str:
        return self.engine.dialect.name

    @asynccontextmanager
    async def uow(self, *, lock: tuple[int, int] | None = None) -> AsyncIterator[UnitOfWork]:
        """A unit of work. On PostgreSQL it keeps one connection to the end: an update runs
        several short transactions (claim, reads, writes), and taking a connection from
        the pool for each, with the pool's liveness ping, cost more than their statements.

        `lock`: a (class, key) advisory lock, held on that connection for the whole unit
        of work (PostgreSQL only; other processes' units of work with the same lock wait).
        If it cannot be released, the connection is discarded, which releases it."""
        if self.dialect != "postgresql":
            uow = UnitOfWork(self._sessions(), self._write_gate)
            try:
                yield uow
                await uow.end_reads()
            finally:
                await uow.close()
            return
        async with self.engine.connect() as connection:
            uow = UnitOfWork(self._sessions(bind=connection))
            # Taken with the first write transaction (the update's claim), so that it costs
            # no transaction of its own; released with the last read transaction.
            uow.pending_lock = lock
            try:
                yield uow
                if uow.locked and lock is not None:
                    await uow.session.execute(_UNLOCK, _lock_params(lock))
                    uow.locked = False
                await uow.end_reads()
            finally:
                try:
                    await uow.close()  # rolls back what is still open
                    if uow.locked and lock is not None:
                        await connection.execute(_UNLOCK, _lock_params(lock))
                        await connection.commit()
                except BaseException:
                    if uow.locked:
                        await asyncio.shield(connection.invalidate())
                    raise

    async def dispose(self) -> None:
        await self.engine.dispose()

    async def __aenter__(self) -> Database:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.dispose()
