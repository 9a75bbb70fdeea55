"""The latency benchmark's machinery (benchmarks/latency.py) at a tiny scale: the fake in a
process of its own offers 20 updates at 50/s to our bot on SQLite, every update gets a
latency, nothing is out of order; and the order check does catch replies out of order."""

from __future__ import annotations

import math
import random
from pathlib import Path

from benchmarks.latency import (
    Call,
    Measurement,
    Offered,
    Ours,
    analyse,
    learn,
    measure,
    order_violations,
    running,
)
from benchmarks.updates import STEPS
from bot.settings import normalise_database_url

#: Steps 1..4 of benchmarks/updates.py are presses (menu, item list, item card, support).
PRESSES = [1, 2, 3, 4]
EXPECTED = {step: ["pressed", "callback"] for step in PRESSES}


def _one_resident(chat: int = 7) -> tuple[list[Offered], list[Call]]:
    """One resident pressing four buttons; the bot edits the pressed message and answers
    the callback for each, in order, 10 ms apart."""
    assert all(STEPS[step][1] == "press" for step in PRESSES)
    updates: list[Offered] = []
    calls: list[Call] = []
    clock = 1000.0
    for n, step in enumerate(PRESSES):
        updates.append(Offered(n + 1, chat, step, clock, clock + 0.001, f"q{n}"))
        for method, message, query in (
            ("editMessageText", step + 1, None),
            ("answerCallbackQuery", None, f"q{n}"),
        ):
            clock += 0.01
            calls.append(
                Call(
                    len(calls), method, None if query else chat, message, query, clock, clock, True
                )
            )
    return updates, calls


def test_in_order_replies_pass_and_every_update_gets_its_latency() -> None:
    updates, calls = _one_resident()
    analysis = analyse(updates, calls, EXPECTED)
    assert analysis.violations == []
    assert analysis.unanswered == [] and analysis.unattributed == 0
    assert set(analysis.latencies) == {u.update_id for u in updates}
    # The last call of the first press came 20 ms after it was offered, 19 ms after handout.
    assert math.isclose(analysis.latencies[1], 0.019, abs_tol=1e-6)


def test_shuffled_replies_are_reported_out_of_order() -> None:
    updates, calls = _one_resident()
    times = [c.received for c in calls]
    random.Random(3).shuffle(times)
    assert times != sorted(times)
    for call, at in zip(calls, times, strict=True):
        call.received = at
    analysis = analyse(updates, calls, EXPECTED)
    assert analysis.violations, "replies out of order went unnoticed"
    assert analysis.residents_out_of_order() == 1
    # Reversed completely: every call after the first is for an earlier step.
    reversed_calls = [(7, step, c) for step, c in zip([4, 4, 3, 3, 2, 2, 1, 1], calls, strict=True)]
    assert len(order_violations(reversed_calls)) == 6


def test_missing_reply_leaves_the_update_unanswered() -> None:
    updates, calls = _one_resident()
    analysis = analyse(updates, calls[:-1], EXPECTED)  # the last callback never answered
    assert analysis.unanswered == [updates[-1].update_id]
    assert not math.isinf(max(analysis.latencies.values()))


async def test_twenty_updates_at_50_per_second_against_our_bot(tmp_path: Path) -> None:
    url = normalise_database_url(f"sqlite:///{tmp_path / 'latency.sqlite3'}")
    variant = Ours("to:DO Bot, SQLite", url)
    async with running(variant, 0.0) as server:
        kinds, methods = await learn(server, variant.items)
        assert set(kinds) == set(range(len(STEPS)))
        assert all(kinds[step] for step in kinds), methods
        result: Measurement = await measure(
            server,
            variant.label,
            delay_ms=0.0,
            rate=50.0,
            seconds=0.4,
            think=0.1,
            first_chat=61_000_000,
            items=variant.items,
            expected=kinds,
            drain=8.0,
        )
    assert result.offered == 20
    analysis = result.analysis
    assert analysis.unanswered == [], analysis
    assert len(analysis.latencies) == 20
    assert all(0 < seconds < 10 for seconds in analysis.latencies.values())
    assert analysis.violations == []
    assert analysis.unattributed == 0 and analysis.refused == 0
    assert result.errors == 0, "the bot logged errors while handling the updates"
    assert not math.isinf(result.p(0.99))
