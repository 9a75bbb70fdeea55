"""What the fault drills tried and what survived, printed at the end of the test run.

A drill calls `report("name", "what it tried", "what survived", ...)`; the lines are printed
in a "fault drills" section of pytest's terminal summary, with or without `-s`, so CI's log
carries the numbers that the closing notes quote."""

from __future__ import annotations

REPORTS: list[tuple[str, list[str]]] = []


def report(drill: str, *lines: str) -> None:
    """Record (and print, for `-s` runs) what a drill tried and what survived."""
    REPORTS.append((drill, list(lines)))
    print(f"[drill] {drill}: " + "; ".join(lines))
