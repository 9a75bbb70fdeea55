"""Update processing: one database session per update, updates of different residents
concurrently, updates of one resident strictly in order."""

from __future__ import annotations

import asyncio
import datetime as dt
import inspect
import logging
import time
from collections.abc import Awaitable, Callable
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any

from telegram import Update
from telegram.ext import BaseUpdateProcessor

from bot.logs import update_context
from bot.metrics import Metrics, update_type
from domain.residents import ResidentInfo
from storage.models import utcnow
from storage.uow import Database, UnitOfWork

log = logging.getLogger(__name__)


@dataclass
class UpdateScope:
    """What belongs to the update being handled: its unit of work and its resident."""

    uow: UnitOfWork
    resident: ResidentInfo | None = None
    #: The sender's staff role when there is no resident (in the moderators' group).
    role: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)


current_scope: ContextVar[UpdateScope | None] = ContextVar("current_scope", default=None)


def ordering_key(update: object) -> int | None:
    """Updates with the same key are handled one after the other."""
    if isinstance(update, Update):
        if update.effective_user is not None:
            return update.effective_user.id
        if update.effective_chat is not None:
            return update.effective_chat.id
    return None


#: The first key of the two-key advisory locks that order one resident's updates across
#: processes (the second is lock_key(telegram id)); the one-key locks (migrations, leader)
#: live in a separate key space.
RESIDENT_LOCK_CLASS = 0x746F


def lock_key(value: int) -> int:
    """A Telegram id folded into PostgreSQL's int4 (two residents may share a key: then
    they just wait for each other now and then)."""
    folded = (value ^ (value >> 32)) & 0xFFFF_FFFF
    return folded - 2**32 if folded >= 2**31 else folded


#: How long update ids are remembered (Telegram gives up redelivering after about a day).
KEEP_UPDATE_IDS = dt.timedelta(days=7)
#: Handled updates are marked so in batches (see ResidentOrderedProcessor): of this many,
MARK_BATCH = 64
#: or once the oldest has waited this long (seconds).
MARK_DELAY = 1.0
#: A claim this old without `handled_at` was cut short (the process died before it could
#: answer Telegram): a redelivery of that update is handled after all. Far longer than any
#: handler runs, shorter than Telegram's redelivery back-off.
CLAIM_STALE = dt.timedelta(seconds=90)


class ClaimsAhead:
    """Polling: the updates of a getUpdates answer arrive together, and the first of them
    to be handled claims all that have arrived and are not claimed yet, in one statement;
    the others find their claim decided (one statement per batch instead of one per
    update). `arrived` is called for every update put into the application's queue
    (ArrivalQueue). Telegram confirms a batch as soon as the next getUpdates asks past
    it, so a claim taken ahead changes nothing for a process that dies: the updates it
    had not handled are not delivered again either way."""

    def __init__(self) -> None:
        self._arrived: list[int] = []
        #: Decided ahead (True: ours), or being decided, until its update asks for it.
        self._decided: dict[int, asyncio.Future[bool | None]] = {}

    def arrived(self, update: object) -> None:
        if isinstance(update, Update):
            self._arrived.append(update.update_id)

    async def claim(
        self, uow: UnitOfWork, update_id: int, now: dt.datetime, stale_before: dt.datetime
    ) -> bool:
        """Whether this update is ours; a batch is claimed through the asking update's
        unit of work."""
        future = self._decided.pop(update_id, None)
        if future is not None:
            decided = await future
            if decided is not None:
                return decided
            # The batch failed: try on our own (and fail ourselves, if it still fails).
        ids = [i for i in dict.fromkeys([update_id, *self._arrived]) if i not in self._decided]
        self._arrived.clear()
        loop = asyncio.get_running_loop()
        batch = {i: loop.create_future() for i in ids if i != update_id}
        self._decided.update(batch)
        try:
            async with uow.write(one_statement=True):
                claimed = await uow.updates.claim_many(ids, now, stale_before)
        except BaseException:
            for i, waiting in batch.items():
                self._decided.pop(i, None)
                waiting.set_result(None)  # each decides for itself
            raise
        for i, waiting in batch.items():
            waiting.set_result(i in claimed)
        return update_id in claimed


class ArrivalQueue(asyncio.Queue[object]):
    """The application's update queue, telling ClaimsAhead what has arrived."""

    def __init__(self, claims: ClaimsAhead) -> None:
        super().__init__()
        self._claims = claims

    def put_nowait(self, item: Any) -> None:
        self._claims.arrived(item)
        super().put_nowait(item)


class ResidentOrderedProcessor(BaseUpdateProcessor):
    """Up to `max_concurrent_updates` at once; per resident, one at a time in arrival order
    (asyncio locks are fair: waiters acquire in FIFO order).

    Every Telegram update id is claimed in `processed_updates` (its own small transaction,
    committed before the handlers run). An id claimed before is a redelivery: it is counted
    and dropped. If handling fails (a handler raised and the error handler ran, or the
    processing itself raised) the claim is released, so a redelivery is handled again. When
    handling ends, the claim is marked handled. A process killed in between never answered
    Telegram, which delivers the update again: once the claim is older than CLAIM_STALE the
    redelivery takes it over, so no update is lost. (Killed after the handler's commit and
    before the mark, the update may be handled twice; buttons carry the state they set and
    awaited texts are taken once, so that repeats nothing a resident would notice.)

    The claim is one statement (on PostgreSQL without a transaction around it), in polling
    mode one for a whole getUpdates batch (`claims_ahead`). The marks are written in
    batches: one update in a while writes all that are waiting, once
    MARK_BATCH of them wait or the oldest has waited MARK_DELAY, and whatever is left when
    no update is in flight any more (and at shutdown). A mark that is lost with the
    process leaves a claim unmarked whose update had been answered, so Telegram does not
    deliver it again.

    `across_processes`: one resident's updates are also kept apart from other processes
    handling the same bot's updates (web replicas): on PostgreSQL the unit of work holds
    an advisory lock on the resident. In polling mode one process gets all updates
    (Telegram refuses a second getUpdates), so the lock, two round trips per update, is
    left out there."""

    def __init__(
        self,
        max_concurrent_updates: int,
        database: Database,
        on_done: Callable[[object], Awaitable[None] | None] | None = None,
        *,
        across_processes: bool = True,
    ) -> None:
        super().__init__(max_concurrent_updates)
        self.database = database
        self.on_done = on_done
        self.across_processes = across_processes
        #: Polling: claims taken for a whole getUpdates batch at once (see ClaimsAhead).
        self.claims_ahead: ClaimsAhead | None = None
        self._marks_due = 0.0
        self.metrics: Metrics | None = None
        self._locks: dict[int, tuple[asyncio.Lock, int]] = {}
        #: Update ids handled but not yet marked so in the database.
        self._unmarked: list[int] = []
        self._in_flight = 0

    async def do_process_update(self, update: object, coroutine: Awaitable[Any]) -> None:
        with update_context(update):  # logs carry the update id, handler and hashed user
            await self._process_in_order(update, coroutine)

    async def _process_in_order(self, update: object, coroutine: Awaitable[Any]) -> None:
        key = ordering_key(update)
        self._in_flight += 1
        try:
            if key is None:
                await self._run(update, coroutine)
                return
            lock, users = self._locks.get(key, (asyncio.Lock(), 0))
            self._locks[key] = (lock, users + 1)
            try:
                async with lock:
                    await self._run(update, coroutine, key)
            finally:
                lock, users = self._locks[key]
                if users <= 1:
                    del self._locks[key]
                else:
                    self._locks[key] = (lock, users - 1)
        finally:
            self._in_flight -= 1
            if self.on_done is not None:
                result = self.on_done(update)
                if result is not None:
                    await result
            if not self._in_flight and self._unmarked:
                await self.flush_marks()

    async def _run(self, update: object, coroutine: Awaitable[Any], key: int | None = None) -> None:
        update_id = update.update_id if isinstance(update, Update) else None
        kind = update_type(update)
        failed = True
        claimed = duplicate = False
        started = time.perf_counter()
        try:
            # One at a time across processes (web replicas) too: on PostgreSQL the unit of
            # work holds an advisory lock on the resident until the update is handled.
            lock = None
            if key is not None and self.across_processes:
                lock = (RESIDENT_LOCK_CLASS, lock_key(key))
            async with self.database.uow(lock=lock) as uow:
                if update_id is None and lock is not None:
                    async with uow.write(one_statement=True):  # takes the lock
                        pass
                if update_id is not None:
                    now = utcnow()
                    marks = self._take_marks()
                    try:
                        if marks:
                            async with uow.write(one_statement=True):
                                await uow.updates.handled(marks, now)
                    except BaseException:
                        self._unmarked.extend(marks)
                        raise
                    if self.claims_ahead is not None:
                        claimed = await self.claims_ahead.claim(
                            uow, update_id, now, now - CLAIM_STALE
                        )
                    else:
                        async with uow.write(one_statement=True):
                            claimed = await uow.updates.claim(update_id, now, now - CLAIM_STALE)
                    if not claimed:
                        duplicate = True
                        log.info("update %s was handled before: ignored", update_id)
                        if self.metrics is not None:
                            self.metrics.updates.labels(kind, "duplicate").inc()
                        return
                scope = UpdateScope(uow)
                token = current_scope.set(scope)
                try:
                    await coroutine
                finally:
                    current_scope.reset(token)
                failed = bool(scope.extra.get("failed"))
            # Marked only once the unit of work has ended well (its last commit, and on
            # PostgreSQL the lock's release, can still fail).
            if update_id is not None and not failed:
                if not self._unmarked:
                    self._marks_due = time.monotonic() + MARK_DELAY
                self._unmarked.append(update_id)
        finally:
            if inspect.iscoroutine(coroutine):
                coroutine.close()  # not awaited (duplicate, or the claim failed): no warning
            if not duplicate and self.metrics is not None:  # a failed claim counts as error
                self.metrics.updates.labels(kind, "error" if failed else "ok").inc()
                self.metrics.latency.labels(kind).observe(time.perf_counter() - started)
            if claimed and failed:
                await self._release(update_id)

    def _take_marks(self) -> list[int]:
        """The marks waiting, if it is time to write them (see the class docstring)."""
        if len(self._unmarked) < MARK_BATCH and (
            not self._unmarked or time.monotonic() < self._marks_due
        ):
            return []
        marks, self._unmarked = self._unmarked, []
        return marks

    async def flush_marks(self) -> None:
        """Mark the handled updates that no claim took along (see the class docstring)."""
        marks, self._unmarked = self._unmarked, []
        if not marks:
            return
        try:
            async with self.database.uow() as uow, uow.write():
                await uow.updates.handled(marks, utcnow())
        except Exception as exc:
            self._unmarked.extend(marks)  # the next claim takes them along
            log.warning("could not mark %d updates handled: %s", len(marks), type(exc).__name__)

    async def _release(self, update_id: int | None) -> None:
        if update_id is None:
            return
        try:
            async with self.database.uow() as uow, uow.write():
                await uow.updates.release(update_id)
        except Exception as exc:
            log.warning("could not release update %s: %s", update_id, type(exc).__name__)

    async def prune(self, now: dt.datetime | None = None) -> int:
        """Forget update ids older than KEEP_UPDATE_IDS."""
        async with self.database.uow() as uow, uow.write():
            return await uow.updates.prune((now or utcnow()) - KEEP_UPDATE_IDS)

    async def initialize(self) -> None:
        pass

    async def shutdown(self) -> None:
        await self.flush_marks()
