"""Resident set size of a real `todo-bot run` process (polling mode, SQLite with the sample
data) against the fake Bot API server in a process of its own.

    python -m benchmarks.memory                   # 30 s of the 200,000-recipient broadcast
    python -m benchmarks.memory --quick           # 10 s of it
    python -m benchmarks.memory --send-seconds 0  # the whole broadcast (about 4 minutes)

Three moments, read from /proc/<pid>/status (VmRSS now, VmHWM the peak so far):

(a) after start: the first update (/start) answered;
(b) after the update-throughput stream of benchmarks/updates.py (its fake's benchLoad:
    200 residents × 9 steps = 1,800 updates queued at once) has been answered;
(c) during a broadcast to 200,000 residents (inserted in bulk, the announcement queued in
    the database as the /broadcast dialogue does; the bot's own sender picks it up at
    BROADCAST_MAX_RATE=1000 with BROADCAST_PAID=true), sampled every 0.25 s while it sends,
    for --send-seconds (then the bot is stopped; the peak is the peak so far).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from benchmarks.updates import FIRST_RESIDENT, WARMUP_RESIDENT, Server

ROOT = Path(__file__).resolve().parent.parent
TARGET_MB = 150.0
RECIPIENTS = 200_000
FIRST_RECIPIENT = 70_000_000
STREAM_RESIDENTS = 200
TEXT = (
    "<b>Neues vom InnoLab</b>\nDie nächste Runde der Problemlösungsallianzen startet am "
    "Montag. Alle Infos und die Aufzeichnungen: www.todo-dortmund.de"
)


def status_mb(pid: int) -> dict[str, float]:
    """VmRSS and VmHWM of a process in MB (empty once it is gone)."""
    values: dict[str, float] = {}
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            key, _, rest = line.partition(":")
            if key in ("VmRSS", "VmHWM"):
                values[key] = int(rest.split()[0]) / 1024
    except OSError:
        return {}
    return values


def bot_env(**settings: str) -> dict[str, str]:
    """The outer environment without any bot setting (none may leak in), plus `settings`."""
    from bot.settings import Settings

    names = {name.upper() for name in Settings.model_fields}
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.upper().startswith("TELEGRAM_") and k.upper() not in names
    }
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH")) if p)
    env.update(settings)
    return env


@dataclass
class Row:
    moment: str
    rss: float
    peak: float
    note: str = ""


class BotProcess:
    """`python -m bot run` in a folder of its own, output into a log file."""

    def __init__(self, cwd: Path, env: dict[str, str]) -> None:
        self.log_path = cwd / "bot.log"
        self._log: IO[str] = self.log_path.open("w")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "bot", "run"],
            cwd=cwd,
            env=env,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            text=True,
        )

    @property
    def pid(self) -> int:
        return self.process.pid

    def check(self) -> None:
        if self.process.poll() is not None:
            raise RuntimeError(
                f"the bot exited with {self.process.returncode}:\n"
                + self.log_path.read_text()[-3000:]
            )

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self._log.close()


async def wait_for(
    check: Any, what: str, bot: BotProcess, limit: float = 120.0, every: float = 0.1
) -> Any:
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        bot.check()
        result = await check()
        if result:
            return result
        await asyncio.sleep(every)
    raise RuntimeError(f"timed out waiting for {what}")


def item_ids(db: Path) -> list[int]:
    with sqlite3.connect(db) as connection:
        return sorted(int(r[0]) for r in connection.execute("SELECT id FROM items"))


async def queue_broadcast(url: str, recipients: int) -> int:
    """`recipients` residents in bulk, and an announcement to everyone."""
    from sqlalchemy import insert

    from domain.broadcasts import Audience, create_announcement
    from storage.models import Resident, utcnow
    from storage.uow import Database

    database = Database(url)
    now = utcnow()
    try:
        async with database.uow() as uow, uow.write():
            for start in range(0, recipients, 20_000):
                rows = [
                    {
                        "telegram_id": FIRST_RECIPIENT + n,
                        "language": "de" if n % 3 else "en",
                        "pseudonym": 20_000_000 + n,
                        "created_at": now,
                    }
                    for n in range(start, min(recipients, start + 20_000))
                ]
                await uow.session.execute(insert(Resident), rows)
        async with database.uow() as uow:
            return await create_announcement(
                uow, requested_by=1, html=TEXT, audience=Audience("all")
            )
    finally:
        await database.dispose()


async def run(args: argparse.Namespace) -> list[Row]:
    from bot.settings import normalise_database_url

    send_seconds = (
        args.send_seconds if args.send_seconds is not None else (10 if args.quick else 30)
    )
    rows: list[Row] = []
    server = Server()
    try:
        with tempfile.TemporaryDirectory() as folder:
            tmp = Path(folder)
            db = tmp / "bot.sqlite3"
            url = normalise_database_url(f"sqlite:///{db}")
            env = bot_env(
                TELEGRAM_BOT_TOKEN=server.token,
                TELEGRAM_API_URL=server.url,
                DATABASE_URL=url,
                BROADCAST_PAID="true",
                BROADCAST_MAX_RATE="1000",
                QUIET_HOURS="",
                LOG_FORMAT="text",
            )
            imported = subprocess.run(  # noqa: ASYNC221 - before anything else runs
                [sys.executable, "-m", "bot", "import", "--sample"],
                cwd=tmp,
                env=env,
                capture_output=True,
                text=True,
                check=False,
            )
            if imported.returncode != 0:
                raise RuntimeError(f"import failed: {imported.stderr}")
            items = item_ids(db)
            bot = BotProcess(tmp, env)
            try:
                rows += await measure(server, bot, url, items, send_seconds)
            finally:
                bot.stop()
    finally:
        server.stop()
    return rows


async def sent(server: Server, since: float) -> int:
    stats = await server.call("benchStats", since=since)
    return int(stats["calls"].get("sendMessage", 0))


async def measure(
    server: Server, bot: BotProcess, url: str, items: list[int], send_seconds: float
) -> list[Row]:
    rows: list[Row] = []
    # (a) the first update answered
    started = time.time()
    await server.call("benchLoad", first=WARMUP_RESIDENT, residents=1, items=items, steps=[0])

    async def answered() -> bool:
        return await sent(server, started) >= 1

    await wait_for(answered, "the answer to /start", bot)
    boot = time.time() - started
    await asyncio.sleep(0.5)
    now = status_mb(bot.pid)
    rows.append(Row("(a) after start, first update answered", now["VmRSS"], now["VmHWM"]))
    print(f"(a) answered {boot:.1f} s after start: {now}", file=sys.stderr)

    # (b) the update-throughput stream
    since = time.time()
    total = await server.call(
        "benchLoad", first=FIRST_RESIDENT, residents=STREAM_RESIDENTS, items=items
    )
    highest = 0.0
    last_count, quiet_since = -1, time.monotonic()

    async def settled() -> bool:
        nonlocal last_count, quiet_since, highest
        highest = max(highest, status_mb(bot.pid).get("VmRSS", 0.0))
        stats = await server.call("benchStats", since=since)
        count = sum(stats["calls"].values())
        if count != last_count or stats["pending"]:
            last_count, quiet_since = count, time.monotonic()
            return False
        return time.monotonic() - quiet_since > 1.0

    await wait_for(settled, "the stream to be answered", bot, limit=600)
    stats = await server.call("benchStats", since=since)
    seconds = (stats["last_call"] or since) - (stats["first_handout"] or since)
    now = status_mb(bot.pid)
    rows.append(
        Row(
            f"(b) after the update stream ({total:,} updates, {STREAM_RESIDENTS} residents)",
            now["VmRSS"],
            now["VmHWM"],
            f"{sum(stats['calls'].values()):,} calls in {seconds:.1f} s; max sampled "
            f"{highest:.0f} MB",
        )
    )
    print(f"(b) {stats['calls']} in {seconds:.1f} s, errors {stats['errors']}", file=sys.stderr)

    # (c) a broadcast to 200,000 residents
    queued = time.monotonic()
    broadcast = await queue_broadcast(url, RECIPIENTS)
    print(f"(c) {RECIPIENTS:,} residents and broadcast {broadcast} queued", file=sys.stderr)
    since = time.time()

    async def sending() -> bool:
        return await sent(server, since) > 0

    await wait_for(sending, "the broadcast to start", bot, limit=120)
    first_send = time.monotonic()
    highest = 0.0
    count = 0
    deadline = first_send + send_seconds if send_seconds > 0 else float("inf")
    asked = 0.0
    while time.monotonic() < deadline:
        bot.check()
        highest = max(highest, status_mb(bot.pid).get("VmRSS", 0.0))
        if time.monotonic() - asked >= 1.0:  # the fake counts over all its calls: not too often
            asked = time.monotonic()
            count = await sent(server, since)
            if count >= RECIPIENTS:
                break
        await asyncio.sleep(0.25)
    count = await sent(server, since)
    elapsed = time.monotonic() - first_send
    now = status_mb(bot.pid)
    whole = count >= RECIPIENTS
    rows.append(
        Row(
            f"(c) during a broadcast to {RECIPIENTS:,}",
            highest,
            now["VmHWM"],
            f"{count:,} sent in {elapsed:.0f} s ({count / elapsed:.0f}/s)"
            + ("" if whole else f", stopped after {send_seconds:g} s: peak so far")
            + f"; started {first_send - queued:.1f} s after queueing",
        )
    )
    return rows


def print_table(rows: list[Row]) -> None:
    print("| moment | RSS MB | peak (VmHWM) MB | target | note |")
    print("| --- | ---: | ---: | --- | --- |")
    for r in rows:
        met = "met" if max(r.rss, r.peak) < TARGET_MB else "NOT met"
        print(f"| {r.moment} | {r.rss:.0f} | {r.peak:.0f} | < {TARGET_MB:g} MB: {met} | {r.note} |")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="10 s of the broadcast")
    parser.add_argument(
        "--send-seconds", type=float, help="how long the broadcast is watched (0: to the end)"
    )
    parser.add_argument("--json", help="also write the rows to this file")
    args = parser.parse_args()
    rows = asyncio.run(run(args))
    print()
    print_table(rows)
    if args.json:
        Path(args.json).write_text(
            json.dumps([{"moment": r.moment, "rss": r.rss, "peak": r.peak} for r in rows])
        )


if __name__ == "__main__":
    os.environ.setdefault("PYTHONHASHSEED", "0")
    main()
