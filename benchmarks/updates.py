"""Update throughput: the same stream of updates from many residents, fetched with
getUpdates long polling from the fake Bot API server, handled by

* a bare python-telegram-bot Application (no database) that answers each update with as
  many sendMessage / editMessageText / answerCallbackQuery calls as our bot makes for that
  kind of update (counted in a warm-up pass), once sequentially and once with
  `concurrent_updates=64` (the baseline: python-telegram-bot as it ships), and once more
  sequentially with the garbage collector set as our bot sets it (`bot.app.GC_THRESHOLDS`),
  which shows what that setting alone is worth, and
* our bot (`build_application`, sample data imported, UPDATE_CONCURRENCY default) on SQLite
  and, with --postgres, on PostgreSQL (database `todo_bench_updates`, created and dropped).

    python -m benchmarks.updates                 # 200 residents, 1,800 updates per variant
    python -m benchmarks.updates --quick         # 60 residents
    python -m benchmarks.updates --postgres postgresql://postgres@127.0.0.1:5432/postgres
    python -m benchmarks.updates --concurrency 1,8,32,64   # choose UPDATE_CONCURRENCY
    python -m benchmarks.updates --rounds 5      # each variant 5 times (default 3, quick 1)

Each resident: /start, main menu button, item list, item card, support, search button,
search text, comment button, comment text. The stream is queued in the fake before the
first getUpdates hands any of it out; "seconds" runs from the first update handed out to
the last Bot API call (both timestamps taken by the fake, in a process of its own, so the
bot's process is the only one doing the bot's work). Ratios are to the bare applications
measured in the same run. On a shared 2-core machine one variant's rate moved by a fifth
from run to run, so every variant runs `--rounds` times, interleaved (all variants once,
then all again); the table shows the median round of each, and for the ratios the median
over the rounds of the ratio within each round.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import json
import os
import signal
import statistics
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from benchmarks.broadcast import FakeProcess, free_port

ROOT = Path(__file__).resolve().parent.parent
FIRST_RESIDENT = 50_000_000
WARMUP_RESIDENT = 40_000_000
SEARCH_TEXT = "Pflege"
COMMENT_TEXT = "Kommentar: gute Idee, ich wäre dabei"
#: The steps of every resident, in order ("{iid}" is an item of the sample data).
STEPS: list[tuple[str, str, str]] = [
    ("start", "text", "/start"),
    ("menu", "press", "m"),
    ("items", "press", "il:0:s:0"),
    ("item", "press", "i:{iid}:L0s0"),
    ("support", "press", "sup:{iid}:1:L0s0"),
    ("search_prompt", "press", "qs"),
    ("search_text", "text", SEARCH_TEXT),
    ("comment_prompt", "press", "c:{iid}:L0s0"),
    ("comment_text", "text", COMMENT_TEXT),
]
CALLBACK_KINDS = {"m": "menu", "il": "items", "i": "item", "sup": "support", "qs": "search_prompt"}
CALLBACK_KINDS["c"] = "comment_prompt"


def kind_of(update: Any) -> str:
    """The step an update (a telegram.Update) belongs to."""
    if update.callback_query is not None:
        return CALLBACK_KINDS.get((update.callback_query.data or "").split(":")[0], "other")
    text = update.message.text if update.message is not None else ""
    if text == "/start":
        return "start"
    if text == SEARCH_TEXT:
        return "search_text"
    if text == COMMENT_TEXT:
        return "comment_text"
    return "other"


# --------------------------------------------------------------------------- fake server


def is_bot_call(method: str) -> bool:
    """A call the bot made (not getUpdates, not the benchmark's own bench* methods)."""
    lower = method.lower()
    return lower != "getupdates" and not lower.startswith("bench")


def _serve_main(port: int) -> None:
    """The tests' FakeTelegram with extra methods: benchLoad queues the stream, benchStats
    answers counters and timestamps, benchCalls the calls since an index."""
    import gc

    from benchmarks.fakebot import _start_on_port
    from tests.fake_telegram import FakeTelegram

    async def run() -> None:
        fake = FakeTelegram(strict_initiation=False)
        first_handout: list[float] = []
        original = fake._api_getupdates

        async def get_updates(params: dict[str, Any]) -> list[Any]:
            batch = await original(params, {})
            if batch and not first_handout:
                first_handout.append(time.time())
            return batch

        def load(params: dict[str, Any]) -> int:
            first, residents = int(params["first"]), int(params["residents"])
            items: list[int] = params["items"]
            steps: list[int] = params.get("steps") or list(range(len(STEPS)))
            first_handout.clear()
            for r in range(residents):  # every resident has one bot message to press on
                chat = first + r
                if chat not in fake._store or 1 not in fake._store[chat]:
                    user = fake.user(chat, first_name=f"R{r}", language_code="de")
                    fake._register_user(user)
                    message = fake._new_message(chat, {})
                    message["text"] = "Hauptmenü"
                    fake._save(chat, message, None)
            count = 0
            for step in steps:
                _, how, payload = STEPS[step]
                for r in range(residents):
                    chat = first + r
                    user = fake.user(chat, first_name=f"R{r}", language_code="de")
                    data = payload.format(iid=items[r % len(items)])
                    if how == "text":
                        fake.add_update(fake.message_update(user, data))
                    else:
                        fake.add_update(fake.callback_update(user, data, message_id=1))
                    count += 1
            return count

        def stats(params: dict[str, Any]) -> dict[str, Any]:
            calls = [c for c in fake.calls if is_bot_call(c.method)]
            since = float(params.get("since", 0))
            calls = [c for c in calls if c.timestamp >= since]
            return {
                "first_handout": first_handout[0] if first_handout else None,
                "last_call": max((c.timestamp for c in calls), default=None),
                "calls": dict(Counter(c.method for c in calls)),
                "errors": dict(Counter(f"{c.method} {c.error_code}" for c in calls if not c.ok)),
                "pending": len(fake._pending),
                "now": time.time(),
            }

        def calls_since(params: dict[str, Any]) -> dict[str, Any]:
            since = int(params.get("index", 0))
            return {
                "index": len(fake.calls),
                "calls": [
                    [c.method, c.ok, (c.error or {}).get("description")]
                    for c in fake.calls[since:]
                    if is_bot_call(c.method)
                ],
            }

        fake.set_handler("getUpdates", get_updates)
        fake.set_handler("benchLoad", load)
        fake.set_handler("benchStats", stats)
        fake.set_handler("benchCalls", calls_since)
        await _start_on_port(fake, port)
        gc.freeze()
        print(f"ready {fake.url} {fake.token}", flush=True)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        await stop.wait()
        await fake.stop()

    try:
        import uvloop

        uvloop.run(run())
    except ImportError:
        asyncio.run(run())


class Server(FakeProcess):
    """The fake in a process of its own (this module's `--serve`)."""

    def __init__(self) -> None:
        port = free_port()
        super().__init__("benchmarks.updates", "--serve", str(port), port=port)


# --------------------------------------------------------------------------- variants


SEQUENTIAL = "bare PTB, sequential"
CONCURRENT = "bare PTB, concurrent_updates=64"
TUNED_GC = "bare PTB, sequential, our GC setting"


@dataclass
class Row:
    variant: str
    updates: int
    seconds: float
    errors: dict[str, int] = field(default_factory=dict)
    #: CPU seconds of this process (the bot's; the fake runs in its own) while it ran.
    cpu: float = 0.0

    @property
    def rate(self) -> float:
        return self.updates / self.seconds if self.seconds else 0.0


class Done:
    def __init__(self) -> None:
        self.count = 0
        self.event = asyncio.Event()
        self.target = 0

    def hit(self, _update: object = None) -> None:
        self.count += 1
        if self.count >= self.target:
            self.event.set()

    async def wait(self, target: int, timeout: float = 300) -> None:  # noqa: ASYNC109
        self.target = target
        if self.count < target:
            await asyncio.wait_for(self.event.wait(), timeout)


@contextlib.contextmanager
def garbage_collector_as_shipped() -> Iterator[None]:
    """The garbage collector as `todo-bot run` sets it (bot.app.tune_garbage_collector),
    and Python's defaults again afterwards, for the variants measured after this one."""
    from bot.app import tune_garbage_collector

    thresholds = gc.get_threshold()
    tune_garbage_collector()
    try:
        yield
    finally:
        gc.unfreeze()
        gc.set_threshold(*thresholds)


async def prepare_database(url: str, pool_size: int = 10) -> tuple[Any, list[int]]:
    from zoneinfo import ZoneInfo

    from sqlalchemy import text

    from bot.cli import sample_data_path
    from domain.importer import import_content, load_file
    from storage.migrate import upgrade
    from storage.uow import Database

    database = Database(url, pool_size=pool_size)
    await upgrade(database.engine)
    async with database.uow() as uow:
        await import_content(uow, load_file(sample_data_path()), ZoneInfo("Europe/Berlin"))
    async with database.uow() as uow:
        items = [
            int(i) for i in (await uow.session.execute(text("SELECT id FROM items"))).scalars()
        ]
    return database, sorted(items)


async def measure(
    server: Server, done: Done, residents: int, items: list[int]
) -> tuple[int, float, dict[str, Any]]:
    """Queue the stream, wait until the bot has handled all of it: (updates, CPU seconds of
    this process meanwhile, the fake's counters and timestamps)."""
    since = time.time()
    before = done.count
    cpu = time.process_time()
    total = await server.call("benchLoad", first=FIRST_RESIDENT, residents=residents, items=items)
    await done.wait(before + total)
    cpu = time.process_time() - cpu
    await asyncio.sleep(0.2)
    return total, cpu, await server.call("benchStats", since=since)


async def run_ours(
    label: str,
    db_url: str,
    residents: int,
    *,
    warm_up: bool = False,
    concurrency: int | None = None,
) -> tuple[Row, dict[str, list[str]]]:
    """Our bot in polling mode. With `warm_up`, one resident's steps one at a time first,
    which gives the Bot API calls per kind of update. `concurrency`: UPDATE_CONCURRENCY
    (default: as shipped)."""
    from bot.app import ALLOWED_UPDATES, build_application
    from bot.settings import Settings

    server = Server()
    settings = Settings(
        _env_file=None,  # type: ignore[call-arg]
        telegram_bot_token=server.token,
        telegram_api_url=server.url,
        database_url=db_url,
        **({"update_concurrency": concurrency} if concurrency else {}),
    )
    # The pool as `todo-bot run` sizes it (bot/cli.py).
    database, items = await prepare_database(db_url, pool_size=settings.update_concurrency)
    done = Done()
    app = build_application(settings, database, on_update_done=done.hit)
    per_kind: dict[str, list[str]] = {}
    with garbage_collector_as_shipped():  # as `todo-bot run` does
        try:
            await app.initialize()
            if app.post_init is not None:
                await app.post_init(app)
            await app.start()
            await app.updater.start_polling(
                poll_interval=0, timeout=1, allowed_updates=ALLOWED_UPDATES
            )
            if warm_up:
                index = (await server.call("benchCalls", index=0))["index"]
                for step, (kind, _, _) in enumerate(STEPS):
                    await server.call(
                        "benchLoad", first=WARMUP_RESIDENT, residents=1, items=items, steps=[step]
                    )
                    await done.wait(done.count + 1)
                    await asyncio.sleep(0.05)
                    answer = await server.call("benchCalls", index=index)
                    index = answer["index"]
                    per_kind[kind] = [m for m, ok, _ in answer["calls"] if ok]
                    failed = [(m, d) for m, ok, d in answer["calls"] if not ok]
                    if failed:
                        print(f"warm-up {kind}: refused {failed}", file=sys.stderr)
            total, cpu, stats = await measure(server, done, residents, items)
        finally:
            await app.updater.stop()
            await app.stop()
            if app.post_stop is not None:
                await app.post_stop(app)
            await app.shutdown()
            await database.dispose()
            server.stop()
    seconds = stats["last_call"] - stats["first_handout"]
    return Row(label, total, seconds, stats["errors"], cpu), per_kind


async def run_bare(
    label: str,
    residents: int,
    per_kind: dict[str, list[str]],
    concurrent: int,
    *,
    tuned_gc: bool = False,
) -> Row:
    """`tuned_gc`: with the garbage collector set as our bot sets it (bot.app.GC_THRESHOLDS),
    to show how much of the difference that setting makes. The baseline is without."""
    from telegram import Update
    from telegram.ext import Application, ContextTypes, TypeHandler

    server = Server()
    done = Done()
    counter = iter(range(10**9))

    async def answer(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        bot = context.bot
        chat = update.effective_chat.id if update.effective_chat else 0
        for method in per_kind.get(kind_of(update), ["sendMessage"]):
            n = next(counter)
            if method == "answerCallbackQuery" and update.callback_query is not None:
                await bot.answer_callback_query(update.callback_query.id)
            elif method == "editMessageText":
                await bot.edit_message_text(f"Antwort {n}", chat_id=chat, message_id=1)
            else:
                await bot.send_message(chat, f"Antwort {n}")
        done.hit()

    builder = (
        Application.builder()
        .token(server.token)
        .base_url(f"{server.url}/bot")
        .connection_pool_size(256)
    )
    if concurrent > 1:
        builder = builder.concurrent_updates(concurrent)
    app = builder.build()
    app.add_handler(TypeHandler(Update, answer))
    with garbage_collector_as_shipped() if tuned_gc else contextlib.nullcontext():
        try:
            await app.initialize()
            await app.start()
            await app.updater.start_polling(poll_interval=0, timeout=1)
            total, cpu, stats = await measure(server, done, residents, [1])
        finally:
            await app.updater.stop()
            await app.stop()
            await app.shutdown()
            server.stop()
    seconds = stats["last_call"] - stats["first_handout"]
    return Row(label, total, seconds, stats["errors"], cpu)


async def postgres_url(admin_url: str, create: bool, name: str = "todo_bench_updates") -> str:
    """Drop the database `name` on the server of `admin_url` and, with `create`, create it
    anew; returns its URL."""
    from sqlalchemy import text
    from sqlalchemy.ext.asyncio import create_async_engine

    from bot.settings import normalise_database_url

    admin = create_async_engine(normalise_database_url(admin_url), isolation_level="AUTOCOMMIT")
    try:
        async with admin.connect() as connection:
            await connection.execute(text(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
            if create:
                await connection.execute(text(f"CREATE DATABASE {name}"))
    finally:
        await admin.dispose()
    return normalise_database_url(f"{admin_url.rsplit('/', 1)[0]}/{name}")


def print_table(rounds: list[dict[str, Row]]) -> None:
    """One line per variant: the median round's figures, and the median over the rounds of
    its ratio to the bare applications of the same round (paired, so that a round the
    machine ran slower for everybody does not count against anybody)."""
    header = ("variant", "updates", "seconds", "updates/s", "CPU ms/upd", "× bare seq", "× bare 64")
    lines = [header]
    for label in rounds[0]:
        runs = sorted((r[label] for r in rounds), key=lambda row: row.rate)
        r = runs[len(runs) // 2]
        seq = statistics.median(x[label].rate / x[SEQUENTIAL].rate for x in rounds)
        conc = statistics.median(x[label].rate / x[CONCURRENT].rate for x in rounds)
        lines.append(
            (
                r.variant,
                f"{r.updates:,}",
                f"{r.seconds:.2f}",
                f"{r.rate:.0f}",
                f"{statistics.median(x[label].cpu / x[label].updates for x in rounds) * 1000:.2f}",
                f"{seq:.2f}",
                f"{conc:.2f}",
            )
        )
    widths = [max(len(line[i]) for line in lines) for i in range(len(header))]
    for n, line in enumerate(lines):
        print("  ".join(c.ljust(w) for c, w in zip(line, widths, strict=True)))
        if n == 0:
            print("  ".join("-" * w for w in widths))
    if len(rounds) > 1:
        print()
        print(f"Per round (updates/s, {len(rounds)} rounds, variants interleaved):")
        for label in rounds[0]:
            print(f"  {label}: {', '.join(f'{x[label].rate:.0f}' for x in rounds)}")


async def main(args: argparse.Namespace) -> None:
    from bot.settings import Settings, normalise_database_url

    residents = args.residents or (60 if args.quick else 200)
    shipped = Settings(_env_file=None).update_concurrency  # type: ignore[call-arg]
    levels = [int(c) for c in args.concurrency.split(",")] if args.concurrency else [shipped]
    rounds: list[dict[str, Row]] = []
    with tempfile.TemporaryDirectory() as tmp:
        url = normalise_database_url(f"sqlite:///{Path(tmp) / 'warm.sqlite3'}")
        _, per_kind = await run_ours("warm-up", url, 1, warm_up=True)
        print("Bot API calls per update (our bot, warm-up):", file=sys.stderr)
        for kind, methods in per_kind.items():
            print(f"  {kind:<15} {', '.join(methods)}", file=sys.stderr)
        for n in range(args.rounds or (1 if args.quick else 3)):
            rows: list[Row] = [
                await run_bare(SEQUENTIAL, residents, per_kind, 1),
                await run_bare(CONCURRENT, residents, per_kind, 64),
                await run_bare(TUNED_GC, residents, per_kind, 1, tuned_gc=True),
            ]
            for level in levels:
                name = f"bench{n}-{level}.sqlite3"
                url = normalise_database_url(f"sqlite:///{Path(tmp) / name}")
                mark = ", shipped" if level == shipped else ""
                label = f"to:DO Bot, SQLite ({level} at once{mark})"
                rows.append((await run_ours(label, url, residents, concurrency=level))[0])
            if args.postgres:
                for level in levels:
                    try:
                        url = await postgres_url(args.postgres, create=True)
                        mark = ", shipped" if level == shipped else ""
                        label = f"to:DO Bot, PostgreSQL ({level} at once{mark})"
                        rows.append((await run_ours(label, url, residents, concurrency=level))[0])
                    finally:
                        await postgres_url(args.postgres, create=False)
            for r in rows:
                if r.errors:
                    print(f"{r.variant}: refused calls {json.dumps(r.errors)}", file=sys.stderr)
            print(
                f"round {n + 1}: " + ", ".join(f"{r.variant} {r.rate:.0f}/s" for r in rows),
                file=sys.stderr,
            )
            rounds.append({r.variant: r for r in rows})
    print()
    print_table(rounds)


def parse() -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--residents", type=int, help="default 200 (--quick: 60)")
    parser.add_argument("--postgres", metavar="ADMIN_URL", help="a PostgreSQL server's admin URL")
    parser.add_argument(
        "--concurrency",
        metavar="N,N,…",
        help="UPDATE_CONCURRENCY values to run our bot with (default: the shipped one)",
    )
    parser.add_argument(
        "--rounds",
        type=int,
        help="every variant this many times, interleaved; the medians are printed "
        "(default 3, --quick: 1)",
    )
    parser.add_argument("--serve", type=int, help=argparse.SUPPRESS)
    return parser.parse_args()


if __name__ == "__main__":
    arguments = parse()
    os.environ.setdefault("PYTHONHASHSEED", "0")
    if arguments.serve:
        _serve_main(arguments.serve)
    else:
        asyncio.run(main(arguments))
