"""Pacing for the sender: at most `rate` messages per second overall, evenly spaced (so no
one-second window ever holds more, even with a little jitter), at most one message per
second to one chat, and a pause for everybody when Telegram answers 429."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager


class Pacer:
    def __init__(
        self,
        rate: float,
        *,
        margin: float = 0.025,
        tolerance: float = 0.002,
        catch_up: float = 0.008,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        # Spreading `rate` sends over 1 + margin seconds keeps every 1-second window
        # under the limit although requests arrive with some jitter.
        self.interval = (1.0 + margin) / rate
        self.tolerance = tolerance
        #: Up to this late, a send still counts as on schedule. Together with `tolerance`
        #: it must stay well below `margin` seconds (see acquire).
        self.catch_up = catch_up
        self.clock = clock
        self._next = 0.0
        self._paused_until = 0.0
        self._lock = asyncio.Lock()

    async def acquire(self) -> None:
        async with self._lock:  # FIFO: whoever waits longest goes first
            # Look again after every wait: a 429 may have paused everybody meanwhile.
            while True:
                now = self.clock()
                slot = max(self._next, self._paused_until)
                if slot - now <= self.tolerance:
                    break
                await asyncio.sleep(slot - now)
            # Keep to the schedule: a send that wakes up a little late (sleep overshoots by
            # a millisecond or so) must not push every later send back, or the rate drifts
            # below the limit; slots are counted from the schedule, never from the actual
            # (late) send, so sends are never closer together than the schedule allows.
            # After an idle spell or a long stall the schedule starts again from now.
            late = now - slot
            self._next = (now if late > self.catch_up else slot) + self.interval

    def pause(self, seconds: float) -> None:
        """Telegram said 429: nobody sends until `seconds` have passed."""
        until = self.clock() + seconds
        self._paused_until = max(self._paused_until, until)
        self._next = max(self._next, until)


class ChatSpacing:
    """At most one message per `interval` to the same chat, counted from the moment it goes
    out: `async with spacing.turn(chat_id): await pacer.acquire()` right before sending, so
    that neither the wait for the overall pace nor a second message to the same chat in
    another worker can squeeze two messages together."""

    def __init__(self, interval: float = 1.0, clock: Callable[[], float] = time.monotonic):
        self.interval = interval
        self.clock = clock
        self._next: dict[int, float] = {}
        self._locks: dict[int, asyncio.Lock] = {}
        self._users: Counter[int] = Counter()

    @asynccontextmanager
    async def turn(self, chat_id: int) -> AsyncIterator[None]:
        self._users[chat_id] += 1
        lock = self._locks.setdefault(chat_id, asyncio.Lock())
        try:
            async with lock:
                now = self.clock()
                if len(self._next) > 10_000:
                    self._next = {c: t for c, t in self._next.items() if t > now}
                start = self._next.get(chat_id, 0.0)
                if start > now:
                    await asyncio.sleep(start - now)
                yield
                self._next[chat_id] = self.clock() + self.interval
        finally:
            self._users[chat_id] -= 1
            if not self._users[chat_id]:
                del self._users[chat_id]
                del self._locks[chat_id]
