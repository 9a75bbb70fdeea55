"""compose.yaml's topology as plain processes on one PostgreSQL database: two web replicas
(`todo-bot run --role web`) taking webhook POSTs alternately, two workers (`--role worker`,
one leads, one stands by) and the fake Bot API in this process. Residents start the bot and
press support buttons, one update reaches both replicas (a redelivery), and while a broadcast
goes out slowly the leading worker is killed with SIGKILL: the standby takes over and
finishes. Every update is handled once, everybody gets the broadcast, duplicates are at most
the messages that were in flight at the kill."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import time
from collections import Counter
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import text

from bot import callbacks as cb
from bot.settings import normalise_database_url
from bot.web import SECRET_HEADER
from domain.broadcasts import Audience, create_announcement
from storage.uow import Database
from tests.drills import report as drill_report
from tests.fake_telegram import FakeTelegram
from tests.harness import until as poll_until
from tests.test_cli import IN_CI, cli_env, postgres_cli_url, todo_bot
from tests.test_webhook import free_port

__all__ = ["postgres_cli_url"]  # the fixture, imported for this module

SECRET = "topology-Secret_1"
HOOK_URL = "https://bot.example.org/telegram/topology"
HOOK_PATH = "/telegram/topology"
RESIDENTS = list(range(8101, 8121))  # 20
BOOT_TIMEOUT = 40.0
TIMEOUT = 30.0
#: The fake answers every call this slowly while the broadcast goes out ...
CALL_DELAY = 0.3
#: ... and the workers send at most this many messages per second: it is mid-way for seconds.
BROADCAST_RATE = 4
MARKER = "Topologie-Rundbrief"
LOGS = "\n".join


@dataclass
class Process:
    """One `todo-bot run` process; its output goes to a file (no pipe to fill up)."""

    name: str
    port: int
    log: Path
    process: asyncio.subprocess.Process | None = None
    health: dict[str, Any] = field(default_factory=dict)

    @property
    def alive(self) -> bool:
        return self.process is not None and self.process.returncode is None

    def output(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""


async def start(proc: Process, cwd: Path, env: dict[str, str]) -> None:
    with proc.log.open("wb") as out:
        proc.process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "bot",
            "run",
            cwd=cwd,
            env=env,
            stdout=out,
            stderr=asyncio.subprocess.STDOUT,
        )


async def stop_all(procs: list[Process]) -> None:
    for proc in procs:
        if proc.alive:
            assert proc.process is not None
            proc.process.send_signal(signal.SIGTERM)
    for proc in procs:
        if proc.process is None:
            continue
        try:
            await asyncio.wait_for(proc.process.wait(), 15)
        except TimeoutError:
            proc.process.kill()
            await proc.process.wait()


async def until(what: str, check: Any, procs: list[Process], timeout: float = TIMEOUT) -> Any:  # noqa: ASYNC109
    """Poll `check()` (sync or async) until it returns something truthy; fail with the logs."""

    def logs() -> str:
        return LOGS(f"--- {p.name}\n{p.output()[-3000:]}" for p in procs)

    return await poll_until(what, check, timeout, interval=0.05, context=logs)


async def healthz(client: httpx.AsyncClient, proc: Process) -> dict[str, Any] | None:
    try:
        response = await client.get(f"http://127.0.0.1:{proc.port}/healthz", timeout=2.0)
    except httpx.HTTPError:
        return None
    if response.status_code != 200:
        return None
    body: dict[str, Any] = response.json()
    proc.health = body
    return body


@asynccontextmanager
async def topology(tmp_path: Path, fake: FakeTelegram, url: str) -> AsyncIterator[list[Process]]:
    common = {
        "TELEGRAM_BOT_TOKEN": fake.token,
        "TELEGRAM_API_URL": fake.url,
        "DATABASE_URL": url,
        "PYTHONUNBUFFERED": "1",
        "BROADCAST_MAX_RATE": str(BROADCAST_RATE),
    }
    procs: list[Process] = []
    for n in (1, 2):
        port = free_port()
        procs.append(Process(f"web-{n}", port, tmp_path / f"web-{n}.log"))
        env = cli_env(
            **common,
            ROLE="web",
            WEBHOOK_URL=HOOK_URL,
            WEBHOOK_SECRET=SECRET,
            WEBHOOK_LISTEN="127.0.0.1",
            WEBHOOK_PORT=str(port),
        )
        await start(procs[-1], tmp_path, env)
    for n in (1, 2):
        port = free_port()
        procs.append(Process(f"worker-{n}", port, tmp_path / f"worker-{n}.log"))
        env = cli_env(
            **common,
            ROLE="worker",
            WEBHOOK_LISTEN="127.0.0.1",
            HTTP_PORT=str(port),
            LEADER_RETRY_SECONDS="0.2",
        )
        await start(procs[-1], tmp_path, env)
    try:
        yield procs
    finally:
        await stop_all(procs)


@pytest.fixture
def topology_url(request: pytest.FixtureRequest) -> str:
    """A fresh, empty PostgreSQL database (tests/test_cli.py's `postgres_cli_url`)."""
    if not os.environ.get("TEST_DATABASE_URL") and not IN_CI:
        pytest.skip(
            "topology test (compose.yaml's processes) needs PostgreSQL: set TEST_DATABASE_URL "
            "(e.g. postgresql://postgres@127.0.0.1:5432/test) to run it"
        )
    url: str = request.getfixturevalue("postgres_cli_url")
    return url


async def test_compose_topology_as_processes(
    tmp_path: Path, topology_url: str, request: pytest.FixtureRequest
) -> None:
    postgres_cli_url = topology_url
    imported = todo_bot(tmp_path, "import", "--sample", DATABASE_URL=postgres_cli_url)
    assert imported.returncode == 0, imported.stderr
    database = Database(normalise_database_url(postgres_cli_url))
    async with AsyncExitStack() as stack:
        stack.push_async_callback(database.dispose)
        fake = await stack.enter_async_context(FakeTelegram())
        procs = await stack.enter_async_context(topology(tmp_path, fake, postgres_cli_url))
        web, workers = procs[:2], procs[2:]
        client = await stack.enter_async_context(httpx.AsyncClient(timeout=30.0))

        async def all_healthy() -> bool:
            for proc in procs:
                if not proc.alive:
                    raise AssertionError(f"{proc.name} exited:\n{proc.output()[-3000:]}")
            bodies = await asyncio.gather(*(healthz(client, p) for p in procs))
            return all(bodies) and sorted(p.health["leader"] for p in workers) == [
                "leader",
                "standby",
            ]

        await until(
            "all four processes healthy, one worker leading", all_healthy, procs, BOOT_TIMEOUT
        )
        assert fake.webhook is not None and fake.webhook["url"] == HOOK_URL
        assert fake.webhook["secret_token"] == SECRET

        posts: Counter[str] = Counter()

        async def post(update: dict[str, Any], replica: Process) -> None:
            response = await client.post(
                f"http://127.0.0.1:{replica.port}{HOOK_PATH}",
                json=update,
                headers={SECRET_HEADER: SECRET},
            )
            assert response.status_code == 200, (replica.name, response.text)
            posts[replica.name] += 1

        def new(update: dict[str, Any]) -> dict[str, Any]:
            update_id = fake.add_update(update)
            stored = fake.update(update_id)
            assert stored is not None
            return stored

        # ---- a stream of updates, alternately to both replicas
        async with database.uow() as uow:
            rows = await uow.session.execute(text("SELECT id FROM items ORDER BY id LIMIT 2"))
            item_a, item_b = rows.scalars().all()
        users = {rid: fake.user(rid, first_name=f"R{rid}", language_code="de") for rid in RESIDENTS}
        posted: list[int] = []

        async def resident_stream(rid: int) -> None:
            user = users[rid]
            turn = rid  # alternate: each resident's next update goes to the other replica
            wanted = [item_a] + ([item_b] if rid % 2 == 0 else [])
            hello = new(fake.message_update(user, "/start"))
            await post(hello, web[turn % 2])
            posted.append(int(hello["update_id"]))
            turn += 1
            for item in wanted:
                last = fake.last_message(rid)
                assert last is not None
                data = cb.SUPPORT.build(iid=item, on=1, origin="H")
                update = new(fake.callback_update(user, data, message_id=last["message_id"]))
                await post(update, web[turn % 2])
                posted.append(int(update["update_id"]))
                turn += 1

        # Residents in parallel (each one's updates in order, as Telegram delivers them).
        await asyncio.gather(*(resident_stream(rid) for rid in RESIDENTS[1:]))

        # A redelivery: the first resident's /start and support press reach both replicas.
        first = users[RESIDENTS[0]]
        start_update = new(fake.message_update(first, "/start"))
        await asyncio.gather(post(start_update, web[0]), post(start_update, web[1]))
        last = fake.last_message(RESIDENTS[0])
        assert last is not None
        press = new(
            fake.callback_update(
                first,
                cb.SUPPORT.build(iid=item_a, on=1, origin="H"),
                message_id=last["message_id"],
            )
        )
        await asyncio.gather(post(press, web[0]), post(press, web[1]))
        posted += [int(start_update["update_id"]), int(press["update_id"])]
        assert min(posts["web-1"], posts["web-2"]) >= len(RESIDENTS), posts

        # ---- every update handled exactly once
        async with database.uow() as uow:
            handled = set(
                (
                    await uow.session.execute(
                        text("SELECT update_id FROM processed_updates WHERE handled_at IS NOT NULL")
                    )
                ).scalars()
            )
            counts = dict(
                (await uow.session.execute(text("SELECT id, support_count FROM items"))).all()
            )
            supporters = dict(
                (
                    await uow.session.execute(
                        text("SELECT item_id, count(*) FROM supports GROUP BY item_id")
                    )
                ).all()
            )
        assert set(posted) <= handled
        expected = {item_a: len(RESIDENTS), item_b: sum(1 for r in RESIDENTS if r % 2 == 0)}
        assert supporters == expected
        assert {i: counts[i] for i in expected} == expected
        welcomes = Counter(
            int(c.chat_id)
            for c in fake.calls
            if c.method == "sendMessage" and c.ok and "Willkommen" in (c.visible_text or "")
        )
        assert welcomes == Counter(dict.fromkeys(RESIDENTS, 1)), welcomes

        # ---- a broadcast, slowly; the leader dies mid-way, the standby finishes it
        fake.call_delay = CALL_DELAY
        async with database.uow() as uow:
            await create_announcement(
                uow, requested_by=900001, html=f"<b>{MARKER}</b>", audience=Audience("all")
            )

        def delivered() -> list[int]:
            return [
                int(c.chat_id)
                for c in fake.calls
                if c.method == "sendMessage" and c.ok and MARKER in (c.visible_text or "")
            ]

        await until("a quarter of the broadcast", lambda: len(delivered()) >= 5, procs)
        [leader] = [w for w in workers if w.health.get("leader") == "leader"]
        body = await healthz(client, leader)
        assert body is not None and body["leader"] == "leader"
        [standby] = [w for w in workers if w is not leader]
        assert leader.process is not None
        sent_before_kill = len(delivered())
        leader.process.send_signal(signal.SIGKILL)
        killed_at = time.time()
        await leader.process.wait()
        # What the outbox says was sent when the leader died; everything else the dead leader
        # got through to Telegram was in flight (sent, not yet recorded) and goes out again.
        async with database.uow() as uow:
            recorded = (
                await uow.session.execute(
                    text("SELECT count(*) FROM broadcast_recipients WHERE state = 'sent'")
                )
            ).scalar_one()

        async def standby_leads() -> bool:
            body = await healthz(client, standby)
            return body is not None and body.get("leader") == "leader"

        await until("the standby to take the lead", standby_leads, [standby])
        elected_after = time.time() - killed_at
        # Answers to requests the dead leader had in flight still arrive; the standby can
        # only send once the dead sender's lease ran out.

        async def finished() -> bool:
            async with database.uow() as uow:
                pending = (
                    await uow.session.execute(
                        text("SELECT count(*) FROM broadcast_recipients WHERE state = 'pending'")
                    )
                ).scalar_one()
            return pending == 0 and set(delivered()) >= set(RESIDENTS)

        await until("the standby to finish the broadcast", finished, [standby], TIMEOUT)
        resumed_after = (
            min(
                (
                    c.timestamp
                    for c in fake.calls
                    if c.method == "sendMessage"
                    and MARKER in (c.visible_text or "")
                    and c.timestamp > killed_at + CALL_DELAY + 0.5
                ),
                default=killed_at,
            )
            - killed_at
        )

        # The dead leader's answers arrive within CALL_DELAY; the standby sends only after
        # the dead sender's lease ran out (seconds later).
        by_dead_leader = sum(
            1
            for c in fake.calls
            if c.method == "sendMessage"
            and c.ok
            and MARKER in (c.visible_text or "")
            and c.timestamp <= killed_at + CALL_DELAY + 0.5
        )
        in_flight = by_dead_leader - recorded
        received = Counter(delivered())
        duplicates = sum(n - 1 for n in received.values())
        assert set(received) == set(RESIDENTS)
        assert 0 <= duplicates <= in_flight, (duplicates, in_flight, recorded)
        report = (
            f"topology: leader killed after {sent_before_kill}/{len(RESIDENTS)} messages; "
            f"standby elected after {elected_after:.2f} s, sending again after "
            f"{resumed_after:.2f} s; in flight at the kill {in_flight}, duplicates {duplicates}"
        )
        drill_report("leader killed during a broadcast", report)
        request.node.user_properties.append(("topology", report))
        assert standby.alive and all(p.alive for p in web)
        for proc in procs:
            if proc is not leader:
                assert "Traceback" not in proc.output(), proc.output()[-3000:]
