"""Latency under load: updates OFFERED at a fixed rate (open loop) to a bot that pays a real
round trip for every Bot API call.

    python -m benchmarks.latency                      # 100/s for 30 s at 0 and 30 ms, ladder
    python -m benchmarks.latency --quick              # 10 s windows, a shorter ladder
    python -m benchmarks.latency --postgres postgresql://postgres@127.0.0.1:5432/postgres
    python -m benchmarks.latency --delay-ms 0,30 --rate 100 --seconds 30 --no-ladder

The fake Bot API server (`benchmarks/fakebot.py --trace`, a process of its own) answers
every Bot API call after `--delay-ms` (both 0 and 30 ms by default) and makes the updates
available to getUpdates at their scheduled times, whatever the bot is doing: `--rate`
updates per second for `--seconds`. Residents do the steps of benchmarks/updates.py
(/start, menu, item list, item card, support, search, search text, comment, comment text),
one step per `--think` seconds each, many residents at once. Every press is on a bot
message of its own, so the bot's edit says which press it answers; answerCallbackQuery
names its query; the remaining calls of a resident (sendMessage) are given to that
resident's updates in step order, as many per step as a warm-up counted.

Latency of an update: from the moment a getUpdates response first handed it out to the
moment the fake RECEIVED the last Bot API call made for it (both taken by the fake). Order:
per resident, the calls sorted by arrival must belong to non-decreasing steps; any step
answered after a later one is a violation.

Variants in the same run: a bare python-telegram-bot Application making the same calls
(no database; sequential, and concurrent_updates=64), our bot (`build_application`, sample
data, the shipped UPDATE_CONCURRENCY) on SQLite and, with --postgres, on PostgreSQL
(database `todo_bench_latency`, created and dropped). Then, at the largest delay, the
ladder: offered load stepped up (shorter windows) until p99 reaches 200 ms or updates are
left unanswered; the highest step below is what the variant sustains.
"""

from __future__ import annotations

import abc
import argparse
import asyncio
import contextlib
import json
import logging
import math
import os
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import AsyncIterator, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from benchmarks.broadcast import FakeProcess, free_port
from benchmarks.updates import (
    STEPS,
    garbage_collector_as_shipped,
    kind_of,
    postgres_url,
    prepare_database,
)

#: The database the PostgreSQL variant creates (and drops) on the server of --postgres.
PG_DATABASE = "todo_bench_latency"

ROOT = Path(__file__).resolve().parent.parent
FIRST_CHAT = 60_000_000
WARMUP_CHAT = 39_000_000
#: Chat ids of one measurement (one rate step) start this far apart.
CHAT_BLOCK = 100_000
#: Before the measured runs of a variant: this many seconds at WARM_RATE, not counted
#: (connections opened, caches filled, first-use code paths taken).
WARM_SECONDS = 3.0
WARM_RATE = 10.0
TARGET_RATE = 100.0
TARGET_DELAY_MS = 30.0
TARGET_P99_MS = 100.0
SUSTAIN_P99_MS = 200.0
LADDER = (10.0, 25.0, 50.0, 75.0, 100.0, 150.0, 200.0, 300.0, 400.0, 600.0)
QUICK_LADDER = (25.0, 50.0, 75.0, 100.0, 150.0, 200.0)
PRESS = "press"


def press_message(step: int) -> int | None:
    """The bot message a press of this step is on (the fake creates ids 1..12 per chat)."""
    return step + 1 if STEPS[step][1] == PRESS else None


# --------------------------------------------------------------------------- the stream


@dataclass(frozen=True)
class Planned:
    at: float
    resident: int
    step: int


def plan(rate: float, seconds: float, think: float) -> list[Planned]:
    """`rate * seconds` updates, one every 1/rate seconds. Residents come in groups of
    `rate * think`; a group goes through the steps together (every member does step 0, then
    every member step 1, ...), so one resident's updates are `think` seconds apart."""
    total = max(1, round(rate * seconds))
    group = max(1, round(rate * think))
    residents = math.ceil(total / len(STEPS))
    order: list[tuple[int, int]] = []
    for first in range(0, residents, group):
        members = range(first, min(first + group, residents))
        for step in range(len(STEPS)):
            order.extend((r, step) for r in members)
    return [Planned(n / rate, r, s) for n, (r, s) in enumerate(order[:total])]


def offers(planned: Sequence[Planned], first_chat: int, items: Sequence[int]) -> list[list[Any]]:
    """benchOffer entries: [at, chat, how, text or data, message id, step]."""
    entries: list[list[Any]] = []
    for p in planned:
        _, how, payload = STEPS[p.step]
        data = payload.format(iid=items[p.resident % len(items)])
        entries.append([p.at, first_chat + p.resident, how, data, press_message(p.step), p.step])
    return entries


# --------------------------------------------------------------------------- analysis


@dataclass
class Offered:
    """One update as the fake recorded it."""

    update_id: int
    chat: int
    step: int
    offered_at: float
    handed_out_at: float | None
    callback_id: str | None = None


@dataclass
class Call:
    """One Bot API call of the bot as the fake recorded it."""

    index: int
    method: str
    chat: int | None
    message_id: int | None
    callback_id: str | None
    received: float
    answered: float
    ok: bool


@dataclass
class Violation:
    chat: int
    step: int
    after_step: int


@dataclass
class Analysis:
    latencies: dict[int, float]  # update id -> seconds (answered updates only)
    unanswered: list[int]
    violations: list[Violation]
    unattributed: int
    refused: int
    handout_lag_max: float

    def residents_out_of_order(self) -> int:
        return len({v.chat for v in self.violations})


def positional_counts(expected: dict[int, list[str]]) -> dict[int, int]:
    """Per step, the calls that are neither the callback answer nor the edit of the pressed
    message: they go to a resident's updates by position."""
    counts: dict[int, int] = {}
    for step, kinds in expected.items():
        counts[step] = sum(1 for k in kinds if k == "chat")
    return counts


def analyse(
    updates: Sequence[Offered], calls: Sequence[Call], expected: dict[int, list[str]]
) -> Analysis:
    """Attribute calls to updates, then latency per update and the order per resident.

    `expected[step]` lists what the bot sends for an update of that step, each entry
    "callback" (answerCallbackQuery of the press), "pressed" (a call on the pressed
    message) or "chat" (any other call into the resident's chat)."""
    by_callback = {u.callback_id: u for u in updates if u.callback_id}
    by_message: dict[tuple[int, int], Offered] = {}
    per_chat: dict[int, list[Offered]] = defaultdict(list)
    for u in updates:
        message = press_message(u.step)
        if message is not None:
            by_message[(u.chat, message)] = u
        per_chat[u.chat].append(u)
    slots: dict[int, list[Offered]] = {}
    counts = positional_counts(expected)
    for chat, own in per_chat.items():
        own.sort(key=lambda u: (u.step, u.update_id))
        slots[chat] = [u for u in own for _ in range(counts.get(u.step, 0))]
    taken: dict[int, int] = defaultdict(int)
    attributed: dict[int, list[Call]] = defaultdict(list)
    unattributed = 0
    for call in sorted(calls, key=lambda c: (c.received, c.index)):
        owner: Offered | None = None
        if call.callback_id is not None:
            owner = by_callback.get(call.callback_id)
        elif call.chat is not None and call.message_id is not None:
            owner = by_message.get((call.chat, call.message_id))
        if owner is None and call.chat in slots and call.callback_id is None:
            position = taken[call.chat]
            if position < len(slots[call.chat]):
                owner = slots[call.chat][position]
                taken[call.chat] += 1
        if owner is None:
            unattributed += 1
            continue
        attributed[owner.update_id].append(call)
    latencies: dict[int, float] = {}
    unanswered: list[int] = []
    for u in updates:
        got = attributed.get(u.update_id, [])
        if u.handed_out_at is None or len(got) < len(expected.get(u.step, [])) or not got:
            unanswered.append(u.update_id)
            continue
        latencies[u.update_id] = max(c.received for c in got) - u.handed_out_at
    steps = {u.update_id: (u.chat, u.step) for u in updates}
    return Analysis(
        latencies,
        unanswered,
        order_violations(
            (steps[uid][0], steps[uid][1], c) for uid, own in attributed.items() for c in own
        ),
        unattributed,
        sum(1 for c in calls if not c.ok),
        max(
            (u.handed_out_at - u.offered_at for u in updates if u.handed_out_at is not None),
            default=0.0,
        ),
    )


def order_violations(attributed: Iterable[tuple[int, int, Call]]) -> list[Violation]:
    """Per chat, the calls in the order the fake received them must belong to
    non-decreasing steps: a call for step s arriving after one for a step later than s
    is a violation (one per such call)."""
    per_chat: dict[int, list[tuple[float, int, int]]] = defaultdict(list)
    for chat, step, call in attributed:
        per_chat[chat].append((call.received, call.index, step))
    violations: list[Violation] = []
    for chat, seen in per_chat.items():
        highest = -1
        for _, _, step in sorted(seen):
            if step < highest:
                violations.append(Violation(chat, step, highest))
            highest = max(highest, step)
    return violations


def percentile(values: Sequence[float], share: float) -> float:
    """Nearest rank; `inf` counts as an update never answered."""
    if not values:
        return math.inf
    ordered = sorted(values)
    rank = max(1, math.ceil(share * len(ordered)))
    return ordered[rank - 1]


@dataclass
class Measurement:
    variant: str
    delay_ms: float
    rate: float
    seconds: float
    offered: int
    analysis: Analysis
    wall: float  # from the first update offered to the last call received
    cpu: float = 0.0  # CPU seconds of this process (the bot) while it ran
    load: float = 0.0  # the machine's 1-minute load average at the end
    errors: int = 0  # records the bot logged at ERROR or above

    @property
    def cpu_per_update_ms(self) -> float:
        return self.cpu / self.offered * 1000 if self.offered else 0.0

    @property
    def all_latencies(self) -> list[float]:
        return list(self.analysis.latencies.values()) + [math.inf] * len(self.analysis.unanswered)

    def p(self, share: float) -> float:
        return percentile(self.all_latencies, share)

    @property
    def answered(self) -> int:
        return len(self.analysis.latencies)

    @property
    def throughput(self) -> float:
        """Updates answered per second, from the first offered to the last call."""
        return self.answered / self.wall if self.wall > 0 else 0.0

    def sustained(self) -> bool:
        return (
            not self.analysis.unanswered
            and not self.errors
            and self.p(0.99) * 1000 < SUSTAIN_P99_MS
        )


class ErrorCount(logging.Handler):
    """Counts what the bot logs at ERROR or above (an update whose handler failed is
    still answered, with an apology: this is how it shows); keeps the first message."""

    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.count = 0
        self.first: str | None = None

    def emit(self, record: logging.LogRecord) -> None:
        self.count += 1
        if self.first is None:
            self.first = record.getMessage()[:200]
            if record.exc_info and record.exc_info[1] is not None:
                self.first += f" ({record.exc_info[1]!r})"[:200]


ERRORS = ErrorCount()
logging.getLogger().addHandler(ERRORS)


# --------------------------------------------------------------------------- the fake


class TracingServer(FakeProcess):
    """benchmarks/fakebot.py --trace in a process of its own; its calls share one client
    session (the benchmark polls the fake's progress)."""

    def __init__(self, delay_ms: float) -> None:
        port = free_port()
        super().__init__(
            "benchmarks.fakebot",
            "--port",
            str(port),
            "--delay-ms",
            str(delay_ms),
            "--trace",
            port=port,
        )
        self._session: Any = None

    async def call(self, method: str, **params: Any) -> Any:
        import aiohttp

        if self._session is None:
            self._session = aiohttp.ClientSession()
        async with self._session.post(
            f"{self.url}/bot{self.token}/{method}", json=params
        ) as response:
            body = await response.json()
            if not body.get("ok"):
                raise RuntimeError(f"{method}: {body}")
            return body["result"]

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None


async def trace_since(
    server: TracingServer, calls: int, updates: int
) -> tuple[list[Offered], list[Call]]:
    answer = await server.call("benchTrace", calls=calls, updates=updates)
    offered = [Offered(int(u), int(c), int(s), o, h, q) for u, c, s, o, h, q in answer["updates"]]
    made = [
        Call(calls + n, m, chat, message, query, received, answered, ok)
        for n, (m, chat, message, query, received, answered, ok) in enumerate(answer["calls"])
    ]
    return offered, made


async def measure(
    server: TracingServer,
    label: str,
    *,
    delay_ms: float,
    rate: float,
    seconds: float,
    think: float,
    first_chat: int,
    items: Sequence[int],
    expected: dict[int, list[str]],
    drain: float,
) -> Measurement:
    """Offer the stream, wait until every update has its calls (or `drain` seconds after
    the last was offered), analyse."""
    progress = await server.call("benchProgress")
    calls0, updates0 = progress["calls"], progress["offered"]
    planned = plan(rate, seconds, think)
    want = sum(len(expected[p.step]) for p in planned)
    start_in = 0.3
    entries = offers(planned, first_chat, items)
    cpu0 = time.process_time()
    errors0 = ERRORS.count
    await server.call("benchOffer", updates=entries, start_in=start_in)
    deadline = time.monotonic() + start_in + planned[-1].at + drain
    while time.monotonic() < deadline:
        await asyncio.sleep(0.25)
        progress = await server.call("benchProgress")
        if progress["offered"] - updates0 >= len(planned) and progress["calls"] - calls0 >= want:
            await asyncio.sleep(0.3)  # anything beyond the expected calls
            break
    cpu = time.process_time() - cpu0
    updates, calls = await trace_since(server, calls0, updates0)
    analysis = analyse(updates, calls, expected)
    first = min((u.offered_at for u in updates), default=0.0)
    last = max((c.received for c in calls), default=first)
    return Measurement(
        label,
        delay_ms,
        rate,
        seconds,
        len(planned),
        analysis,
        last - first,
        cpu,
        os.getloadavg()[0],
        ERRORS.count - errors0,
    )


# --------------------------------------------------------------------------- the bots


class Variant(abc.ABC):
    """A bot under test: started against the tracing fake, stopped after the run."""

    label = ""

    @abc.abstractmethod
    async def start(self, server: TracingServer) -> None: ...

    @abc.abstractmethod
    async def stop(self) -> None: ...


async def _stop_app(app: Any) -> None:
    """Stop an Application, dropping whatever is still queued (an overloaded run)."""
    with contextlib.suppress(Exception):
        await app.updater.stop()
    queue = app.update_queue
    while not queue.empty():
        queue.get_nowait()
        queue.task_done()
    await app.stop()
    if app.post_stop is not None:
        await app.post_stop(app)
    await app.shutdown()


class Bare(Variant):
    """python-telegram-bot alone: for each update the calls our bot makes for its step."""

    def __init__(self, expected_methods: dict[int, list[tuple[str, str]]], concurrent: int) -> None:
        self.expected = expected_methods
        self.concurrent = concurrent
        self.label = (
            "bare PTB, sequential"
            if concurrent <= 1
            else f"bare PTB, concurrent_updates={concurrent}"
        )
        self.app: Any = None

    async def start(self, server: TracingServer) -> None:
        from telegram import Update
        from telegram.ext import Application, ContextTypes, TypeHandler

        by_kind = {kind: n for n, (kind, _, _) in enumerate(STEPS)}
        counter = iter(range(10**9))
        expected = self.expected

        async def answer(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
            bot = context.bot
            chat = update.effective_chat.id if update.effective_chat else 0
            step = by_kind.get(kind_of(update))
            query = update.callback_query
            for method, where in expected.get(step, []) if step is not None else []:
                n = next(counter)
                if method == "answerCallbackQuery" and query is not None:
                    await bot.answer_callback_query(query.id)
                elif method == "editMessageText" and where == "pressed" and query is not None:
                    assert query.message is not None
                    await bot.edit_message_text(
                        f"Antwort {n}", chat_id=chat, message_id=query.message.message_id
                    )
                else:
                    await bot.send_message(chat, f"Antwort {n}")

        builder = (
            Application.builder()
            .token(server.token)
            .base_url(f"{server.url}/bot")
            .connection_pool_size(256)
        )
        if self.concurrent > 1:
            builder = builder.concurrent_updates(self.concurrent)
        self.app = builder.build()
        self.app.add_handler(TypeHandler(Update, answer))
        await self.app.initialize()
        await self.app.start()
        await self.app.updater.start_polling(poll_interval=0, timeout=10)

    async def stop(self) -> None:
        if self.app is not None:
            await _stop_app(self.app)
            self.app = None


class Ours(Variant):
    """Our bot: build_application on a prepared database, UPDATE_CONCURRENCY as shipped."""

    def __init__(self, label: str, url: str) -> None:
        self.label = label
        self.url = url
        self.app: Any = None
        self.database: Any = None
        self.items: list[int] = []
        self.collector = contextlib.ExitStack()

    async def start(self, server: TracingServer) -> None:
        from bot.app import ALLOWED_UPDATES, build_application
        from bot.settings import Settings
        from storage.uow import Database

        prepared, self.items = await prepare_database(self.url)
        await prepared.dispose()
        settings = Settings(
            _env_file=None,
            telegram_bot_token=server.token,
            telegram_api_url=server.url,
            database_url=self.url,
        )
        # As `todo-bot run` opens it (bot/cli.py): a pool as large as the concurrency.
        self.database = Database(self.url, pool_size=settings.update_concurrency)
        self.app = build_application(settings, self.database)
        # As `todo-bot run` sets it; Python's defaults again in stop().
        self.collector.enter_context(garbage_collector_as_shipped())
        await self.app.initialize()
        if self.app.post_init is not None:
            await self.app.post_init(self.app)
        await self.app.start()
        await self.app.updater.start_polling(
            poll_interval=0, timeout=10, allowed_updates=ALLOWED_UPDATES
        )

    async def stop(self) -> None:
        if self.app is not None:
            await _stop_app(self.app)
            self.app = None
        if self.database is not None:
            await self.database.dispose()
            self.database = None
        self.collector.close()


@contextlib.asynccontextmanager
async def running(variant: Variant, delay_ms: float) -> AsyncIterator[TracingServer]:
    server = TracingServer(delay_ms)
    try:
        await variant.start(server)
        await asyncio.sleep(0.5)  # start-up calls (commands, descriptions) out of the way
        yield server
    finally:
        try:
            await variant.stop()
        finally:
            await server.close()
            server.stop()


async def warm_up(url: str) -> tuple[dict[int, list[str]], dict[int, list[tuple[str, str]]]]:
    """Our bot on a database of its own, no delay: see `learn`."""
    variant = Ours("warm-up", url)
    async with running(variant, 0.0) as server:
        return await learn(server, variant.items)


async def learn(
    server: TracingServer, items: Sequence[int], chat: int = WARMUP_CHAT
) -> tuple[dict[int, list[str]], dict[int, list[tuple[str, str]]]]:
    """One resident, one step at a time, against the bot `server` serves: what the bot
    sends for each step, as "callback" / "pressed" / "chat" (for attribution) and as
    (method, where) for the bare application."""
    kinds: dict[int, list[str]] = {}
    methods: dict[int, list[tuple[str, str]]] = {}
    for step in range(len(STEPS)):
        progress = await server.call("benchProgress")
        calls0, updates0 = progress["calls"], progress["offered"]
        entries = offers([Planned(0.0, 0, step)], chat, items)
        await server.call("benchOffer", updates=entries, start_in=0.0)
        quiet_since = time.monotonic()
        count = calls0
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            await asyncio.sleep(0.05)
            now = (await server.call("benchProgress"))["calls"]
            if now != count:
                count, quiet_since = now, time.monotonic()
            elif count > calls0 and time.monotonic() - quiet_since > 0.25:
                break
        updates, calls = await trace_since(server, calls0, updates0)
        (update,) = updates
        kinds[step], methods[step] = [], []
        for call in calls:
            if not call.ok:
                print(f"warm-up {STEPS[step][0]}: {call.method} refused", file=sys.stderr)
            if call.callback_id is not None and call.callback_id == update.callback_id:
                where = "callback"
            elif (
                call.chat == update.chat
                and call.message_id is not None
                and call.message_id == press_message(step)
            ):
                where = "pressed"
            elif call.chat == update.chat:
                where = "chat"
            else:
                print(f"warm-up {STEPS[step][0]}: {call.method} elsewhere", file=sys.stderr)
                continue
            kinds[step].append(where)
            methods[step].append((call.method, where))
    return kinds, methods


# --------------------------------------------------------------------------- the run


@dataclass
class Plan:
    delays: list[float]
    rate: float
    seconds: float
    think: float
    ladder: list[float]
    ladder_seconds: float
    postgres: str | None
    variants: list[str] = field(default_factory=list)


async def fresh_database(kind: str, tmp: Path, admin: str | None, n: int) -> str:
    from bot.settings import normalise_database_url

    if kind == "postgres":
        assert admin is not None
        return await postgres_url(admin, create=True, name=PG_DATABASE)
    return normalise_database_url(f"sqlite:///{tmp / f'latency{n}.sqlite3'}")


async def run_all(p: Plan) -> tuple[list[Measurement], dict[str, list[Measurement]]]:
    from bot.settings import Settings

    concurrency = Settings(_env_file=None).update_concurrency
    fixed: list[Measurement] = []
    ladders: dict[str, list[Measurement]] = {}
    counter = iter(range(1000))
    try:
        with tempfile.TemporaryDirectory() as folder:
            tmp = Path(folder)
            kinds, methods = await warm_up(await fresh_database("sqlite", tmp, None, next(counter)))
            print("Bot API calls per update (our bot, warm-up):", file=sys.stderr)
            for step, listed in methods.items():
                shown = ", ".join(f"{m} ({w})" for m, w in listed)
                print(f"  {STEPS[step][0]:<15} {shown}", file=sys.stderr)
            dbs = ["sqlite"] + (["postgres"] if p.postgres else [])

            def make(name: str, n: int, url: str = "") -> Variant:
                if name == "seq":
                    return Bare(methods, 1)
                if name == "c64":
                    return Bare(methods, 64)
                db = "SQLite" if name == "sqlite" else "PostgreSQL"
                return Ours(f"to:DO Bot, {db} ({concurrency} at once)", url)

            names = [n for n in ("seq", "c64", *dbs) if not p.variants or n in p.variants]

            async def one(
                name: str, delay: float, rates: list[float], seconds: float
            ) -> list[Measurement]:
                n = next(counter)
                url = await fresh_database(name, tmp, p.postgres, n) if name in dbs else ""
                variant = make(name, n, url)
                results: list[Measurement] = []
                async with running(variant, delay) as server:
                    items = variant.items if isinstance(variant, Ours) else [1]
                    warm = await measure(
                        server,
                        variant.label,
                        delay_ms=delay,
                        rate=WARM_RATE,
                        seconds=WARM_SECONDS,
                        think=p.think,
                        first_chat=FIRST_CHAT - CHAT_BLOCK,
                        items=items,
                        expected=kinds,
                        drain=5.0,
                    )
                    print("(warm-up) " + progress_line(warm), file=sys.stderr, flush=True)
                    await asyncio.sleep(1.0)
                    for k, rate in enumerate(rates):
                        m = await measure(
                            server,
                            variant.label,
                            delay_ms=delay,
                            rate=rate,
                            seconds=seconds,
                            think=p.think,
                            first_chat=FIRST_CHAT + k * CHAT_BLOCK,
                            items=items,
                            expected=kinds,
                            drain=min(10.0, max(3.0, seconds / 3)),
                        )
                        results.append(m)
                        print(progress_line(m), file=sys.stderr, flush=True)
                        if len(rates) > 1 and not m.sustained():
                            break
                return results

            for delay in p.delays:
                for name in names:
                    fixed += await one(name, delay, [p.rate], p.seconds)
            if p.ladder:
                delay = max(p.delays)
                for name in names:
                    runs = await one(name, delay, p.ladder, p.ladder_seconds)
                    ladders[runs[0].variant] = runs
    finally:
        if p.postgres:
            await postgres_url(p.postgres, create=False, name=PG_DATABASE)
    return fixed, ladders


def ms(value: float) -> str:
    return "∞" if math.isinf(value) else f"{value * 1000:.0f}"


def progress_line(m: Measurement) -> str:
    a = m.analysis
    return (
        f"{m.variant} @ {m.rate:g}/s, {m.delay_ms:g} ms: {m.answered}/{m.offered} answered, "
        f"p50 {ms(m.p(0.5))} p99 {ms(m.p(0.99))} max {ms(m.p(1.0))} ms, "
        f"order violations {len(a.violations)}, unattributed {a.unattributed}, "
        f"refused {a.refused}, handout lag max {a.handout_lag_max * 1000:.0f} ms, "
        f"CPU {m.cpu_per_update_ms:.1f} ms/update, load {m.load:.1f}, "
        f"errors logged {m.errors}" + (f" (first: {ERRORS.first})" if m.errors else "")
    )


def markdown(header: Sequence[str], rows: Iterable[Sequence[str]], right_from: int = 1) -> str:
    lines = ["| " + " | ".join(header) + " |"]
    lines.append(
        "| " + " | ".join("---" if i < right_from else "---:" for i in range(len(header))) + " |"
    )
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def ratio(ours: float, base: float) -> str:
    if math.isinf(ours) or math.isinf(base) or base <= 0:
        return "–"
    return f"{ours / base:.2f}"


def fixed_table(fixed: Sequence[Measurement]) -> str:
    rows = []
    for m in fixed:
        same = [b for b in fixed if b.delay_ms == m.delay_ms]
        seq = next((b for b in same if b.variant == "bare PTB, sequential"), None)
        c64 = next((b for b in same if b.variant.startswith("bare PTB, concurrent")), None)
        a = m.analysis
        rows.append(
            [
                f"{m.delay_ms:g} ms",
                m.variant,
                f"{m.offered:,}",
                f"{m.answered:,}",
                f"{m.throughput:.0f}",
                ms(m.p(0.5)),
                ms(m.p(0.95)),
                ms(m.p(0.99)),
                ms(m.p(1.0)),
                f"{len(a.violations)} ({a.residents_out_of_order()})",
                str(m.errors),
                ratio(m.p(0.99), seq.p(0.99)) if seq else "–",
                ratio(m.p(0.99), c64.p(0.99)) if c64 else "–",
                f"{a.handout_lag_max * 1000:.0f}",
                f"{m.cpu_per_update_ms:.1f}",
                f"{m.load:.1f}",
            ]
        )
    header = [
        "delay",
        "variant",
        "offered",
        "answered",
        "answered/s",
        "p50 ms",
        "p95 ms",
        "p99 ms",
        "max ms",
        "out of order (residents)",
        "errors logged",
        "p99 × bare seq",
        "p99 × bare 64",
        "handout lag max ms",
        "CPU ms/update",
        "load",
    ]
    return markdown(header, rows, right_from=2)


def ladder_table(ladders: dict[str, list[Measurement]], rates: Sequence[float]) -> str:
    tried = [r for r in rates if any(m.rate == r for runs in ladders.values() for m in runs)]
    best: dict[str, float] = {}
    rows = []
    for variant, runs in ladders.items():
        ok = [m.rate for m in runs if m.sustained()]
        best[variant] = max(ok, default=0.0)
        cells = []
        for r in tried:
            m = next((m for m in runs if m.rate == r), None)
            if m is None:
                cells.append("")
            elif m.analysis.unanswered:
                cells.append(f"{ms(m.p(0.99))} ({len(m.analysis.unanswered)} left)")
            else:
                cells.append(ms(m.p(0.99)))
        rows.append(
            [variant, *cells, f"{best[variant]:g}" if best[variant] else "< " + f"{tried[0]:g}"]
        )
    c64 = next((v for k, v in best.items() if k.startswith("bare PTB, concurrent")), 0.0)
    for row, variant in zip(rows, ladders, strict=True):
        row.append(f"{best[variant] / c64:.2f}" if c64 and best[variant] else "–")
    header = ["variant", *[f"{r:g}/s" for r in tried], "sustained /s", "× bare 64"]
    return markdown(header, rows)


def verdict(fixed: Sequence[Measurement], rate: float) -> list[str]:
    lines = []
    for m in fixed:
        if m.variant.startswith("to:DO") and m.delay_ms == TARGET_DELAY_MS and m.rate == rate:
            p99 = m.p(0.99) * 1000
            met = (
                p99 < TARGET_P99_MS
                and not m.analysis.violations
                and not m.analysis.unanswered
                and not m.errors
            )
            lines.append(
                f"- {m.variant}: p99 {ms(m.p(0.99))} ms at {rate:g}/s with {TARGET_DELAY_MS:g} ms "
                f"per call, {len(m.analysis.violations)} out of order: target (p99 < "
                f"{TARGET_P99_MS:g} ms, in order) {'met' if met else 'NOT met'}"
            )
    return lines


def summary(
    fixed: Sequence[Measurement], ladders: dict[str, list[Measurement]], ladder: Sequence[float]
) -> dict[str, Any]:
    """Machine-readable headline figures (for `python -m benchmarks`)."""
    out: dict[str, Any] = {"fixed": [], "sustained": {}, "ladder_from": min(ladder, default=0)}
    for m in fixed:
        out["fixed"].append(
            {
                "variant": m.variant,
                "delay_ms": m.delay_ms,
                "rate": m.rate,
                "p50_ms": None if math.isinf(m.p(0.5)) else m.p(0.5) * 1000,
                "p99_ms": None if math.isinf(m.p(0.99)) else m.p(0.99) * 1000,
                "unanswered": len(m.analysis.unanswered),
                "out_of_order": len(m.analysis.violations),
                "errors": m.errors,
            }
        )
    for variant, runs in ladders.items():
        out["sustained"][variant] = max((m.rate for m in runs if m.sustained()), default=0.0)
    return out


async def main(args: argparse.Namespace) -> None:
    delays = [float(d) for d in args.delay_ms.split(",")] if args.delay_ms else [0.0, 30.0]
    seconds = args.seconds or (10.0 if args.quick else 30.0)
    ladder = [] if args.no_ladder else list(QUICK_LADDER if args.quick else LADDER)
    p = Plan(
        delays=delays,
        rate=args.rate,
        seconds=seconds,
        think=args.think,
        ladder=ladder,
        ladder_seconds=args.ladder_seconds or (5.0 if args.quick else 10.0),
        postgres=args.postgres,
        variants=args.variants.split(",") if args.variants else [],
    )
    started = time.monotonic()
    fixed, ladders = await run_all(p)
    print()
    print(f"### {p.rate:g} updates/s offered for {p.seconds:g} s (latency to the last call)")
    print()
    print(fixed_table(fixed))
    print()
    for line in verdict(fixed, p.rate):
        print(line)
    if ladders:
        print()
        print(
            f"### Highest offered load with p99 < {SUSTAIN_P99_MS:g} ms, {max(delays):g} ms per "
            f"call ({p.ladder_seconds:g} s per step; cells: p99 ms)"
        )
        print()
        print(ladder_table(ladders, ladder))
    print(f"\n({time.monotonic() - started:.0f} s in all)", file=sys.stderr)
    if args.json:
        with open(args.json, "w") as out:  # noqa: ASYNC230 - once, at the end
            json.dump(summary(fixed, ladders, ladder), out, indent=1)


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="10 s windows, a shorter ladder")
    parser.add_argument("--postgres", metavar="ADMIN_URL", help="a PostgreSQL server's admin URL")
    parser.add_argument("--delay-ms", default="0,30", help="per Bot API call, comma-separated")
    parser.add_argument("--rate", type=float, default=TARGET_RATE, help="updates/s offered")
    parser.add_argument("--seconds", type=float, help="how long (default 30, --quick 10)")
    parser.add_argument("--think", type=float, default=1.0, help="s between a resident's steps")
    parser.add_argument("--no-ladder", action="store_true", help="skip the highest-load search")
    parser.add_argument("--ladder-seconds", type=float, help="per step (default 10, --quick 5)")
    parser.add_argument(
        "--variants", help="comma-separated subset of seq,c64,sqlite,postgres (default: all)"
    )
    parser.add_argument("--json", help="also write the headline figures to this file")
    return parser.parse_args(argv)


if __name__ == "__main__":
    os.environ.setdefault("PYTHONHASHSEED", "0")
    asyncio.run(main(parse()))
