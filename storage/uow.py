"""Unit of work: one database session with its repositories, per update or per job."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from types import TracebackType

from sqlalchemy import text
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, AsyncSession, async_sessionmaker

from storage.cards import CARD_LINKS, CardLinks, CardLinksRepository
from storage.content_writer import ContentWriter
from storage.database import (
    SQLITE_BUSY_TIMEOUT_MS,
    autocommit_reads,
    create_engine,
    sqlite_file,
    write_intent,
)
from storage.export import ExportRepository
from storage.fastreads import FAST_READS, FastReads, SqliteReader
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


#: PostgreSQL reads outside write() run in autocommit, writes in READ COMMITTED (the
#: server's default level, which the reads had before too: see Database.uow).
_AUTOCOMMIT = "AUTOCOMMIT"
_TRANSACTIONS = "READ COMMITTED"


def _lock_params(lock: tuple[int, int]) -> dict[str, int]:
    return {"kind": lock[0], "key": lock[1]}


class UnitOfWork:
    """Bundles the repositories over one session. Reads outside a write run in autocommit
    (each statement sees what was committed when it started: PostgreSQL's READ COMMITTED,
    which is what reads in a transaction saw too, and the same on SQLite; see Database.uow);
    every change goes through `async with uow.write():`, which commits on success and rolls
    back on error, so a write is all or nothing."""

    def __init__(
        self,
        session: AsyncSession,
        write_gate: asyncio.Lock | None = None,
        autocommit: AsyncConnection | None = None,
    ) -> None:
        self.session = session
        self._write_gate = write_gate
        #: PostgreSQL: the unit of work's connection, reading in autocommit (see
        #: Database.uow); write() gives it a transaction of the server's default level.
        self._autocommit = autocommit
        self.residents = ResidentRepository(session)
        self.content = ContentRepository(session)
        self.cards = CardLinksRepository(session)
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
    async def write(self, *, one_statement: bool = False) -> AsyncIterator[None]:
        """A write transaction: committed when the block ends well, rolled back otherwise.

        `one_statement`: the block changes the database with at most one statement, which
        is all or nothing by itself (reads without row locks may come before it); on
        PostgreSQL it then runs without BEGIN and COMMIT around it, two round trips fewer.
        At READ COMMITTED a transaction gives plain reads nothing more than autocommit
        does (every statement sees what was committed when it started, in or out of a
        transaction), so the block means the same. Elsewhere it is a write transaction
        like any other."""
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
            fast: FastReads | None = self.session.info.get(FAST_READS)
            if fast is not None:
                fast.writing = True
            transaction = self._autocommit is not None and not one_statement
            if transaction:
                await self._isolation(_TRANSACTIONS)
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
                if fast is not None:
                    fast.writing = False
                write_intent.reset(token)
                if transaction:
                    # A broken connection fails the unit of work's next statement anyway.
                    with contextlib.suppress(SQLAlchemyError):
                        await self._isolation(_AUTOCOMMIT)

    async def _isolation(self, level: str) -> None:
        assert self._autocommit is not None
        await self._autocommit.execution_options(isolation_level=level)

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
        #: Item cards' links, shared by this Database's units of work (storage/cards.py).
        self._card_links: dict[int, CardLinks] = {}
        self._sessions = async_sessionmaker(
            self.engine, expire_on_commit=False, info={CARD_LINKS: self._card_links}
        )
        #: SQLite takes one writer at a time: this process's writers queue here (see
        #: UnitOfWork._gate). PostgreSQL needs no gate.
        self._write_gate = write_gate or (asyncio.Lock() if self.dialect == "sqlite" else None)
        #: SQLite: the process's connection for fast reads (storage/fastreads.py), where
        #: statements run inline on a database file.
        path = sqlite_file(url) if inline else None
        self._sqlite_reader = SqliteReader(path, SQLITE_BUSY_TIMEOUT_MS) if path else None

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

        On PostgreSQL, reads outside `write()` run in autocommit: each SELECT is a
        round trip of its own, without the BEGIN and COMMIT around it. Under READ
        COMMITTED, the level we run at, every statement of a transaction already sees
        its own fresh snapshot, so the reads see what they saw before; what they lose is
        only what no read here relies on (row locks: those are taken inside `write()`).
        Round trips were the largest cost of an update on PostgreSQL (the bot's CPU in
        the socket writes that wake the server): 25 per update before, about 7 now with
        the single-statement claims (bot/processor.py). The reads every update makes go
        to the driver directly outside `write()` (storage/fastreads.py): on PostgreSQL on
        this connection, on SQLite on the process's read-only connection.

        `lock`: a (class, key) advisory lock, held on that connection for the whole unit
        of work (PostgreSQL only; other processes' units of work with the same lock wait).
        If it cannot be released, the connection is discarded, which releases it."""
        if self.dialect != "postgresql":
            info: dict[str, object] = {}
            if self._sqlite_reader is not None:
                info[FAST_READS] = FastReads(self.engine.dialect, sqlite=self._sqlite_reader)
            uow = UnitOfWork(self._sessions(info=info), self._write_gate)
            token = autocommit_reads.set(True)
            try:
                yield uow
                await uow.end_reads()
            finally:
                autocommit_reads.reset(token)
                await uow.close()
            return
        async with self.engine.connect() as connection:
            await connection.execution_options(isolation_level=_AUTOCOMMIT)
            fast = FastReads(self.engine.dialect, connection=connection)
            uow = UnitOfWork(
                self._sessions(bind=connection, info={FAST_READS: fast}), autocommit=connection
            )
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
        if self._sqlite_reader is not None:
            self._sqlite_reader.close()
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
