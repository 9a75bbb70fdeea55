"""The tests' fake Bot API server in a process of its own, for benchmarks.

    python -m benchmarks.fakebot --port 8900 --rate 30 --window 1.0 --delay-ms 0 [--trace]

Counts what it receives per chat (for duplicates / missing) and forgets the calls
themselves every second, so it can take hundreds of thousands of messages. `POST
/bot<token>/benchStats` answers the counters; `benchReset` zeroes them.

With `--trace` (the latency benchmark) it also keeps, per update, when it was offered and
when a getUpdates response first handed it out, and per Bot API call of the bot when the
call arrived and when it was answered. `benchOffer` makes updates available to getUpdates
at scheduled times (open loop: on schedule, whatever the bot is doing), `benchTrace`
answers the records since an index, `benchProgress` a few counters.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import signal
import time
from collections import Counter
from typing import Any

from tests.fake_telegram import ApiCall, FakeTelegram

SENDS = {"sendmessage", "sendphoto"}
#: Bot messages created in every chat an offered update comes from (ids 1..N), so that
#: presses can be on a message of their own and the bot's edit says which press it answers.
OFFER_MESSAGES = 12


def is_bot_call(method: str) -> bool:
    """A call the bot made (not getUpdates, not the benchmark's own bench* methods)."""
    lower = method.lower()
    return lower != "getupdates" and not lower.startswith("bench")


class _IdList(list[str]):
    """A list of ids with a set beside it: the fake asks `id in list` once per callback,
    which is quadratic over tens of thousands of presses."""

    def __init__(self) -> None:
        super().__init__()
        self._set: set[str] = set()

    def append(self, value: str) -> None:
        super().append(value)
        self._set.add(value)

    def __contains__(self, value: object) -> bool:
        return value in self._set


class TracingFake(FakeTelegram):
    """FakeTelegram that records when each of the bot's calls arrived and was answered."""

    def __init__(self, *, call_delay: float = 0.0) -> None:
        super().__init__(strict_initiation=False, call_delay=call_delay)
        #: [method, chat_id, message_id, callback_query_id, received, answered, ok]
        self.trace: list[list[Any]] = []
        self._delivered_callbacks = _IdList()
        self.answered_callback_ids = _IdList()

    async def _process(self, call: ApiCall, token: str) -> None:
        if not is_bot_call(call.method):
            await super()._process(call, token)
            return
        received = time.time()
        ok = False
        try:
            await super()._process(call, token)
            ok = True
        finally:
            params = call.params
            chat = params.get("chat_id")
            message = params.get("message_id")
            query = params.get("callback_query_id")
            self.trace.append(
                [
                    call.method,
                    chat if isinstance(chat, int) else None,
                    message if isinstance(message, int) else None,
                    query if isinstance(query, str) else None,
                    received,
                    time.time(),
                    ok,
                ]
            )


class Offers:
    """Updates offered to getUpdates on a schedule, and when each was first handed out."""

    def __init__(self, fake: FakeTelegram) -> None:
        self.fake = fake
        #: [update_id, chat, tag, offered_at, handed_out_at, callback_query_id]
        self.records: list[list[Any]] = []
        self._by_update: dict[int, list[Any]] = {}
        self._prepared: set[int] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        self.scheduled = 0

    def prepare(self, chat: int) -> None:
        """The resident exists for the fake, with OFFER_MESSAGES bot messages to press on."""
        if chat in self._prepared:
            return
        fake = self.fake
        fake._register_user(fake.user(chat, first_name=f"R{chat}", language_code="de"))
        for n in range(1, OFFER_MESSAGES + 1):
            message = fake._new_message(chat, {})
            message["text"] = f"Nachricht {n}"
            fake._save(chat, message, None)
        self._prepared.add(chat)

    def offer(self, params: dict[str, Any]) -> int:
        """params: `updates`, a list of [seconds from now, chat, "text" | "press", text or
        callback data, message id of the press, tag]; `start_in` seconds (default 0.2).
        Returns how many were scheduled."""
        entries: list[list[Any]] = sorted(params["updates"], key=lambda e: float(e[0]))
        for entry in entries:
            self.prepare(int(entry[1]))
        loop = asyncio.get_running_loop()
        start = loop.time() + float(params.get("start_in", 0.2))
        self.scheduled += len(entries)
        task = asyncio.create_task(self._run(start, entries))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return len(entries)

    async def _run(self, start: float, entries: list[list[Any]]) -> None:
        loop = asyncio.get_running_loop()
        fake = self.fake
        for at, chat, how, data, message_id, tag in entries:
            delay = start + float(at) - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
            user = fake.user(int(chat), first_name=f"R{chat}", language_code="de")
            if how == "text":
                update = fake.message_update(user, str(data))
            else:
                update = fake.callback_update(user, str(data), message_id=int(message_id))
            query = update.get("callback_query", {}).get("id")
            update_id = fake.add_update(update)
            record = [update_id, int(chat), tag, time.time(), None, query]
            self.records.append(record)
            self._by_update[update_id] = record

    def handed_out(self, batch: list[Any]) -> None:
        now = time.time()
        for update in batch:
            record = self._by_update.get(int(update["update_id"]))
            if record is not None and record[4] is None:
                record[4] = now


async def serve(
    port: int, rate: int | None, window: float, delay: float, *, trace: bool = False
) -> None:
    fake: FakeTelegram
    offers: Offers | None = None
    if trace:
        fake = TracingFake(call_delay=delay)
        offers = Offers(fake)
        _add_trace_methods(fake, offers)
    else:
        fake = FakeTelegram(strict_initiation=False, call_delay=delay)
    if rate:
        fake.rate_limit = (rate, window)
    received: Counter[int] = Counter()
    arrivals: list[float] = []  # when each send was answered (for the tightest window)
    seen = 0

    def collect() -> None:
        nonlocal seen
        for call in fake.calls[seen:]:
            if call.ok and call.method.lower() in SENDS and isinstance(call.chat_id, int):
                received[call.chat_id] += 1
            if call.method.lower() in SENDS and len(arrivals) < 1_000_000:
                arrivals.append(call.timestamp)
        fake.calls.clear()
        if offers is None:
            fake._store.clear()
        else:  # the offered residents keep their messages (presses and edits need them)
            for chat in [c for c in fake._store if c not in offers._prepared]:
                del fake._store[chat]
        seen = 0

    def stats(params: dict[str, Any]) -> dict[str, Any]:
        collect()
        duplicates = sum(n - 1 for n in received.values() if n > 1)
        return {
            "messages": sum(received.values()),
            "chats": len(received),
            "duplicates": duplicates,
            "rate_limited": fake.stats["rate_limited"],
            "chat_ids": sorted(received) if params.get("with_ids") else [],
            "tightest": _tightest(arrivals, rate) if rate else None,
        }

    def reset(params: dict[str, Any]) -> bool:
        collect()
        received.clear()
        arrivals.clear()
        fake.stats["rate_limited"] = 0
        return True

    fake.set_handler("benchStats", stats)
    fake.set_handler("benchReset", reset)
    await _start_on_port(fake, port)
    # Fewer garbage-collector pauses: a pause delays the processing of requests that arrived
    # in time, which makes them look too close together to the rate limit.
    gc.freeze()
    gc.set_threshold(50_000, 50, 100)
    print(f"ready {fake.url} {fake.token}", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    while not stop.is_set():
        collect()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), 1.0)
    await fake.stop()


def _add_trace_methods(fake: TracingFake, offers: Offers) -> None:
    original = fake._api_getupdates

    async def get_updates(params: dict[str, Any]) -> list[Any]:
        batch = await original(params, {})
        offers.handed_out(batch)
        return batch

    def trace(params: dict[str, Any]) -> dict[str, Any]:
        calls, updates = int(params.get("calls", 0)), int(params.get("updates", 0))
        return {
            "calls": fake.trace[calls:],
            "updates": offers.records[updates:],
            "pending": len(fake._pending),
            "now": time.time(),
        }

    def progress(params: dict[str, Any]) -> dict[str, Any]:
        return {
            "calls": len(fake.trace),
            "offered": len(offers.records),
            "scheduled": offers.scheduled,
            "handed_out": sum(1 for r in offers.records if r[4] is not None),
            "pending": len(fake._pending),
            "now": time.time(),
        }

    fake.set_handler("getUpdates", get_updates)
    fake.set_handler("benchOffer", offers.offer)
    fake.set_handler("benchTrace", trace)
    fake.set_handler("benchProgress", progress)


def _tightest(arrivals: list[float], n: int) -> dict[str, float] | None:
    """The shortest time in which n + 1 sends arrived (a strict limiter wants > window),
    and when that was, counted from the first send."""
    if len(arrivals) <= n:
        return None
    ordered = sorted(arrivals)
    spans = [(ordered[i] - ordered[i - n], i) for i in range(n, len(ordered))]
    span, at = min(spans)
    return {"seconds": span, "after": ordered[at] - ordered[0]}


async def _start_on_port(fake: FakeTelegram, port: int) -> None:
    """FakeTelegram.start on a fixed port (the benchmark's child processes need it)."""
    from aiohttp import web

    app = web.Application(client_max_size=64 * 1024 * 1024)
    app.router.add_route("*", "/{tail:.*}", fake._handle)
    runner = web.AppRunner(app, access_log=None, handle_signals=False, shutdown_timeout=2.0)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    fake._runner = runner
    fake.url = f"http://127.0.0.1:{port}"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--rate", type=int, default=0, help="allowed sends per window (0: none)")
    parser.add_argument("--window", type=float, default=1.0)
    parser.add_argument("--delay-ms", type=float, default=0.0)
    parser.add_argument("--trace", action="store_true", help="benchOffer / benchTrace")
    args = parser.parse_args()
    try:  # a faster event loop lets one process answer well over 1000 requests a second
        import uvloop

        runner = uvloop.run
    except ImportError:
        runner = asyncio.run
    runner(serve(args.port, args.rate or None, args.window, args.delay_ms / 1000, trace=args.trace))


if __name__ == "__main__":
    main()
