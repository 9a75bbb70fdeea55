"""Update processing: one database session per update, updates of different residents
concurrently, updates of one resident strictly in order."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any

from telegram import Update
from telegram.ext import BaseUpdateProcessor

from domain.residents import ResidentInfo
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


class ResidentOrderedProcessor(BaseUpdateProcessor):
    """Up to `max_concurrent_updates` at once; per resident, one at a time in arrival order
    (asyncio locks are fair: waiters acquire in FIFO order)."""

    def __init__(
        self,
        max_concurrent_updates: int,
        database: Database,
        on_done: Callable[[object], Awaitable[None] | None] | None = None,
    ) -> None:
        super().__init__(max_concurrent_updates)
        self.database = database
        self.on_done = on_done
        self._locks: dict[int, tuple[asyncio.Lock, int]] = {}

    async def do_process_update(self, update: object, coroutine: Awaitable[Any]) -> None:
        key = ordering_key(update)
        try:
            if key is None:
                await self._run(coroutine)
                return
            lock, users = self._locks.get(key, (asyncio.Lock(), 0))
            self._locks[key] = (lock, users + 1)
            try:
                async with lock:
                    await self._run(coroutine)
            finally:
                lock, users = self._locks[key]
                if users <= 1:
                    del self._locks[key]
                else:
                    self._locks[key] = (lock, users - 1)
        finally:
            if self.on_done is not None:
                result = self.on_done(update)
                if result is not None:
                    await result

    async def _run(self, coroutine: Awaitable[Any]) -> None:
        async with self.database.uow() as uow:
            token = current_scope.set(UpdateScope(uow))
            try:
                await coroutine
            finally:
                current_scope.reset(token)

    async def initialize(self) -> None:
        pass

    async def shutdown(self) -> None:
        pass
