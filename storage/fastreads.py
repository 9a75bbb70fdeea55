"""Fast reads: the SELECTs every update makes, straight to the database driver.

Every update reads its resident, and most read an item card, a page of items or search
results. Through SQLAlchemy's session each such read cost 150–500 µs of CPU (session and
connection bookkeeping, the ORM's execution path, a pool checkout for the first one and a
commit at the end), several times what the statement itself costs; in the update benchmark
SQLAlchemy was a third of the bot's CPU. Here the same statements, still built with
SQLAlchemy Core and compiled by SQLAlchemy for the dialect once, go to the driver
directly: the compiled SQL, the bound values in the compiled order through the dialect's
bind processors, and each column through the dialect's result processor, so the values
are what the session would have returned.

They run only where that changes nothing a caller can see:

* outside write transactions (`UnitOfWork.write()` turns them off while it runs), where
  reads run in autocommit anyway: each statement sees what was committed when it started;
* on PostgreSQL, on the unit of work's own connection (`Database.uow` holds one for the
  whole unit of work, in autocommit outside writes);
* on SQLite, when statements run inline (storage/sqlite_inline.py) on a database file, on
  one read-only connection of the process (`query_only`): in WAL mode a reader sees the
  last commit and never waits for a writer. Elsewhere (an in-memory database, aiosqlite's
  thread) they take the session's way, as they do inside a write.

Driver errors come out as SQLAlchemy's `DBAPIError`, like the session's. A broken
PostgreSQL connection is invalidated first (`connection_invalidated`), so the pool never
hands it out again.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy.engine import Dialect
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncConnection

#: The session.info key of a unit of work's FastReads.
FAST_READS = "fast_reads"


@dataclass(frozen=True, slots=True)
class CompiledRead:
    """A SELECT compiled once for one dialect."""

    sql: str
    #: Parameter names in the order the SQL takes them (a name may repeat on SQLite).
    names: tuple[str, ...]
    #: Values of the statement's own constants (bound parameters with a value).
    defaults: Mapping[str, Any]
    binds: Mapping[str, Callable[[Any], Any]]
    #: One result processor (or None) per column; empty when no column has one.
    results: tuple[Callable[[Any], Any] | None, ...]

    @classmethod
    def of(cls, statement: Any, dialect: Dialect) -> CompiledRead:
        compiled = statement.compile(dialect=dialect)
        if "POSTCOMPILE" in compiled.string:
            raise ValueError("fast reads take no expanding or literal-execute parameters")
        defaults = {
            name: bind.effective_value for name, bind in compiled.binds.items() if not bind.required
        }
        results = tuple(
            column.type._cached_result_processor(dialect, None)
            for column in compiled._result_columns
        )
        if not any(results):
            results = ()
        return cls(
            sql=compiled.string,
            names=tuple(compiled.positiontup or ()),
            defaults=defaults,
            binds=dict(compiled._bind_processors),
            results=results,
        )

    def arguments(self, params: Mapping[str, Any]) -> list[Any]:
        values = []
        for name in self.names:
            value = params[name] if name in params else self.defaults[name]
            process = self.binds.get(name)
            values.append(process(value) if process is not None and value is not None else value)
        return values

    def rows(self, raw: Sequence[Sequence[Any]]) -> list[tuple[Any, ...]]:
        if not self.results:
            return [tuple(row) for row in raw]
        processors = self.results
        return [
            tuple(
                value if process is None or value is None else process(value)
                for process, value in zip(processors, row, strict=True)
            )
            for row in raw
        ]


_COMPILED: dict[tuple[str, str], CompiledRead] = {}


def compiled(name: str, dialect: Dialect, build: Callable[[], Any]) -> CompiledRead:
    """The statement `build()` makes, compiled once per dialect under `name`."""
    key = (name, dialect.name)
    found = _COMPILED.get(key)
    if found is None:
        found = _COMPILED[key] = CompiledRead.of(build(), dialect)
    return found


class SqliteReader:
    """The process's read-only SQLite connection for fast reads (see the module's
    docstring); opened on first use, closed with its Database."""

    def __init__(self, path: str, busy_timeout_ms: int) -> None:
        self.path = path
        self.busy_timeout_ms = busy_timeout_ms
        self._connection: sqlite3.Connection | None = None

    def connection(self) -> sqlite3.Connection:
        if self._connection is None:
            connection = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
            connection.execute(f"PRAGMA busy_timeout={self.busy_timeout_ms}")
            connection.execute("PRAGMA query_only=1")
            self._connection = connection
        return self._connection

    def fetch(self, read: CompiledRead, params: Mapping[str, Any]) -> list[tuple[Any, ...]]:
        arguments = read.arguments(params)
        try:
            raw = self.connection().execute(read.sql, arguments).fetchall()
        except sqlite3.Error as error:
            raise DBAPIError(read.sql, arguments, error) from error
        return read.rows(raw)

    def close(self) -> None:
        if self._connection is not None:
            self._connection.close()
            self._connection = None


class FastReads:
    """A unit of work's way to its driver for reads (see the module's docstring)."""

    def __init__(
        self,
        dialect: Dialect,
        *,
        sqlite: SqliteReader | None = None,
        connection: AsyncConnection | None = None,
    ) -> None:
        self.dialect = dialect
        self._sqlite = sqlite
        self._connection = connection
        #: Set while a write transaction runs (UnitOfWork.write).
        self.writing = False

    @property
    def usable(self) -> bool:
        return not self.writing

    async def fetch(self, read: CompiledRead, params: Mapping[str, Any]) -> list[tuple[Any, ...]]:
        if self._sqlite is not None:
            return self._sqlite.fetch(read, params)
        assert self._connection is not None
        arguments = read.arguments(params)
        # The connection is checked out for the whole unit of work: no I/O here.
        sync = self._connection.sync_connection
        assert sync is not None
        driver: Any = sync.connection.driver_connection
        try:
            raw = await driver.fetch(read.sql, *arguments)
        except Exception as error:
            gone = isinstance(error, OSError) or driver.is_closed()
            if gone:
                await self._connection.invalidate()
            raise DBAPIError(read.sql, arguments, error, connection_invalidated=gone) from error
        return read.rows(raw)
