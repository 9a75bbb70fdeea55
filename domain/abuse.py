"""Limits against abuse: a burst limit for state-changing actions per resident (in this
process) and hourly limits for comments and proposals (counted in the database)."""

from __future__ import annotations

import datetime as dt
from collections import deque
from dataclasses import dataclass
from enum import Enum

from storage.uow import UnitOfWork


class Limited(Enum):
    ACTIONS = "actions"  # too many actions within a minute
    COMMENTS = "comments"  # too many comments within an hour
    PROPOSALS = "proposals"  # too many proposals within an hour


class SlidingWindow:
    """At most `limit` events per key within `window` seconds. Kept in memory, so it counts
    per process: with several bot processes a resident may get `limit` in each. Refused
    events are not counted."""

    def __init__(self, limit: int, window: float = 60.0) -> None:
        self.limit = limit
        self.window = window
        self._events: dict[int, deque[float]] = {}
        self._calls = 0

    def allow(self, key: int, now: float) -> bool:
        self._calls += 1
        if self._calls % 1000 == 0:
            self._forget_idle(now)
        events = self._events.setdefault(key, deque())
        while events and events[0] <= now - self.window:
            events.popleft()
        if len(events) >= self.limit:
            return False
        events.append(now)
        return True

    def _forget_idle(self, now: float) -> None:
        idle = [k for k, e in self._events.items() if not e or e[-1] <= now - self.window]
        for key in idle:
            del self._events[key]


@dataclass(frozen=True)
class HourlyLimits:
    comments: int
    proposals: int


async def hourly_refusal(
    uow: UnitOfWork, resident_id: int, kind: str, now: dt.datetime, limits: HourlyLimits
) -> Limited | None:
    """Whether one more comment (kind "comment") or proposal ("proposal") is refused: the
    resident's rows created in the last hour are counted."""
    since = now - dt.timedelta(hours=1)
    if kind == "comment":
        count, limit, refusal = (
            await uow.privacy.comments_since(resident_id, since),
            limits.comments,
            Limited.COMMENTS,
        )
    elif kind == "proposal":
        count, limit, refusal = (
            await uow.privacy.proposals_since(resident_id, since),
            limits.proposals,
            Limited.PROPOSALS,
        )
    else:
        return None
    return refusal if count >= limit else None
