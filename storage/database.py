"""Engine creation: SQLite (zero setup) and PostgreSQL (production), both async."""

from __future__ import annotations

from contextvars import ContextVar
from pathlib import Path
from typing import Any

from sqlalchemy import event
from sqlalchemy.engine import Connection, make_url
from sqlalchemy.exc import DBAPIError, DisconnectionError
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from storage.sqlite_inline import inline_dbapi

#: Set while a unit of work runs a write transaction. On SQLite the transaction then starts
#: with BEGIN IMMEDIATE, so it holds the write lock from the start instead of failing with
#: "database is locked" when it upgrades from reading to writing under concurrency.
write_intent: ContextVar[bool] = ContextVar("write_intent", default=False)

#: Set inside a unit of work (storage/uow.py): its reads outside write transactions run
#: without BEGIN on SQLite. Each statement then reads its own snapshot, as on PostgreSQL
#: at READ COMMITTED, and a BEGIN through SQLAlchemy cost as much as a query. Everything
#: else (migrations, `engine.begin()`) keeps its transaction.
autocommit_reads: ContextVar[bool] = ContextVar("autocommit_reads", default=False)

SQLITE_BUSY_TIMEOUT_MS = 30_000


def is_sqlite_url(url: str) -> bool:
    return make_url(url).get_backend_name() == "sqlite"


def sqlite_file(url: str) -> str | None:
    """The database file of a SQLite URL; None for any other URL, an in-memory database
    or a `file:` URI."""
    parsed = make_url(url)
    database = parsed.database
    if parsed.get_backend_name() != "sqlite" or not database or database == ":memory:":
        return None
    if database.startswith("file:"):
        return None
    return str(Path(database).expanduser())


def is_disconnect(error: BaseException) -> bool:
    """The database could not be reached or the connection broke (as opposed to a
    statement the database refused): worth trying again once it is back."""
    if isinstance(error, OSError | DisconnectionError):  # refused, reset, timed out
        return True
    if isinstance(error, DBAPIError):
        return error.connection_invalidated or isinstance(
            error.orig.__cause__ if error.orig is not None else None, OSError
        )
    return False


def create_engine(url: str, *, pool_size: int = 10, inline: bool = True) -> AsyncEngine:
    """An async engine with the settings our code relies on for the URL's backend.
    `inline` (SQLite): statements run in the event loop (storage/sqlite_inline.py) rather
    than in aiosqlite's thread."""
    if is_sqlite_url(url):
        return _create_sqlite_engine(url, inline)
    engine = create_async_engine(
        url,
        pool_size=pool_size,
        max_overflow=max(4, pool_size // 2),
        pool_recycle=1800,
    )
    if engine.dialect.driver == "asyncpg":
        event.listen(engine.sync_engine.pool, "checkout", _closed_is_gone)
    return engine


def _closed_is_gone(dbapi_connection: Any, _record: Any, _proxy: Any) -> None:
    """The pool's liveness check, instead of `pool_pre_ping`: asyncpg notices at once when
    the server or the network closes a connection, so a closed one is replaced without a
    round trip (the pool retries the checkout on DisconnectionError). SQLAlchemy's ping
    for asyncpg costs three (BEGIN, a query, ROLLBACK), a sixth of an update's. A
    connection that dies silently fails its first statement instead, and SQLAlchemy then
    invalidates the whole pool, so one update answers "please try again"."""
    if dbapi_connection.driver_connection.is_closed():
        raise DisconnectionError("the connection was closed")


def _create_sqlite_engine(url: str, inline: bool) -> AsyncEngine:
    parsed = make_url(url)
    database = parsed.database
    if database and database != ":memory:" and not database.startswith("file:"):
        Path(database).expanduser().parent.mkdir(parents=True, exist_ok=True)
    engine = create_async_engine(
        url,
        connect_args={"timeout": SQLITE_BUSY_TIMEOUT_MS / 1000},
        **({"module": inline_dbapi()} if inline else {}),
    )

    @event.listens_for(engine.sync_engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # We emit BEGIN ourselves (see _on_begin); the driver must not.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
        if database and database != ":memory:":
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.close()

    @event.listens_for(engine.sync_engine, "begin")
    def _on_begin(conn: Connection) -> None:
        if write_intent.get():
            conn.exec_driver_sql("BEGIN IMMEDIATE")
        elif not autocommit_reads.get():
            conn.exec_driver_sql("BEGIN")

    return engine
