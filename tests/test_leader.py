"""Leader election among workers (PostgreSQL advisory lock): one leads, the other waits and
takes over within a few seconds when the leader's session dies; the old leader steps down."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import pytest
from sqlalchemy import text

from bot.leader import LeaderElection
from storage.uow import Database

RETRY = 0.2
TIMEOUT = 10


class Worker:
    """A worker's election with a record of what it was told."""

    def __init__(self, url: str) -> None:
        self.events: list[str] = []
        self.lost = asyncio.Event()
        self.election = LeaderElection(
            url, retry_seconds=RETRY, on_elected=self._elected, on_lost=self._lost
        )
        self.task = asyncio.create_task(self.election.run())

    async def _elected(self) -> None:
        self.events.append("elected")

    async def _lost(self) -> None:
        self.events.append("lost")
        self.lost.set()

    async def stop(self) -> None:
        self.task.cancel()
        await asyncio.gather(self.task, return_exceptions=True)

    async def waits(self, times: int = 2) -> None:
        """Until it has found the lock taken `times` more times."""
        for _ in range(times):
            self.election.tried.clear()
            await asyncio.wait_for(self.election.tried.wait(), TIMEOUT)


@pytest.fixture
async def workers(postgres_url: str) -> AsyncIterator[list[Worker]]:
    started: list[Worker] = []
    yield started
    for worker in started:
        await worker.stop()


async def kill_session(url: str, pid: int) -> None:
    database = Database(url)
    try:
        async with database.engine.connect() as connection:
            await connection.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": pid})
            await connection.commit()
    finally:
        await database.dispose()


async def test_one_leads_and_the_standby_takes_over_when_it_dies(
    postgres_url: str, workers: list[Worker]
) -> None:
    first = Worker(postgres_url)
    workers.append(first)
    await asyncio.wait_for(first.election.elected.wait(), TIMEOUT)
    second = Worker(postgres_url)
    workers.append(second)
    await second.waits()
    assert (first.election.state, second.election.state) == ("leader", "standby")
    assert second.events == []

    pid = first.election.backend_pid
    assert pid is not None
    killed = time.monotonic()
    await kill_session(postgres_url, pid)
    await asyncio.wait_for(second.election.elected.wait(), TIMEOUT)
    took = time.monotonic() - killed
    await asyncio.wait_for(first.lost.wait(), TIMEOUT)

    assert second.election.state == "leader" and second.events == ["elected"]
    assert first.events == ["elected", "lost"]
    assert took < 5 * RETRY + 2, f"took over after {took:.1f} s"
    # The old leader campaigns again, and now waits.
    await first.waits()
    assert first.election.state == "standby"


async def test_a_stopped_leader_hands_over(postgres_url: str, workers: list[Worker]) -> None:
    first = Worker(postgres_url)
    await asyncio.wait_for(first.election.elected.wait(), TIMEOUT)
    second = Worker(postgres_url)
    workers.append(second)
    await second.waits(1)
    await first.stop()  # a graceful stop closes its session
    await asyncio.wait_for(second.election.elected.wait(), TIMEOUT)
    assert second.election.state == "leader"
