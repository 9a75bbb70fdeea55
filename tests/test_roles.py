"""Process roles: `--role web` and `--role worker` need PostgreSQL (and web a webhook);
workers elect one leader that sends, the standby takes over when the leader dies, and every
resident gets a broadcast once."""

from __future__ import annotations

import asyncio
import datetime as dt
from collections import Counter
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from pathlib import Path

import httpx
import pytest
from sqlalchemy import text

from bot.app import build_application
from bot.worker import Worker
from domain import residents as resident_service
from domain.broadcasts import Audience, create_announcement
from storage.uow import Database
from tests.conftest import _truncate, make_settings
from tests.fake_telegram import FakeTelegram
from tests.test_cli import one_line_error, sqlite_url, todo_bot

RETRY = 0.2
TIMEOUT = 15
RESIDENTS = [7001, 7002, 7003, 7004, 7005]


# --------------------------------------------------------------------------- the command line


@pytest.mark.parametrize("role", ["web", "worker"])
def test_sqlite_allows_only_role_all(tmp_path: Path, role: str) -> None:
    result = todo_bot(tmp_path, "run", "--role", role, DATABASE_URL=sqlite_url(tmp_path))
    assert result.returncode == 2
    line = one_line_error(result)
    assert f"--role {role} needs PostgreSQL" in line and "--role all" in line


def test_role_web_needs_a_webhook(tmp_path: Path) -> None:
    result = todo_bot(
        tmp_path,
        "run",
        "--role",
        "web",
        DATABASE_URL="postgresql://postgres@127.0.0.1:5432/nonexistent",
        TELEGRAM_BOT_TOKEN="123:abc",
    )
    assert result.returncode == 2
    assert "--role web needs WEBHOOK_URL" in one_line_error(result)


# --------------------------------------------------------------------------- workers


@pytest.fixture
async def pg(fake: FakeTelegram, postgres_url: str) -> AsyncIterator[Database]:
    """The residents have started the bot (so it may write to them)."""
    await _truncate(postgres_url)
    for telegram_id in RESIDENTS:
        fake.allow_chat(telegram_id)
    database = Database(postgres_url)
    async with database.uow() as uow:
        for telegram_id in RESIDENTS:
            await resident_service.enter(uow, telegram_id, "de", dt.date.today())
    yield database
    await database.dispose()


@pytest.fixture
async def workers(fake: FakeTelegram, pg: Database) -> AsyncIterator[list[Worker]]:
    """Two worker processes' runtimes (each with its own Application and pool)."""
    started: list[Worker] = []
    async with AsyncExitStack() as stack:
        for n in range(2):
            settings = make_settings(fake, pg.url, http_port=0 if n == 0 else None)
            database = Database(pg.url)
            application = build_application(settings, database, webhook=True)
            worker = Worker(application, settings, retry_seconds=RETRY)
            await stack.enter_async_context(worker.running())
            stack.push_async_callback(database.dispose)
            started.append(worker)
        yield started


async def leader_of(workers: list[Worker]) -> Worker:
    async def elected(worker: Worker) -> Worker:
        await worker.election.elected.wait()
        return worker

    tasks = [asyncio.create_task(elected(w)) for w in workers]
    done, pending = await asyncio.wait(tasks, timeout=TIMEOUT, return_when="FIRST_COMPLETED")
    for task in pending:
        task.cancel()
    assert done, "nobody was elected"
    return next(iter(done)).result()


async def broadcast(database: Database, marker: str) -> None:
    async with database.uow() as uow:
        await create_announcement(
            uow, requested_by=900001, html=f"<b>{marker}</b>", audience=Audience("all")
        )


def received(fake: FakeTelegram, marker: str) -> Counter[int]:
    return Counter(
        int(c.chat_id)
        for c in fake.calls
        if c.method == "sendMessage"
        and marker in str(c.params.get("text"))
        and c.http_status == 200
    )


async def test_one_worker_sends_and_the_standby_takes_over_when_it_dies(
    fake: FakeTelegram, pg: Database, workers: list[Worker]
) -> None:
    leader = await leader_of(workers)
    [standby] = [w for w in workers if w is not leader]
    await standby.election.tried.wait()
    assert (leader.election.state, standby.election.state) == ("leader", "standby")
    leader_delivery = leader.services.delivery
    assert leader_delivery.sender is not None
    assert standby.services.delivery.sender is None, "a standby does not send"
    assert {j.name for j in leader.application.job_queue.jobs()} >= {"weekly-digest"}
    assert list(standby.application.job_queue.jobs()) == []

    await broadcast(pg, "Erste Runde")
    await leader_delivery.sender.drain()
    assert received(fake, "Erste Runde") == Counter(dict.fromkeys(RESIDENTS, 1))

    # The leader's database session dies (its process would have crashed).
    pid = leader.election.backend_pid
    assert pid is not None
    async with pg.engine.connect() as connection:
        await connection.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": pid})
        await connection.commit()
    await asyncio.wait_for(standby.election.elected.wait(), TIMEOUT)
    await asyncio.wait_for(leader_lost(leader), TIMEOUT)
    assert leader.services.delivery.sender is None, "the old leader stopped sending"
    assert list(leader.application.job_queue.jobs()) == []

    await broadcast(pg, "Zweite Runde")
    new_sender = standby.services.delivery.sender
    assert new_sender is not None
    await new_sender.drain()
    assert received(fake, "Zweite Runde") == Counter(dict.fromkeys(RESIDENTS, 1))
    assert received(fake, "Erste Runde") == Counter(dict.fromkeys(RESIDENTS, 1))


async def leader_lost(worker: Worker) -> None:
    while worker.election.is_leader or worker.services.delivery.sender is not None:
        worker.election.tried.clear()
        await worker.election.tried.wait()


async def test_worker_health_says_leader_or_standby(workers: list[Worker]) -> None:
    leader = await leader_of(workers)
    first = workers[0]  # the one with HTTP_PORT
    server = first.application.bot_data.get("http_server")
    assert server is not None
    async with httpx.AsyncClient() as client:
        response = await client.get(f"http://127.0.0.1:{server.port}/healthz")
    assert response.status_code == 200
    body = response.json()
    assert body["mode"] == "worker"
    assert body["leader"] == ("leader" if first is leader else "standby")


async def test_a_web_replica_handles_updates_but_neither_sends_nor_schedules(
    fake: FakeTelegram, pg: Database
) -> None:
    """A web replica queues (a notification, a broadcast) and answers; the worker sends."""
    from tests.test_webhook import webhook_bot, webhook_settings

    settings = webhook_settings(fake, pg.url, role="web")
    async with webhook_bot(fake, settings) as hook:
        delivery = hook.harness.app.bot_data["services"].delivery
        assert delivery.sender is not None, "the client for previews is there"
        assert delivery._task is None, "but no sender runs"
        names = {job.name for job in hook.harness.app.job_queue.jobs()}
        assert names == {"prune-updates"}, names
        user = hook.fake.user(RESIDENTS[0], language_code="de")
        response, calls = await hook.deliver(hook.fake.message_update(user, "/start"))
        assert response.status_code == 200 and len(calls) >= 1
