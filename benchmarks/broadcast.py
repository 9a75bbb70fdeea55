"""Broadcast benchmark: the sender against the fake Bot API server with a server-side rate
limit that answers 429 like Telegram (strict sliding one-second window).

    python -m benchmarks.broadcast            # everything (about 8 minutes)
    python -m benchmarks.broadcast --quick    # shorter runs (about 2 minutes)
    python -m benchmarks.broadcast --only rate30,paid

Prints, per scenario: recipients, messages per second achieved as a share of the allowed
rate, 429s, peak memory of the sending process, and duplicates / missing recipients. The
baseline, measured in the same run against the same server, is python-telegram-bot's own
send path (`Bot.send_message`, with its AIORateLimiter at 30/s, and 8 in flight without a
limiter for the paid rate).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from contextlib import closing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

ROOT = Path(__file__).resolve().parent.parent
TEXT = (
    "<b>Neues vom InnoLab</b>\nDie nächste Runde der Problemlösungsallianzen startet am "
    "Montag. Alle Infos und die Aufzeichnungen: www.todo-dortmund.de"
)
FIRST_CHAT = 10_000_000


def free_port() -> int:
    with closing(socket.socket()) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# --------------------------------------------------------------------------- processes


class FakeProcess:
    """A fake Bot API server in a process of its own (its own core): `python -m` with these
    arguments; it prints `ready URL TOKEN` once it listens on `port`."""

    def __init__(self, *args: str, port: int) -> None:
        self.port = port
        self.process = subprocess.Popen(
            [sys.executable, "-m", *args], cwd=ROOT, stdout=subprocess.PIPE, text=True
        )
        assert self.process.stdout is not None
        line = self.process.stdout.readline().split()
        if not line or line[0] != "ready":
            raise RuntimeError("the fake Bot API server did not start")
        self.url, self.token = line[1], line[2]

    async def call(self, method: str, **params: Any) -> Any:
        """One of the fake's methods (the bench* ones too); its result."""
        import aiohttp

        async with (
            aiohttp.ClientSession() as session,
            session.post(f"{self.url}/bot{self.token}/{method}", json=params) as response,
        ):
            body = await response.json()
            if not body.get("ok"):
                raise RuntimeError(f"{method}: {body}")
            return body["result"]

    def stop(self) -> None:
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(10)
        except subprocess.TimeoutExpired:
            self.process.kill()


class FakeServer(FakeProcess):
    """benchmarks/fakebot.py in a process of its own."""

    def __init__(self, rate: int | None, delay_ms: float = 0.0) -> None:
        port = free_port()
        args = ["benchmarks.fakebot", "--port", str(port), "--delay-ms", str(delay_ms)]
        if rate:
            args += ["--rate", str(rate)]
        super().__init__(*args, port=port)


def peak_rss_mb(pid: int) -> float | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


@dataclass
class ChildRun:
    exit_code: int | None
    peak_mb: float
    summary: dict[str, Any] = field(default_factory=dict)


def run_child(
    args: list[str], *, kill_after_sent: int | None = None, fake: FakeServer | None = None
) -> ChildRun:
    """The sender in a process of its own (so its memory is its own). With
    `kill_after_sent`, SIGKILL it once the fake has received that many messages."""
    process = subprocess.Popen(
        [sys.executable, "-m", "benchmarks.broadcast", "--child", *args],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
    )
    peak = 0.0
    while process.poll() is None:
        peak = max(peak, peak_rss_mb(process.pid) or 0.0)
        if kill_after_sent is not None and fake is not None:
            stats = asyncio.run(fake.call("benchStats"))
            if stats["messages"] >= kill_after_sent:
                process.kill()
                break
        time.sleep(0.1)
    out, _ = process.communicate()
    summary = json.loads(out.strip().splitlines()[-1]) if out.strip() else {}
    return ChildRun(process.returncode, peak, summary)


# --------------------------------------------------------------------------- the child


async def child(args: argparse.Namespace) -> None:
    from bot.delivery.api import BotApi
    from bot.delivery.sender import Sender, SenderConfig
    from bot.rendering import Renderer
    from storage.uow import Database

    # As the bot's Delivery opens it (Database.beside): on SQLite in aiosqlite's thread.
    database = Database(args.db, inline=False)
    api = BotApi(args.api, args.token, connections=min(256, max(8, int(args.rate))))
    config = SenderConfig(rate=args.rate, paid=args.paid, lease_ttl=args.lease_ttl, backoff=0.2)
    sender = Sender(database, Renderer(ZoneInfo("Europe/Berlin")), api, "bench_bot", config)
    started = time.perf_counter()
    while True:  # a killed predecessor's lease has to expire before this one may send
        await sender.drain(timeout=3600)
        async with database.uow() as uow:
            current = await uow.outbox.get(args.broadcast)
        if current is None or current.state in ("done", "cancelled"):
            break
        await asyncio.sleep(0.5)
    elapsed = time.perf_counter() - started
    await sender.close()
    await api.close()
    async with database.uow() as uow:
        broadcast = await uow.outbox.get(args.broadcast)
        assert broadcast is not None
        summary = {
            "state": broadcast.state,
            "sent": broadcast.sent,
            "failed": broadcast.failed,
            "skipped": broadcast.skipped,
            "elapsed": elapsed,
            "sends_this_run": sender.stats["sent"],
            "errors_429": sender.stats["error_429"],
            "send_window": (sender.last_sent_at or 0) - (sender.first_sent_at or 0),
        }
    await database.dispose()
    print(json.dumps(summary), flush=True)


# --------------------------------------------------------------------------- scenarios


async def prepare(db_path: Path, recipients: int) -> tuple[str, int]:
    """A migrated SQLite database with `recipients` residents and one announcement."""
    from sqlalchemy import insert

    from domain.broadcasts import Audience, create_announcement
    from storage.migrate import upgrade
    from storage.models import Resident, utcnow
    from storage.uow import Database

    url = f"sqlite+aiosqlite:///{db_path}"
    database = Database(url)
    await upgrade(database.engine)
    now = utcnow()
    async with database.uow() as uow, uow.write():
        for start in range(0, recipients, 20_000):
            rows = [
                {
                    "telegram_id": FIRST_CHAT + n,
                    "language": "de" if n % 3 else "en",
                    "pseudonym": 1000 + n,
                    "created_at": now,
                }
                for n in range(start, min(recipients, start + 20_000))
            ]
            await uow.session.execute(insert(Resident), rows)
    async with database.uow() as uow:
        broadcast_id = await create_announcement(
            uow, requested_by=1, html=TEXT, audience=Audience("all")
        )
    await database.dispose()
    return url, broadcast_id


@dataclass
class Row:
    scenario: str
    sender: str
    recipients: int
    allowed: float
    achieved: float
    errors_429: int
    peak_mb: float | None
    duplicates: int
    missing: int

    @property
    def share(self) -> float:
        return self.achieved / self.allowed if self.allowed else 0.0


async def run_ours(name: str, recipients: int, allowed: int, *, paid: bool) -> Row:
    fake = FakeServer(allowed)
    try:
        with tempfile.TemporaryDirectory() as tmp:
            url, broadcast = await prepare(Path(tmp) / "bench.sqlite3", recipients)
            run = await asyncio.to_thread(
                run_child,
                [
                    "--db",
                    url,
                    "--api",
                    fake.url,
                    "--token",
                    fake.token,
                    "--rate",
                    str(allowed),
                    "--broadcast",
                    str(broadcast),
                    *(["--paid"] if paid else []),
                ],
            )
            stats = await fake.call("benchStats")
        # Rate while sending: from the first to the last delivery (start-up and the final
        # bookkeeping are in "elapsed" too, printed separately).
        window = run.summary["send_window"] or run.summary["elapsed"]
        achieved = (stats["messages"] - 1) / window if stats["messages"] > 1 else 0.0
        if stats.get("tightest"):
            tightest = stats["tightest"]
            print(
                f"{name}: tightest {allowed + 1} sends within {tightest['seconds']:.4f} s, "
                f"{tightest['after']:.1f} s after the first",
                file=sys.stderr,
            )
        return Row(
            name,
            "to:DO sender",
            recipients,
            allowed,
            achieved,
            stats["rate_limited"],
            run.peak_mb,
            stats["duplicates"],
            recipients - stats["chats"],
        )
    finally:
        fake.stop()


async def run_ptb(name: str, messages: int, allowed: int, *, in_flight: int, limiter: bool) -> Row:
    """The baseline: python-telegram-bot's Bot.send_message against the same server."""
    import logging

    from telegram import Bot
    from telegram.ext import AIORateLimiter, ExtBot
    from telegram.request import HTTPXRequest

    # AIORateLimiter logs every 429 with a traceback; we count them instead.
    logging.getLogger("telegram.ext.AIORateLimiter").setLevel(logging.CRITICAL)
    fake = FakeServer(allowed)
    try:
        request = HTTPXRequest(connection_pool_size=max(8, in_flight))
        bot: Bot
        if limiter:
            bot = ExtBot(
                fake.token,
                base_url=f"{fake.url}/bot",
                request=request,
                rate_limiter=AIORateLimiter(overall_max_rate=allowed, max_retries=0),
            )
        else:
            bot = Bot(fake.token, base_url=f"{fake.url}/bot", request=request)
        errors_429 = 0
        queue: asyncio.Queue[int] = asyncio.Queue()
        for n in range(messages):
            queue.put_nowait(FIRST_CHAT + n)

        async def worker() -> None:
            nonlocal errors_429
            from telegram.error import RetryAfter

            while not queue.empty():
                chat = queue.get_nowait()
                while True:
                    try:
                        await bot.send_message(chat, TEXT, parse_mode="HTML")
                        break
                    except RetryAfter as exc:
                        errors_429 += 1
                        delay = exc.retry_after
                        await asyncio.sleep(
                            delay if isinstance(delay, int | float) else delay.total_seconds()
                        )

        async with bot:
            started = time.perf_counter()
            await asyncio.gather(*(worker() for _ in range(in_flight)))
            elapsed = time.perf_counter() - started
        stats = await fake.call("benchStats")
        label = "python-telegram-bot" + (
            " + AIORateLimiter" if limiter else f", {in_flight} in flight"
        )
        return Row(
            name,
            label,
            messages,
            allowed,
            stats["messages"] / elapsed,
            errors_429,
            None,
            stats["duplicates"],
            messages - stats["chats"],
        )
    finally:
        fake.stop()


async def run_crash(recipients: int, allowed: int) -> Row:
    """SIGKILL the sender half-way, start a new one: who got it twice, who never?"""
    fake = FakeServer(allowed)
    try:
        with tempfile.TemporaryDirectory() as tmp:
            url, broadcast = await prepare(Path(tmp) / "bench.sqlite3", recipients)
            args = [
                "--db",
                url,
                "--api",
                fake.url,
                "--token",
                fake.token,
                "--rate",
                str(allowed),
                "--broadcast",
                str(broadcast),
                "--paid",
                "--lease-ttl",
                "2",
            ]
            first = await asyncio.to_thread(
                run_child, args, kill_after_sent=recipients // 2, fake=fake
            )
            assert first.exit_code != 0, "the first sender should have been killed"
            second = await asyncio.to_thread(run_child, args)
            stats = await fake.call("benchStats")
        return Row(
            "crash half-way, restart",
            "to:DO sender",
            recipients,
            allowed,
            0.0,
            stats["rate_limited"],
            max(first.peak_mb, second.peak_mb),
            stats["duplicates"],
            recipients - stats["chats"],
        )
    finally:
        fake.stop()


def print_table(rows: list[Row]) -> None:
    header = (
        "scenario",
        "sender",
        "recipients",
        "allowed/s",
        "achieved/s",
        "share",
        "429s",
        "peak MB",
        "dupes",
        "missing",
    )
    lines = [header]
    for r in rows:
        lines.append(
            (
                r.scenario,
                r.sender,
                f"{r.recipients:,}",
                f"{r.allowed:g}",
                f"{r.achieved:.1f}" if r.achieved else "–",
                f"{r.share:.1%}" if r.achieved else "–",
                str(r.errors_429),
                f"{r.peak_mb:.0f}" if r.peak_mb else "–",
                str(r.duplicates),
                str(r.missing),
            )
        )
    widths = [max(len(line[i]) for line in lines) for i in range(len(header))]
    for n, line in enumerate(lines):
        print("  ".join(cell.ljust(w) for cell, w in zip(line, widths, strict=True)))
        if n == 0:
            print("  ".join("-" * w for w in widths))


async def main(args: argparse.Namespace) -> None:
    quick = args.quick
    only = set(args.only.split(",")) if args.only else {"rate30", "paid", "memory", "crash"}
    rows: list[Row] = []
    if "rate30" in only:
        seconds = 30 if quick else 180
        rows.append(await run_ours(f"30/s for {seconds} s", 30 * seconds, 30, paid=False))
        rows.append(
            await run_ptb(
                f"30/s for {seconds} s", 30 * min(seconds, 60), 30, in_flight=8, limiter=True
            )
        )
    if "paid" in only:
        rows.append(await run_ours("1000/s paid", 20_000, 1000, paid=True))
        rows.append(await run_ptb("1000/s paid", 5_000, 1000, in_flight=8, limiter=False))
    if "memory" in only:
        for recipients in (20_000, 50_000 if quick else 200_000):
            rows.append(await run_ours(f"memory {recipients:,}", recipients, 1000, paid=True))
    if "crash" in only:
        rows.append(await run_crash(4_000 if quick else 10_000, 500))
    print()
    print_table(rows)


def parse() -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--only", help="comma-separated: rate30,paid,memory,crash")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--db", help=argparse.SUPPRESS)
    parser.add_argument("--api", help=argparse.SUPPRESS)
    parser.add_argument("--token", help=argparse.SUPPRESS)
    parser.add_argument("--rate", type=float, default=30, help=argparse.SUPPRESS)
    parser.add_argument("--paid", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--broadcast", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--lease-ttl", type=float, default=10.0, help=argparse.SUPPRESS)
    return parser.parse_args()


if __name__ == "__main__":
    arguments = parse()
    os.environ.setdefault("PYTHONHASHSEED", "0")
    asyncio.run(child(arguments) if arguments.child else main(arguments))
