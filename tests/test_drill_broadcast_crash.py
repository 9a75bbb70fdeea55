"""Fault drill "crash during a broadcast": the bot (`todo-bot run`, polling and the sender in
one process, as in production) is killed with SIGKILL at random points of a broadcast and
started again, several runs in a row, some killed twice in one run.

The kill points are drawn from a seeded random generator (the seed is reported; set
DRILL_SEED to replay a run). Each broadcast goes out against the fake Bot API, which
answers every sendMessage a little late, so that some messages are always in flight when
the process dies. After each kill the test waits until the fake has answered what the dead
process left in flight, notes which recipients Telegram accepted but the outbox does not
record as sent (those are the only ones that may get the message twice), lets the dead
process's lease run out (it would after its 10 s; the test expires it at once) and starts
the bot again. Checked per run: everybody got the message, duplicates only among what was
in flight at a kill, the outbox's counters agree with its rows, nothing recorded as sent
that Telegram did not accept."""

from __future__ import annotations

import asyncio
import os
import random
import signal
import sys
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from domain import broadcasts
from domain.broadcasts import Audience
from storage.uow import Database
from tests.delivery_helpers import (
    ADMIN,
    add_many_residents,
    broadcast_row,
    counters_match_rows,
    expire_lease,
    recipients,
)
from tests.drills import report
from tests.fake_telegram import ApiCall, FakeTelegram
from tests.harness import until as poll_until
from tests.test_cli import cli_env

FIRST_CHAT, AUDIENCE = 7600, 60
#: Messages per second (the free limit is 30) and how late the fake answers each message:
#: a broadcast takes about three seconds and a few messages are always in flight.
RATE = 30
SEND_DELAY = 0.15
#: Kills per run: on SQLite four runs, the second killed twice; on PostgreSQL one run killed
#: twice (every restart of the process costs seconds, and the drill must stay short).
KILLS = {"sqlite": (1, 2, 1, 1), "postgresql": (2,)}
SEED = int(os.environ.get("DRILL_SEED") or 20261124)
BOOT_TIMEOUT = 40.0
WAIT = 40.0


@dataclass
class Bot:
    """`todo-bot run` as a process of its own; its output goes to a file."""

    cwd: Path
    env: dict[str, str]
    fake: FakeTelegram
    starts: int = 0
    #: How many calls the fake had answered when the current process was started.
    started_at: int = 0
    process: asyncio.subprocess.Process | None = None
    logs: list[Path] = field(default_factory=list)

    async def start(self) -> None:
        self.starts += 1
        self.started_at = len(self.fake.calls)
        log = self.cwd / f"bot-{self.starts}.log"
        self.logs.append(log)
        with log.open("wb") as out:
            self.process = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "bot",
                "run",
                cwd=self.cwd,
                env=self.env,
                stdout=out,
                stderr=asyncio.subprocess.STDOUT,
            )

    @property
    def alive(self) -> bool:
        return self.process is not None and self.process.returncode is None

    async def kill(self) -> None:
        assert self.process is not None and self.process.returncode is None, self.output()
        self.process.send_signal(signal.SIGKILL)
        await self.process.wait()

    async def stop(self) -> int | None:
        if self.process is None or self.process.returncode is not None:
            return None
        self.process.send_signal(signal.SIGTERM)
        try:
            return await asyncio.wait_for(self.process.wait(), 20)
        except TimeoutError:
            self.process.kill()
            await self.process.wait()
            raise

    def output(self, last: int = 4000) -> str:
        text = "\n".join(f"--- {p.name}\n{p.read_text(errors='replace')}" for p in self.logs)
        return text[-last:]

    async def until(self, what: str, check: Callable[[], Any], timeout: float = WAIT) -> None:  # noqa: ASYNC109
        """Poll an observable condition (sync or async) until it holds; fail at once if the
        bot exits, or after `timeout`, with its output."""

        def exited() -> str | None:
            if self.process is None or self.process.returncode is not None:
                return "the bot exited"
            return None

        await poll_until(what, check, timeout, abort=exited, context=self.output)


@asynccontextmanager
async def running_bot(cwd: Path, fake: FakeTelegram, db_url: str) -> AsyncIterator[Bot]:
    env = cli_env(
        TELEGRAM_BOT_TOKEN=fake.token,
        TELEGRAM_API_URL=fake.url,
        DATABASE_URL=db_url,
        BROADCAST_MAX_RATE=str(RATE),
        DIGEST_GRACE_HOURS="0",
        PYTHONUNBUFFERED="1",
        LOG_FORMAT="text",
    )
    bot = Bot(cwd, env, fake)
    try:
        yield bot
    finally:
        await bot.stop()


@dataclass
class Kill:
    after: int  # messages the killed process had got through (the random kill point)
    accepted: int  # messages of the broadcast Telegram had accepted in all at the kill
    in_flight: set[int]  # accepted by then, but not recorded as sent


@dataclass
class Run:
    number: int
    marker: str
    broadcast_id: int = 0
    kills: list[Kill] = field(default_factory=list)
    finished_after: float = 0.0  # seconds from the last restart until the broadcast was done


async def test_broadcast_survives_sigkill_at_random_points(
    tmp_path: Path, fake: FakeTelegram, db_url: str
) -> None:
    backend = db_url.split(":", 1)[0].split("+", 1)[0]
    rng = random.Random(SEED)
    database = Database(db_url)
    try:
        await add_many_residents(database, fake, FIRST_CHAT, AUDIENCE)
        audience = set(range(FIRST_CHAT, FIRST_CHAT + AUDIENCE))

        async def late_send(params: dict[str, Any]) -> Any:
            await asyncio.sleep(SEND_DELAY)  # Telegram takes a moment to answer
            return fake._api_sendmessage(params, {})

        fake.set_handler("sendMessage", late_send)
        runs: list[Run] = []
        async with running_bot(tmp_path, fake, db_url) as bot:
            for number, kills in enumerate(KILLS[backend], start=1):
                run = Run(number, f"Absturz-Probe {number}")
                runs.append(run)
                await one_run(run, kills, rng, bot, fake, database)
            await bot.until("the bot to poll", lambda: fake.waiting_polls > 0)
            assert await bot.stop() in (0, -signal.SIGTERM, 128 + signal.SIGTERM)
        assert "Traceback" not in bot.output(last=10**9), bot.output()

        runs_text = f"{len(runs)} run{'s' if len(runs) > 1 else ''}"
        lines = [f"tried: seed {SEED}; {runs_text} of a broadcast to {AUDIENCE} at "]
        lines[0] += f"{RATE}/s (each send answered after {SEND_DELAY} s), SIGKILL, restart"
        for run in runs:
            per_chat = sent_per_chat(fake, run.marker)
            duplicates = sum(n - 1 for n in per_chat.values())
            missing = audience - set(per_chat)
            in_flight = [len(k.in_flight) for k in run.kills]
            allowed = set().union(*(k.in_flight for k in run.kills))
            row = await counters_match_rows(database, run.broadcast_id)
            lines.append(
                f"run {run.number}: killed after {' / '.join(str(k.after) for k in run.kills)} "
                f"messages of the process ({' / '.join(str(k.accepted) for k in run.kills)} of "
                f"{AUDIENCE} through); in flight at the kills {in_flight}; duplicates "
                f"{duplicates}, missing {len(missing)}; done {run.finished_after:.2f} s after "
                f"the last restart; outbox {row.state} sent/failed/skipped "
                f"{row.sent}/{row.failed}/{row.skipped}"
            )
            assert missing == set(), (run.number, sorted(missing))
            twice = {c for c, n in per_chat.items() if n > 1}
            assert twice <= allowed, (run.number, twice - allowed)
            assert duplicates <= sum(in_flight), (run.number, duplicates, in_flight)
            assert (row.state, row.sent, row.failed, row.skipped) == ("done", AUDIENCE, 0, 0)
        report(f"broadcast crash ({backend})", *lines)
    finally:
        fake.set_handler("sendMessage", None)
        await database.dispose()


def sent_per_chat(fake: FakeTelegram, marker: str) -> Counter[int]:
    """The broadcast as Telegram accepted it, per chat."""
    return Counter(int(c.chat_id or 0) for c in fake.calls if c.ok and is_of(c, marker))


def is_of(call: ApiCall, marker: str) -> bool:
    return call.method == "sendMessage" and marker in (call.visible_text or "")


async def recorded_sent(database: Database, broadcast_id: int) -> set[int]:
    return {c for c, r in (await recipients(database, broadcast_id)).items() if r.state == "sent"}


async def one_run(
    run: Run, kills: int, rng: random.Random, bot: Bot, fake: FakeTelegram, database: Database
) -> None:
    """One broadcast, killed `kills` times at random points, finished by a restart."""
    async with database.uow() as uow:
        run.broadcast_id = await broadcasts.create_announcement(
            uow, requested_by=ADMIN, html=f"<b>{run.marker}</b>", audience=Audience("all")
        )
    if not bot.alive:  # the first run: the bot starts with the broadcast queued
        await bot.start()
    started_at = bot.started_at
    for n in range(kills):
        # A random point: after so many messages of the process now running (at most half
        # of what is left, so that every kill finds it sending).
        left = AUDIENCE - len(sent_per_chat(fake, run.marker))
        point = rng.randint(2, AUDIENCE // 2) if n == 0 else rng.randint(1, left // 2)
        count = 0

        def reached(call: ApiCall, marker: str = run.marker, point: int = point) -> bool:
            nonlocal count
            count += call.ok and is_of(call, marker)
            return count >= point

        watch = asyncio.ensure_future(
            fake.wait_for_call(reached, since=started_at, timeout=BOOT_TIMEOUT + WAIT)
        )
        await bot.until(f"{point} messages of run {run.number}", watch.done, BOOT_TIMEOUT + WAIT)
        await watch
        await bot.kill()
        # What the dead process had in flight is still answered (and then recorded by the
        # fake); only now can it be told what Telegram accepted and the outbox does not know.
        await fake.wait_until_idle(timeout=10)
        accepted = set(sent_per_chat(fake, run.marker))
        recorded = await recorded_sent(database, run.broadcast_id)
        assert recorded <= accepted, "marked sent, but Telegram never accepted it"
        run.kills.append(Kill(point, len(accepted), accepted - recorded))
        await expire_lease(database)  # the dead process's lease runs out
        await bot.start()
        started_at = bot.started_at
    restarted = time.monotonic()

    async def done() -> bool:
        return (await broadcast_row(database, run.broadcast_id)).state == "done"

    await bot.until(f"run {run.number} to finish", done, BOOT_TIMEOUT + WAIT)
    run.finished_after = time.monotonic() - restarted
