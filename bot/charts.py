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


def stats_chart(
    *,
    fields: Sequence[str],
    field_series: Sequence[tuple[str, Sequence[int]]],
    weeks: Sequence[str],
    week_series: Sequence[tuple[str, Sequence[int]]],
    titles: tuple[str, str],
) -> bytes:
    """/stats as a picture: counts per action field (grouped horizontal bars) above counts
    per week (grouped columns). Series are (legend label, one value per field / week)."""
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator

    colors = ("#e4002b", "#1f6fb2", "#7a7a7a")
    rows = max(1, len(fields))
    height = 4.4 + 0.55 * rows
    figure = Figure(figsize=(8, height), dpi=110)
    by_field, by_week = figure.subplots(
        2, 1, gridspec_kw={"height_ratios": [max(1.6, 0.55 * rows), 3]}
    )

    width = 0.8 / max(1, len(field_series))
    positions = list(range(len(fields)))[::-1]
    for n, (name, values) in enumerate(field_series):
        offsets = [p + 0.4 - width * (n + 0.5) for p in positions]
        by_field.barh(offsets, values, height=width, label=name, color=colors[n % len(colors)])
    by_field.set_yticks(positions, labels=[_wrap(label) for label in fields])
    by_field.set_title(titles[0], loc="left", fontsize=13, fontweight="bold")
    by_field.xaxis.set_major_locator(MaxNLocator(integer=True))
    by_field.spines[["top", "right"]].set_visible(False)

    width = 0.8 / max(1, len(week_series))
    for n, (name, values) in enumerate(week_series):
        offsets = [i - 0.4 + width * (n + 0.5) for i in range(len(weeks))]
        by_week.bar(offsets, values, width=width, label=name, color=colors[n % len(colors)])
    by_week.set_xticks(list(range(len(weeks))), labels=list(weeks), fontsize=9)
    by_week.set_title(titles[1], loc="left", fontsize=13, fontweight="bold")
    by_week.yaxis.set_major_locator(MaxNLocator(integer=True))
    by_week.spines[["top", "right"]].set_visible(False)

    # One legend for both (a series has the same colour in both), above them.
    handles, names = by_field.get_legend_handles_labels()
    figure.legend(handles, names, loc="upper right", ncol=len(names), fontsize=9, frameon=False)
    figure.tight_layout(rect=(0, 0, 1, 1 - 0.35 / height))
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    return buffer.getvalue()
