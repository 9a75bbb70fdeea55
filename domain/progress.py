"""The text progress bar of goals (menu, card, digest) and the natural order of goal keys.
Kept apart from domain.goals so that the digest can use it without importing the goals'
notifications."""

from __future__ import annotations

import re
from typing import Any

#: Cells of the text progress bar.
BAR_CELLS = 10

_DIGITS = re.compile(r"(\d+)")


def filled_cells(percent: int) -> int:
    """Filled cells of the bar: rounded down, so that a bar is never fuller than the goal
    (99 % is 9 cells, only 100 % is full)."""
    return max(0, min(BAR_CELLS, percent // (100 // BAR_CELLS)))


def progress_bar(percent: int, full: str = "▰", empty: str = "▱") -> str:
    """`progress_bar(40)` → "▰▰▰▰▱▱▱▱▱▱". Templates draw the same bar with the glyphs of
    `labels.progress_bar(filled, empty)` and a view's `filled`/`empty`."""
    filled = filled_cells(percent)
    return full * filled + empty * (BAR_CELLS - filled)


class ProgressBar:
    """`filled` and `empty` cells of a view's progress bar (for views with `progress`)."""

    progress: int

    @property
    def filled(self) -> int:
        return filled_cells(self.progress)

    @property
    def empty(self) -> int:
        return BAR_CELLS - self.filled


def key_order(key: str) -> list[Any]:
    """Natural order of keys: Z-2 before Z-10."""
    return [int(p) if p.isdigit() else p.casefold() for p in _DIGITS.split(key)]
