"""One resident's updates never run at the same time, even in two processes (web replicas)
on one PostgreSQL database; different residents' updates do."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
from sqlalchemy import text
from telegram import Update

from bot.processor import ResidentOrderedProcessor, lock_key
from storage.uow import Database
from tests.conftest import _truncate

TIMEOUT = 10


def update(update_id: int, user_id: int) -> Update:
    data = {
        "update_id": update_id,
        "message": {
            "message_id": update_id,
            "date": 0,
            "chat": {"id": user_id, "type": "private"},
            "from": {"id": user_id, "is_bot": False, "first_name": "Test"},
            "text": "/start",
        },
    }
    return Update.de_json(data, None)


@pytest.fixture
async def replicas(postgres_url: str) -> AsyncIterator[list[ResidentOrderedProcessor]]:
    """Two processes' update processors, each with its own database pools."""
    await _truncate(postgres_url)
    databases = [Database(postgres_url), Database(postgres_url)]
    processors = [ResidentOrderedProcessor(4, db) for db in databases]
    yield processors
    for processor, database in zip(processors, databases, strict=True):
        await processor.shutdown()
        await database.dispose()


async def waiting_for_lock(database: Database) -> bool:
    async with database.engine.connect() as connection:
        result = await connection.execute(
            text("SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted")
        )
        return int(result.scalar_one()) > 0


async def test_one_residents_updates_wait_for_each_other_across_processes(
    replicas: list[ResidentOrderedProcessor],
) -> None:
    first, second = replicas
    events: list[str] = []
    started, release = asyncio.Event(), asyncio.Event()

    async def slow() -> None:
        events.append("A starts")
        started.set()
        await release.wait()
        events.append("A ends")

    async def same_resident() -> None:
        events.append("B")

    async def other_resident() -> None:
        events.append("C")

    a = asyncio.create_task(first.process_update(update(1, 4242), slow()))
    await asyncio.wait_for(started.wait(), TIMEOUT)
    b = asyncio.create_task(second.process_update(update(2, 4242), same_resident()))
    # Until B waits for the resident's lock: a state only the database can tell.
    async with asyncio.timeout(TIMEOUT):
        while not await waiting_for_lock(second.database):  # noqa: ASYNC110
            await asyncio.sleep(0.01)
    # Another resident is not held up.
    await asyncio.wait_for(second.process_update(update(3, 5151), other_resident()), TIMEOUT)
    assert events == ["A starts", "C"]

    release.set()
    await asyncio.wait_for(asyncio.gather(a, b), TIMEOUT)
    assert events == ["A starts", "C", "A ends", "B"]


def test_lock_keys_fit_into_int4() -> None:
    for value in (0, 1, 2**31 - 1, 2**31, 2**32 + 5, 2**52 - 1, 7_123_456_789):
        assert -(2**31) <= lock_key(value) < 2**31
    assert lock_key(4242) != lock_key(5151)
