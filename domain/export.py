"""Open data: items, goals and approved comments with their counts, as CSV (for Excel) and
one JSON file — without any personal data. No Telegram ids, no pseudonym numbers, no
names except display names residents chose themselves to be shown under."""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from zoneinfo import ZoneInfo

from domain.text import pick
from storage.uow import UnitOfWork

ITEMS_CSV = "items.csv"
GOALS_CSV = "goals.csv"
COMMENTS_CSV = "comments.csv"
JSON_FILE = "todo-export.json"
FILE_NAMES = (ITEMS_CSV, GOALS_CSV, COMMENTS_CSV, JSON_FILE)

ITEM_COLUMNS = (
    "key",
    "title_de",
    "title_en",
    "action_field",
    "action_field_de",
    "action_field_en",
    "status",
    "merged_into",
    "supporters",
    "approved_comments",
    "followers",
    "created",
)
GOAL_COLUMNS = (
    "key",
    "title_de",
    "title_en",
    "action_field",
    "action_field_de",
    "action_field_en",
    "status",
    "progress",
    "items",
    "partners",
    "followers",
)
COMMENT_COLUMNS = ("item", "date", "author", "text")
#: Within one CSV cell, lists (a goal's items and partners) are joined with this.
LIST_SEPARATOR = ", "
#: Excel runs a cell that starts with one of these as a formula: such cells get a leading
#: apostrophe in the CSV files (the JSON keeps the text as it is).
FORMULA_START = ("=", "+", "-", "@", "\t", "\r")

Row = dict[str, Any]


@dataclass(frozen=True)
class OpenData:
    generated_at: dt.datetime
    items: list[Row]
    goals: list[Row]
    comments: list[Row]

    def counts(self) -> tuple[int, int, int]:
        return len(self.items), len(self.goals), len(self.comments)


def _title(texts: Mapping[str, str], language: str) -> str:
    return pick(texts, language)


async def collect(uow: UnitOfWork, tz: ZoneInfo, now: dt.datetime) -> OpenData:
    """Everything that is exported, as plain rows (the JSON values; CSV cells are their
    text form). Dates are local dates in `tz`."""

    def day(value: dt.datetime) -> str:
        return value.astimezone(tz).date().isoformat()

    items = [
        {
            "key": r.key,
            "title_de": _title(r.title, "de"),
            "title_en": _title(r.title, "en"),
            "action_field": r.field_key,
            "action_field_de": _title(r.field_title, "de"),
            "action_field_en": _title(r.field_title, "en"),
            "status": r.status,
            "merged_into": r.merged_into,
            "supporters": r.supporters,
            "approved_comments": r.comments,
            "followers": r.followers,
            "created": day(r.created_at),
        }
        for r in await uow.export.items()
    ]
    goals = [
        {
            "key": g.key,
            "title_de": _title(g.title, "de"),
            "title_en": _title(g.title, "en"),
            "action_field": g.field_key,
            "action_field_de": _title(g.field_title, "de"),
            "action_field_en": _title(g.field_title, "en"),
            "status": g.status,
            "progress": g.progress,
            "items": list(g.items),
            "partners": [{"name": p.name, "url": p.url} for p in g.partners],
            "followers": g.followers,
        }
        for g in await uow.export.goals()
    ]
    comments = [
        {
            "item": c.item_key,
            "date": day(c.created_at),
            "author": c.display_name or "",
            "text": c.text,
        }
        for c in await uow.export.comments()
    ]
    return OpenData(now, items, goals, comments)


def cell(value: Any) -> str:
    """A JSON value as the text of a CSV cell."""
    if value is None:
        return ""
    if isinstance(value, list):
        return LIST_SEPARATOR.join(
            str(v["name"]) if isinstance(v, dict) else cell(v) for v in value
        )
    text = str(value)
    return "'" + text if text.startswith(FORMULA_START) else text


def csv_bytes(columns: Sequence[str], rows: Iterable[Row]) -> bytes:
    """UTF-8 with BOM, semicolons, CRLF: opens as a table in a German Excel. Cells with
    a semicolon, quote or line break are quoted (csv module)."""
    buffer = io.StringIO(newline="")
    writer = csv.writer(buffer, delimiter=";", lineterminator="\r\n", quoting=csv.QUOTE_MINIMAL)
    writer.writerow(columns)
    for row in rows:
        writer.writerow([cell(row[column]) for column in columns])
    return buffer.getvalue().encode("utf-8-sig")


def json_bytes(data: OpenData, tz: ZoneInfo) -> bytes:
    document = {
        "generated": data.generated_at.astimezone(tz).isoformat(timespec="seconds"),
        "items": data.items,
        "goals": data.goals,
        "comments": data.comments,
    }
    return (json.dumps(document, ensure_ascii=False, indent=2) + "\n").encode("utf-8")


def files(data: OpenData, tz: ZoneInfo) -> dict[str, bytes]:
    """File name → content, in the order of FILE_NAMES."""
    return {
        ITEMS_CSV: csv_bytes(ITEM_COLUMNS, data.items),
        GOALS_CSV: csv_bytes(GOAL_COLUMNS, data.goals),
        COMMENTS_CSV: csv_bytes(COMMENT_COLUMNS, data.comments),
        JSON_FILE: json_bytes(data, tz),
    }


async def export_files(
    uow: UnitOfWork, tz: ZoneInfo, now: dt.datetime
) -> tuple[OpenData, dict[str, bytes]]:
    """The export as it is now: its rows and its files."""
    data = await collect(uow, tz, now)
    return data, files(data, tz)
