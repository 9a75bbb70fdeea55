"""The tests' fake Bot API server in a process of its own, for benchmarks.

    python -m benchmarks.fakebot --port 8900 --rate 30 --window 1.0 --delay-ms 0

Counts what it receives per chat (for duplicates / missing) and forgets the calls
themselves every second, so it can take hundreds of thousands of messages. `POST
/bot<token>/benchStats` answers the counters; `benchReset` zeroes them.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import signal
from collections import Counter
from typing import Any

from tests.fake_telegram import FakeTelegram

SENDS = {"sendmessage", "sendphoto"}


async def serve(port: int, rate: int | None, window: float, delay: float) -> None:
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
        fake._store.clear()
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
    args = parser.parse_args()
    try:  # a faster event loop lets one process answer well over 1000 requests a second
        import uvloop

        runner = uvloop.run
    except ImportError:
        runner = asyncio.run
    runner(serve(args.port, args.rate or None, args.window, args.delay_ms / 1000))


if __name__ == "__main__":
    main()
