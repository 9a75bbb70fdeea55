"""Charts for the digest, drawn with matplotlib (no GUI backend, no global pyplot state)."""

from __future__ import annotations

import io
from collections.abc import Sequence


def bar_chart(labels: Sequence[str], values: Sequence[int], *, title: str) -> bytes:
    """A horizontal bar chart as PNG bytes (about 30 KB)."""
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator

    height = 1.2 + 0.45 * max(1, len(labels))
    figure = Figure(figsize=(8, height), dpi=110)
    axes = figure.subplots()
    positions = list(range(len(labels)))[::-1]
    axes.barh(positions, values, color="#e4002b")
    axes.set_yticks(positions, labels=[_wrap(label) for label in labels])
    axes.set_title(title, loc="left", fontsize=13, fontweight="bold")
    axes.spines[["top", "right"]].set_visible(False)
    axes.xaxis.set_major_locator(MaxNLocator(integer=True))
    for position, value in zip(positions, values, strict=True):
        axes.text(value, position, f" {value}", va="center", fontsize=10)
    figure.tight_layout()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    return buffer.getvalue()


def _wrap(label: str, width: int = 34) -> str:
    return label if len(label) <= width else label[: width - 1] + "…"
