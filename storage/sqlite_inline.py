"""aiosqlite without its thread: SQLite statements run right in the event loop.

aiosqlite hands every call to a thread of its own and wakes the event loop when it is
done. SQLAlchemy makes four such calls per statement (cursor, execute, fetch, close), and
measured here a primary-key SELECT cost 254 µs of CPU that way and 79 µs inline; in the
update benchmark the hand-offs were a quarter of the bot's CPU. The bot's statements on
SQLite take well under a millisecond (WAL: readers never wait; this process's writers
queue in front of SQLite, see `UnitOfWork._gate`), so running them inline costs the event
loop less than the hand-offs did.

The price: while a statement runs, nothing else in the process does. That matters only
when another process holds SQLite's write lock (a `todo-bot import` while the bot runs):
the bot then waits in SQLite's busy handler, up to the busy timeout, instead of going on
with other residents' reads. SQLite is the zero-setup database for one process; run
PostgreSQL where that is not good enough.
"""

from __future__ import annotations

import sqlite3
import types
from collections.abc import Callable
from typing import Any

import aiosqlite
from sqlalchemy.dialects.sqlite.aiosqlite import AsyncAdapt_aiosqlite_dbapi


class _RunNow:
    """Stands in for the queue to aiosqlite's thread: runs what is put in at once.
    (SQLAlchemy's isolation-level setter and aiosqlite's `stop()` put work in directly.)"""

    def put_nowait(self, item: tuple[Any, Callable[[], Any]]) -> None:
        future, function = item
        try:
            result = function()
        except BaseException as error:
            if future is None:
                raise
            future.set_exception(error)
            return
        if future is not None:
            future.set_result(result)


class InlineConnection(aiosqlite.Connection):
    """An aiosqlite connection whose calls run in the caller's thread."""

    def __init__(self, connector: Callable[[], sqlite3.Connection], iter_chunk_size: int) -> None:
        super().__init__(connector, iter_chunk_size)
        self._tx = _RunNow()  # type: ignore[assignment]  # the thread is never started

    def __await__(self) -> Any:
        return self._connect().__await__()

    async def _connect(self) -> InlineConnection:
        if self._connection is None:
            self._connection = self._connector()
        return self

    async def _execute(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        if not self._running or not self._connection:
            raise ValueError("Connection closed")
        return fn(*args, **kwargs)


def _connect(database: Any, *, iter_chunk_size: int = 64, **kwargs: Any) -> InlineConnection:
    def connector() -> sqlite3.Connection:
        location = database.decode() if isinstance(database, bytes) else str(database)
        connection: sqlite3.Connection = sqlite3.connect(location, **kwargs)
        return connection

    return InlineConnection(connector, iter_chunk_size)


def inline_dbapi() -> AsyncAdapt_aiosqlite_dbapi:
    """The module to hand SQLAlchemy's aiosqlite dialect (`create_async_engine(module=)`):
    aiosqlite's, with `connect` making inline connections."""
    module = types.ModuleType("aiosqlite_inline")
    module.__dict__.update(
        {name: getattr(aiosqlite, name) for name in dir(aiosqlite) if not name.startswith("__")}
    )
    module.connect = _connect  # type: ignore[attr-defined]
    module.Connection = InlineConnection  # type: ignore[attr-defined]
    return AsyncAdapt_aiosqlite_dbapi(module, sqlite3)
